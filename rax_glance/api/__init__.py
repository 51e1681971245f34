"""Paste filters of the bundle that guard Glance's own image API (`/v2/images`)."""
