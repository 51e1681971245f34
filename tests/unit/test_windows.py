"""Windows detection from the first sectors of a disk."""

import io
import struct
import uuid

import pytest

from rax_glance import errors
from rax_glance import ova
from rax_glance import windows
from tests.unit.vhd import builder

MIB = 1 << 20
BASIC_DATA = uuid.UUID('EBD0A0A2-B9E5-4433-87C0-68B6B72699C7')
LINUX_DATA = uuid.UUID('0FC63DAF-8483-4772-8E79-3D47D8DD65E4')


def boot_sector(oem):
    sector = bytearray(512)
    sector[0:3] = b'\xeb\x52\x90'
    sector[3:11] = oem
    sector[510:512] = b'\x55\xaa'
    return bytes(sector)


NTFS = boot_sector(b'NTFS    ')
BITLOCKER = boot_sector(b'-FVE-FS-')
LDM_METADATA = uuid.UUID('5808C8AA-7E8F-42E0-85D2-E1E90434CFB3')
EXFAT = boot_sector(b'EXFAT   ')


def mbr(*partitions):
    sector = bytearray(512)
    for i, (kind, start, count) in enumerate(partitions):
        entry = 446 + 16 * i
        sector[entry + 4] = kind
        struct.pack_into('<II', sector, entry + 8, start, count)
    sector[510:512] = b'\x55\xaa'
    return bytes(sector)


def gpt(*partitions):
    header = bytearray(512)
    header[0:8] = b'EFI PART'
    struct.pack_into('<QII', header, 72, 2, 128, 128)
    entries = bytearray(128 * 128)
    for i, (kind, start) in enumerate(partitions):
        entries[i * 128:i * 128 + 16] = kind.bytes_le
        struct.pack_into('<QQ', entries, i * 128 + 32, start, start + 1000)
    return mbr((0xEE, 1, 0xFFFFFFFF)) + bytes(header) + bytes(entries)


def disk(*pieces, size=4 * MIB):
    data = bytearray(size)
    for offset, piece in pieces:
        data[offset:offset + len(piece)] = piece
    return bytes(data)


def detect(data, chunk=64 * 1024):
    detector = windows.WindowsDetector()
    try:
        for offset in range(0, len(data), chunk):
            detector.feed(offset, data[offset:offset + chunk])
        detector.finish()
    except errors.WindowsImageError as exc:
        assert exc.code == 901
        assert 'Microsoft License Mobility' in exc.message
        return True
    return False


@pytest.mark.parametrize('data,expected', [
    (disk((0, mbr((0x07, 2048, 4000))), (MIB, NTFS)), True),
    (disk((0, mbr((0x83, 63, 100), (0x07, 2048, 4000))), (MIB, NTFS)), True),
    (disk((0, mbr((0x27, 2048, 4000))), (MIB, NTFS)), True),
    (disk((0, gpt((LINUX_DATA, 34), (BASIC_DATA, 2048))), (MIB, NTFS)), True),
    (disk((0, NTFS)), True),                                  # no table
    (disk((0, mbr((0x83, 2048, 4000))), (MIB, NTFS)), False),  # wrong type
    (disk((0, mbr((0x07, 2048, 4000))), (MIB, EXFAT)), False),  # exFAT
    (disk((0, mbr((0x07, 2048, 4000)))), False),              # no volume
    (disk((0, gpt((BASIC_DATA, 2048))), (MIB, EXFAT)), False),
    (disk((0, mbr((0x07, 4096, 4000))), (MIB, NTFS)), False),  # elsewhere
    (disk((0, mbr((0x83, 2048, 4000))), (MIB + 3, NTFS)), False),
    (disk(), False),
    (disk((0, mbr((0x07, 2048, 4000))), (MIB, BITLOCKER)), True),
    (disk((0, mbr((0x42, 2048, 4000)))), True),
    (disk((0, gpt((LDM_METADATA, 34), (LINUX_DATA, 2048)))), True),
], ids=['mbr-ntfs', 'mbr-second', 'mbr-hidden-re', 'gpt-ntfs', 'bare-ntfs',
        'linux-type', 'exfat', 'no-volume', 'gpt-exfat', 'other-lba',
        'unaligned', 'empty', 'bitlocker', 'ldm-mbr', 'ldm-gpt'])
def test_detection(data, expected):
    assert detect(data) is expected
    assert detect(data, chunk=512) is expected


def test_detection_in_any_order():
    data = disk((0, mbr((0x07, 2048, 4000))), (MIB, NTFS))
    detector = windows.WindowsDetector()
    detector.feed(MIB, data[MIB:2 * MIB])
    with pytest.raises(errors.WindowsImageError):
        detector.feed(0, data[:MIB])


def test_import_package_refuses_windows_from_a_dynamic_vhd():
    vhd = builder.Dynamic(8 * MIB)
    vhd.write(0, mbr((0x07, 6144, 4000)))
    vhd.write(3 * MIB, NTFS)
    vhd.order = [1, 0]      # the partition's block comes first in the file
    data = vhd.build()
    package = ova.pack_single_vhd(io.BytesIO(data), len(data))
    with pytest.raises(errors.WindowsImageError) as info:
        package.read()
    assert info.value.code == 901
    # Operators may still package it without the check.
    assert ova.pack_single_vhd(io.BytesIO(data), len(data),
                               check_windows=False).read()
