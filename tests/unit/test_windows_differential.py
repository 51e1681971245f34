"""Differential test of the Windows gate against util-linux.

A seeded generator builds hostile disks (MBR, EBR chains with the logical
partition and the link in any entry, GPT entry arrays anywhere and of any
length, blank primary GPT headers, decoy NTFS boot sectors, data under
clear bitmap bits, shuffled block order) holding real NTFS volumes made by
``mkntfs``, and Linux disks (ext4, xfs, LVM, swap; bare, MBR, GPT).

The raw disk (what qemu shows: it ignores VHD sector bitmaps) is examined
with ``blkid -p`` on the whole disk and on every partition ``partx --show``
lists.  Whenever util-linux finds NTFS (or BitLocker), the VHD must be
refused by the import path and by ``rax-glance-vhd check --windows
reject``.  Linux disks must pass both.
"""

import io
import json
import random
import shutil
import struct
import subprocess
import uuid
import zlib

import pytest

from rax_glance import errors
from rax_glance import windows
from rax_glance.cmd import vhd as cli
from rax_glance.vhd import reader as vhd_reader
from tests.unit.vhd import builder

MIB = 1 << 20
SECTOR = 512
UNIT = MIB // SECTOR            # the generator places things on 1 MiB units
DISK = 16 * MIB
LAST = DISK // SECTOR - 1
BLOCK = 2 * MIB
TOOLS = ('mkntfs', 'mkfs.ext4', 'mkfs.xfs', 'mkswap', 'blkid', 'partx')
BASIC_DATA = uuid.UUID('EBD0A0A2-B9E5-4433-87C0-68B6B72699C7')
LINUX_DATA = uuid.UUID('0FC63DAF-8483-4772-8E79-3D47D8DD65E4')
LINUX_LVM = uuid.UUID('E6D6D379-F507-44C2-A23C-238F2A3DF928')
LINUX_SWAP = uuid.UUID('0657FD6D-A4AB-43C4-84E5-0933C84B4F4F')
WINDOWS_TYPES = ('ntfs', 'BitLocker')

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS),
    reason='needs ntfs-3g, xfsprogs, e2fsprogs and util-linux '
           '(tools/bootstrap installs them)')


def _run(*argv):
    return subprocess.run(argv, capture_output=True, check=False)


def _made(tmp, name, size, *command):
    path = tmp / name
    with open(path, 'wb') as f:
        f.truncate(size)
    result = _run(*command, str(path))
    assert result.returncode == 0, result.stderr
    return path.read_bytes()


def _lvm_label():
    """An LVM2 physical volume label (what pvcreate writes at sector 1)."""
    label = bytearray(SECTOR)
    label[0:8] = b'LABELONE'
    struct.pack_into('<QII', label, 8, 1, 0, 32)
    label[24:32] = b'LVM2 001'
    label[32:64] = b'RaxGlanceTestPhysicalVolumeUuid0'
    struct.pack_into('<Q', label, 64, 2 * MIB)
    # LVM's CRC: crc32 from 0xf597a6cf without the final inversion.
    crc = ~zlib.crc32(bytes(label[20:]), ~0xF597A6CF & 0xFFFFFFFF)
    struct.pack_into('<I', label, 16, crc & 0xFFFFFFFF)
    return bytes(SECTOR) + bytes(label)


@pytest.fixture(scope='module')
def volumes(tmp_path_factory):
    """Filesystem images of at most 2 MiB, made by the real tools."""
    tmp = tmp_path_factory.mktemp('volumes')
    ntfs = _made(tmp, 'ntfs', 2 * MIB, 'mkntfs', '-F', '-Q', '-q')
    ext4 = _made(tmp, 'ext4', 2 * MIB, 'mkfs.ext4', '-q', '-F')
    swap = _made(tmp, 'swap', MIB, 'mkswap')
    # mkfs.xfs wants 300 MiB; its superblock and first AG headers suffice
    # for blkid.
    xfs = _made(tmp, 'xfs', 300 * MIB, 'mkfs.xfs', '-q', '-f')[:MIB]
    return {'ntfs': ntfs, 'ext4': ext4, 'swap': swap, 'xfs': xfs,
            'lvm': _lvm_label()}


# -- the generator -------------------------------------------------------------

def _entry(sector, slot, kind, start, count):
    at = 446 + 16 * slot
    sector[at + 4] = kind
    struct.pack_into('<II', sector, at + 8, start, count)


def _mbr_sector():
    sector = bytearray(SECTOR)
    sector[510:512] = b'\x55\xaa'
    return sector


def _crc(data):
    return zlib.crc32(data) & 0xFFFFFFFF


def _gpt_header(my_lba, alternate, entry_lba, count, entries):
    header = bytearray(SECTOR)
    header[0:8] = b'EFI PART'
    struct.pack_into('<II', header, 8, 0x10000, 92)
    struct.pack_into('<QQQQ', header, 24, my_lba, alternate, 34, LAST - 34)
    header[56:72] = uuid.UUID(int=0x5EED).bytes_le
    struct.pack_into('<QIII', header, 72, entry_lba, count, 128,
                     _crc(entries))
    struct.pack_into('<I', header, 16, _crc(bytes(header[:92])))
    return bytes(header)


class Disk:
    """A raw disk under construction and what it was built to show."""

    def __init__(self, rng, volumes):
        self.rng = rng
        self.volumes = volumes
        self.raw = bytearray(DISK)
        # 1 MiB units 1 .. 14 are free (0: tables, 15: backup GPT).
        self.free = list(range(1, DISK // MIB - 1))
        rng.shuffle(self.free)
        self.tricks = []
        self.hidden = []        # sectors whose bitmap bits get cleared

    def put(self, lba, data):
        self.raw[lba * SECTOR:lba * SECTOR + len(data)] = data

    def unit(self, count=1):
        """A free run of ``count`` units; its first sector."""
        for first in sorted(self.free):
            run = list(range(first, first + count))
            if all(u in self.free for u in run):
                for u in run:
                    self.free.remove(u)
                return first * UNIT
        raise LookupError('disk full')

    def volume(self, name):
        """Place a volume of 2 units; its first sector."""
        lba = self.unit(2)
        self.put(lba, self.volumes[name])
        return lba


def _contents(rng, hostile):
    linux = ['ext4', 'xfs', 'swap', 'lvm']
    names = [rng.choice(linux) for _ in range(rng.randint(1, 2))]
    if hostile:
        names.insert(rng.randrange(len(names) + 1), 'ntfs')
    return names


def _mbr_kind(rng, name):
    if name == 'ntfs':
        return rng.choice((0x07, 0x17, 0x27, 0x83, 0x0C, 0x8E, 0x00, 0xDA))
    return {'ext4': 0x83, 'xfs': 0x83, 'swap': 0x82, 'lvm': 0x8E}[name]


def build_mbr(disk, names, logical):
    """Primary partitions, and an extended one whose EBRs hold the
    ``logical`` volumes in random entries, linked from random entries."""
    rng = disk.rng
    mbr = _mbr_sector()
    slots = [0, 1, 2, 3]
    rng.shuffle(slots)
    for name in names[:3]:
        start = disk.volume(name)
        _entry(mbr, slots.pop(), _mbr_kind(rng, name), start, 2 * UNIT)
    if logical:
        # Each EBR in front of its logical volume (starts are relative).
        ebrs = [disk.unit(3) for _ in logical]
        ext_start = min(ebrs)
        ext_kind = rng.choice((0x05, 0x0F, 0x85))
        _entry(mbr, slots.pop(), ext_kind, ext_start,
               max(ebrs) + 3 * UNIT - ext_start)
        order = list(ebrs)
        rng.shuffle(order)      # links need not go forward
        disk.tricks.append('ebr')
        for k, (ebr_lba, name) in enumerate(zip(order, logical, strict=True)):
            ebr = _mbr_sector()
            entry_slots = [0, 1, 2, 3]
            if rng.random() < 0.6:
                rng.shuffle(entry_slots)
                disk.tricks.append('ebr-entry')
            data_slot, link_slot = entry_slots[0], entry_slots[1]
            disk.put(ebr_lba + UNIT, disk.volumes[name])
            _entry(ebr, data_slot, _mbr_kind(rng, name), UNIT, 2 * UNIT)
            if k + 1 < len(order):
                _entry(ebr, link_slot, ext_kind, order[k + 1] - ext_start,
                       UNIT)
            disk.put(ebr_lba, ebr)
    disk.put(0, mbr)


def _bsd_label(volume_start):
    label = bytearray(SECTOR)
    struct.pack_into('<I', label, 0, 0x82564557)
    struct.pack_into('<I', label, 40, SECTOR)             # d_secsize
    struct.pack_into('<I', label, 132, 0x82564557)
    struct.pack_into('<H', label, 138, 8)
    # Partition 'a': the volume (absolute offset), 'c': the whole slice.
    struct.pack_into('<IIIB', label, 148, 2 * UNIT, volume_start, 0, 7)
    struct.pack_into('<II', label, 148 + 32, 3 * UNIT, volume_start - UNIT)
    checksum = 0
    for at in range(0, 148 + 16 * 8, 2):
        if at != 136:
            checksum ^= struct.unpack_from('<H', label, at)[0]
    struct.pack_into('<H', label, 136, checksum)
    return bytes(label)


def _solaris_vtoc():
    vtoc = bytearray(SECTOR)
    struct.pack_into('<III', vtoc, 12, 0x600DDEEE, 1, 0)
    struct.pack_into('<HH', vtoc, 28, SECTOR, 16)
    # Slice 1: the volume (start relative to the slice), 3: whole slice.
    struct.pack_into('<HHII', vtoc, 72, 2, 0, UNIT, 2 * UNIT)
    struct.pack_into('<HHII', vtoc, 72 + 24, 5, 0, 0, 3 * UNIT)
    return bytes(vtoc)


def build_nested(disk, names):
    """Each volume in a slice of its own, behind a BSD disklabel or a
    Solaris x86 VTOC (partitions util-linux reads inside partitions)."""
    rng = disk.rng
    mbr = _mbr_sector()
    disk.tricks.append('nested')
    for slot, name in enumerate(names[:4]):
        start = disk.unit(3)
        disk.put(start + UNIT, disk.volumes[name])
        if rng.random() < 0.5:
            kind = rng.choice((0xA5, 0xA6, 0xA9))
            disk.put(start + 1, _bsd_label(start + UNIT))
        else:
            kind = rng.choice((0x82, 0xBF))
            disk.put(start + 1, _solaris_vtoc())
        _entry(mbr, slot, kind, start, 3 * UNIT)
    disk.put(0, mbr)


def build_foreign(disk, names):
    """An Apple partition map, an SGI volume header or a Sun label."""
    rng = disk.rng
    kind = rng.choice(('apm', 'sgi', 'sun'))
    disk.tricks.append(kind)
    starts = [disk.volume(name) for name in names]
    zero = bytearray(SECTOR)
    if kind == 'apm':
        block = rng.choice((512, 2048))
        scale = block // SECTOR
        struct.pack_into('>2sHI', zero, 0, b'ER', block, DISK // block)
        for n, start in enumerate([None] + starts):
            entry = bytearray(SECTOR)
            first, count, name, what = (
                (1, 63, b'map', b'Apple_partition_map') if start is None
                else (start // scale, 2 * UNIT // scale, b'part',
                      b'Apple_UNIX_SVR2'))
            struct.pack_into('>2sHIII', entry, 0, b'PM', 0, len(starts) + 1,
                             first, count)
            entry[16:16 + len(name)] = name
            entry[48:48 + len(what)] = what
            disk.put((n + 1) * scale, entry)
    elif kind == 'sgi':
        struct.pack_into('>I', zero, 0, 0x0BE5A941)
        for n, start in enumerate(starts):
            struct.pack_into('>III', zero, 312 + 12 * n, 2 * UNIT, start,
                             0x83)
        total = sum(struct.unpack('>128I', bytes(zero)))
        struct.pack_into('>I', zero, 504, -total & 0xFFFFFFFF)
    else:
        # 1 track of 64 sectors per cylinder: starts are multiples of 64.
        struct.pack_into('>HHHH', zero, 432, DISK // SECTOR // 64, 0, 1, 64)
        for n, start in enumerate(starts):
            struct.pack_into('>II', zero, 444 + 8 * n, start // 64,
                             2 * UNIT)
        zero[508:510] = b'\xda\xbe'
        checksum = 0
        for at in range(0, 510, 2):
            checksum ^= struct.unpack_from('>H', zero, at)[0]
        struct.pack_into('>H', zero, 510, checksum)
    disk.put(0, zero)


def build_gpt(disk, names, hostile):
    rng = disk.rng
    count = rng.choice((128, 128, 200, 256)) if hostile else 128
    if count > 128:
        disk.tricks.append('gpt-count')
    sectors = count * 128 // SECTOR
    if hostile and rng.random() < 0.4:
        entry_lba = disk.unit()
        disk.tricks.append('gpt-array')
    else:
        entry_lba = 2
    indexes = rng.sample(range(count), len(names))
    entries = bytearray(count * 128)
    for index, name in zip(indexes, names, strict=True):
        start = disk.volume(name)
        if name == 'ntfs':
            kind = rng.choice((BASIC_DATA, LINUX_DATA))
        else:
            kind = {'swap': LINUX_SWAP, 'lvm': LINUX_LVM}.get(name,
                                                            LINUX_DATA)
        at = index * 128
        entries[at:at + 16] = kind.bytes_le
        entries[at + 16:at + 32] = uuid.UUID(int=index + 1).bytes_le
        struct.pack_into('<QQ', entries, at + 32, start, start + 2 * UNIT - 1)
    entries = bytes(entries)
    mbr = _mbr_sector()
    _entry(mbr, 0, 0xEE, 1, min(LAST, 0xFFFFFFFF))
    disk.put(0, mbr)
    backup_entries = LAST - sectors if entry_lba == 2 else entry_lba
    disk.put(backup_entries, entries)
    disk.put(LAST, _gpt_header(LAST, 1, backup_entries, count, entries))
    if hostile and rng.random() < 0.3:
        disk.tricks.append('gpt-blank-primary')
        return
    disk.put(entry_lba, entries)
    disk.put(1, _gpt_header(1, LAST, entry_lba, count, entries))


def generate(seed, volumes, hostile):
    rng = random.Random(seed)
    disk = Disk(rng, volumes)
    names = _contents(rng, hostile)
    layout = rng.choice(('bare', 'mbr', 'mbr', 'gpt', 'gpt', 'nested',
                         'foreign'))
    if layout == 'bare':
        disk.put(0, volumes[names[-1]])
        if names[-1] == 'ntfs':
            disk.tricks.append('bare')
    elif layout == 'mbr':
        split = rng.randint(0, len(names))
        build_mbr(disk, names[:split], names[split:])
    elif layout == 'nested':
        build_nested(disk, names)
    elif layout == 'foreign':
        build_foreign(disk, names)
    else:
        build_gpt(disk, names, hostile)
    if hostile and rng.random() < 0.3:
        # Decoy NTFS boot sectors in a free unit.
        lba = disk.unit()
        disk.put(lba, volumes['ntfs'][:SECTOR] * rng.randint(1, UNIT))
        disk.tricks.append('decoys')
    if hostile and rng.random() < 0.25:
        # Tables or boot sectors under clear bitmap bits (qemu shows them).
        disk.hidden = rng.sample(
            [0, 1] + [lba for lba in range(2, LAST)
                      if disk.raw[lba * SECTOR + 3:lba * SECTOR + 11]
                      == b'NTFS    '][:8], 2)
        disk.tricks.append('hidden')
    return disk


def to_vhd(disk):
    """The VHD of the raw disk: fixed, or dynamic with shuffled blocks and
    the bitmap bits of ``disk.hidden`` cleared."""
    rng = disk.rng
    raw = bytes(disk.raw)
    if not disk.hidden and rng.random() < 0.25:
        return builder.fixed(raw)
    vhd = builder.Dynamic(DISK)
    spb = BLOCK // SECTOR
    for index in range(DISK // BLOCK):
        block = raw[index * BLOCK:(index + 1) * BLOCK]
        if block.count(0) == len(block):
            continue
        if rng.random() < 0.5:
            sectors = set(range(spb))
        else:
            zero = bytes(SECTOR)
            sectors = {n for n in range(spb)
                       if block[n * SECTOR:(n + 1) * SECTOR] != zero}
        vhd.blocks[index] = (sectors, bytearray(block))
    for lba in disk.hidden:
        index, within = divmod(lba, spb)
        if index in vhd.blocks:
            vhd.blocks[index][0].discard(within)
    vhd.order = list(vhd.blocks)
    rng.shuffle(vhd.order)
    return vhd.build()


# -- the oracles ---------------------------------------------------------------

def _blkid_type(path, offset=None, size=None):
    argv = ['blkid', '-p', '-o', 'export']
    if offset is not None:
        argv += ['-O', str(offset), '-S', str(size)]
    out = _run(*argv, str(path)).stdout.decode(errors='replace')
    for line in out.splitlines():
        if line.startswith('TYPE='):
            return line[5:]
    return None


def util_linux_finds_windows(path):
    """Whether blkid finds NTFS on the disk or on a partition partx lists."""
    if _blkid_type(path) in WINDOWS_TYPES:
        return True
    out = _run('partx', '--show', '-b', '-g', '-o', 'START,SECTORS',
               str(path)).stdout.decode()
    for line in out.splitlines():
        start, sectors = (int(field) for field in line.split())
        start *= SECTOR
        size = min(sectors * SECTOR, DISK - start)
        if 0 <= start < DISK and size > 0 and _blkid_type(
                path, start, size) in WINDOWS_TYPES:
            return True
    return False


def import_refuses(data):
    """What an import runs on the upload: the reader and the detector."""
    reader = vhd_reader.StreamReader(io.BytesIO(data), len(data))
    try:
        for _ in windows.check_extents(reader.extents()):
            pass
    except errors.ImageError as exc:
        return exc.code
    return False


def cli_refuses(path, capsys):
    code = cli.main(['check', '--json', '--windows', 'reject', str(path)])
    answer = json.loads(capsys.readouterr().out)
    if code == 0:
        assert answer['valid'] is True
        return False
    assert code == cli.EXIT_INVALID and answer['valid'] is False
    return answer['code']


# -- the tests -----------------------------------------------------------------

HOSTILE_SEEDS = range(40)
LINUX_SEEDS = range(1000, 1020)


def test_every_disk_util_linux_reads_as_ntfs_is_refused(volumes, tmp_path,
                                                        capsys):
    raw_path = tmp_path / 'disk.raw'
    vhd_path = tmp_path / 'disk.vhd'
    found = {}
    for seed in HOSTILE_SEEDS:
        disk = generate(seed, volumes, hostile=True)
        raw_path.write_bytes(disk.raw)
        if not util_linux_finds_windows(raw_path):
            continue
        for trick in disk.tricks or ['plain']:
            found[trick] = found.get(trick, 0) + 1
        data = to_vhd(disk)
        vhd_path.write_bytes(data)
        expected = (111, 901) if disk.hidden else (901,)
        assert import_refuses(data) in expected, (seed, disk.tricks)
        assert cli_refuses(vhd_path, capsys) in expected, (seed, disk.tricks)
    # The generator reaches every trick util-linux follows.
    assert sum(found.values()) >= 20, found
    for trick in ('ebr', 'ebr-entry', 'gpt-count', 'gpt-array',
                  'gpt-blank-primary', 'decoys', 'hidden', 'nested',
                  'apm', 'sgi', 'sun', 'plain'):
        assert trick in found, found


def test_linux_disks_pass(volumes, tmp_path, capsys):
    raw_path = tmp_path / 'disk.raw'
    vhd_path = tmp_path / 'disk.vhd'
    for seed in LINUX_SEEDS:
        disk = generate(seed, volumes, hostile=False)
        raw_path.write_bytes(disk.raw)
        assert not util_linux_finds_windows(raw_path), seed
        data = to_vhd(disk)
        vhd_path.write_bytes(data)
        assert import_refuses(data) is False, seed
        assert cli_refuses(vhd_path, capsys) is False, seed


def test_the_volumes_are_what_blkid_says(volumes, tmp_path):
    for name, expected in (('ntfs', 'ntfs'), ('ext4', 'ext4'),
                           ('xfs', 'xfs'), ('swap', 'swap'),
                           ('lvm', 'LVM2_member')):
        path = tmp_path / name
        path.write_bytes(volumes[name].ljust(2 * MIB, b'\0'))
        assert _blkid_type(path) == expected
