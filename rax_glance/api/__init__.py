"""Paste filters of the bundle in front of Glance's own API (`/v2/images`, `/v2/info`,
errors)."""
