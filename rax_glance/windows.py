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

Logical partitions count as MBR partitions.  An MBR entry of type 0x05,
0x0F or 0x85 is an extended partition holding a chain of extended boot
records (EBRs): an EBR has the MBR's layout; its entry 1 is a logical
partition (start relative to the EBR), its entry 2 links the next EBR
(start relative to the extended partition, type 0x05/0x0F/0x85).  The chain
ends at an EBR without signature or link, or one never fed (unallocated
sectors read as zeros).  A hostile chain stops the walk, it is not an
error: a link back to an EBR already read (a loop), a link outside the
extended partition, or more than 128 EBRs.  The logical partitions met
before the stop are still checked (a loop hides nothing new; Linux reads
no more than about 100 logical partitions either).

A partition type alone is not enough (exFAT shares 0x07, Linux used the
basic data GUID for years), nor an NTFS volume alone (a data disk).

:class:`WindowsDetector` works on the content as it streams, in any order
(a dynamic VHD stores blocks in any order), in bounded memory: it keeps the
first 34 sectors (MBR, GPT header and entries), the sector numbers of NTFS
boot sectors it meets and, while the EBR chain is not walked yet, the
decoded entries of sectors that may be EBRs (at most 4096 of each)::

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
_EXTENDED_TYPES = (0x05, 0x0F, 0x85)
_MAX_EBRS = 128
_MAX_EBR_CANDIDATES = 4096


def is_ntfs_boot_sector(sector):
    return (len(sector) >= SECTOR and bytes(sector[3:11]) in _NTFS_OEM_IDS
            and bytes(sector[510:512]) == b'\x55\xaa')


def _entry(sector, index):
    """(type, start, sectors) of partition table entry ``index`` (0-3)."""
    base = 446 + 16 * index
    start, count = struct.unpack('<II', sector[base + 8:base + 16])
    return sector[base + 4], start, count


def _parse_ebr(sector):
    """What an EBR holds that matters here: ``(logical, link)`` or None.

    ``logical`` is ``(type, start relative to the EBR)`` when entry 1 is an
    NTFS or dynamic disk partition, ``link`` the next EBR's start relative
    to the extended partition; None when neither (the chain ends there).
    """
    if bytes(sector[510:512]) != b'\x55\xaa':
        return None
    kind, start, count = _entry(sector, 0)
    logical = None
    if count and kind in _NTFS_MBR_TYPES + (_LDM_MBR_TYPE,):
        logical = (kind, start)
    kind, start, count = _entry(sector, 1)
    link = start if count and kind in _EXTENDED_TYPES else None
    if logical is None and link is None:
        return None
    return logical, link


class _EBRChain:
    """Walk of one extended partition's EBR chain, one EBR at a time."""

    def __init__(self, entry, start, count):
        self.entry = entry
        self.start = start
        self.end = start + count
        self.pending = start        # absolute sector of the EBR to read next
        self.visited = set()
        # (absolute start, description) of NTFS logical partitions.
        self.ntfs = []
        self.ldm = None

    def covers(self, lba):
        return self.pending is not None and self.start <= lba < self.end

    def step(self, info):
        """Take the pending EBR's ``_parse_ebr`` result; move to the next."""
        lba = self.pending
        self.visited.add(lba)
        self.pending = None
        if info is None:
            return
        logical, link = info
        number = len(self.visited)
        if logical is not None:
            kind, start = logical
            what = ('logical partition %d of MBR partition %d (type 0x%02x)'
                    % (number, self.entry, kind))
            if kind == _LDM_MBR_TYPE:
                self.ldm = '%s is a Windows dynamic disk' % what
            else:
                self.ntfs.append((lba + start, what))
        if link is None:
            return
        following = self.start + link
        # Loops, links out of the extended partition and over-long chains
        # end the walk: what was found so far still counts.
        if (following in self.visited or following >= self.end
                or number >= _MAX_EBRS):
            return
        self.pending = following


class WindowsDetector:
    """Feed ``(offset, data)`` extents; see the module doc."""

    def __init__(self):
        self._head = {}
        self._ntfs_sectors = set()
        # Start sectors of the partitions once the partition table is known:
        # then only those sectors are looked at, not every sector.
        self._targets = None
        self._ldm = None
        # One _EBRChain per extended MBR partition; None until the MBR came.
        self._chains = None
        # Decoded sectors that may be EBRs, fed before the chain reached
        # them: {sector: _parse_ebr result}.
        self._ebr_candidates = {}
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
        if self._chains is None and 0 in self._head:
            self._chains = self._extended_partitions()
            self._forget_unneeded_ebrs()
            changed = True
        if self._wants_ebrs():
            self._note_ebrs(first_lba, view)
            changed = self._walk_chains(first_lba, view) or changed
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
        # EBRs never fed are unallocated sectors: zeros, the chain ends.
        for chain in self._chains or ():
            while chain.pending is not None:
                if not self._walk_chains(0, b''):
                    chain.step(None)
        self._ebr_candidates = {}
        if self._decide():
            raise errors.WindowsImageError(self.reason)

    def _extended_partitions(self):
        mbr = self._head[0]
        if mbr[510:512] != b'\x55\xaa':
            return []
        chains = []
        for i in range(4):
            kind, start, count = _entry(mbr, i)
            if kind in _EXTENDED_TYPES and count:
                chains.append(_EBRChain(i + 1, start, count))
        return chains

    def _wants_ebrs(self):
        return self._chains is None or any(
            chain.pending is not None for chain in self._chains)

    def _note_ebrs(self, first_lba, view):
        """Remember the sectors of ``view`` that may be EBRs needed later."""
        count = len(view) // SECTOR
        # Byte 510 of every sector: only signed sectors may be EBRs.
        marks = bytes(view[510:count * SECTOR:SECTOR])
        for match in re.finditer(b'\x55', marks):
            lba = first_lba + match.start()
            if lba < _HEAD_SECTORS or lba in self._ebr_candidates:
                continue
            if self._chains is not None and not any(
                    chain.covers(lba) for chain in self._chains):
                continue
            if len(self._ebr_candidates) >= _MAX_EBR_CANDIDATES:
                return
            start = match.start() * SECTOR
            info = _parse_ebr(view[start:start + SECTOR])
            if info is not None:
                self._ebr_candidates[lba] = info

    def _walk_chains(self, first_lba, view):
        """Follow the chains as far as the sectors known allow."""
        last_lba = first_lba + len(view) // SECTOR
        moved = False
        for chain in self._chains or ():
            while chain.pending is not None:
                lba = chain.pending
                if lba < _HEAD_SECTORS and lba in self._head:
                    info = _parse_ebr(self._head[lba])
                elif lba in self._ebr_candidates:
                    info = self._ebr_candidates[lba]
                elif first_lba <= lba < last_lba:
                    start = (lba - first_lba) * SECTOR
                    info = _parse_ebr(view[start:start + SECTOR])
                else:
                    break       # not fed yet
                chain.step(info)
                moved = True
        if moved:
            self._forget_unneeded_ebrs()
        return moved

    def _forget_unneeded_ebrs(self):
        """Keep only candidates inside extended partitions still walked."""
        self._ebr_candidates = {
            lba: info for lba, info in self._ebr_candidates.items()
            if any(chain.covers(lba) for chain in self._chains)}

    def _known_partition_starts(self):
        """Sectors worth checking, or None while the table is incomplete."""
        mbr = self._head.get(0)
        if mbr is None or self._wants_ebrs():
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
        for chain in self._chains or ():
            starts.extend(chain.ntfs)
            self._ldm = self._ldm or chain.ldm
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
