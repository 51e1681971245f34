"""Windows detection from the first sectors of a disk."""

import io
import random
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
    struct.pack_into('<Q', header, 24, 1)           # MyLBA
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
    # Any partition type: blkid -p finds NTFS in a Linux-typed one too.
    (disk((0, mbr((0x83, 2048, 4000))), (MIB, NTFS)), True),
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


# Logical partitions: an extended partition at EXT_START holds a chain of
# EBRs, EBR k at EXT_START + k * EBR_STEP with its logical partition
# LOGICAL_OFFSET sectors after it.
EXT_START = 2048
EBR_STEP = 1024
LOGICAL_OFFSET = 256


def ebr(logical=None, link=None, link_type=0x05):
    """An EBR: ``logical`` (type, start from this EBR, sectors), ``link``
    (start of the next EBR from the extended partition's start)."""
    entries = [logical or (0, 0, 0)]
    if link is not None:
        entries.append((link_type, link, EBR_STEP))
    return mbr(*entries)


def ext4_superblock():
    block = bytearray(2048)
    struct.pack_into('<H', block, 1024 + 56, 0xEF53)     # s_magic
    return bytes(block)


def logical_disk(kinds, contents=None, ext_type=0x05, links=None):
    """Disk with the logical partitions ``kinds`` (types) holding
    ``contents`` ({logical index: bytes}); ``links`` overrides EBR links."""
    contents = contents or {}
    links = links or {}
    count = len(kinds)
    pieces = [(0, mbr((0x83, 63, 1900),
                      (ext_type, EXT_START, EBR_STEP * count)))]
    for k, kind in enumerate(kinds):
        start = (EXT_START + k * EBR_STEP) * 512
        default = (k + 1) * EBR_STEP if k + 1 < count else None
        pieces.append((start, ebr((kind, LOGICAL_OFFSET, 500),
                                  links.get(k, default))))
        if k in contents:
            pieces.append((start + LOGICAL_OFFSET * 512, contents[k]))
    return disk(*pieces, size=(EXT_START + count * EBR_STEP) * 512)


def detect_shuffled(data, chunk, seed):
    chunks = list(range(0, len(data), chunk))
    random.Random(seed).shuffle(chunks)
    detector = windows.WindowsDetector()
    try:
        for offset in chunks:
            detector.feed(offset, data[offset:offset + chunk])
        detector.finish()
    except errors.WindowsImageError:
        return True
    return False


def detect_all_ways(data):
    """The verdicts of ascending, shuffled and descending feeding."""
    verdicts = {detect(data), detect(data, chunk=512)}
    for chunk, seed in ((64 * 1024, 1), (512, 2), (4096, 3)):
        verdicts.add(detect_shuffled(data, chunk, seed))
    verdicts.add(detect_descending(data))
    return verdicts


def detect_descending(data, chunk=4096):
    detector = windows.WindowsDetector()
    try:
        for offset in reversed(range(0, len(data), chunk)):
            detector.feed(offset, data[offset:offset + chunk])
        detector.finish()
    except errors.WindowsImageError:
        return True
    return False


@pytest.mark.parametrize('kinds,contents,expected', [
    ((0x07, 0x83, 0x83), {0: NTFS}, True),
    ((0x83, 0x83, 0x07), {2: NTFS}, True),
    ((0x83, 0x82, 0x17), {2: BITLOCKER}, True),
    ((0x83, 0x42), {}, True),                        # dynamic disk
    ((0x83, 0x83, 0x83), {0: ext4_superblock()}, False),
    ((0x83, 0x83, 0x83), {}, False),                 # zeros
    ((0x83, 0x83, 0x83), {2: NTFS}, True),           # type says Linux
    ((0x83, 0x83, 0x07), {2: ext4_superblock()}, False),
    ((0x83, 0x83, 0x07), {2: EXFAT}, False),
], ids=['ntfs-1st', 'ntfs-3rd', 'bitlocker-3rd', 'ldm-2nd', 'ext4',
        'zeros', 'ntfs-in-linux-type', 'ext4-in-ntfs-type', 'exfat'])
def test_logical_partitions(kinds, contents, expected):
    assert detect_all_ways(logical_disk(kinds, contents)) == {expected}


@pytest.mark.parametrize('ext_type', [0x05, 0x0F, 0x85])
def test_every_extended_type(ext_type):
    data = logical_disk((0x83, 0x07), {1: NTFS}, ext_type=ext_type)
    assert detect_all_ways(data) == {True}
    data = logical_disk((0x83, 0x83), {1: ext4_superblock()},
                        ext_type=ext_type)
    assert detect_all_ways(data) == {False}


def test_ntfs_elsewhere_in_the_extended_partition_is_not_windows():
    # The NTFS sector is in the extended partition but at no logical start.
    data = logical_disk((0x07, 0x83))
    data = data[:(EXT_START + 100) * 512] + NTFS + data[
        (EXT_START + 101) * 512:]
    assert detect_all_ways(data) == {False}


def test_chain_entries_must_link_with_an_extended_type():
    # Entry 2 typed Linux is not a link: the 2nd EBR is never read.
    data = logical_disk((0x83, 0x07), {1: NTFS})
    first_ebr = EXT_START * 512
    data = bytearray(data)
    data[first_ebr + 446 + 16 + 4] = 0x83
    assert detect_all_ways(bytes(data)) == {False}


# Hostile chains end the walk without an error: a loop only revisits EBRs
# already read, so what they hold was checked already.

def test_ebr_loop_back_to_the_first():
    # EBR 3 links back to EBR 1: the NTFS partition after it still counts.
    data = logical_disk((0x83, 0x83, 0x07), {2: NTFS}, links={2: 0})
    assert detect_all_ways(data) == {True}
    data = logical_disk((0x83, 0x83, 0x83), {1: NTFS}, links={1: 0})
    assert detect_all_ways(data) == {True}
    data = logical_disk((0x83, 0x83, 0x83), {2: ext4_superblock()},
                        links={2: 0})
    assert detect_all_ways(data) == {False}


def test_ebr_linking_to_itself():
    data = logical_disk((0x83, 0x83), links={1: EBR_STEP})
    assert detect_all_ways(data) == {False}
    data = logical_disk((0x07, 0x83), {0: NTFS}, links={1: EBR_STEP})
    assert detect_all_ways(data) == {True}


def chain_disk(count, ntfs_at):
    """``count`` EBRs two sectors apart, an NTFS logical partition in the
    EBR ``ntfs_at`` (1-based), the others Linux and empty."""
    pieces = [(0, mbr((0x05, EXT_START, 2 * count + 2)))]
    for k in range(count):
        kind = 0x07 if k + 1 == ntfs_at else 0x83
        link = 2 * (k + 1) if k + 1 < count else None
        start = (EXT_START + 2 * k) * 512
        pieces.append((start, mbr((kind, 1, 1), (0x05, link or 0,
                                                 2 if link else 0))))
        if k + 1 == ntfs_at:
            pieces.append((start + 512, NTFS))
    return disk(*pieces, size=(EXT_START + 2 * count + 2) * 512)


def test_long_chains_are_read_to_the_end_and_over_long_ones_refused():
    # 1000 EBRs are all read; more than the cap cannot be judged.
    assert detect(chain_disk(1000, ntfs_at=1)) is True
    assert detect(chain_disk(1000, ntfs_at=999)) is True
    assert detect(chain_disk(1000, ntfs_at=0)) is False
    assert detect_descending(chain_disk(1000, ntfs_at=0)) is False
    assert detect(chain_disk(windows._MAX_EBRS + 1, ntfs_at=0)) is True


@pytest.mark.parametrize('link', [0xFFFFFF00, 0x7FFFFFFF, 5000])
def test_ebr_past_the_disk_end_is_harmless(link):
    # The extended partition claims far more than the 4 MiB disk.
    for content, ntfs in ((NTFS, True), (EXFAT, False)):
        pieces = [(0, mbr((0x05, EXT_START, 0xFFFFFFFF))),
                  (EXT_START * 512, ebr((0x07, 8, 100), link)),
                  ((EXT_START + 8) * 512, content)]
        assert detect_all_ways(disk(*pieces, size=MIB + 64 * 1024)) == {
            ntfs}


def test_link_out_of_the_extended_partition_is_followed():
    # The 2nd EBR lies past the extended partition's end: Linux reads it
    # all the same (it never checks links against the extended size).
    pieces = [(0, mbr((0x05, EXT_START, 2 * EBR_STEP))),
              (EXT_START * 512, ebr((0x83, 8, 100), 2 * EBR_STEP)),
              ((EXT_START + 2 * EBR_STEP) * 512, ebr((0x07, 8, 100))),
              ((EXT_START + 2 * EBR_STEP + 8) * 512, NTFS)]
    assert detect_all_ways(disk(*pieces)) == {True}


def test_hostile_ebrs_raise_nothing_but_typed_errors():
    # Small disks full of random EBRs whose links mostly land on others.
    rng = random.Random(7)
    sectors = 256
    for _ in range(150):
        ext_start = rng.randrange(sectors)
        ext_count = rng.choice((rng.randrange(sectors), (1 << 32) - 1))
        pieces = [(0, mbr((rng.choice((0x05, 0x0F, 0x85)), ext_start,
                           ext_count)))]
        for _ in range(6):
            sector = bytearray(rng.randbytes(512))
            sector[510:512] = b'\x55\xaa'
            sector[446 + 4] = rng.choice((0x07, 0x83, 0x42, 0))
            sector[446 + 16 + 4] = rng.choice((0x05, 0x0F, 0x85, 0))
            struct.pack_into('<I', sector, 446 + 16 + 8,
                             rng.randrange(sectors))
            pieces.append((rng.randrange(sectors) * 512, bytes(sector)))
        data = disk(*pieces, size=sectors * 512)
        assert detect(data, chunk=8192) in (True, False)
        assert detect_descending(data, chunk=512) in (True, False)


def test_ebr_candidates_stay_bounded():
    # EBR-looking sectors fed before the MBR are kept until the chains are
    # walked, then forgotten; over the cap the disk cannot be judged.
    fake = ebr((0x83, 1, 1), 2)
    count = windows._MAX_EBR_CANDIDATES - 10
    data = bytearray(disk(size=(EXT_START + count) * 512))
    for lba in range(EXT_START, EXT_START + count):
        data[lba * 512:(lba + 1) * 512] = fake
    # The only EBR of the MBR's extended partition, without a link.
    data[64 * 512:65 * 512] = ebr((0x83, 1, 1))
    detector = windows.WindowsDetector()
    detector.feed(512, bytes(data[512:]))
    assert len(detector._ebr_candidates) == count + 1
    detector.feed(0, mbr((0x05, 64, 100)))
    assert detector._ebr_candidates == {}
    detector.finish()
    assert not detector.windows
    data += fake * 20
    with pytest.raises(errors.WindowsImageError) as info:
        windows.WindowsDetector().feed(512, bytes(data[512:]))
    assert 'cannot be judged' in info.value.detail


def test_import_package_refuses_windows_in_a_logical_partition():
    # MBR, EBRs and the NTFS volume in four blocks stored last to first.
    vhd = builder.Dynamic(8 * MIB)
    vhd.write(0, mbr((0x83, 63, 1000), (0x0F, 4096, 12288)))
    vhd.write(4096 * 512, ebr((0x83, 1, 100), 4096, link_type=0x0F))
    vhd.write(8192 * 512, ebr((0x07, 4096, 4000)))
    vhd.write(12288 * 512, NTFS)
    vhd.order = [3, 2, 1, 0]
    data = vhd.build()
    package = ova.pack_single_vhd(io.BytesIO(data), len(data))
    with pytest.raises(errors.WindowsImageError) as info:
        package.read()
    assert 'logical partition 2 of MBR partition 2' in info.value.detail


def test_fed_ranges_stay_bounded(monkeypatch):
    # A bitmap fragmented on purpose (every other sector): past the cap,
    # gaps are closed and the ranges stay few; detection still works.
    monkeypatch.setattr(windows, '_MAX_FED_RANGES', 100)
    detector = windows.WindowsDetector()
    for lba in range(4096, 4096 + 2 * 5000, 2):
        detector.feed(lba * 512, bytes(512))
    assert len(detector._fed_starts) <= 101
    detector.feed(0, mbr((0x83, 20000, 100)))
    with pytest.raises(errors.WindowsImageError):
        detector.feed(20000 * 512, NTFS)


def test_chain_through_a_sector_fed_before_that_is_no_ebr():
    # The extended partition's first sector came first and is no EBR: the
    # chain ends there (at finish), nothing else is read.
    data = logical_disk((0x83, 0x07), {1: NTFS})
    data = bytearray(data)
    data[EXT_START * 512:(EXT_START + 1) * 512] = bytes(512)
    assert detect_all_ways(bytes(data)) == {False}


def test_hostile_tables_raise_nothing_but_typed_errors():
    # Random sectors dressed as every table the detector reads, random
    # fields, fed in random orders and sizes.
    rng = random.Random(11)
    magics = [(0, b'EFI PART'), (0, b'\x57\x45\x56\x82'),
              (64, b'\x57\x45\x56\x82'), (128, b'\x57\x45\x56\x82'),
              (12, b'\xee\xde\x0d\x60'), (4, b'\x0d\x60\x5e\xca'),
              (0, b'PM\0\0'), (0, b'ER'), (0, b'\x0b\xe5\xa9\x41'),
              (508, b'\xda\xbe'), (3, b'NTFS    '), (510, b'\x55\xaa')]
    sectors = 512
    for _ in range(60):
        data = bytearray(rng.randbytes(sectors * 512))
        for _ in range(40):
            lba = rng.randrange(sectors)
            at, magic = rng.choice(magics)
            data[lba * 512 + at:lba * 512 + at + len(magic)] = magic
            if magic == b'EFI PART':
                # MyLBA right, the rest small enough to point inside.
                struct.pack_into('<QQQII', data, lba * 512 + 24, lba,
                                 rng.randrange(sectors), 0,
                                 rng.randrange(sectors),
                                 rng.choice((0, 4, 128, 1 << 20)))
                struct.pack_into('<I', data, lba * 512 + 84,
                                 rng.choice((128, 256, 100, 0)))
        data = bytes(data)
        assert detect(data, chunk=rng.choice((512, 4096, 65536))) in (
            True, False)
        assert detect_shuffled(data, 4096, rng.randrange(1000)) in (
            True, False)


@pytest.mark.parametrize('count,size', [(16385, 128), (8192, 512), (4, 100)])
def test_gpt_arrays_over_the_caps_cannot_be_judged(count, size):
    header = bytearray(512)
    header[0:8] = b'EFI PART'
    struct.pack_into('<Q', header, 24, 1)
    struct.pack_into('<QII', header, 72, 2, count, size)
    detector = windows.WindowsDetector()
    with pytest.raises(errors.WindowsImageError) as info:
        detector.feed(0, mbr((0xEE, 1, 100000)) + bytes(header))
    assert 'cannot be judged' in info.value.detail


@pytest.mark.parametrize('kind', [0x81, 0x42])
def test_partition_types_count_only_in_a_signed_mbr(kind):
    """Sector 0 without 0x55AA is no DOS table for Linux or libblkid: random data there
    (a disk with no table) must not be refused for the types it seems to name, while the
    same entry in a signed MBR is (Minix subpartitions: undecidable; 0x42: dynamic disk)."""
    unsigned = bytearray(mbr((kind, 2048, 4000)))
    unsigned[510:512] = b'\0\0'
    assert detect(disk((0, bytes(unsigned)))) is False
    assert detect(disk((0, mbr((kind, 2048, 4000))))) is True
    # An unsigned entry's start is still checked for NTFS.
    unsigned[446 + 4] = 0x83
    assert detect(disk((0, bytes(unsigned)), (MIB, NTFS))) is True
