"""Readers: one-pass streaming validation, and random access for chains.

:class:`StreamReader` reads a VHD from a non-seekable file-like object
(anything with ``read(n)``, e.g. a Swift GET body) whose total size is known,
in a single forward pass with memory bounded by one block::

    reader = StreamReader(body, content_length, limits=Limits())
    reader.open()                  # footer copy, header and BAT: may raise
    for offset, data in reader.extents():
        ...                        # virtual disk content, see below
    # validation is complete once extents() is exhausted

``extents()`` yields ``(virtual_offset, data)`` pairs for the *allocated*
parts of the virtual disk, in file order (not necessarily increasing
offsets); everything not yielded reads as zeros.  ``data`` is a bytes-like
object; it stays valid after the next item (unless ``reuse_buffers`` asks
the reader to recycle its buffers).  ``blocks()`` gives the same per VHD block
with its sector bitmap.  Every defect raises a
:class:`rax_glance.errors.ImageError` subclass.

:class:`VHDFile` gives random access to a VHD in a seekable file (used to
coalesce chains of differencing disks); it validates the same metadata.
"""

import collections
import dataclasses
import errno
import io
import os

from rax_glance import errors
from rax_glance.vhd import format as fmt
from rax_glance.vhd import validate
from rax_glance.vhd.validate import Limits

# Read size for the data of fixed disks and for skipping gaps.
CHUNK = 2 << 20
# Blocks with data under clear bitmap bits that are named in warnings.
_MAX_NAMED_WARNINGS = 5


@dataclasses.dataclass
class Block:
    """One allocated block of a dynamic or differencing disk."""

    index: int
    virtual_offset: int
    # Sectors of this block inside the virtual disk (the last block of a
    # disk may stick out past the current size).
    sectors: int
    bitmap: bytes
    data: memoryview
    runs: list


class _Input:
    """Forward-only reading with position tracking and exact lengths.

    With ``file_input`` the object is a regular file read by position
    (``os.pread``) from where it stands now: gaps are skipped without
    reading them, and :meth:`next_data` finds the holes of a sparse file.
    """

    def __init__(self, fileobj, size, file_input=False, reuse=0):
        self._file = fileobj
        self.size = size
        self.position = 0
        self._readinto = getattr(fileobj, 'readinto', None)
        self._fd = None
        if file_input:
            self._fd = fileobj.fileno()
            self._base = fileobj.tell()
        # With ``reuse`` (file input only), buffers of the data size are
        # recycled after ``reuse`` more reads of that size: fresh 2 MiB
        # buffers cost a page fault per 4 KiB, more than the copy.
        self._reuse = reuse if file_input else 0
        self._ring = collections.deque()

    def read(self, length, what='data'):
        if self.position + length > self.size:
            raise errors.StructureError('%s runs past the end of the file'
                                        % what, self.position)
        if self._fd is not None:
            return self._pread(length)
        if self._readinto is None:
            first = self._file.read(length)
            if first is not None and len(first) == length:
                # The common case: no copy.
                self.position += length
                return first
        else:
            first = b''
        buf = bytearray(length)
        view = memoryview(buf)
        got = len(first or b'')
        view[:got] = first or b''
        while got < length:
            if self._readinto is not None:
                n = self._readinto(view[got:])
            else:
                chunk = self._file.read(length - got)
                n = len(chunk) if chunk else 0
                view[got:got + n] = chunk or b''
            if not n:
                self._truncated(got)
            got += n
        self.position += length
        return buf

    def _truncated(self, got):
        raise errors.StructureError(
            'file is truncated: %d bytes of %d'
            % (self.position + got, self.size), self.position + got)

    def _pread(self, length):
        ring = self._ring
        if not self._reuse or length < CHUNK:
            buf = bytearray(length)
        elif len(ring) > self._reuse and len(ring[0]) == length:
            buf = ring.popleft()
            ring.append(buf)
        else:
            buf = bytearray(length)
            ring.append(buf)
            while len(ring) > self._reuse + 1:
                ring.popleft()
        view = memoryview(buf)
        got = 0
        while got < length:
            n = os.preadv(self._fd, [view[got:]],
                          self._base + self.position + got)
            if not n:
                self._truncated(got)
            got += n
        self.position += length
        return buf

    def next_data(self, end):
        """Skip a hole of the file at the position (up to ``end``).

        Returns the new position (a sector boundary); holes read as zeros,
        which callers need not see.  Streams are never skipped.
        """
        if self._fd is None or self.position >= end:
            return self.position
        try:
            found = self._find(os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:     # ENXIO: only a hole is left
                return self.position
            found = end
        found = min(end, found - found % fmt.SECTOR)
        if found > self.position:
            self.position = found
        return self.position

    def _find(self, whence):
        """SEEK_DATA/SEEK_HOLE from the position; the file offset is kept."""
        kept = os.lseek(self._fd, 0, os.SEEK_CUR)
        try:
            return os.lseek(self._fd, self._base + self.position,
                            whence) - self._base
        finally:
            os.lseek(self._fd, kept, os.SEEK_SET)

    def data_end(self, end):
        """Where the data at the position ends (the next hole), up to ``end``.

        A sector boundary past the position; ``end`` for streams.
        """
        if self._fd is None or self.position >= end:
            return end
        try:
            found = self._find(os.SEEK_HOLE)
        except OSError:
            return end
        found += -found % fmt.SECTOR
        return min(end, max(found, self.position + fmt.SECTOR))

    def skip_to(self, offset):
        if offset < self.position:
            raise errors.StructureError(
                'layout goes backwards: needs offset %d after %d'
                % (offset, self.position), offset)
        if self._fd is not None:
            if offset > self.size:
                raise errors.StructureError('data runs past the end of the '
                                            'file', self.position)
            self.position = offset
            return
        while self.position < offset:
            self.read(min(CHUNK, offset - self.position))

    def expect_end(self):
        if self._fd is not None:
            extra = os.pread(self._fd, 1, self._base + self.size)
        else:
            extra = self._file.read(1)
        if extra:
            raise errors.StructureError('file is longer than its declared '
                                        'size %d' % self.size, self.size)


class StreamReader:
    """Validate and read a VHD in one forward pass; see the module doc."""

    def __init__(self, fileobj, size, limits=None, leaf=True, parents=None,
                 file_input=False, reuse_buffers=0):
        self.limits = limits or Limits()
        self.leaf = leaf
        # VHDFile objects, parent first, when a differencing disk's content
        # is wanted (the differencing disk itself must then be allowed).
        self.parents = list(parents or [])
        if self.parents:
            self.limits = dataclasses.replace(self.limits,
                                              allow_differencing=True)
        self.size = size
        # file_input: ``fileobj`` is a regular file, read by position from
        # where it stands (gaps and holes are skipped, not read).  With
        # reuse_buffers=N (file input only) the data of an item is valid
        # for the next N - 1 items only: the reader recycles its buffers.
        self._input = _Input(fileobj, size, file_input, reuse_buffers)
        self.footer = None
        self.header = None
        self.bat = None
        self.allocated = None     # [(file offset, block index)], file order
        self.warnings = []
        self._fixed_head = None
        self._data_start = None
        self._opened = False
        self._done = False

    # -- metadata ---------------------------------------------------------

    @property
    def disk_type(self):
        return self.footer.disk_type if self.footer else fmt.DISK_FIXED

    @property
    def is_fixed(self):
        return self.footer is None or self.footer.disk_type == fmt.DISK_FIXED

    @property
    def virtual_size(self):
        """Known after open() for dynamic disks, after reading for fixed."""
        return self.footer.current_size if self.footer else None

    @property
    def block_size(self):
        return self.header.block_size if self.header else None

    @property
    def position(self):
        """Bytes of the file read or skipped so far."""
        return self._input.position

    def open(self):
        """Read and check everything in front of the data."""
        if self._opened:
            return self
        self._opened = True
        size = self.size
        validate.check_physical_size(size, self.limits)
        if size < fmt.FOOTER_SIZE:
            raise errors.NotVHDError('file of %d bytes is too small for a '
                                     'VHD footer' % size, 0)
        if validate.footer_length(size) is None:
            raise errors.NotVHDError('file size %d is not a multiple of 512'
                                     % size, size)
        first = self._input.read(fmt.FOOTER_SIZE, 'footer copy')
        copy = fmt.Footer.parse(first)
        if copy.cookie != fmt.FOOTER_COOKIE or (
                copy.checksum == copy.computed_checksum
                and copy.disk_type == fmt.DISK_FIXED):
            # Fixed disks have no copy: the first sector is disk content.
            self._fixed_head = first
            return self
        validate.check_footer(copy, 0, self.limits, leaf=self.leaf)
        self.footer = copy
        self.header = fmt.DynamicHeader.parse(self._read_at(
            copy.data_offset, fmt.HEADER_SIZE, 'dynamic header'))
        data_start = validate.check_header(self.header, copy, size,
                                           self.limits)
        entries = self.header.max_table_entries
        raw_bat = self._read_at(self.header.table_offset,
                                fmt.bat_size(entries), 'BAT')
        self.bat = validate.parse_bat(raw_bat, entries)
        self.allocated = validate.check_bat(self.bat, self.header, copy, size,
                                            data_start)
        self._data_start = data_start
        return self

    def _read_at(self, offset, length, what):
        if offset + length > self.size:
            raise errors.StructureError('%s runs past the end of the file'
                                        % what, offset)
        self._input.skip_to(offset)
        return self._input.read(length, what)

    def info(self):
        """A JSON-able summary (complete once the data has been read)."""
        info = {'format': fmt.DISK_TYPE_NAMES.get(self.disk_type),
                'file_size': self.size,
                'virtual_size': self.virtual_size,
                'warnings': list(self.warnings)}
        if self.header is not None:
            info.update(block_size=self.header.block_size,
                        allocated_blocks=len(self.allocated))
        return info

    # -- data -------------------------------------------------------------

    def blocks(self):
        """Allocated blocks of a dynamic/differencing disk, in file order."""
        self.open()
        if self.is_fixed:
            raise TypeError('blocks() is for dynamic and differencing disks')
        header = self.header
        bitmap_size = header.bitmap_size
        spb = header.sectors_per_block
        virtual_sectors = self.footer.current_size // fmt.SECTOR
        named = 0
        for start, index in self.allocated:
            self._input.skip_to(start)
            bitmap = bytes(self._input.read(bitmap_size, 'block bitmap'))
            data = memoryview(self._input.read(header.block_size, 'block'))
            sectors = min(spb, virtual_sectors - index * spb)
            runs = validate.bitmap_runs(bitmap, sectors)
            if _has_data_under_clear_bits(data, runs, sectors):
                # Defect 12: qemu would show it, the specification reads
                # zeros: two readers, two disks.  Refused unless allowed
                # (then we read zeros and warn).
                if not self.limits.allow_hidden_data:
                    raise errors.StructureError(
                        'block %d at %d has data in sectors its bitmap '
                        'marks unused (qemu would show it)' % (index, start),
                        start)
                if named < _MAX_NAMED_WARNINGS:
                    self.warnings.append(
                        'block %d at %d has data in sectors its bitmap '
                        'marks unused' % (index, start))
                named += 1
            yield Block(index, index * header.block_size, sectors, bitmap,
                        data, runs)
        if named > _MAX_NAMED_WARNINGS:
            self.warnings.append('%d more blocks with data under clear '
                                 'bitmap bits' % (named - _MAX_NAMED_WARNINGS))
        self._finish_dynamic()

    def _finish_dynamic(self):
        length = validate.footer_length(self.size)
        where = self.size - length
        self._input.skip_to(where)
        trailing = self._input.read(length, 'trailing footer')
        validate.check_trailing_footer(trailing, self.footer.raw, where)
        self._input.expect_end()
        self._done = True

    def extents(self):
        """``(virtual_offset, data)`` of allocated content; see module doc."""
        self.open()
        if self.is_fixed:
            yield from self._fixed_extents()
            return
        if self.parents and self.disk_type == fmt.DISK_DIFFERENCING:
            yield from self._extents_with_parents()
            return
        for block in self.blocks():
            base = block.virtual_offset
            for first, count in block.runs:
                yield (base + first * fmt.SECTOR,
                       block.data[first * fmt.SECTOR:
                                  (first + count) * fmt.SECTOR])

    def _extents_with_parents(self):
        """A differencing disk's whole content: its blocks over its parents.

        The child's blocks come in file order, each merged with what the
        parents hold under it; then what only the parents hold.  The
        parents are read at random (they are seekable files).
        """
        from rax_glance.vhd import coalesce  # coalesce imports us
        if self.header.parent_unique_id != self.parents[0].unique_id:
            raise errors.ChainError('parent id does not match the unique '
                                    'id of %s' % self.parents[0].name)
        if self.footer.unique_id in {p.unique_id for p in self.parents}:
            raise errors.ChainError('cycle: the disk is its own ancestor')
        coalesce.check_chain(self.parents)
        layers = [coalesce.Layer(disk) for disk in reversed(self.parents)]
        size = self.virtual_size
        covered = set()
        for block in self.blocks():
            start = block.virtual_offset
            end = min(start + self.header.block_size, size)
            buffer = bytearray(end - start)
            for layer in layers:
                layer.overlay(start, end, buffer)
            for first, count in block.runs:
                lo, hi = first * fmt.SECTOR, (first + count) * fmt.SECTOR
                buffer[lo:hi] = block.data[lo:hi]
            covered.add(block.index)
            yield start, memoryview(buffer)
        # What only the parents hold, in 2 MiB pieces outside the child's
        # blocks.
        parents = coalesce.ChainContent(self.parents)
        step = fmt.DEFAULT_BLOCK_SIZE
        child_block = self.header.block_size
        for index in parents.block_order:
            start, end = index * step, min((index + 1) * step, size)
            position = start
            while position < end:
                child_index = position // child_block
                piece_end = min(end, (child_index + 1) * child_block)
                if child_index not in covered:
                    buffer = bytearray(piece_end - position)
                    for layer in layers:
                        layer.overlay(position, piece_end, buffer)
                    yield position, memoryview(buffer)
                position = piece_end

    def _fixed_extents(self):
        length = validate.footer_length(self.size)
        data_end = self.size - length
        offset = 0
        if data_end >= fmt.SECTOR:
            yield 0, memoryview(self._fixed_head)
            offset = fmt.SECTOR
        inp = self._input
        while offset < data_end:
            offset = inp.next_data(data_end)
            if offset >= data_end:
                break
            chunk = inp.read(min(CHUNK - offset % CHUNK,
                                 inp.data_end(data_end) - offset))
            yield offset, memoryview(chunk)
            offset += len(chunk)
        if data_end < fmt.SECTOR:
            trailing = bytes(self._fixed_head[data_end:])
            trailing += bytes(inp.read(self.size - fmt.SECTOR))
        else:
            trailing = bytes(inp.read(length, 'footer'))
        footer = fmt.Footer.parse(trailing)
        validate.check_footer(footer, data_end, self.limits,
                              leaf=self.leaf)
        if footer.disk_type != fmt.DISK_FIXED:
            raise errors.StructureError(
                '%s disk without a footer copy at offset 0'
                % fmt.DISK_TYPE_NAMES[footer.disk_type], data_end + 60)
        if footer.current_size != data_end:
            raise errors.StructureError(
                'fixed disk holds %d bytes of data, its footer says %d'
                % (data_end, footer.current_size), data_end + 48)
        self.footer = footer
        inp.expect_end()
        self._done = True

    def validate(self):
        """Read everything; returns :meth:`info`."""
        for _ in self.extents():
            pass
        return self.info()


def _has_data_under_clear_bits(data, runs, sectors):
    if runs == [(0, sectors)] and sectors * fmt.SECTOR == len(data):
        return False
    position = 0
    for first, count in runs + [(len(data) // fmt.SECTOR, 0)]:
        gap = data[position * fmt.SECTOR:first * fmt.SECTOR]
        if not fmt.is_zero(gap):
            return True
        position = first + count
    return False


def validate_stream(fileobj, size, limits=None):
    """Validate a whole VHD stream; returns the reader's info dict."""
    return StreamReader(fileobj, size, limits).validate()


class VHDFile:
    """Random access to a VHD in a seekable file, metadata validated.

    ``leaf`` says whether the disk is the newest of its chain (only a leaf
    may not be hidden).  Blocks are read on demand with :meth:`read_block`.
    """

    def __init__(self, fileobj, size=None, limits=None, leaf=True,
                 name=None):
        self.limits = limits or validate.UNLIMITED
        self.name = name or getattr(fileobj, 'name', '?')
        self._file = fileobj
        if size is None:
            size = fileobj.seek(0, io.SEEK_END)
        self.size = size
        self.header = None
        self.bat = None
        self.allocated = []
        validate.check_physical_size(size, self.limits)
        if size < fmt.FOOTER_SIZE or validate.footer_length(size) is None:
            raise errors.NotVHDError('file size %d cannot hold a VHD' % size,
                                     0)
        length = validate.footer_length(size)
        footer = fmt.Footer.parse(self._pread(size - length, length))
        first = self._pread(0, fmt.FOOTER_SIZE)
        if footer.cookie != fmt.FOOTER_COOKIE and first[:8] == (
                fmt.FOOTER_COOKIE):
            footer = fmt.Footer.parse(first)
        validate.check_footer(footer, size - length, self.limits, leaf=leaf)
        self.footer = footer
        if footer.disk_type == fmt.DISK_FIXED:
            if footer.current_size != size - length:
                raise errors.StructureError(
                    'fixed disk holds %d bytes of data, its footer says %d'
                    % (size - length, footer.current_size), size - length)
            return
        validate.check_trailing_footer(self._pread(size - length, length),
                                       first, size - length)
        self.header = fmt.DynamicHeader.parse(
            self._pread(footer.data_offset, fmt.HEADER_SIZE))
        data_start = validate.check_header(self.header, footer, size,
                                           self.limits)
        entries = self.header.max_table_entries
        self.bat = validate.parse_bat(
            self._pread(self.header.table_offset, fmt.bat_size(entries)),
            entries)
        self.allocated = validate.check_bat(self.bat, self.header, footer,
                                            size, data_start)

    @classmethod
    def open_path(cls, path, limits=None, leaf=True):
        fileobj = open(path, 'rb')
        try:
            return cls(fileobj, limits=limits, leaf=leaf, name=path)
        except BaseException:
            fileobj.close()
            raise

    def close(self):
        self._file.close()

    def _pread(self, offset, length):
        fileno = getattr(self._file, 'fileno', None)
        try:
            data = os.pread(fileno(), length, offset)
        except (TypeError, OSError, io.UnsupportedOperation):
            self._file.seek(offset)
            data = self._file.read(length)
        if len(data) != length:
            raise errors.StructureError('file is truncated', offset)
        return data

    @property
    def disk_type(self):
        return self.footer.disk_type

    @property
    def virtual_size(self):
        return self.footer.current_size

    @property
    def unique_id(self):
        return self.footer.unique_id

    @property
    def block_size(self):
        return self.header.block_size if self.header else None

    def read_block(self, index):
        """``(runs, data)`` of block ``index`` of a dynamic disk.

        ``runs`` are ``(first_sector, count)`` the block holds (set bitmap
        bits), ``data`` the block's bytes; ``([], None)`` when unallocated.
        """
        sector = self.bat[index] if index < len(self.bat) else fmt.UNALLOCATED
        if sector == fmt.UNALLOCATED:
            return [], None
        header = self.header
        start = sector * fmt.SECTOR
        raw = self._pread(start, header.bitmap_size + header.block_size)
        spb = header.sectors_per_block
        sectors = min(spb, self.virtual_size // fmt.SECTOR - index * spb)
        runs = validate.bitmap_runs(raw[:header.bitmap_size], sectors)
        return runs, memoryview(raw)[header.bitmap_size:]

    def block_file_offset(self, index):
        """File offset of block ``index`` (its bitmap), or None."""
        sector = self.bat[index] if index < len(self.bat) else fmt.UNALLOCATED
        return None if sector == fmt.UNALLOCATED else sector * fmt.SECTOR

    def read_into(self, offset, view):
        """Fill the writable ``view`` from the file at ``offset``."""
        length = len(view)
        try:
            got = os.preadv(self._file.fileno(), [view], offset)
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._file.seek(offset)
            got = self._file.readinto(view)
        if got != length:
            raise errors.StructureError('file is truncated', offset)

    def read_bitmap_runs(self, index):
        sector = self.bat[index] if index < len(self.bat) else fmt.UNALLOCATED
        if sector == fmt.UNALLOCATED:
            return []
        header = self.header
        bitmap = self._pread(sector * fmt.SECTOR, header.bitmap_size)
        spb = header.sectors_per_block
        sectors = min(spb, self.virtual_size // fmt.SECTOR - index * spb)
        return validate.bitmap_runs(bitmap, sectors)

    def read(self, offset, length):
        """Bytes of this disk alone (a fixed disk's data; for tests)."""
        return self._pread(offset, length)
