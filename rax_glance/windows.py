"""Detect Windows disks (Microsoft License Mobility forbids importing them).

A disk is taken for Windows when a partition typed for NTFS starts with an
NTFS boot sector:

* an MBR partition of type 0x07 (or its hidden variants 0x17, 0x27), or a
  GPT partition of type "Microsoft basic data"
  (EBD0A0A2-B9E5-4433-87C0-68B6B72699C7), whose first sector carries the
  NTFS OEM id ``"NTFS    "`` and the 0x55AA signature;
* or a disk without partition table whose sector 0 is an NTFS boot sector;
* a BitLocker volume (OEM id ``"-FVE-FS-"``) counts as NTFS;
* a Windows dynamic disk (MBR type 0x42 or a GPT "LDM metadata"
  partition) is Windows-only by itself.

A partition type alone is not enough (exFAT shares 0x07, Linux used the
basic data GUID for years), nor an NTFS volume alone (a data disk).

:class:`WindowsDetector` works on the content as it streams, in any order
(a dynamic VHD stores blocks in any order), in bounded memory: it keeps the
first 34 sectors (MBR, GPT header and entries) and the sector numbers of
NTFS boot sectors it meets::

    detector = WindowsDetector()
    for offset, data in reader.extents():
        detector.feed(offset, data)      # raises WindowsImageError early
    detector.finish()                    # raises WindowsImageError

or wrap an extent iterator with :func:`check_extents`.
"""

import re
import struct
import uuid

from rax_glance import errors

SECTOR = 512
# MBR, GPT header (LBA 1) and the standard GPT entry array (LBA 2-33).
_HEAD_SECTORS = 34
_NTFS_MBR_TYPES = (0x07, 0x17, 0x27)
_GPT_PROTECTIVE = 0xEE
_BASIC_DATA = uuid.UUID('EBD0A0A2-B9E5-4433-87C0-68B6B72699C7').bytes_le
_LDM_MBR_TYPE = 0x42
_LDM_METADATA = uuid.UUID('5808C8AA-7E8F-42E0-85D2-E1E90434CFB3').bytes_le
_NTFS_OEM_IDS = (b'NTFS    ', b'-FVE-FS-')
_NTFS_OEM = re.compile(rb'NTFS    |-FVE-FS-')
_MAX_NTFS_SECTORS = 4096


def is_ntfs_boot_sector(sector):
    return (len(sector) >= SECTOR and bytes(sector[3:11]) in _NTFS_OEM_IDS
            and bytes(sector[510:512]) == b'\x55\xaa')


class WindowsDetector:
    """Feed ``(offset, data)`` extents; see the module doc."""

    def __init__(self):
        self._head = {}
        self._ntfs_sectors = set()
        # Start sectors of the partitions once the partition table is known:
        # then only those sectors are looked at, not every sector.
        self._targets = None
        self._ldm = None
        self.windows = False
        self.reason = None

    def feed(self, offset, data):
        if offset % SECTOR:
            raise ValueError('extents must be sector aligned')
        view = memoryview(data).cast('B')
        first_lba = offset // SECTOR
        changed = False
        if first_lba < _HEAD_SECTORS:
            for lba in range(first_lba, min(_HEAD_SECTORS,
                                            first_lba + len(view) // SECTOR)):
                start = (lba - first_lba) * SECTOR
                self._head[lba] = bytes(view[start:start + SECTOR])
                changed = True
        if changed:
            self._targets = self._known_partition_starts()
        if self._targets is not None:
            last_lba = first_lba + len(view) // SECTOR
            for lba in self._targets:
                if first_lba <= lba < last_lba:
                    start = (lba - first_lba) * SECTOR
                    if is_ntfs_boot_sector(view[start:start + SECTOR]):
                        self._ntfs_sectors.add(lba)
                        changed = True
        else:
            # The table is not known yet (blocks come in any order): note
            # every NTFS boot sector.
            for match in _NTFS_OEM.finditer(view):
                position = match.start() - 3
                if position % SECTOR:
                    continue
                if is_ntfs_boot_sector(view[position:position + SECTOR]):
                    if len(self._ntfs_sectors) < _MAX_NTFS_SECTORS:
                        self._ntfs_sectors.add(first_lba + position // SECTOR)
                    changed = True
        if changed and self._decide():
            raise errors.WindowsImageError(self.reason)

    def finish(self):
        """Raise :class:`WindowsImageError` if the disk holds Windows."""
        if self._decide():
            raise errors.WindowsImageError(self.reason)

    def _known_partition_starts(self):
        """Sectors worth checking, or None while the table is incomplete."""
        mbr = self._head.get(0)
        if mbr is None:
            return None
        if any(mbr[446 + 16 * i + 4] == _GPT_PROTECTIVE for i in range(4)):
            header = self._head.get(1)
            if header is None or header[:8] != b'EFI PART':
                return None
            entries_lba, count, size = struct.unpack('<QII', header[72:88])
            sectors = -(-min(count, 128) * size // SECTOR)
            if entries_lba + sectors > _HEAD_SECTORS or any(
                    lba not in self._head
                    for lba in range(entries_lba, entries_lba + sectors)):
                return None
        return {0} | {start for start, _ in self._ntfs_partitions()}

    def _ntfs_partitions(self):
        mbr = self._head.get(0)
        if mbr is None or mbr[510:512] != b'\x55\xaa':
            return []
        starts = []
        gpt = False
        for i in range(4):
            entry = mbr[446 + 16 * i:462 + 16 * i]
            kind = entry[4]
            start, count = struct.unpack('<II', entry[8:16])
            if kind in _NTFS_MBR_TYPES and count:
                starts.append((start, 'MBR partition %d (type 0x%02x)'
                               % (i + 1, kind)))
            elif kind == _LDM_MBR_TYPE:
                self._ldm = 'MBR partition %d is a Windows dynamic disk' % (
                    i + 1)
            elif kind == _GPT_PROTECTIVE:
                gpt = True
        if gpt:
            starts.extend(self._gpt_basic_data())
        return starts

    def _gpt_basic_data(self):
        header = self._head.get(1)
        if header is None or header[:8] != b'EFI PART':
            return []
        entries_lba, count, size = struct.unpack('<QII', header[72:88])
        if size < 128 or size % 8:
            return []
        found = []
        for i in range(min(count, 128)):
            position = entries_lba * SECTOR + i * size
            lba, offset = divmod(position, SECTOR)
            sector = self._head.get(lba)
            if sector is None or offset + 128 > SECTOR:
                continue
            entry = sector[offset:offset + 128]
            if entry[:16] == _LDM_METADATA:
                self._ldm = ('GPT partition %d is Windows dynamic disk '
                             'metadata' % (i + 1))
            if entry[:16] == _BASIC_DATA:
                first = struct.unpack('<Q', entry[32:40])[0]
                found.append((first, 'GPT partition %d (basic data)'
                              % (i + 1)))
        return found

    def _decide(self):
        if self.windows:
            return True
        partitions = self._ntfs_partitions()
        if 0 in self._ntfs_sectors:
            self.reason = 'sector 0 is an NTFS boot sector'
        elif self._ldm:
            self.reason = self._ldm
        else:
            for start, what in partitions:
                if start in self._ntfs_sectors:
                    self.reason = ('%s starts with an NTFS boot sector at '
                                   'sector %d' % (what, start))
                    break
        self.windows = self.reason is not None
        return self.windows


def check_extents(extents, detector=None):
    """Pass extents through, raising if they turn out to hold Windows."""
    detector = detector or WindowsDetector()
    for offset, data in extents:
        detector.feed(offset, data)
        yield offset, data
    detector.finish()
