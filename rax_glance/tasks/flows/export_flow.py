"""The `export` flow: an image of the project becomes one VHD, a verifiable DLO in a
container of the project's Swift account.

check input -> check the image (owner, not public, not deactivated, licensing, format) ->
check the container (exists) and the object (absent) -> stream the image data from Glance's
store, unpack the XenServer package and coalesce its chain into one dynamic VHD (a bare `vhd`
or `raw` image is converted) while uploading it as segments plus a manifest carrying size and
checksums (`rax_glance.store.swiftdlo.write_project_object`). The revert removes the manifest
and every segment.
"""

import os
import shutil
import tempfile
import uuid

import swiftclient
from oslo_log import log as logging
from taskflow import task as tf_task
from taskflow.patterns import linear_flow

from rax_glance import errors as engine_errors
from rax_glance import ova
from rax_glance.store import swiftdlo
from rax_glance.swift import errors as swift_errors
from rax_glance.swift import names as swift_names
from rax_glance.tasks import messages
from rax_glance.tasks.flows import base
from rax_glance.vhd import content as vhd_content
from rax_glance.vhd import format as vhd_format
from rax_glance.vhd import validate as vhd_validate

LOG = logging.getLogger(__name__)
LICENSE_PROPERTY = 'com.rackspace__1__options'
# (disk_format, container_format) the export can turn into one VHD.
FORMATS = {('vhd', 'ovf'): 'package', ('vhd', 'bare'): 'vhd', ('raw', 'bare'): 'raw'}


class CheckInput(tf_task.Task):
    default_provides = 'target'

    def __init__(self, job):
        super().__init__(name='check_export_input')
        self.job = job

    def execute(self):
        image_id = self.job.input['image_uuid']
        container = self.job.input['receiving_swift_container']
        try:
            swift_names.validate_export_container(container)
        except (swift_errors.InvalidName, ValueError):
            raise messages.TaskFailed(messages.CONTAINER_INVALID
                                      % {'container': container}) from None
        try:
            uuid.UUID(image_id)
        except ValueError:
            raise messages.TaskFailed(messages.EXPORT_IMAGE_NOT_FOUND
                                      % {'image': image_id}) from None
        return {'image_id': image_id, 'container': container, 'object': '%s.vhd' % image_id}

    def revert(self, *args, **kwargs):
        pass  # checks only


class CheckImage(tf_task.Task):
    """Only the owner's own, private/shared, active, unlicensed vhd or raw images."""

    default_provides = 'image_kind'

    def __init__(self, job):
        super().__init__(name='check_image')
        self.job = job

    def execute(self, target):
        from glance.common import exception as glance_exc

        ctx = self.job.context
        image_id = target['image_id']
        repo = base.gateway().get_repo(ctx)
        try:
            image = base.retry_db(lambda: repo.get(image_id))
        except (glance_exc.NotFound, glance_exc.Forbidden):
            raise messages.TaskFailed(messages.EXPORT_IMAGE_NOT_FOUND
                                      % {'image': image_id}) from None
        fields = {'image': image_id}
        if image.owner != ctx.project_id or image.visibility == 'public':
            raise messages.TaskFailed(messages.NOT_OWNER)
        if image.status == 'deactivated':
            raise messages.TaskFailed(messages.DEACTIVATED % fields)
        if image.status != 'active':
            raise messages.TaskFailed(messages.NOT_ACTIVE % fields)
        license_value = image.extra_properties.get(LICENSE_PROPERTY)
        if license_value is not None and str(license_value).strip() != '0':
            raise messages.TaskFailed(messages.LICENSED % fields)
        kind = FORMATS.get((image.disk_format, image.container_format))
        if kind is None:
            raise messages.TaskFailed(messages.UNSUPPORTED_FORMAT % fields)
        return kind

    def revert(self, *args, **kwargs):
        pass  # reads only


class CheckContainer(tf_task.Task):
    """The container must exist and `<image_uuid>.vhd` must not (nothing written yet)."""

    def __init__(self, job):
        super().__init__(name='check_container')
        self.job = job

    def execute(self, target):
        try:
            conn = base.project_swift(self.job).connection()
        except swift_errors.ProtectedAccount as exc:
            # A Glance store's account is never a task's target, whoever asks.
            LOG.warning('Task %s: %s', self.job.id, exc.message)
            raise messages.TaskFailed(messages.CONTAINER_NOT_FOUND % target) from None
        try:
            try:
                conn.head_container(target['container'])
            except swiftclient.ClientException as exc:
                if exc.http_status == 404:
                    raise messages.TaskFailed(messages.CONTAINER_NOT_FOUND % target) from None
                raise
            try:
                # The name itself: a symlink there is an object (Swift must not follow it
                # into another account: that would tell whether the target exists).
                conn.head_object(target['container'], target['object'],
                                 query_string='symlink=get')
            except swiftclient.ClientException as exc:
                if exc.http_status != 404:
                    raise
            else:
                raise messages.TaskFailed(messages.OBJECT_EXISTS % target)
        finally:
            conn.close()

    def revert(self, *args, **kwargs):
        pass  # reads only


class UploadVHD(tf_task.Task):
    """Image data -> (unpack + coalesce | convert) -> one dynamic VHD -> DLO upload."""

    default_provides = 'upload'

    def __init__(self, job):
        super().__init__(name='upload_vhd')
        self.job = job

    def _spool_dir(self):
        """A directory of this task's own for spooled chains and conversions, so what a
        killed process left there can be found and removed."""
        base_dir = self.job.conf.rax_tasks.work_dir or tempfile.gettempdir()
        path = os.path.join(base_dir, 'rax-glance-task-%s' % self.job.id)
        self.job.remember('spool_dir', path)
        os.makedirs(path, exist_ok=True)
        return path

    def _vhd_stream(self, image, spool_dir):
        data = vhd_content.IterStream(image.get_data(), image.size)
        limits = ova.PackageLimits(
            max_inflate_ratio=self.job.conf.rax_tasks.max_package_inflate_ratio)
        return ova.export_image(data, image.size, image.container_format, image.disk_format,
                                tmpdir=spool_dir, limits=limits,
                                vhd_limits=vhd_validate.UNLIMITED)

    def execute(self, target, image_kind):
        ctx = self.job.context
        image = base.retry_db(lambda: base.gateway().get_repo(ctx).get(target['image_id']))
        # Recorded before the name is claimed, so a dead process's export is removed. The
        # task id is the writer id on the object: cleanup deletes only what carries it.
        self.job.remember('export', {'container': target['container'],
                                     'object': target['object'], 'writer': self.job.id})
        fields = dict(target, image=target['image_id'])
        spool_dir = self._spool_dir()
        try:
            stream = self._vhd_stream(image, spool_dir)
            head = bytearray()
            record = swiftdlo.write_project_object(ctx, target['container'], target['object'],
                                                   _noting_head(stream, head),
                                                   conf=self.job.conf, writer_id=self.job.id)
        except swift_errors.ContainerNotFound:
            raise messages.TaskFailed(messages.CONTAINER_NOT_FOUND % fields) from None
        except swift_errors.ObjectExists:
            # Someone else's object: it is not ours to remove on revert.
            self.job.forget('export')
            raise messages.TaskFailed(messages.OBJECT_EXISTS % fields) from None
        except swift_errors.SegmentPrefixInUse:
            self.job.forget('export')
            raise messages.TaskFailed(messages.SEGMENTS_EXIST % fields) from None
        except swift_errors.UploadFailed as exc:
            if exc.http_status != 413:
                raise
            # A container or account quota refused a segment; what was written is gone.
            LOG.warning('Task %s: %s', self.job.id, exc.message)
            raise messages.TaskFailed(messages.QUOTA_EXCEEDED % fields) from None
        except engine_errors.ImageError as exc:
            LOG.warning('Task %s: image %s cannot be exported: %s', self.job.id,
                        target['image_id'], exc.describe())
            raise messages.TaskFailed(messages.BAD_IMAGE_DATA % fields) from None
        finally:
            _remove_spool(self.job, spool_dir)
        LOG.info('Task %s: exported image %s to %s/%s (%s bytes, sha256 %s)', self.job.id,
                 target['image_id'], target['container'], target['object'],
                 record.get('size'), record.get('sha256'))
        _record_virtual_size(self.job, target['image_id'], bytes(head))
        return {'size': record.get('size'), 'sha256': record.get('sha256')}

    def revert(self, *args, **kwargs):
        export = self.job.work.get('export')
        if export:
            _delete_export(self.job, export)
            self.job.forget('export')


def _noting_head(stream, head):
    """`stream` unchanged, its first 512 bytes (the exported VHD's footer copy) kept in
    `head`."""
    def chunks():
        for chunk in stream:
            if len(head) < vhd_format.FOOTER_SIZE:
                head.extend(bytes(chunk[:vhd_format.FOOTER_SIZE - len(head)]))
            yield chunk
    return vhd_content.IterStream(chunks(), stream.size)


def _record_virtual_size(job, image_id, head):
    """Give an image without `virtual_size` (e.g. a chain package an operator or Nova
    uploaded: Glance does not inspect `ovf` data) the virtual size of its exported disk."""
    try:
        footer = vhd_format.Footer.parse(head)
        if footer.cookie != vhd_format.FOOTER_COOKIE:
            return
        repo = base.gateway().get_repo(base.operator_context(job.context))
        image = base.retry_db(lambda: repo.get(image_id))
        if image.virtual_size is None:
            image.virtual_size = footer.current_size
            base.retry_db(lambda: repo.save(image))
            LOG.info('Task %s: image %s virtual_size %d', job.id, image_id,
                     footer.current_size)
    except Exception as exc:  # noqa: BLE001 - the export itself succeeded
        LOG.warning('Task %s: could not record the virtual size of image %s: %s', job.id,
                    image_id, exc)


def _remove_spool(job, path):
    shutil.rmtree(path, ignore_errors=True)
    job.forget('spool_dir')


def _delete_export(job, export):
    try:
        # Only while the object still carries this task's writer id (an export recorded
        # before writer ids existed has none: fall back to the task id, never to "any").
        swiftdlo.delete_project_object(job.context, export['container'], export['object'],
                                       conf=job.conf, writer_id=export.get('writer', job.id))
        LOG.info('Task %s: removed %s/%s and its segments', job.id, export['container'],
                 export['object'])
    except swift_errors.ObjectNotFound:
        pass  # the writer already removed what it wrote, or the name is someone else's


class ExportFlow(base.FlowPlugin):
    def build(self, job):
        return linear_flow.Flow('rax-export-%s' % job.id).add(
            CheckInput(job), CheckImage(job), CheckContainer(job), UploadVHD(job))

    def result(self, job, storage):
        target = storage.fetch('target')
        return {'export_location': '%s/%s' % (target['container'], target['object'])}

    def cleanup(self, job, work):
        if work.get('export'):
            _delete_export(job, work['export'])
        if work.get('spool_dir'):
            shutil.rmtree(work['spool_dir'], ignore_errors=True)
