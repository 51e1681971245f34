"""Disk content sources for the writers, and a file-like over byte chunks.

A *content* object describes a virtual disk block by block (2 MiB blocks,
see :mod:`rax_glance.vhd.writer`)::

    content.virtual_size         # bytes
    content.block_order          # indices of blocks with data, in order
    content.iter_block_data()    # their bytes, one item per index

Sources here:

* :class:`StreamedVHDContent`: a dynamic VHD read straight from a stream
  (its BAT tells which blocks exist before their data arrives); one pass,
  no temporary copy.  Blocks that hold only zeros stay allocated.
* :class:`SpooledContent`: any extents in any order (a fixed VHD, raw data
  from a pipe, a VHD with other block sizes) spooled to a sparse temporary
  file; only blocks with non-zero data are written and allocated.
* :class:`RawFileContent`: a seekable raw image, scanned for zero blocks.
* :class:`rax_glance.vhd.coalesce.ChainContent`: a chain of VHD files.

:func:`content_from_stream` picks the right one for a stream of a ``vhd``
or ``raw`` image.
"""

import errno
import io
import os
import tempfile

from rax_glance import errors
from rax_glance.vhd import format as fmt
from rax_glance.vhd import reader as vhd_reader
from rax_glance.vhd import validate
from rax_glance.vhd import writer

BLOCK_SIZE = writer.BLOCK_SIZE


class IterStream(io.RawIOBase):
    """A read-only file-like object over an iterator of bytes-like chunks.

    ``size`` is the total length when known.  What the iterator raises
    (typed image errors included) comes out of :meth:`read`.  ``read(n)``
    returns ``bytes``; iterating yields bytes-like chunks (``bytes``,
    ``bytearray`` or ``memoryview``), each independent of the next one.
    """

    def __init__(self, chunks, size=None):
        super().__init__()
        self._chunks = iter(chunks)
        self._pending = memoryview(b'')
        self.size = size
        self.position = 0

    def readable(self):
        return True

    def _next_chunk(self):
        for chunk in self._chunks:
            if len(chunk):
                self._pending = memoryview(chunk).cast('B')
                return True
        return False

    def readinto(self, buffer):
        target = memoryview(buffer).cast('B')
        if not len(self._pending) and not self._next_chunk():
            return 0
        n = min(len(target), len(self._pending))
        target[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.position += n
        return n

    def read(self, size=-1):
        if size is None or size < 0:
            return self.readall()
        if not len(self._pending) and not self._next_chunk():
            return b''
        if len(self._pending) >= size:
            out = self._pending[:size].tobytes()
            self._pending = self._pending[size:]
            self.position += size
            return out
        parts = []
        want = size
        while want and (len(self._pending) or self._next_chunk()):
            part = self._pending[:want]
            parts.append(part.tobytes())
            self._pending = self._pending[len(part):]
            want -= len(part)
        out = b''.join(parts)
        self.position += len(out)
        return out

    def __iter__(self):
        if len(self._pending):
            pending, self._pending = self._pending, memoryview(b'')
            self.position += len(pending)
            yield pending
        for chunk in self._chunks:
            self.position += len(chunk)
            yield chunk


def _block_count(virtual_size):
    return -(-virtual_size // BLOCK_SIZE)


class StreamedVHDContent:
    """A dynamic (2 MiB block) VHD read from a stream, no temporary copy.

    Sectors under clear bitmap bits read as zeros.  Blocks come in the
    order of the input file.
    """

    def __init__(self, reader):
        reader.open()
        if reader.is_fixed or reader.block_size != BLOCK_SIZE:
            raise ValueError('StreamedVHDContent needs a dynamic VHD with '
                             '2 MiB blocks')
        if reader.disk_type == fmt.DISK_DIFFERENCING:
            raise errors.HasParentError('differencing disk without its '
                                        'parents')
        self.reader = reader
        self.virtual_size = reader.virtual_size
        self.block_order = [index for _, index in reader.allocated]

    def iter_block_data(self):
        full = BLOCK_SIZE // fmt.SECTOR
        for block in self.reader.blocks():
            if block.runs == [(0, full)]:
                yield block.data
                continue
            data = bytearray(BLOCK_SIZE)
            for first, count in block.runs:
                start, end = first * fmt.SECTOR, (first + count) * fmt.SECTOR
                data[start:end] = block.data[start:end]
            yield data


class SpooledContent:
    """Extents in any order, kept in a sparse temporary file.

    Call :meth:`add` for each extent, then use it as content.  Only
    non-zero extents are written; the file is deleted on :meth:`close`.
    """

    def __init__(self, virtual_size, tmpdir=None):
        self.virtual_size = virtual_size
        self._file = tempfile.TemporaryFile(dir=tmpdir)
        self._file.truncate(virtual_size)
        self._touched = set()

    def add(self, offset, data):
        if offset + len(data) > self.virtual_size:
            raise errors.StructureError('data past the virtual size', offset)
        if fmt.is_zero(data):
            return
        os.pwrite(self._file.fileno(), data, offset)
        first = offset // BLOCK_SIZE
        last = (offset + len(data) - 1) // BLOCK_SIZE
        self._touched.update(range(first, last + 1))

    def add_extents(self, extents):
        for offset, data in extents:
            self.add(offset, data)
        return self

    @property
    def block_order(self):
        return sorted(self._touched)

    def iter_block_data(self):
        fd = self._file.fileno()
        for index in self.block_order:
            yield os.pread(fd, BLOCK_SIZE, index * BLOCK_SIZE)

    def close(self):
        self._file.close()


class RawFileContent:
    """A seekable raw image; blocks of zeros (and holes) are skipped."""

    def __init__(self, fileobj, size=None):
        self._file = fileobj
        if size is None:
            size = fileobj.seek(0, io.SEEK_END)
        if size <= 0 or size % fmt.SECTOR:
            raise errors.StructureError('raw image size %d is not a positive '
                                        'multiple of 512' % size, size)
        self.virtual_size = size
        self._order = None

    def _read(self, offset, length):
        try:
            return os.pread(self._file.fileno(), length, offset)
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._file.seek(offset)
            return self._file.read(length)

    def _data_ranges(self):
        """File ranges that may hold data (holes skipped where supported)."""
        try:
            fd = self._file.fileno()
            os.lseek(fd, 0, os.SEEK_HOLE)
        except (AttributeError, OSError, io.UnsupportedOperation):
            yield 0, self.virtual_size
            return
        position = 0
        while position < self.virtual_size:
            try:
                start = os.lseek(fd, position, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:    # only a hole is left
                    return
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            yield start, min(end, self.virtual_size)
            position = end

    @property
    def block_order(self):
        if self._order is None:
            order = []
            for start, end in self._data_ranges():
                first = start // BLOCK_SIZE
                if order and order[-1] == first:
                    first += 1
                for index in range(first, _block_count(end)):
                    if not fmt.is_zero(self._read(index * BLOCK_SIZE,
                                                  BLOCK_SIZE)):
                        order.append(index)
            self._order = order
        return self._order

    def iter_block_data(self):
        for index in self.block_order:
            yield self._read(index * BLOCK_SIZE, BLOCK_SIZE)


def raw_stream_extents(fileobj, size):
    """Read a raw image stream as ``(offset, data)`` chunks."""
    offset = 0
    while offset < size:
        chunk = fileobj.read(min(BLOCK_SIZE, size - offset))
        if not chunk:
            raise errors.StructureError('raw image is truncated', offset)
        yield offset, chunk
        offset += len(chunk)
    if fileobj.read(1):
        raise errors.StructureError('raw image is longer than declared', size)


def content_from_stream(fileobj, size, disk_format, tmpdir=None, limits=None):
    """Content of a ``vhd`` or ``raw`` image read from a stream.

    A dynamic VHD with 2 MiB blocks streams straight through; anything else
    is validated and spooled (non-zero blocks only) under ``tmpdir``.
    """
    if disk_format == 'raw':
        if size <= 0 or size % fmt.SECTOR:
            raise errors.StructureError('raw image size %d is not a positive '
                                        'multiple of 512' % size, size)
        spool = SpooledContent(size, tmpdir)
        return spool.add_extents(raw_stream_extents(fileobj, size))
    if disk_format != 'vhd':
        raise ValueError('unknown disk format %r' % disk_format)
    reader = vhd_reader.StreamReader(fileobj, size, limits).open()
    if not reader.is_fixed and reader.block_size == BLOCK_SIZE:
        return StreamedVHDContent(reader)
    if reader.disk_type == fmt.DISK_DIFFERENCING:
        raise errors.HasParentError('differencing disk without its parents')
    if reader.is_fixed:
        # The size is only confirmed by the footer at the end.
        virtual = size - validate.footer_length(size)
    else:
        virtual = reader.virtual_size
    spool = SpooledContent(virtual, tmpdir)
    try:
        return spool.add_extents(reader.extents())
    except BaseException:
        spool.close()
        raise


def sorted_content(content, tmpdir=None):
    """Content whose blocks come in increasing order (spooled if needed)."""
    order = content.block_order
    if all(a < b for a, b in zip(order, order[1:], strict=False)):
        return content
    spool = SpooledContent(content.virtual_size, tmpdir)
    for index, data in zip(order, content.iter_block_data(), strict=True):
        spool.add(index * BLOCK_SIZE, data[:content.virtual_size
                                            - index * BLOCK_SIZE])
    return spool


def _closing(chunks, *contents):
    """Chunks, then close the contents' temporary files (also on error)."""
    try:
        yield from chunks
    finally:
        for content in contents:
            close = getattr(content, 'close', None)
            if close is not None:
                close()


def dynamic_stream(content):
    """The content as a dynamic VHD: an :class:`IterStream` with ``size``.

    Spooled content is closed (its temporary file removed) once the
    stream has been read to the end, closed, or failed.
    """
    vhd = writer.DynamicWriter(content.virtual_size, content.block_order)
    return IterStream(_closing(vhd.chunks(content.iter_block_data()),
                               content), vhd.size)


def fixed_stream(content, tmpdir=None):
    """The content as a fixed VHD (spooled first if out of order)."""
    ordered = sorted_content(content, tmpdir)
    vhd = writer.FixedWriter(ordered.virtual_size)
    chunks = vhd.chunks(ordered.block_order, ordered.iter_block_data())
    return IterStream(_closing(chunks, content, ordered), vhd.size)


def raw_stream(content, tmpdir=None):
    """The raw disk (spooled first if out of order)."""
    ordered = sorted_content(content, tmpdir)
    chunks = writer.raw_chunks(ordered.virtual_size, ordered.block_order,
                               ordered.iter_block_data())
    return IterStream(_closing(chunks, content, ordered),
                      ordered.virtual_size)
