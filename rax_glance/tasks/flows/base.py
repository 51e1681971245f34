"""Shared pieces of the import and export flows: Glance domain access, Swift access, limits."""

import os
import threading

from oslo_config import cfg
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


def remove_partial_data(image_id):
    """Remove what a killed process left half-written in the default store for `image_id`.

    A process that dies inside `set_data` records no location, so deleting the image does not
    reach the data. The layout is known for the filesystem driver (`<datadir>/<image id>`);
    for other drivers this is logged for the operator.
    """
    try:
        from glance_store import multi_backend

        backend = cfg.CONF.glance_store.default_backend
        store = multi_backend.get_store_from_store_identifier(backend)
    except Exception:
        LOG.warning('Cannot look for partial data of image %s in the default store', image_id)
        return False
    if getattr(store, 'multiple_datadirs', False):
        dirs = [d for paths in store.priority_data_map.values() for d in paths]
    elif getattr(store, 'datadir', None):
        dirs = [store.datadir]
    else:
        LOG.warning('Image %s may have left partial data in store %s (driver %s); check it',
                    image_id, backend, type(store).__name__)
        return False
    removed = False
    for directory in dirs:
        path = os.path.join(directory, str(image_id))
        if os.path.isfile(path):
            os.unlink(path)
            LOG.info('Removed partial data %s of interrupted image %s', path, image_id)
            removed = True
    return removed


def project_swift(job):
    """Swift access to the task owner's account only."""
    swift_access.register_opts(job.conf)
    return swift_access.ProjectSwift.from_context(job.context, job.conf)


def import_limits(conf):
    opts = conf.rax_tasks
    return vhd_validate.Limits(max_virtual_size=int(opts.max_virtual_size_gb * GIB),
                               max_physical_size=int(opts.max_physical_size_gb * GIB))
