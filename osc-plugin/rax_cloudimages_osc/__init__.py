"""OpenStackClient plugin for Rackspace Cloud Images (`openstack cloud-image ...`)."""
