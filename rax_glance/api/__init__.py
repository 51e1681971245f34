"""Paste filters of the Cloud Images API (WSGI middleware in front of Glance)."""
