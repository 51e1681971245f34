"""Import tasks end to end: Swift object -> validated VHD -> XenServer package in Glance.

Real glance-api, real Swift. Disk images are made by the tests' own VHD builder; the stored
package is read back with the stdlib's tarfile and its disk content compared with qemu-img.
"""

import os
import struct

import pytest

from tests.functional import tasks_helpers as th
from tests.functional import vhd_images
from tests.unit.vhd import builder
from tests.unit.vhd.helpers import patch_footers
from tests.unit.vhd.helpers import patch_header

MIB = th.MIB
GIB = 1024 * MIB
PREFIX = 'The image cannot be imported. '
# The documented Cloud Images messages, verbatim.
MESSAGES = {
    111: PREFIX + 'There is an unspecified problem with your VHD that caused it to fail our '
                  'validation checks.',
    396: PREFIX + 'The file is not a valid VHD.',
    413: PREFIX + 'The virtual size of the disk exceeds the 40GB limit.',
    523: PREFIX + 'Only fixed or dynamic disks may be imported.',
    # The dev stack lowers the physical limit to 64 MiB (0.0625 GB) to reach it cheaply.
    609: PREFIX + 'The physical size of the disk exceeds the 0.1GB limit.',
    614: PREFIX + 'The internal UUID of the VHD is all zeros.',
    721: PREFIX + 'Your VHD has a parent disk. You can only import a stand-alone VHD.',
}
NOT_FOUND = 'Image not found for import. Possible invalid location'
UNSUPPORTED = 'Unsupported element in image_properties, please consult the documentation.'


@pytest.fixture
def project(glance_factory, swift_factory):
    glance = glance_factory()
    return glance, swift_factory(glance.project)


def _stored_files(stack_info):
    root = os.path.join(stack_info['state_dir'], 'glance')
    return {os.path.join(d, f) for sub in ('images', 'staging')
            for d, _, files in os.walk(os.path.join(root, sub)) for f in files}


@pytest.mark.parametrize('kind,how', [('dynamic', 'object'), ('fixed', 'object'),
                                      ('dynamic', 'dlo'), ('fixed', 'slo')])
def test_import_makes_an_active_xenserver_image(project, kind, how):
    glance, swift = project
    raw, dynamic = th.sample_disk(seed=7)
    source = dynamic if kind == 'dynamic' else builder.fixed(raw)
    th.upload(swift, 'exports', 'disk.vhd', source, how=how)

    task = th.run_import(glance, 'exports/disk.vhd', name='My excellent custom image')
    assert task['status'] == 'success', task
    assert task['message'] == '' and set(task['result']) == {'image_id'}
    image = glance.get('/v2/images/%s' % task['result']['image_id']).json()
    assert image['status'] == 'active' and image['owner'] == glance.project
    assert image['name'] == 'My excellent custom image'
    assert (image['disk_format'], image['container_format']) == ('vhd', 'ovf')
    assert image['visibility'] == 'private'
    assert image['image_type'] == 'import' and image['os_type'] == 'linux'
    assert image['user_id'] == glance.user and image['auto_disk_config'] == 'False'

    package = glance.get('/v2/images/%s/file' % image['id']).content
    assert image['size'] == len(package)
    assert image['virtual_size'] == len(raw)  # the disk's size, for Nova's flavor check
    members = vhd_images.package_members(package)
    assert list(members) == ['0.vhd']
    assert members['0.vhd'] == source  # the uploaded VHD, byte for byte
    disk = vhd_images.vhd_to_raw(members['0.vhd'])
    assert disk[:len(raw)] == raw and not disk[len(raw):].strip(b'\0')


def _crafted():
    raw, good = th.sample_disk()
    base = builder.Dynamic(6 * MIB)
    base.write(0, b'\x01' * 512)
    child = builder.Dynamic(6 * MIB, disk_type=4, parent=base)
    child.write(0, b'\x02' * 512)
    return {
        396: os.urandom(3 * MIB),
        111: patch_header(good, 36, b'\0\0\0\1', fix_checksum=False),  # header checksum
        413: builder.Dynamic(41 * GIB).build(),
        523: patch_footers(good, 60, struct.pack('>I', 5)),
        609: builder.fixed(bytes(66 * MIB)),
        614: patch_footers(good, 68, bytes(16)),
        721: child.build(),
    }


def test_every_import_failure_code(project, stack_info):
    glance, swift = project
    crafted = _crafted()
    before = _stored_files(stack_info)
    tasks = {}
    for code, data in crafted.items():
        th.upload(swift, 'exports', '%d.vhd' % code, data)
        tasks[code] = th.post_import(glance, 'exports/%d.vhd' % code)['id']
    for code, task_id in tasks.items():
        task = th.wait_task(glance, task_id)
        assert task['status'] == 'failure', (code, task)
        assert task['message'] == MESSAGES[code], code
        assert 'result' not in task
    assert th.image_ids(glance) == set()
    assert _stored_files(stack_info) <= before


def test_empty_object_is_not_a_vhd(project):
    glance, swift = project
    th.upload(swift, 'exports', 'empty.vhd', b'')
    task = th.run_import(glance, 'exports/empty.vhd')
    assert (task['status'], task['message']) == ('failure', MESSAGES[396])
    assert th.image_ids(glance) == set()


def _windows_disk(size=6 * MIB):
    """An MBR with one NTFS partition (type 0x07) at 1 MiB whose first sector is an NTFS
    boot sector: what a Windows installation looks like to the partition table."""
    disk = builder.Dynamic(size)
    mbr = bytearray(512)
    mbr[446 + 4] = 0x07
    struct.pack_into('<II', mbr, 446 + 8, 2048, size // 512 - 2048)
    mbr[510:512] = b'\x55\xaa'
    boot = bytearray(512)
    boot[0:3] = b'\xeb\x52\x90'
    boot[3:11] = b'NTFS    '
    boot[510:512] = b'\x55\xaa'
    disk.write(0, bytes(mbr))
    disk.write(MIB, bytes(boot))
    return disk.build()


def test_windows_disk_is_refused(project, stack_info):
    glance, swift = project
    th.upload(swift, 'exports', 'win.vhd', _windows_disk())
    before = _stored_files(stack_info)
    task = th.run_import(glance, 'exports/win.vhd')
    assert task['status'] == 'failure'
    assert task['message'].startswith(PREFIX) and 'Windows' in task['message']
    assert th.image_ids(glance) == set()
    assert _stored_files(stack_info) <= before


def test_missing_object_container_and_bad_locations(project, glance_factory, swift_factory):
    glance, swift = project
    _, good = th.sample_disk()
    th.upload(swift, 'exports', 'mine.vhd', good)
    for location in ('exports/nothing.vhd', 'nocontainer/x.vhd', 'exports', 'exports/',
                     '../AUTH_%s/exports/mine.vhd' % glance.project, 'exports/../mine.vhd'):
        task = th.run_import(glance, location)
        assert (task['status'], task['message']) == ('failure', NOT_FOUND), location
    # Another project cannot import this project's object: its own account is used.
    other = glance_factory()
    task = th.run_import(other, 'exports/mine.vhd')
    assert (task['status'], task['message']) == ('failure', NOT_FOUND)
    assert th.image_ids(other) == set() and th.image_ids(glance) == set()


def test_only_name_is_allowed_in_image_properties(project):
    glance, swift = project
    _, good = th.sample_disk()
    th.upload(swift, 'exports', 'd.vhd', good)
    for extra in ({'os_type': 'windows'}, {'visibility': 'public'},
                  {'com.rackspace__1__options': '0'}):
        task = th.run_import(glance, 'exports/d.vhd', **extra)
        assert (task['status'], task['message']) == ('failure', UNSUPPORTED), extra
    assert th.image_ids(glance) == set()
