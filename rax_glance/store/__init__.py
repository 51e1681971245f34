"""glance_store drivers of the bundle (entry points in `glance_store.drivers`)."""
