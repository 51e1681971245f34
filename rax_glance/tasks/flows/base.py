"""Shared pieces of the import and export flows: Glance domain access, Swift access, limits."""

import threading

from oslo_log import log as logging

from rax_glance.swift import access as swift_access
from rax_glance.vhd import validate as vhd_validate

LOG = logging.getLogger(__name__)
GIB = 1 << 30

_GATEWAY = {}
_GATEWAY_LOCK = threading.Lock()


class FlowPlugin:
    """Base of the `rax_glance.flows` plugins."""

    def build(self, job):
        raise NotImplementedError

    def result(self, job, storage):
        raise NotImplementedError

    def cleanup(self, job, work):
        raise NotImplementedError


def gateway():
    """Glance's domain layer (one per process; it is stateless apart from its proxies)."""
    with _GATEWAY_LOCK:
        if 'gateway' not in _GATEWAY:
            import glance.gateway

            _GATEWAY['gateway'] = glance.gateway.Gateway()
        return _GATEWAY['gateway']


def retry_db(func):
    """Glance's own retry for sqlite's "database is locked" (a no-op elsewhere)."""
    from glance.common import utils as glance_utils

    return glance_utils.retry_on_db_lock(func)


def operator_context(context):
    """The task's context acting as the operator, for the protected properties the import
    sets (`image_type`, `os_type`, `user_id`); the project stays the task owner's."""
    from rax_glance import policies

    return policies.operator_context(context)


def delete_image(context, image_id):
    """Delete an image and its stored data through the domain layer; True if it existed."""
    from glance.common import exception as glance_exc

    repo = gateway().get_repo(operator_context(context))
    try:
        image = retry_db(lambda: repo.get(image_id))
    except glance_exc.NotFound:
        return False
    image.delete()
    retry_db(lambda: repo.remove(image))
    LOG.info('Deleted image %s', image_id)
    return True


def project_swift(job):
    """Swift access to the task owner's account only."""
    swift_access.register_opts(job.conf)
    return swift_access.ProjectSwift.from_context(job.context, job.conf)


def import_limits(conf):
    opts = conf.rax_tasks
    return vhd_validate.Limits(max_virtual_size=int(opts.max_virtual_size_gb * GIB),
                               max_physical_size=int(opts.max_physical_size_gb * GIB))
