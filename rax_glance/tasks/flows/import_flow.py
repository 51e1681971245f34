"""The `import` flow: a VHD in the project's Swift account becomes an active Glance image.

check input -> find the Swift object (DLO and SLO count as one file) -> create the image
record -> stream the object through the VHD validator and the Windows check while packing it
as the XenServer package (`0.vhd` in a gzipped tar) straight into Glance's default store
through Glance's domain layer (hashing, quotas, store drivers apply) -> image `active`.
Nothing is staged on disk: the object streams from Swift into the store in one pass.
"""

import swiftclient
from oslo_log import log as logging
from taskflow import task as tf_task
from taskflow.patterns import linear_flow

from rax_glance import ova
from rax_glance.swift import errors as swift_errors
from rax_glance.swift import names as swift_names
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
    """HEAD the object in the owner's account: its size (of the whole DLO/SLO)."""

    default_provides = 'source_size'

    def __init__(self, job):
        super().__init__(name='find_swift_object')
        self.job = job

    def execute(self, source):
        conn = base.project_swift(self.job).connection()
        try:
            headers = conn.head_object(source['container'], source['object'])
        except swiftclient.ClientException as exc:
            if exc.http_status == 404:
                raise messages.TaskFailed(messages.IMPORT_NOT_FOUND) from None
            raise
        finally:
            conn.close()
        size = int(headers.get('content-length', 0))
        LOG.info('Task %s: importing %s/%s (%d bytes)', self.job.id, source['container'],
                 source['object'], size)
        return size

    def revert(self, *args, **kwargs):
        pass  # reads only


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
        conn = base.project_swift(self.job).connection()
        try:
            _headers, body = conn.get_object(source['container'], source['object'],
                                             resp_chunk_size=READ_SIZE)
            stream = vhd_content.IterStream(body, source_size)
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
        except swiftclient.ClientException as exc:
            if exc.http_status == 404:  # deleted while we read it
                raise messages.TaskFailed(messages.IMPORT_NOT_FOUND) from None
            raise
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
