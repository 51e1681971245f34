"""The eleven observed bypasses of the Windows gate (issue 10, class 3).

Each disk holds an NTFS partition that qemu and Linux read; each must be
refused by the import path (``ova.pack_single_vhd``, what an import task
runs) and by ``rax-glance-vhd check --windows reject``.
"""

import io
import json
import struct
import uuid

import pytest

from rax_glance import errors
from rax_glance import ova
from rax_glance import windows
from rax_glance.cmd import vhd as cli
from tests.unit.vhd import builder

MIB = 1 << 20
SECTOR = 512
LINUX_DATA = uuid.UUID('0FC63DAF-8483-4772-8E79-3D47D8DD65E4')
BASIC_DATA = uuid.UUID('EBD0A0A2-B9E5-4433-87C0-68B6B72699C7')


def ntfs_boot_sector():
    sector = bytearray(SECTOR)
    sector[0:3] = b'\xeb\x52\x90'
    sector[3:11] = b'NTFS    '
    sector[510:512] = b'\x55\xaa'
    return bytes(sector)


NTFS = ntfs_boot_sector()


def mbr(*entries):
    """An MBR-layout sector; ``entries`` are (slot, type, start, count)."""
    sector = bytearray(SECTOR)
    for slot, kind, start, count in entries:
        at = 446 + 16 * slot
        sector[at + 4] = kind
        struct.pack_into('<II', sector, at + 8, start, count)
    sector[510:512] = b'\x55\xaa'
    return bytes(sector)


def gpt_header(my_lba, alternate, entry_lba, count, entries=b''):
    header = bytearray(SECTOR)
    header[0:8] = b'EFI PART'
    struct.pack_into('<IIII', header, 8, 0x10000, 92, 0, 0)
    struct.pack_into('<QQQQ', header, 24, my_lba, alternate, 34,
                     max(my_lba, alternate) - 33)
    header[56:72] = uuid.uuid4().bytes_le
    struct.pack_into('<QIII', header, 72, entry_lba, count, 128,
                     _crc(entries))
    struct.pack_into('<I', header, 16, _crc(bytes(header[:92])))
    return bytes(header)


def _crc(data):
    import zlib
    return zlib.crc32(data) & 0xFFFFFFFF


def gpt_entries(count, partitions):
    """``partitions``: {index: (type uuid, first lba, last lba)}."""
    data = bytearray(count * 128)
    for index, (kind, first, last) in partitions.items():
        at = index * 128
        data[at:at + 16] = kind.bytes_le
        data[at + 16:at + 32] = uuid.uuid4().bytes_le
        struct.pack_into('<QQ', data, at + 32, first, last)
    return bytes(data)


def refused(data):
    """Whether both the import path and the CLI refuse the VHD ``data``."""
    try:
        ova.pack_single_vhd(io.BytesIO(data), len(data)).read()
        imported = False
    except errors.ImageError as exc:
        imported = exc.code
    return imported


def cli_check(tmp_path, capsys, data):
    path = tmp_path / 'disk.vhd'
    path.write_bytes(data)
    code = cli.main(['check', '--json', '--windows', 'reject', str(path)])
    out = capsys.readouterr().out
    return code, json.loads(out)


def assert_refused(data, tmp_path, capsys, code=901):
    assert refused(data) == code
    status, answer = cli_check(tmp_path, capsys, data)
    assert status == cli.EXIT_INVALID and answer['valid'] is False
    assert answer['code'] == code


def hide(vhd, lba, count=1):
    """Clear the bitmap bits of sectors ``lba``.. (their data stays)."""
    spb = vhd.block_size // SECTOR
    for sector in range(lba, lba + count):
        vhd.blocks[sector // spb][0].discard(sector % spb)


# -- 1-3: data under clear bitmap bits --------------------------------------

def test_mbr_under_clear_bitmap_bits(tmp_path, capsys):
    vhd = builder.Dynamic(8 * MIB)
    vhd.write(0, mbr((0, 0x07, 4096, 4096)))
    vhd.write(4096 * SECTOR, NTFS)
    hide(vhd, 0)
    assert_refused(vhd.build(), tmp_path, capsys, code=111)


def test_all_blocks_under_clear_bitmap_bits(tmp_path, capsys):
    vhd = builder.Dynamic(8 * MIB)
    vhd.write(0, mbr((0, 0x07, 4096, 4096)))
    vhd.write(4096 * SECTOR, NTFS)
    hide(vhd, 0)
    hide(vhd, 4096)
    assert_refused(vhd.build(), tmp_path, capsys, code=111)


def test_gpt_under_clear_bitmap_bits(tmp_path, capsys):
    vhd = builder.Dynamic(8 * MIB)
    entries = gpt_entries(128, {0: (BASIC_DATA, 4096, 8191)})
    vhd.write(0, mbr((0, 0xEE, 1, 16383)))
    vhd.write(SECTOR, gpt_header(1, 16383, 2, 128, entries) + entries)
    vhd.write(4096 * SECTOR, NTFS)
    hide(vhd, 1, 33)
    assert_refused(vhd.build(), tmp_path, capsys, code=111)


# -- 4-6: logical partition in EBR entry 2, 3 or 4 --------------------------

@pytest.mark.parametrize('slot', [1, 2, 3])
def test_logical_partition_in_later_ebr_entries(slot, tmp_path, capsys):
    vhd = builder.Dynamic(8 * MIB)
    vhd.write(0, mbr((0, 0x83, 63, 1000), (1, 0x05, 2048, 8192)))
    # EBR: entry 1 a Linux logical partition, entry ``slot`` the NTFS one.
    vhd.write(2048 * SECTOR, mbr((0, 0x83, 63, 100),
                                 (slot, 0x07, 2048, 4096)))
    vhd.write(4096 * SECTOR, NTFS)
    assert_refused(vhd.build(), tmp_path, capsys)


# -- 7: GPT entry array not at LBA 2 ----------------------------------------

def test_gpt_entries_elsewhere(tmp_path, capsys):
    vhd = builder.Dynamic(8 * MIB)
    entries = gpt_entries(128, {0: (BASIC_DATA, 4096, 8191)})
    vhd.write(0, mbr((0, 0xEE, 1, 16383)))
    vhd.write(SECTOR, gpt_header(1, 16383, 1000, 128, entries))
    vhd.write(1000 * SECTOR, entries)
    vhd.write(4096 * SECTOR, NTFS)
    assert_refused(vhd.build(), tmp_path, capsys)


# -- 8: more than 128 GPT entries, NTFS at entry 150 -------------------------

def test_gpt_entry_150(tmp_path, capsys):
    vhd = builder.Dynamic(8 * MIB)
    entries = gpt_entries(256, {0: (LINUX_DATA, 2048, 4095),
                                149: (LINUX_DATA, 4096, 8191)})
    vhd.write(0, mbr((0, 0xEE, 1, 16383)))
    vhd.write(SECTOR, gpt_header(1, 16383, 2, 256, entries) + entries)
    vhd.write(4096 * SECTOR, NTFS)
    assert_refused(vhd.build(), tmp_path, capsys)


# -- 9: blank primary GPT header, valid backup -------------------------------

def test_blank_primary_gpt_header_with_valid_backup(tmp_path, capsys):
    size = 8 * MIB
    last = size // SECTOR - 1
    vhd = builder.Dynamic(size)
    entries = gpt_entries(128, {0: (BASIC_DATA, 4096, 8191)})
    vhd.write(0, mbr((0, 0xEE, 1, last)))
    vhd.write(SECTOR, bytes(SECTOR))          # blank primary
    vhd.write((last - 32) * SECTOR,
              entries + gpt_header(last, 1, last - 32, 128, entries))
    vhd.write(4096 * SECTOR, NTFS)
    # The backup's block first: its entries and header in one extent.
    vhd.order = [3, 1, 0]
    assert_refused(vhd.build(), tmp_path, capsys)


# -- 10-11: decoys over the old caps, stored before the real ones ------------

def test_decoy_ntfs_boot_sectors_before_the_real_one(tmp_path, capsys):
    vhd = builder.Dynamic(12 * MIB)
    # 6144 decoys (the old cap was 4096) in blocks 1-3, stored first.
    vhd.write(2 * MIB, NTFS * (6 * MIB // SECTOR))
    vhd.write(0, mbr((0, 0x07, 18432, 2048)))
    vhd.write(18432 * SECTOR, ntfs_boot_sector())
    vhd.order = [1, 2, 3, 4, 0]
    assert_refused(vhd.build(), tmp_path, capsys)


def test_decoy_ebrs_before_the_real_one(tmp_path, capsys):
    vhd = builder.Dynamic(12 * MIB)
    decoy = mbr((0, 0x07, 1, 1))
    # 6144 decoy EBRs (the old cap was 4096) stored before the MBR and the
    # real EBR.
    vhd.write(2 * MIB, decoy * (6 * MIB // SECTOR))
    vhd.write(0, mbr((0, 0x83, 63, 1000), (1, 0x05, 18432, 4096)))
    vhd.write(18432 * SECTOR, mbr((0, 0x07, 1024, 2048)))
    vhd.write(19456 * SECTOR, NTFS)
    vhd.order = [1, 2, 3, 4, 0]
    assert_refused(vhd.build(), tmp_path, capsys)


# -- what still passes -------------------------------------------------------

def test_linux_gpt_disk_in_any_block_order_passes(tmp_path, capsys):
    size = 8 * MIB
    last = size // SECTOR - 1
    entries = gpt_entries(128, {0: (LINUX_DATA, 2048, 8191)})
    for order in ([0, 3], [3, 0]):
        vhd = builder.Dynamic(size)
        vhd.write(0, mbr((0, 0xEE, 1, last)))
        vhd.write(SECTOR, gpt_header(1, last, 2, 128, entries) + entries)
        vhd.write((last - 32) * SECTOR,
                  entries + gpt_header(last, 1, last - 32, 128, entries))
        vhd.write(2048 * SECTOR, b'\x53\xef' * 512)
        vhd.order = order
        data = vhd.build()
        assert refused(data) is False
        status, answer = cli_check(tmp_path, capsys, data)
        assert status == 0 and answer['windows'] is False


def test_entries_stored_before_their_header_cannot_be_judged():
    # A header at sector 5000 naming entries at 3000, fed after them.
    detector = windows.WindowsDetector()
    entries = gpt_entries(4, {0: (LINUX_DATA, 100, 200)})
    detector.feed(3000 * SECTOR, entries.ljust(SECTOR, b'\0'))
    detector.feed(4000 * SECTOR, bytes(64 * SECTOR))    # no longer recent
    with pytest.raises(errors.WindowsImageError) as info:
        detector.feed(5000 * SECTOR, gpt_header(5000, 1, 3000, 4, entries))
    assert 'stored before it' in info.value.detail


# -- beyond the eleven: partition tables nested in partitions ----------------

def _nested_disk(kind, label_sector, label):
    vhd = builder.Dynamic(8 * MIB)
    vhd.write(0, mbr((0, kind, 2048, 8192)))
    vhd.write(label_sector * SECTOR, label)
    vhd.write(6144 * SECTOR, NTFS)
    return vhd


def _bsd_label(offset=0):
    label = bytearray(SECTOR)
    struct.pack_into('<I', label, offset, 0x82564557)
    struct.pack_into('<H', label, offset + 138, 3)
    struct.pack_into('<II', label, offset + 148, 4096, 6144)   # absolute
    return bytes(label)


@pytest.mark.parametrize('kind,sector,offset', [
    (0xA5, 2049, 0), (0xA6, 2049, 0), (0xA9, 2048, 64), (0xA5, 2048, 128)])
def test_ntfs_slice_in_a_bsd_disklabel(kind, sector, offset, tmp_path,
                                       capsys):
    vhd = _nested_disk(kind, sector, _bsd_label(offset))
    vhd.order = [1, 0]             # the slice first, the MBR last
    assert_refused(vhd.build(), tmp_path, capsys)


@pytest.mark.parametrize('kind', [0x82, 0xBF])
def test_ntfs_slice_in_a_solaris_vtoc(kind, tmp_path, capsys):
    vtoc = bytearray(SECTOR)
    struct.pack_into('<II', vtoc, 12, 0x600DDEEE, 1)
    struct.pack_into('<H', vtoc, 30, 16)
    struct.pack_into('<HHII', vtoc, 72, 2, 0, 4096, 4096)   # relative
    assert_refused(_nested_disk(kind, 2049, bytes(vtoc)).build(), tmp_path,
                   capsys)


def test_ntfs_slice_in_a_unixware_label(tmp_path, capsys):
    label = bytearray(SECTOR)
    struct.pack_into('<I', label, 4, 0xCA5E600D)
    struct.pack_into('<I', label, 156, 0x600DDEEE)
    struct.pack_into('<H', label, 172, 16)
    struct.pack_into('<HHII', label, 216, 0, 0, 6144, 4096)   # absolute
    assert_refused(_nested_disk(0x63, 2048 + 29, bytes(label)).build(),
                   tmp_path, capsys)


def test_minix_subpartitions_are_refused(tmp_path, capsys):
    vhd = builder.Dynamic(8 * MIB)
    vhd.write(0, mbr((0, 0x81, 2048, 8192)))
    vhd.write(2048 * SECTOR, mbr((0, 0x81, 6144, 4096)))
    vhd.write(6144 * SECTOR, NTFS)
    assert_refused(vhd.build(), tmp_path, capsys)


def test_a_bsd_label_without_ntfs_passes(tmp_path, capsys):
    vhd = _nested_disk(0xA5, 2049, _bsd_label())
    vhd.write(6144 * SECTOR, bytes(SECTOR))
    data = vhd.build()
    assert refused(data) is False


# -- beyond the eleven: whole-disk tables of other systems -------------------

def _foreign(zero, extra=()):
    vhd = builder.Dynamic(8 * MIB)
    vhd.write(6144 * SECTOR, NTFS)
    vhd.write(0, zero)
    for lba, data in extra:
        vhd.write(lba * SECTOR, data)
    vhd.order = [1, 0]
    return vhd.build()


@pytest.mark.parametrize('block', [512, 2048])
def test_ntfs_in_an_apple_partition_map(block, tmp_path, capsys):
    ddm = bytearray(SECTOR)
    struct.pack_into('>2sH', ddm, 0, b'ER', block)
    entry = bytearray(SECTOR)
    struct.pack_into('>2sHIII', entry, 0, b'PM', 0, 1,
                     6144 * SECTOR // block, 100)
    assert_refused(_foreign(bytes(ddm), [(block // SECTOR, bytes(entry))]),
                   tmp_path, capsys)


def test_ntfs_in_an_sgi_volume_header(tmp_path, capsys):
    zero = bytearray(SECTOR)
    struct.pack_into('>I', zero, 0, 0x0BE5A941)
    struct.pack_into('>III', zero, 312 + 12 * 5, 4096, 6144, 0x83)
    assert_refused(_foreign(bytes(zero)), tmp_path, capsys)


def test_ntfs_in_a_sun_label(tmp_path, capsys):
    zero = bytearray(SECTOR)
    struct.pack_into('>HH', zero, 436, 2, 32)         # 64 sectors/cylinder
    struct.pack_into('>II', zero, 444 + 8 * 3, 6144 // 64, 4096)
    zero[508:510] = b'\xda\xbe'
    assert_refused(_foreign(bytes(zero)), tmp_path, capsys)


def test_ntfs_in_an_atari_root_sector(tmp_path, capsys):
    zero = bytearray(SECTOR)
    struct.pack_into('>B3sII', zero, 454 + 12, 1, b'LNX', 6144, 4096)
    assert_refused(_foreign(bytes(zero)), tmp_path, capsys)


def test_ntfs_in_an_ultrix_label(tmp_path, capsys):
    label = bytearray(SECTOR)
    struct.pack_into('<II', label, 440, 0x032957, 1)
    struct.pack_into('<iI', label, 448 + 8 * 2, 4096, 6144)
    assert_refused(_foreign(bytes(SECTOR), [(31, bytes(label))]), tmp_path,
                   capsys)


def test_ntfs_boot_sector_without_signature(tmp_path, capsys):
    # blkid -p finds NTFS without the 0x55AA signature.
    unsigned = NTFS[:510] + b'\0\0'
    vhd = builder.Dynamic(8 * MIB)
    vhd.write(0, mbr((0, 0x07, 4096, 4096)))
    vhd.write(4096 * SECTOR, unsigned)
    assert_refused(vhd.build(), tmp_path, capsys)


def test_bitlocker_to_go_volume(tmp_path, capsys):
    togo = bytearray(SECTOR)
    togo[0:11] = b'\xeb\x58\x90MSWIN4.1'
    togo[424:440] = uuid.UUID('4967D63B-2E29-4AD8-8399-F6A339E3D001').bytes_le
    vhd = builder.Dynamic(8 * MIB)
    vhd.write(0, mbr((0, 0x0C, 4096, 4096)))
    vhd.write(4096 * SECTOR, bytes(togo))
    assert_refused(vhd.build(), tmp_path, capsys)
    # A FAT volume formatted by Windows (same OEM id, no GUID) passes.
    togo[424:440] = bytes(16)
    vhd.write(4096 * SECTOR, bytes(togo))
    assert refused(vhd.build()) is False
