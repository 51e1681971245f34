"""rax_glance: Rackspace Cloud Images as a plugin bundle for stock OpenStack Glance 33."""
