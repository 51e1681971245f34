"""Export tasks end to end: Glance image -> one coalesced VHD as a verifiable DLO in the
project's container; every refusal leaves the container as it was."""

import gzip
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.functional import clients
from tests.functional import tasks_helpers as th
from tests.functional import vhd_images
from tests.unit.vhd import builder

MIB = th.MIB
OPERATOR_ROLES = 'rax-glance-operator,member,reader'
NOT_OWNER = 'An image may only be exported by the image owner.'


@pytest.fixture
def project(glance_factory, swift_factory):
    glance = glance_factory()
    swift = swift_factory(glance.project)
    swift.put_container('exports')
    return glance, swift


def _imported(glance, swift, seed=3):
    raw, vhd = th.sample_disk(seed=seed)
    th.upload(swift, 'exports', 'src-%d.vhd' % seed, vhd)
    task = th.run_import(glance, 'exports/src-%d.vhd' % seed)
    assert task['status'] == 'success', task
    return raw, task['result']['image_id']


def _listing(swift, container='exports'):
    return sorted(o['name'] for o in swift.get_container(container, full_listing=True)[1])


def _verify_cli(stack_info, project, location):
    return subprocess.run(
        [str(Path(sys.executable).parent / 'rax-glance-export-verify'), '--config-file',
         stack_info['glance']['config_file'], '--project', project, location],
        capture_output=True, text=True)


def _check_export(stack_info, glance, swift, image_id, raw):
    task = th.run_export(glance, image_id)
    assert task['status'] == 'success', task
    assert task['message'] == ''
    location = 'exports/%s.vhd' % image_id
    assert task['result'] == {'export_location': location}
    headers, manifest = swift.get_object('exports', '%s.vhd' % image_id,
                                         query_string='multipart-manifest=get')
    assert manifest == b'' and headers['x-object-manifest'] == 'exports/%s.vhd-' % image_id
    segments = [n for n in _listing(swift) if n.startswith('%s.vhd-' % image_id)]
    assert segments[0] == '%s.vhd-00001' % image_id and len(segments) >= 2
    _, exported = swift.get_object('exports', '%s.vhd' % image_id)
    assert int(headers['x-object-meta-rax-dlo-size']) == len(exported)
    assert headers['x-object-meta-rax-dlo-sha256'] == vhd_images.sha256(exported)
    disk = vhd_images.vhd_to_raw(exported)
    assert disk[:len(raw)] == raw and not disk[len(raw):].strip(b'\0')
    verify = _verify_cli(stack_info, glance.project, location)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return exported


def test_export_of_an_imported_image_and_round_trip(project, stack_info):
    glance, swift = project
    raw, image_id = _imported(glance, swift)
    _check_export(stack_info, glance, swift, image_id, raw)
    # The export imports again, with the same disk content.
    again = th.run_import(glance, 'exports/%s.vhd' % image_id)
    assert again['status'] == 'success', again
    package = glance.get('/v2/images/%s/file' % again['result']['image_id']).content
    disk = vhd_images.vhd_to_raw(vhd_images.package_members(package)['0.vhd'])
    assert disk[:len(raw)] == raw and not disk[len(raw):].strip(b'\0')


def _chain_package():
    """A server-snapshot style package: 0.vhd (leaf) -> 1.vhd -> 2.vhd (base)."""
    size = 8 * MIB
    base = builder.Dynamic(size)
    middle = builder.Dynamic(size, disk_type=4, parent=base)
    leaf = builder.Dynamic(size, disk_type=4, parent=middle)
    writes = [(base, 0, b'\x0b' * MIB), (base, 4 * MIB, b'\x0c' * (2 * MIB)),
              (middle, 512, b'\x0d' * 4096), (middle, 5 * MIB, b'\x0e' * 8192),
              (leaf, 1024, b'\x0f' * 512), (leaf, 7 * MIB, b'\x10' * MIB)]
    raw = bytearray(size)
    for disk, offset, data in writes:  # base first, then middle, then leaf: an overlay
        disk.write(offset, data)
        raw[offset:offset + len(data)] = data
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode='w') as tar:
        for name, disk in (('0.vhd', leaf), ('1.vhd', middle), ('2.vhd', base)):
            data = disk.build()
            info = tarfile.TarInfo('./' + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return bytes(raw), gzip.compress(tar_bytes.getvalue())


def test_export_of_an_operator_uploaded_chain(project, glance_factory, stack_info):
    glance, swift = project
    raw, package = _chain_package()
    operator = glance_factory(glance.project, roles=OPERATOR_ROLES)
    image = operator.create_image(disk_format='vhd', container_format='ovf')
    operator.upload(image['id'], package)
    # Glance does not inspect ovf data: no virtual_size until the export computes it.
    assert glance.get('/v2/images/%s' % image['id']).json()['virtual_size'] is None
    exported = _check_export(stack_info, glance, swift, image['id'], raw)
    assert exported[-512:-504] == b'conectix'
    image = glance.get('/v2/images/%s' % image['id']).json()
    assert image['virtual_size'] == len(raw) and image['size'] == len(package), image


@pytest.mark.parametrize('disk_format', ['raw', 'vhd'])
def test_export_of_bare_images_converts_them(project, stack_info, disk_format):
    glance, swift = project
    raw, vhd = th.sample_disk(seed=11)
    image = glance.create_image(disk_format=disk_format, container_format='bare')
    # (Glance 33 inspects uploads: a bare vhd must start with its footer copy, i.e. dynamic)
    glance.upload_as_operator(image['id'], raw if disk_format == 'raw' else vhd)
    _check_export(stack_info, glance, swift, image['id'], raw)


def _qcow2():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', tmp + '/d.qcow2', '1M'],
                       check=True)
        return Path(tmp, 'd.qcow2').read_bytes()


def _expect_refusal(glance, swift, image_id, message, container='exports'):
    before = _listing(swift)
    task = th.run_export(glance, image_id, container)
    assert task['status'] == 'failure', task
    assert task['message'] == message
    assert 'result' not in task
    assert _listing(swift) == before


def test_export_refusals(project, glance_factory, swift_factory):
    glance, swift = project
    raw, image_id = _imported(glance, swift)
    operator = glance_factory(glance.project, roles=OPERATOR_ROLES)

    # Another project: invisible; shared with it (accepted) or public: not the owner.
    other = glance_factory()
    other_swift = swift_factory(other.project)
    other_swift.put_container('exports')
    _expect_refusal(other, other_swift, image_id, 'Image not found. Image: %s' % image_id)
    resp = glance.patch('/v2/images/%s' % image_id,
                        [{'op': 'replace', 'path': '/visibility', 'value': 'shared'}])
    assert resp.status_code == 200, resp.text
    resp = glance.post('/v2/images/%s/members' % image_id, json={'member': other.project})
    assert resp.status_code == 200, resp.text
    resp = other.put('/v2/images/%s/members/%s' % (image_id, other.project),
                     json={'status': 'accepted'})
    assert resp.status_code == 200, resp.text
    _expect_refusal(other, other_swift, image_id, NOT_OWNER)
    public = operator.create_image(visibility='public')
    operator.upload(public['id'], raw)
    _expect_refusal(glance, swift, public['id'], NOT_OWNER)
    _expect_refusal(other, other_swift, public['id'], NOT_OWNER)

    # Container rules.
    _expect_refusal(glance, swift, image_id, 'Container not found. Container: nothere',
                    container='nothere')
    for bad in ('my.exports', 'what?', 'a/b'):
        _expect_refusal(glance, swift, image_id,
                        'Invalid container name: it may not contain "/", "?" or ".". '
                        'Container: %s' % bad, container=bad)
    swift.put_object('exports', '%s.vhd' % image_id, b'already here')
    _expect_refusal(glance, swift, image_id,
                    "Object already exists in user's container. Container/Object: "
                    "exports/%s.vhd" % image_id)
    swift.delete_object('exports', '%s.vhd' % image_id)

    # Licensing, formats, state.
    _, lic_id = _imported(glance, swift, seed=5)
    resp = operator.patch('/v2/images/%s' % lic_id, [
        {'op': 'add', 'path': '/com.rackspace__1__options', 'value': '1'}])
    assert resp.status_code == 200, resp.text
    _expect_refusal(glance, swift, lic_id, 'This image cannot be exported because its license '
                    'does not allow it (com.rackspace__1__options). Image: %s' % lic_id)
    qcow = glance.create_image(disk_format='qcow2', container_format='bare')
    glance.upload_as_operator(qcow['id'], _qcow2())
    _expect_refusal(glance, swift, qcow['id'], 'This image cannot be exported: only vhd '
                    '(XenServer package or bare) and raw images can be exported. Image: %s'
                    % qcow['id'])
    queued = glance.create_image(disk_format='raw', container_format='bare')
    _expect_refusal(glance, swift, queued['id'],
                    'Only an active image can be exported. Image: %s' % queued['id'])
    assert operator.post('/v2/images/%s/actions/deactivate' % image_id).status_code == 204
    _expect_refusal(glance, swift, image_id,
                    'A deactivated image cannot be exported. Image: %s' % image_id)
    missing = clients.uuid.uuid4()
    _expect_refusal(glance, swift, str(missing), 'Image not found. Image: %s' % missing)
    _expect_refusal(glance, swift, 'not-a-uuid', 'Image not found. Image: not-a-uuid')


def test_broken_stored_package_fails_cleanly(project, glance_factory):
    glance, swift = project
    operator = glance_factory(glance.project, roles=OPERATOR_ROLES)
    image = operator.create_image(disk_format='vhd', container_format='ovf')
    operator.upload(image['id'], gzip.compress(b'not a tar at all' * 1000))
    _expect_refusal(glance, swift, image['id'], 'The data of this image could not be '
                    'converted to a VHD for export. Image: %s' % image['id'])


def test_unexpected_error_is_generic_for_the_user_and_logged(project, stack_info):
    """The stored data of an image vanished (a broken store): not the user's doing."""
    glance, swift = project
    raw, _ = th.sample_disk(seed=13)
    image = glance.create_image(disk_format='raw', container_format='bare')
    glance.upload_as_operator(image['id'], raw)
    Path(stack_info['state_dir'], 'glance', 'images', image['id']).unlink()
    before = _listing(swift)
    task = th.run_export(glance, image['id'])
    assert task['status'] == 'failure'
    assert task['message'] == ('An unexpected error occurred while processing the task; '
                               'nothing was kept. Please try again later or contact support.')
    assert _listing(swift) == before
    log = Path(stack_info['logs']['glance-api']).read_text(errors='replace')
    assert 'Task %s (export) failed unexpectedly' % task['id'] in log
    assert 'Traceback' in log.split('Task %s (export) failed unexpectedly' % task['id'])[1]
