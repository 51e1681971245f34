"""Detect Windows disks (Microsoft License Mobility forbids importing them).

The detector judges the disk any reader of the stored image could see
(qemu, the Linux kernel, util-linux' ``blkid``/``partx``, Windows) and
refuses when it cannot decide.  A disk is taken for Windows when:

* sector 0 is an NTFS boot sector (a disk without partition table);
* any partition starts with an NTFS boot sector, *whatever its type*:
  ``blkid -p`` finds NTFS in a partition typed Linux just as well;
* it is a Windows dynamic disk (MBR type 0x42, a GPT "LDM metadata"
  partition): Linux reads the partitions of its LDM database;
* the detector cannot decide: more NTFS boot sectors, EBRs, GPT headers or
  GPT entries than its caps, a GPT entry array it can no longer read
  (stored before its header and not kept), an unusual GPT entry size.

An NTFS boot sector is any sector with the OEM id ``"NTFS    "`` (or the
BitLocker id ``"-FVE-FS-"``, or a BitLocker To Go ``"MSWIN4.1"`` boot
sector with the BitLocker GUID) at offset 3; like ``blkid`` the 0x55AA
signature is not required.

"Any partition" is the union of what every reader may take as one:

* the four MBR entries with a non-zero size, of any type (the MBR's
  signature is not required: more is checked, never less);
* every logical partition of every EBR reachable from an extended MBR
  entry (type 0x05, 0x0F, 0x85): all four entries of an EBR are read (Linux
  and OS/2 use all four), every entry of an extended type is a link
  (start relative to the extended partition, wherever it points), every
  other entry with a non-zero size a logical partition (start relative to
  the EBR).  Loops are walked once; more than ``_MAX_EBRS`` EBRs refuse;
* every entry of every GPT header candidate: a sector starting with
  ``"EFI PART"`` whose ``MyLBA`` field names the sector itself (the primary
  at LBA 1 and the backup at the last LBA are such sectors, whatever their
  CRCs: a blank or damaged primary next to a valid backup is covered),
  with the entry array wherever ``PartitionEntryLBA`` puts it and as many
  entries as ``NumberOfPartitionEntries`` says (up to ``_MAX_GPT_ENTRIES``,
  more refuses).

:class:`WindowsDetector` works on the content as it streams, in any order
(a dynamic VHD stores blocks in any order), in bounded memory: it keeps the
first 34 sectors, the last 33 sectors fed, the sector numbers of NTFS boot
sectors and of partition starts, and while they may still be needed the
decoded entries of sectors that may be EBRs and the GPT header
candidates (each under a cap that refuses when reached)::

    detector = WindowsDetector()
    for offset, data in reader.extents():
        detector.feed(offset, data)      # raises WindowsImageError early
    detector.finish()                    # raises WindowsImageError

or wrap an extent iterator with :func:`check_extents`.  Sectors never fed
read as zeros.  Data a dynamic VHD holds under clear bitmap bits (qemu
shows it, the VHD specification reads zeros) is refused by the VHD reader
itself (:mod:`rax_glance.vhd.reader`), so the two views never differ.
"""

import bisect
import struct
import uuid

from rax_glance import errors

SECTOR = 512
# MBR, GPT header (LBA 1) and the standard GPT entry array (LBA 2-33).
_HEAD_SECTORS = 34
# The last sectors fed are kept: a backup GPT entry array precedes its
# header, possibly in the previous extent.
_RECENT_SECTORS = 33
_LDM_MBR_TYPE = 0x42
_LDM_METADATA = uuid.UUID('5808C8AA-7E8F-42E0-85D2-E1E90434CFB3').bytes_le
_NTFS_OEM_IDS = (b'NTFS    ', b'-FVE-FS-')
# BitLocker To Go: a FAT-looking boot sector ("MSWIN4.1") carrying the
# BitLocker GUID at byte 424 (blkid reports it as BitLocker).
_TOGO_OEM = b'MSWIN4.1'
_TOGO_GUID = uuid.UUID('4967D63B-2E29-4AD8-8399-F6A339E3D001').bytes_le
_GPT_SIGNATURE = b'EFI PART'
_EXTENDED_TYPES = (0x05, 0x0F, 0x85)
_MAX_NTFS_SECTORS = 16384
# The ranges of sectors fed are kept exactly up to this many ranges; past
# it (bitmaps fragmented on purpose) gaps under _FED_GAP sectors count as
# fed, which bounds the ranges by one per 2 MiB of disk.
_MAX_FED_RANGES = 65536
_FED_GAP = 4096
_MAX_EBRS = 1024
_MAX_EBR_CANDIDATES = 4096
_MAX_GPT_HEADERS = 64
_MAX_GPT_ENTRIES = 16384
_GPT_ENTRY = 128
_MAX_GPT_ARRAY_SECTORS = _MAX_GPT_ENTRIES * _GPT_ENTRY // SECTOR
# Partition tables nested in a partition that util-linux (partx) and the
# kernel read: BSD disklabels (magic 0x82564557 at byte 64, 128 or 512 of
# the slice), Solaris x86 VTOCs (sanity 0x600DDEEE at byte 12 of the
# slice's sector 1), UnixWare labels (0xCA5E600D at byte 4 of sector 29).
# (name, offset of the magic in its sector, magic, offset of the label in
#  its sector, sectors from the slice start to the label's sector, offsets
#  in the label of the slice count and of the slices, slice size, most
#  slices read); a slice's start is the u32 at its byte 4.
_NESTED_LABELS = (
    ('BSD disklabel', 0, b'\x57\x45\x56\x82', 0, 1, 138, 148, 16, 22),
    ('BSD disklabel', 64, b'\x57\x45\x56\x82', 64, 0, 138, 148, 16, 22),
    ('BSD disklabel', 128, b'\x57\x45\x56\x82', 128, 0, 138, 148, 16, 22),
    ('Solaris x86 VTOC', 12, b'\xee\xde\x0d\x60', 0, 1, 30, 72, 12, 16),
    ('UnixWare label', 4, b'\x0d\x60\x5e\xca', 0, 29, 172, 216, 12, 16),
)
_MAX_NESTED_LABELS = 256
# Whole-disk partition tables of other systems that util-linux (partx)
# reads: Apple partition maps ("PM" entries, block size from the "ER"
# driver descriptor at sector 0), SGI volume headers, Sun labels, Atari
# root sectors (sector 0), Ultrix labels (sector 31).
_APM_ENTRY = b'PM\0\0'
_MAX_APM_ENTRIES = 4096
# Minix subpartitions live in the partition's own first sector: not read,
# such partitions are refused.
_MINIX_TYPE = 0x81


def _entries(sector):
    """The four ``(type, start, sectors)`` of an MBR-layout sector."""
    return [(sector[450 + 16 * i],) + struct.unpack_from(
        '<II', sector, 454 + 16 * i) for i in range(4)]


def _parse_ebr(sector):
    """The entries of a possible EBR, or None (no signature or all empty).

    An EBR without the 0x55AA signature ends the chain (Linux and libblkid
    check it); so does one without any non-empty entry.
    """
    if bytes(sector[510:512]) != b'\x55\xaa':
        return None
    entries = [entry for entry in _entries(sector) if entry[2]]
    return entries or None


class _Undecidable(Exception):
    pass


class WindowsDetector:
    """Feed ``(offset, data)`` extents; see the module doc."""

    def __init__(self):
        self._head = {}
        self._recent = {}
        # Sector ranges fed so far: sorted, merged [start, end) lists.
        self._fed_starts = []
        self._fed_ends = []
        self._fed_gap = 0
        self._ntfs_sectors = set()
        # {partition start sector: description}
        self._starts = {}
        self._mbr_done = False
        # EBRs to read {lba: (extended partition start, what)}, EBRs read,
        # and the decoded sectors that may be EBRs {lba: entries}, kept
        # while the MBR is unknown or a chain is not walked to its end.
        self._pending_ebrs = {}
        self._visited_ebrs = set()
        self._ebr_candidates = {}
        # GPT header candidates {lba: (entry lba, count, size)}; their
        # entry arrays [(header lba, first, end, count, size)]; the number
        # of non-empty entries read.
        self._gpt_headers = {}
        self._wanted_arrays = []
        self._gpt_entries = 0
        self._nested_labels = 0
        # Apple partition map entries [(lba, start in blocks)].
        self._apm_starts = []
        self.windows = False
        self.reason = None

    # -- feeding -----------------------------------------------------------

    def feed(self, offset, data):
        if offset % SECTOR:
            raise ValueError('extents must be sector aligned')
        view = memoryview(data).cast('B')
        count = len(view) // SECTOR
        if not count:
            return
        if len(view) != count * SECTOR:
            view = view[:count * SECTOR]
        first = offset // SECTOR
        try:
            self._feed(first, count, view)
        except _Undecidable as exc:
            self._refuse('the disk cannot be judged: %s' % exc)
        if self.windows:
            raise errors.WindowsImageError(self.reason)

    def _feed(self, first, count, view):
        end = first + count
        # ``raw`` stays a memoryview: what is kept is copied to bytes.
        raw = view
        for lba in range(first, min(end, _HEAD_SECTORS)):
            at = (lba - first) * SECTOR
            self._head[lba] = bytes(raw[at:at + SECTOR])
        self._scan_ntfs(first, raw)
        if not self._mbr_done and first == 0:
            self._read_mbr()
        if not self._mbr_done or self._pending_ebrs:
            self._note_ebrs(first, raw)
        self._walk_ebrs(first, end, raw)
        self._note_gpt_headers(first, raw)
        self._read_arrays(first, end, raw)
        self._note_nested_labels(first, raw)
        self._note_apm_entries(first, raw)
        self._mark_fed(first, end)
        self._keep_recent(first, end, raw)

    def _sector(self, lba, first=None, raw=None):
        """A sector fed now, or kept from before, or None."""
        if first is not None and first <= lba < first + len(raw) // SECTOR:
            at = (lba - first) * SECTOR
            return raw[at:at + SECTOR]
        sector = self._head.get(lba)
        if sector is None:
            sector = self._recent.get(lba)
        return sector

    def _scan_ntfs(self, first, raw):
        # Byte 3 of every sector: only sectors starting an OEM id there
        # are compared in full.
        column = bytes(raw[3::SECTOR])
        for oem in _NTFS_OEM_IDS + (_TOGO_OEM,):
            index = column.find(oem[:1])
            while index >= 0:
                at = index * SECTOR
                if raw[at + 3:at + 11] == oem and (
                        oem != _TOGO_OEM
                        or raw[at + 424:at + 440] == _TOGO_GUID):
                    self._add_ntfs(first + index)
                index = column.find(oem[:1], index + 1)

    def _add_ntfs(self, lba):
        if lba in self._ntfs_sectors:
            return
        if len(self._ntfs_sectors) >= _MAX_NTFS_SECTORS:
            raise _Undecidable('more than %d NTFS boot sectors'
                               % _MAX_NTFS_SECTORS)
        self._ntfs_sectors.add(lba)
        if lba == 0:
            self._refuse('sector 0 is an NTFS boot sector')
        elif lba in self._starts:
            self._refuse('%s starts with an NTFS boot sector at sector %d'
                         % (self._starts[lba], lba))

    def _add_start(self, lba, what, kind=None):
        if kind == _MINIX_TYPE:
            raise _Undecidable('%s holds Minix subpartitions' % what)
        if lba in self._starts:
            return
        self._starts[lba] = what
        if lba in self._ntfs_sectors:
            self._refuse('%s starts with an NTFS boot sector at sector %d'
                         % (what, lba))

    def _refuse(self, reason):
        if not self.windows:
            self.windows = True
            self.reason = reason

    # -- MBR and EBRs ------------------------------------------------------

    def _read_mbr(self):
        self._mbr_done = True
        mbr = self._head[0]
        # Every entry's start is checked for NTFS, signature or not (that only adds checks),
        # but what a type means (Minix, LDM) counts only in a signed MBR: Linux and libblkid
        # parse no DOS table without 0x55AA, and sector 0 of a disk without a table may hold
        # anything (random data would otherwise be refused now and then).
        signed = bytes(mbr[510:512]) == b'\x55\xaa'
        for number, (kind, start, size) in enumerate(_entries(mbr), 1):
            if not size:
                continue
            what = 'MBR partition %d (type 0x%02x)' % (number, kind)
            self._add_start(start, what, kind if signed else None)
            if signed and kind == _LDM_MBR_TYPE:
                self._refuse('%s is a Windows dynamic disk' % what)
            if kind in _EXTENDED_TYPES:
                self._queue_ebr(start, start, 'MBR partition %d' % number)
        if not self._pending_ebrs:
            self._ebr_candidates = {}

    def _queue_ebr(self, lba, extended_start, what):
        if lba in self._visited_ebrs or lba in self._pending_ebrs:
            return
        if len(self._visited_ebrs) + len(self._pending_ebrs) >= _MAX_EBRS:
            raise _Undecidable('more than %d EBRs' % _MAX_EBRS)
        self._pending_ebrs[lba] = (extended_start, what)

    def _note_ebrs(self, first, raw):
        """Keep the sectors that may be EBRs needed later."""
        marks = bytes(raw[510::SECTOR])
        position = marks.find(b'\x55')
        while position >= 0:
            lba = first + position
            if lba not in self._ebr_candidates:
                at = position * SECTOR
                info = _parse_ebr(raw[at:at + SECTOR])
                if info is not None:
                    if len(self._ebr_candidates) >= _MAX_EBR_CANDIDATES:
                        raise _Undecidable('more than %d sectors that may '
                                           'be EBRs' % _MAX_EBR_CANDIDATES)
                    self._ebr_candidates[lba] = info
            position = marks.find(b'\x55', position + 1)

    def _walk_ebrs(self, first, end, raw):
        progress = True
        while progress and self._pending_ebrs:
            progress = False
            for lba in list(self._pending_ebrs):
                if lba in self._ebr_candidates:
                    info = self._ebr_candidates[lba]
                else:
                    sector = self._sector(lba, first, raw)
                    if sector is None:
                        # Not fed yet, or fed before as a sector that is
                        # no EBR: waits (candidates are kept meanwhile);
                        # finish() ends the chain there.
                        continue
                    info = _parse_ebr(sector)
                self._read_ebr(lba, info)
                progress = True
        if self._mbr_done and not self._pending_ebrs:
            self._ebr_candidates = {}

    def _read_ebr(self, lba, info):
        extended_start, what = self._pending_ebrs.pop(lba)
        self._visited_ebrs.add(lba)
        number = len(self._visited_ebrs)
        for kind, start, _ in info or ():
            if kind in _EXTENDED_TYPES:
                self._queue_ebr(extended_start + start, extended_start, what)
                continue
            part = ('logical partition %d of %s (type 0x%02x)'
                    % (number, what, kind))
            self._add_start(lba + start, part, kind)
            if kind == _LDM_MBR_TYPE:
                self._refuse('%s is a Windows dynamic disk' % part)

    # -- GPT ---------------------------------------------------------------

    def _note_gpt_headers(self, first, raw):
        column = bytes(raw[0::SECTOR])
        index = column.find(b'E')
        while index >= 0:
            position = index * SECTOR
            if raw[position:position + 8] == _GPT_SIGNATURE:
                lba = first + index
                my_lba = struct.unpack_from('<Q', raw, position + 24)[0]
                if my_lba == lba and lba not in self._gpt_headers:
                    self._gpt_header(lba, raw[position:position + SECTOR],
                                     first, raw)
            index = column.find(b'E', index + 1)

    def _gpt_header(self, lba, header, first, raw):
        if len(self._gpt_headers) >= _MAX_GPT_HEADERS:
            raise _Undecidable('more than %d GPT headers' % _MAX_GPT_HEADERS)
        entry_lba, count, size = struct.unpack_from('<QII', header, 72)
        self._gpt_headers[lba] = (entry_lba, count, size)
        if not count:
            return
        if size < _GPT_ENTRY or size % _GPT_ENTRY:
            raise _Undecidable('GPT header at sector %d has entries of %d '
                               'bytes' % (lba, size))
        sectors = -(-count * size // SECTOR)
        if count > _MAX_GPT_ENTRIES or sectors > _MAX_GPT_ARRAY_SECTORS:
            raise _Undecidable('GPT header at sector %d has %d entries of %d '
                               'bytes' % (lba, count, size))
        array = (lba, entry_lba, entry_lba + sectors, count, size)
        # Sectors of the array fed before must have been kept (those of
        # this extent are read by _read_arrays).
        end = first + len(raw) // SECTOR
        for sector_lba in range(entry_lba, entry_lba + sectors):
            if first <= sector_lba < end:
                continue
            sector = self._sector(sector_lba)
            if sector is not None:
                self._gpt_sector(array, sector_lba, sector)
            elif self._was_fed(sector_lba):
                raise _Undecidable(
                    'the entries of the GPT header at sector %d were stored '
                    'before it' % lba)
        self._wanted_arrays.append(array)

    def _read_arrays(self, first, end, raw):
        for array in self._wanted_arrays:
            _, start, stop = array[:3]
            for lba in range(max(first, start), min(end, stop)):
                # Head and recent sectors were read when the header came.
                at = (lba - first) * SECTOR
                self._gpt_sector(array, lba, raw[at:at + SECTOR])

    def _gpt_sector(self, array, lba, sector):
        header, start, _, count, size = array
        base = (lba - start) * SECTOR
        # Entries starting in this sector (sizes are multiples of 128).
        index = -(-base // size)
        while index < count and index * size < base + SECTOR:
            at = index * size - base
            entry = sector[at:at + _GPT_ENTRY]
            index += 1
            if entry[:16] == bytes(16):
                continue
            self._gpt_entries += 1
            if self._gpt_entries > _MAX_GPT_ENTRIES * 4:
                raise _Undecidable('more than %d GPT entries'
                                   % (_MAX_GPT_ENTRIES * 4))
            what = 'GPT partition %d (header at sector %d)' % (index, header)
            if entry[:16] == _LDM_METADATA:
                self._refuse('%s is Windows dynamic disk metadata' % what)
            self._add_start(struct.unpack_from('<Q', entry, 32)[0], what)

    # -- partition tables nested in partitions ----------------------------

    def _note_nested_labels(self, first, raw):
        for label in _NESTED_LABELS:
            column_at, magic = label[1], label[2]
            column = bytes(raw[column_at::SECTOR])
            index = column.find(magic[:1])
            while index >= 0:
                at = index * SECTOR + column_at
                if raw[at:at + 4] == magic:
                    self._nested_label(first + index, label,
                                       raw[index * SECTOR:
                                           (index + 1) * SECTOR])
                index = column.find(magic[:1], index + 1)

    def _nested_label(self, lba, label, sector):
        name, _, _, base, back, count_at, slices_at, size, most = label
        self._nested_labels += 1
        if self._nested_labels > _MAX_NESTED_LABELS:
            raise _Undecidable('more than %d nested partition labels'
                               % _MAX_NESTED_LABELS)
        count = struct.unpack_from('<H', sector, base + count_at)[0]
        count = min(count, most)
        if base + slices_at + count * size > SECTOR:
            raise _Undecidable('%s at sector %d runs past its sector'
                               % (name, lba))
        slice_start = lba - back
        for index in range(count):
            at = base + slices_at + index * size
            start = struct.unpack_from('<I', sector, at + 4)[0]
            what = ('slice %d of the %s at sector %d' % (index + 1, name,
                                                         lba))
            # Absolute (BSD, UnixWare) or relative to the slice (Solaris):
            # both are checked.
            self._add_start(start, what)
            self._add_start(slice_start + start, what)

    # -- whole-disk tables of other systems --------------------------------

    def _note_apm_entries(self, first, raw):
        column = bytes(raw[0::SECTOR])
        index = column.find(b'P')
        while index >= 0:
            at = index * SECTOR
            if raw[at:at + 4] == _APM_ENTRY:
                if len(self._apm_starts) >= _MAX_APM_ENTRIES:
                    raise _Undecidable('more than %d Apple partition map '
                                       'entries' % _MAX_APM_ENTRIES)
                self._apm_starts.append(
                    (first + index,
                     struct.unpack_from('>I', raw, at + 8)[0]))
            index = column.find(b'P', index + 1)

    def _foreign_tables(self):
        """Partitions of the whole-disk tables of other systems."""
        head = self._head
        zero = head.get(0, bytes(SECTOR))
        # Apple: starts in blocks of the driver descriptor's size.
        scale = {1}
        if zero[:2] == b'ER':
            scale.add(max(struct.unpack_from('>H', zero, 2)[0] // SECTOR,
                          1))
        for lba, start in self._apm_starts:
            for factor in scale:
                self._add_start(start * factor, 'Apple partition map entry '
                                'at sector %d' % lba)
        # SGI volume header: 16 partitions (blocks, first block, type).
        if struct.unpack_from('>I', zero, 0)[0] == 0x0BE5A941:
            for index in range(16):
                start = struct.unpack_from('>I', zero, 312 + 12 * index + 4)
                self._add_start(start[0], 'SGI partition %d' % (index + 1))
        # Sun label: 8 partitions (start cylinder, sectors).
        if zero[508:510] == b'\xda\xbe':
            ntrks, nsect = struct.unpack_from('>HH', zero, 436)
            for index in range(8):
                cylinder = struct.unpack_from('>I', zero, 444 + 8 * index)[0]
                self._add_start(cylinder * ntrks * nsect,
                                'Sun partition %d' % (index + 1))
        # Atari root sector: 4 partitions (flags, id, start, size).
        for index in range(4):
            at = 454 + 12 * index
            if zero[at] & 1:
                if zero[at + 1:at + 4] == b'XGM':
                    raise _Undecidable('Atari extended partition')
                self._add_start(struct.unpack_from('>I', zero, at + 4)[0],
                                'Atari partition %d' % (index + 1))
        # Ultrix: 8 partitions (blocks, offset) at the end of sector 31.
        ultrix = head.get(31, bytes(SECTOR))
        if struct.unpack_from('<I', ultrix, 440)[0] == 0x032957:
            for index in range(8):
                start = struct.unpack_from('<I', ultrix, 448 + 8 * index + 4)
                self._add_start(start[0], 'Ultrix partition %d'
                                % (index + 1))

    # -- bookkeeping -------------------------------------------------------

    def _mark_fed(self, first, end):
        """Note sectors fed.

        Past ``_MAX_FED_RANGES`` ranges, gaps under ``_FED_GAP`` sectors
        are closed: they count as fed.  Only the GPT entry array check
        asks, where "fed before and not kept" refuses: that fails closed.
        """
        starts, ends = self._fed_starts, self._fed_ends
        gap = self._fed_gap
        i = bisect.bisect_left(ends, first - gap)
        j = bisect.bisect_right(starts, end + gap)
        if i < j:
            first = min(first, starts[i])
            end = max(end, ends[j - 1])
        starts[i:j] = [first]
        ends[i:j] = [end]
        if len(starts) > _MAX_FED_RANGES and not gap:
            self._fed_gap = _FED_GAP
            merged_starts, merged_ends = [], []
            for start, stop in zip(starts, ends, strict=True):
                if merged_ends and start - merged_ends[-1] < _FED_GAP:
                    merged_ends[-1] = stop
                else:
                    merged_starts.append(start)
                    merged_ends.append(stop)
            self._fed_starts, self._fed_ends = merged_starts, merged_ends

    def _was_fed(self, lba):
        i = bisect.bisect_right(self._fed_starts, lba) - 1
        return i >= 0 and lba < self._fed_ends[i]

    def _keep_recent(self, first, end, raw):
        """Keep the sectors fed last that lie in the 33 below ``end``."""
        low = end - _RECENT_SECTORS
        keep = {lba: sector for lba, sector in self._recent.items()
                if low <= lba < first}
        for lba in range(max(low, first), end):
            at = (lba - first) * SECTOR
            keep[lba] = bytes(raw[at:at + SECTOR])
        self._recent = keep

    def finish(self):
        """Raise :class:`WindowsImageError` if the disk holds Windows."""
        try:
            # EBRs never fed are zeros: the chain ends there.  Walking a
            # candidate may queue more EBRs.
            while self._pending_ebrs:
                lba = next(iter(self._pending_ebrs))
                self._read_ebr(lba, self._ebr_candidates.get(lba))
            self._foreign_tables()
        except _Undecidable as exc:
            self._refuse('the disk cannot be judged: %s' % exc)
        self._ebr_candidates = {}
        if self.windows:
            raise errors.WindowsImageError(self.reason)


def check_extents(extents, detector=None):
    """Pass extents through, raising if they turn out to hold Windows."""
    detector = detector or WindowsDetector()
    for offset, data in extents:
        detector.feed(offset, data)
        yield offset, data
    detector.finish()
