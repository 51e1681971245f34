"""The Windows gate on the real stack: bypass disks of issue 10 are refused.

Real glance-api, real Swift.  Each disk holds an NTFS partition that qemu,
blkid and partx read but that the old detector missed.
"""

import pytest

from rax_glance import errors
from tests.functional import tasks_helpers as th
from tests.unit import test_windows_bypasses as bypass
from tests.unit.vhd import builder

MIB = th.MIB
SECTOR = 512
WINDOWS = errors.MESSAGES[901]


def _ebr_entry_3():
    """The NTFS logical partition in entry 3 of the EBR (entry 1 Linux)."""
    vhd = builder.Dynamic(8 * MIB)
    vhd.write(0, bypass.mbr((0, 0x83, 63, 1000), (1, 0x05, 2048, 8192)))
    vhd.write(2048 * SECTOR, bypass.mbr((0, 0x83, 63, 100),
                                        (2, 0x07, 2048, 4096)))
    vhd.write(4096 * SECTOR, bypass.NTFS)
    return vhd.build()


def _blank_primary_gpt():
    """A blank primary GPT header; the valid backup lists the NTFS one."""
    size = 8 * MIB
    last = size // SECTOR - 1
    vhd = builder.Dynamic(size)
    entries = bypass.gpt_entries(128, {0: (bypass.BASIC_DATA, 4096, 8191)})
    vhd.write(0, bypass.mbr((0, 0xEE, 1, last)))
    vhd.write(SECTOR, bytes(SECTOR))
    vhd.write((last - 32) * SECTOR, entries + bypass.gpt_header(
        last, 1, last - 32, 128, entries))
    vhd.write(4096 * SECTOR, bypass.NTFS)
    vhd.order = [3, 1, 0]
    return vhd.build()


@pytest.fixture
def project(glance_factory, swift_factory):
    glance = glance_factory()
    return glance, swift_factory(glance.project)


@pytest.mark.parametrize('make', [_ebr_entry_3, _blank_primary_gpt],
                         ids=['ebr-entry-3', 'blank-primary-gpt'])
def test_bypass_disk_import_fails_with_the_windows_message(project, make):
    glance, swift = project
    th.upload(swift, 'exports', 'disk.vhd', make())
    task = th.run_import(glance, 'exports/disk.vhd')
    assert (task['status'], task['message']) == ('failure', WINDOWS)
    assert th.image_ids(glance) == set()
