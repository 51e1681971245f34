"""The `import` flow: a VHD in the project's Swift account becomes an active Glance image.

check input -> find the Swift object (DLO and SLO count as one file) -> create the image
record -> stream the object through the VHD validator and the Windows check while packing it
as the XenServer package (`0.vhd` in a gzipped tar) straight into Glance's default store
through Glance's domain layer (hashing, quotas, store drivers apply) -> image `active`.
Nothing is staged on disk: the object streams from Swift into the store in one pass.
"""

import contextlib

import swiftclient
from oslo_log import log as logging
from taskflow import task as tf_task
from taskflow.patterns import linear_flow

from rax_glance import ova
from rax_glance.swift import errors as swift_errors
from rax_glance.swift import names as swift_names
from rax_glance.swift import source as swift_source
from rax_glance.tasks import messages
from rax_glance.tasks.flows import base
from rax_glance.vhd import content as vhd_content

LOG = logging.getLogger(__name__)
READ_SIZE = 1 << 20
ALLOWED_PROPERTIES = ('name',)


class CheckInput(tf_task.Task):
    """Only `name` in image_properties; `import_from` must be container/object."""

    default_provides = 'source'

    def __init__(self, job):
        super().__init__(name='check_import_input')
        self.job = job

    def execute(self):
        task_input = self.job.input
        props = task_input.get('image_properties') or {}
        if set(props) - set(ALLOWED_PROPERTIES):
            raise messages.TaskFailed(messages.UNSUPPORTED_PROPERTY)
        try:
            container, obj = swift_names.split_path(task_input['import_from'])
        except (swift_errors.InvalidName, ValueError):
            raise messages.TaskFailed(messages.IMPORT_NOT_FOUND) from None
        return {'container': container, 'object': obj, 'name': props.get('name')}

    def revert(self, *args, **kwargs):
        pass  # checks only


class FindSwiftObject(tf_task.Task):
    """Resolve the name in the owner's account (links, DLO/SLO manifests, versions) without
    letting Swift follow anything: its size, or the not-found message when it is missing or
    leads anywhere but the owner's own account (rax_glance.swift.source)."""

    default_provides = 'source_size'

    def __init__(self, job):
        super().__init__(name='find_swift_object')
        self.job = job

    def execute(self, source):
        with _refused_as_not_found(self.job, source):
            resolved = swift_source.resolve(base.project_swift(self.job), source['container'],
                                            source['object'])
        LOG.info('Task %s: importing %s/%s (%d bytes in %d pieces)', self.job.id,
                 source['container'], source['object'], resolved.size, len(resolved.pieces))
        return resolved.size

    def revert(self, *args, **kwargs):
        pass  # reads only


@contextlib.contextmanager
def _refused_as_not_found(job, source):
    """Missing, refused (another account, a Glance store's account, a loop, ...) and
    changed-while-read sources all give the same message: no oracle for what lies behind a
    name. The reason goes to the log only. Swift or its auth being unreachable or
    misconfigured stays an unexpected error (it is not the customer's doing)."""
    try:
        yield
    except (swift_source.SourceRefused, swift_errors.ProtectedAccount,
            swift_errors.InvalidName) as exc:
        LOG.warning('Task %s: import source %s/%s refused: %s', job.id, source['container'],
                    source['object'], exc.message)
        raise messages.TaskFailed(messages.IMPORT_NOT_FOUND) from None
    except swiftclient.ClientException as exc:
        if exc.http_status is not None and exc.http_status < 500:
            LOG.warning('Task %s: import source %s/%s: Swift answered %s', job.id,
                        source['container'], source['object'], exc.http_status)
            raise messages.TaskFailed(messages.IMPORT_NOT_FOUND) from None
        raise


class CreateImage(tf_task.Task):
    """A queued image owned by the project with the Cloud Images import properties."""

    default_provides = 'image_id'

    def __init__(self, job):
        super().__init__(name='create_image')
        self.job = job

    def execute(self, source):
        ctx = self.job.context
        admin_ctx = base.operator_context(ctx)
        gw = base.gateway()
        image = gw.get_image_factory(admin_ctx).new_image(
            name=source['name'], owner=ctx.project_id, visibility='private',
            disk_format='vhd', container_format='ovf',
            extra_properties={'image_type': 'import', 'os_type': 'linux',
                              'user_id': ctx.user_id or '', 'auto_disk_config': 'False'})
        # Recorded before it exists: a process dying right after still gets it removed.
        self.job.remember('image_id', image.image_id)
        base.retry_db(lambda: gw.get_repo(admin_ctx).add(image))
        LOG.info('Task %s: created image %s', self.job.id, image.image_id)
        return image.image_id

    def revert(self, *args, **kwargs):
        image_id = self.job.work.get('image_id')
        if image_id:
            base.delete_image(self.job.context, image_id)
            self.job.forget('image_id')


class UploadPackage(tf_task.Task):
    """Swift object -> validator + Windows check -> package -> Glance's default store."""

    def __init__(self, job):
        super().__init__(name='upload_package')
        self.job = job

    def execute(self, source, source_size, image_id):
        ctx = base.operator_context(self.job.context)
        repo = base.gateway().get_repo(ctx)
        image = base.retry_db(lambda: repo.get(image_id))
        with _refused_as_not_found(self.job, source):
            swift = base.project_swift(self.job)
        conn = swift.connection()
        try:
            with _refused_as_not_found(self.job, source):
                # Resolved again, and read exactly as resolved (pinned by ETag): what is
                # read is what was checked, whatever the links say by now.
                resolved = swift_source.resolve(swift, source['container'], source['object'],
                                                conn=conn)
                if resolved.size != source_size:
                    raise swift_source.SourceRefused(
                        'size changed from %d to %d since it was found'
                        % (source_size, resolved.size))
                stream = vhd_content.IterStream(swift_source.iter_source(conn, resolved),
                                                source_size)
                info = {}
                package = ova.pack_single_vhd(stream, source_size, info=info,
                                              limits=base.import_limits(self.job.conf))
                # As Glance's upload API does: mark it saving, write the data, then activate.
                image.status = 'saving'
                base.retry_db(lambda: repo.save(image, from_state='queued'))
                image.set_data(package, None)
                # `size` is the stored package's; `virtual_size` is the disk's (Nova checks it).
                image.virtual_size = info['virtual_size']
                base.retry_db(lambda: repo.save(image, from_state='saving'))
        finally:
            conn.close()
        LOG.info('Task %s: image %s is %s (%s bytes stored)', self.job.id, image_id,
                 image.status, image.size)

    def revert(self, *args, **kwargs):
        pass  # the store removed its partial data; CreateImage's revert deletes the image


class ImportFlow(base.FlowPlugin):
    def build(self, job):
        return linear_flow.Flow('rax-import-%s' % job.id).add(
            CheckInput(job), FindSwiftObject(job), CreateImage(job), UploadPackage(job))

    def result(self, job, storage):
        return {'image_id': storage.fetch('image_id')}

    def cleanup(self, job, work):
        image_id = work.get('image_id')
        if image_id:
            deleted = base.delete_image(job.context, image_id)
            # An image still `saving` has no location: its data goes separately.
            base.remove_partial_data(image_id)
            LOG.info('Task %s: cleaned up image %s (record %s)', job.id, image_id,
                     'deleted' if deleted else 'absent')
