"""The XenServer image package ("OVA"): a gzipped tar of ``0.vhd`` ... ``n.vhd``.

Glance stores XenServer images as ``container_format=ovf``,
``disk_format=vhd``: a gzipped tar made like ``tar -zc -C staging .``
whose members are ``./0.vhd`` (the leaf) ... ``./(n-1).vhd`` (the base) of a
chain of VHDs; old packages use ``snap.vhd`` -> ``image.vhd`` ->
``base.vhd``; a legacy ``swap.vhd`` is ignored.

Import (validate while packaging, one pass)::

    package = pack_single_vhd(swift_body, content_length, limits=Limits())
    image.set_data(package)         # read(n) validates, checks for Windows
                                    # and compresses as it goes

Export (one dynamic VHD of the package's coalesced chain)::

    vhd_stream = export_stream(package_fileobj, tmpdir='/var/tmp')
    vhd_stream.size                 # known before the first byte is read
    for chunk in vhd_stream: ...    # or vhd_stream.read(n)

A package holding a single stand-alone dynamic VHD streams straight
through; a chain (or a fixed disk) is spooled to a private directory under
``tmpdir`` and coalesced from there.  :func:`export_image` also takes bare
``vhd`` and ``raw`` images.  Other helpers: :func:`iter_members` (the
bounded reader, limits in :class:`PackageLimits`), :func:`check_package`,
:func:`unpack` (to a directory), :func:`pack_files` (operator CLI).  Bad
input raises only :class:`rax_glance.errors.ImageError` subclasses
(:class:`~rax_glance.errors.PackageError` for the package itself,
:class:`~rax_glance.errors.ChainError` for its chain).

The deflate engine is ISA-L (``isal``) at level 3, in 1 MiB chunks on
``DEFAULT_THREADS`` worker threads (pigz-style, random-looking chunks
stored), or the standard library's zlib (``engine='zlib'``): chosen by
measurement, see ``doc/benchmarks-vhd.md``.
"""

import collections
import contextlib
import dataclasses
import os
import re
import shutil
import struct
import tempfile
import time
import zlib
from concurrent import futures

from rax_glance import errors
from rax_glance import windows
from rax_glance.vhd import coalesce
from rax_glance.vhd import content as vhd_content
from rax_glance.vhd import format as fmt
from rax_glance.vhd import reader as vhd_reader
from rax_glance.vhd import validate

try:
    from isal import isal_zlib
except ImportError:     # pragma: no cover - isal is a requirement
    isal_zlib = None

TAR_BLOCK = 512
TAR_RECORD = 10240          # GNU tar's default blocking factor of 20
GIB = 1 << 30
LEGACY_CHAIN = ('snap.vhd', 'image.vhd', 'base.vhd')
IGNORED_MEMBERS = ('swap.vhd',)
_NUMBERED = re.compile(r'(0|[1-9][0-9]{0,3})\.vhd\Z')
_READ_SIZE = 1 << 20


# Deflate cannot exceed about 1032:1; a real disk image, even one with many zero-filled
# blocks, stays far below 500:1 overall.
DEFAULT_MAX_INFLATE_RATIO = 500


@dataclasses.dataclass
class PackageLimits:
    """Bounds on what unpacking a package may cost."""

    max_members: int = coalesce.MAX_CHAIN_DEPTH + 2
    # Declared size of one member (checked before reading it).
    max_member_size: int = 2 * 40 * GIB
    # All decompressed bytes: headers, members, padding.
    max_total_size: int = 4 * 40 * GIB
    max_chain_depth: int = coalesce.MAX_CHAIN_DEPTH
    # Bytes of pax extended headers one member may carry.
    max_pax_size: int = 8192
    # Decompressed bytes per compressed byte read so far (compressed input counted as at
    # least 1 MiB, so small packages are not judged on their first bytes); 0: no bound.
    max_inflate_ratio: int = DEFAULT_MAX_INFLATE_RATIO


# -- deflate engines -------------------------------------------------------

ENGINES = ('isal', 'zlib')
DEFAULT_ENGINE = 'isal' if isal_zlib is not None else 'zlib'
DEFAULT_LEVEL = {'isal': 3, 'zlib': 1}
# Deflate workers of the package writer (ISA-L only; 1 = no threads).
DEFAULT_THREADS = min(2, os.cpu_count() or 1)


def _compressor(engine, level):
    engine = engine or DEFAULT_ENGINE
    module = isal_zlib if engine == 'isal' else zlib
    if module is None:
        raise ValueError('deflate engine %s is not installed' % engine)
    if level is None:
        level = DEFAULT_LEVEL[engine]
    return module.compressobj(level, module.DEFLATED, 31)


def _decompressor():
    module = isal_zlib or zlib
    return module.decompressobj(31), (module.error,)


# -- tar headers -------------------------------------------------------------

def _octal(value, width):
    return ('%0*o' % (width - 1, value)).encode() + b'\0'


def _tar_size_field(size):
    if size < 8 ** 11:
        return _octal(size, 12)
    # GNU base-256 for members of 8 GiB and more (GNU tar, bsdtar and
    # Python's tarfile read it).
    return b'\x80' + size.to_bytes(11, 'big')


def tar_header(name, size, mtime, directory=False):
    """A GNU tar header block for a regular file or a directory."""
    header = bytearray(TAR_BLOCK)
    encoded = name.encode('ascii')
    if len(encoded) > 99:
        raise ValueError('member name too long: %s' % name)
    header[0:len(encoded)] = encoded
    header[100:108] = _octal(0o755 if directory else 0o644, 8)
    header[108:116] = _octal(0, 8)
    header[116:124] = _octal(0, 8)
    header[124:136] = _tar_size_field(size)
    header[136:148] = _octal(int(mtime), 12)
    header[148:156] = b' ' * 8
    header[156:157] = b'5' if directory else b'0'
    header[257:265] = b'ustar  \0'
    header[265:269] = b'root'
    header[297:301] = b'root'
    header[148:156] = ('%06o' % sum(header)).encode() + b'\0 '
    return bytes(header)


def _padding(size):
    return bytes(-size % TAR_BLOCK)


# -- writing -----------------------------------------------------------------

class _Tee:
    """A file-like over ``source`` that hands every byte read to ``sink``."""

    def __init__(self, source, sink):
        self._source = source
        self._sink = sink

    def read(self, size):
        data = self._source.read(size)
        if data:
            self._sink(data)
        return data


class _Gzip:
    """Gzip output accumulated between pulls, one thread."""

    def __init__(self, engine, level):
        self._compressor = _compressor(engine, level)
        self.pending = []
        self.raw_bytes = 0

    def write(self, data):
        self.raw_bytes += len(data)
        out = self._compressor.compress(data)
        if out:
            self.pending.append(out)

    def finish(self):
        self.pending.append(self._compressor.flush())

    def take(self):
        out, self.pending = self.pending, []
        return out

    def close(self):
        pass


_DEFLATE_WINDOW = 32768
_PARALLEL_CHUNK = 1 << 20
# ISA-L's memLevel 2 (a small level buffer): 0.5-1 % smaller output than
# the default at level 3 on disk images, at the same speed (measured,
# doc/benchmarks-vhd.md).
_MEM_LEVEL = 2


_SAMPLE = 4096
_STORED_MAX = 65535


def _incompressible(data):
    """Whether four 4 KiB samples of ``data`` all fail to shrink by 2 %."""
    if len(data) < 8 * _SAMPLE:
        return False
    step = len(data) // 4
    for start in range(0, 4 * step, step):
        sample = data[start:start + _SAMPLE]
        if len(isal_zlib.compress(sample, 1, -15)) < 0.98 * _SAMPLE:
            return False
    return True


def _stored_blocks(data):
    """``data`` as deflate stored blocks (the stream is byte aligned)."""
    view = memoryview(data)
    parts = []
    for start in range(0, len(view), _STORED_MAX):
        piece = view[start:start + _STORED_MAX]
        parts.append(struct.pack('<BHH', 0, len(piece),
                                 len(piece) ^ 0xFFFF))
        parts.append(piece)
    return b''.join(parts)


def _deflate_chunk(level, data, zdict):
    """Raw deflate of one chunk ending on a byte boundary, and its CRC.

    The chunk is deflated with the public ``compressobj`` of ISA-L, primed
    with the previous chunk's last 32 KiB (``zdict``), and ends with a
    sync flush: a non-final stream aligned on a byte, so the chunks join
    into one gzip member (readers that take only one member, such as
    Python's ``tarfile`` in stream mode, read it).  ISA-L releases the GIL
    while it compresses and computes the CRC.  Chunks of random-looking
    data (encrypted or already compressed files) are stored as they are:
    deflate would spend most of its time on them for nothing.
    """
    if _incompressible(data):
        return _stored_blocks(data), isal_zlib.crc32(data)
    if len(zdict):
        compressor = isal_zlib.compressobj(
            level, isal_zlib.DEFLATED, -15, _MEM_LEVEL,
            isal_zlib.Z_DEFAULT_STRATEGY, zdict=bytes(zdict))
    else:
        compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15,
                                           _MEM_LEVEL)
    out = compressor.compress(data) + compressor.flush(isal_zlib.Z_SYNC_FLUSH)
    return out, isal_zlib.crc32(data)


class _ParallelGzip:
    """Gzip made of independently deflated 1 MiB chunks (like pigz).

    Each chunk is deflated with the previous chunk's last 32 KiB as its
    dictionary, so the ratio is that of one stream; chunks are compressed
    by ``threads`` workers and come out in order.  At most ``2 * threads``
    chunks are in flight: memory stays bounded.
    """

    def __init__(self, level, threads):
        self._level = DEFAULT_LEVEL['isal'] if level is None else level
        self._pool = futures.ThreadPoolExecutor(
            threads, thread_name_prefix='rax-glance-deflate')
        self._threads = threads
        self._in_flight = collections.deque()
        self._buffer = bytearray()
        self._previous = b''
        self._crc = 0
        self.raw_bytes = 0
        self.pending = [b'\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff']

    def write(self, data):
        view = memoryview(data).cast('B')
        self.raw_bytes += len(view)
        if self._buffer:
            take = _PARALLEL_CHUNK - len(self._buffer)
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) < _PARALLEL_CHUNK:
                return
            self._submit(bytes(self._buffer))
            self._buffer = bytearray()
        # Whole chunks straight from the caller's buffer (one copy).
        while len(view) >= _PARALLEL_CHUNK:
            self._submit(view[:_PARALLEL_CHUNK].tobytes())
            view = view[_PARALLEL_CHUNK:]
        self._buffer += view

    def _submit(self, chunk):
        zdict = memoryview(self._previous)[-_DEFLATE_WINDOW:]
        self._previous = chunk
        self._in_flight.append((self._pool.submit(
            _deflate_chunk, self._level, chunk, zdict), len(chunk)))
        while len(self._in_flight) > 2 * self._threads:
            self._collect()

    def _collect(self):
        future, length = self._in_flight.popleft()
        compressed, crc = future.result()
        self._crc = isal_zlib.crc32_combine(self._crc, crc, length)
        self.pending.append(compressed)

    def finish(self):
        if self._buffer:
            self._submit(bytes(self._buffer))
            self._buffer = bytearray()
        while self._in_flight:
            self._collect()
        self.pending.append(isal_zlib.compress(b'', wbits=-15))
        self.pending.append(struct.pack('<II', self._crc,
                                        self.raw_bytes & 0xFFFFFFFF))
        self.close()

    def take(self):
        out, self.pending = self.pending, []
        return out

    def close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)


def _gzip_writer(engine, level, threads):
    engine = engine or DEFAULT_ENGINE
    if threads is None:
        threads = DEFAULT_THREADS
    if engine == 'isal' and threads > 1:
        return _ParallelGzip(level, threads)
    return _Gzip(engine, level)


def _package_chunks(members, engine, level, mtime, threads=None):
    """Gzipped tar chunks; ``members`` gives ``(name, size, pump)``.

    ``pump(write)`` must pass exactly ``size`` bytes to ``write`` (in
    pieces) and may yield between pieces so output flows out.
    """
    gz = _gzip_writer(engine, level, threads)
    try:
        yield from _tar_stream(gz, members, mtime)
    finally:
        gz.close()


def _tar_stream(gz, members, mtime):
    gz.write(tar_header('./', 0, mtime, directory=True))
    for name, size, pump in members:
        gz.write(tar_header('./' + name, size, mtime))
        before = gz.raw_bytes
        for _ in pump(gz.write):
            if gz.pending:
                yield from gz.take()
        if gz.raw_bytes - before != size:
            raise errors.StructureError('%s gave %d bytes, expected %d'
                                        % (name, gz.raw_bytes - before, size))
        gz.write(_padding(size))
    gz.write(bytes(2 * TAR_BLOCK))
    gz.write(bytes(-gz.raw_bytes % TAR_RECORD))
    gz.finish()
    yield from gz.take()


def _validating_pump(source, size, limits, check_windows, info):
    """Pump ``source`` through the VHD validator (and Windows check)."""
    def pump(write):
        reader = vhd_reader.StreamReader(_Tee(source, write), size, limits)
        reader.open()
        yield
        extents = reader.extents()
        if check_windows:
            extents = windows.check_extents(extents)
        for _ in extents:
            yield
        info.update(reader.info())
    return pump


def pack_single_vhd(source, size, limits=None, check_windows=True,
                    engine=None, level=None, mtime=None, info=None,
                    threads=None):
    """The import package of one uploaded VHD, validated in the same pass.

    ``source`` is a file-like with ``read(n)`` (need not seek) holding
    ``size`` bytes.  Returns a file-like (:class:`IterStream`) whose reads
    produce the gzipped tar holding ``0.vhd`` (the uploaded bytes
    unchanged) and raise the typed error of the first defect found.  When
    reading completes, ``info`` (a dict, if given) holds the validator's
    summary.  Memory is bounded by a couple of VHD blocks.
    """
    limits = limits or validate.Limits()
    if info is None:
        info = {}
    pump = _validating_pump(source, size, limits, check_windows, info)
    mtime = time.time() if mtime is None else mtime
    return vhd_content.IterStream(
        _package_chunks([('0.vhd', size, pump)], engine, level, mtime,
                        threads))


def _file_pump(fileobj, size):
    def pump(write):
        remaining = size
        while remaining:
            data = fileobj.read(min(_READ_SIZE, remaining))
            if not data:
                raise errors.StructureError('file shrank while packing')
            write(data)
            remaining -= len(data)
            yield
    return pump


def pack_files(paths, out, engine=None, level=None, check=True,
               progress=None, threads=None):
    """Write a package of VHD files (leaf first) to the file-like ``out``.

    With ``check`` the files must form a valid chain (see
    :mod:`rax_glance.vhd.coalesce`).  ``progress(done_bytes)`` is called as
    input is read.
    """
    if check:
        chain = coalesce.open_chain(paths)
        for disk in chain:
            disk.close()
    files = [open(path, 'rb') for path in paths]
    try:
        members = []
        for number, fileobj in enumerate(files):
            size = os.fstat(fileobj.fileno()).st_size
            members.append(('%d.vhd' % number, size, _file_pump(fileobj,
                                                                 size)))
        done = 0
        for chunk in _package_chunks(members, engine, level, time.time(),
                                     threads):
            out.write(chunk)
            if progress is not None:
                done = sum(f.tell() for f in files)
                progress(done)
    finally:
        for fileobj in files:
            fileobj.close()


# -- reading -----------------------------------------------------------------

class _Inflater:
    """Bounded gunzip of a stream (several gzip members allowed).

    Output is produced in pieces of at most ``_READ_SIZE`` bytes, so a
    highly compressed stream never inflates into memory at once.
    """

    def __init__(self, fileobj, max_total, max_ratio=0):
        self._file = fileobj
        self._max_total = max_total
        self._max_ratio = max_ratio
        self._read_in = 0
        self._decompressor, self._errors = _decompressor()
        self._unconsumed = b''
        self._chunks = collections.deque()
        self._offset = 0
        self._ended = False
        self.total = 0

    def _inflate_some(self):
        """Inflate one piece; returns False at the end of the input."""
        if not self._unconsumed:
            self._unconsumed = self._file.read(_READ_SIZE)
            self._read_in += len(self._unconsumed)
            if not self._unconsumed:
                if not self._decompressor.eof:
                    raise errors.PackageError(
                        'gzip stream is truncated' if self.total
                        else 'empty package', self.total)
                return False
            if self._decompressor.eof:
                self._start_member()
                if not self._unconsumed:
                    return True
        try:
            out = self._decompressor.decompress(self._unconsumed, _READ_SIZE)
        except self._errors as exc:
            raise errors.PackageError('not a valid gzip stream: %s' % exc,
                                      self.total) from None
        self.total += len(out)
        if self.total > self._max_total:
            raise errors.PackageError('package inflates to more than %d '
                                      'bytes' % self._max_total, self.total)
        if self._max_ratio and self.total > self._max_ratio * max(self._read_in, _READ_SIZE):
            raise errors.PackageError('package inflates to more than %d times its size'
                                      % self._max_ratio, self.total)
        if out:
            self._chunks.append(out)
        if self._decompressor.eof:
            self._unconsumed = self._decompressor.unused_data
            self._start_member()
        else:
            self._unconsumed = self._decompressor.unconsumed_tail
        return True

    def _start_member(self):
        # Another gzip member may follow; zero padding may end the stream.
        rest = self._unconsumed
        if rest and rest[:1] != b'\x1f':
            if rest.strip(b'\0') or self._file.read(_READ_SIZE).strip(b'\0'):
                raise errors.PackageError('garbage after the gzip stream',
                                          self.total)
            self._unconsumed = b''
            return
        if rest:
            self._decompressor, self._errors = _decompressor()

    def read(self, size):
        """Up to ``size`` bytes (fewer only at a piece border or the end)."""
        while not self._chunks and not self._ended:
            if not self._inflate_some():
                self._ended = True
        if not self._chunks:
            return b''
        first = self._chunks[0]
        take = min(size, len(first) - self._offset)
        if self._offset == 0 and take == len(first):
            self._chunks.popleft()
            return first            # no copy for whole pieces
        out = first[self._offset:self._offset + take]
        self._offset += take
        if self._offset == len(first):
            self._chunks.popleft()
            self._offset = 0
        return out

    def read_exact(self, size):
        """``size`` bytes, or fewer only at the end of the stream."""
        return _read_exact(self, size)


@dataclasses.dataclass
class Member:
    """A regular file of the package; read ``stream`` before moving on."""

    name: str
    size: int
    stream: object


class _MemberStream:
    """Exactly ``size`` bytes of the tar stream."""

    def __init__(self, tar, size):
        self._tar = tar
        self.remaining = size

    def read(self, size=-1):
        if size is None or size < 0:
            return b''.join(iter(lambda: self.read(_READ_SIZE), b''))
        size = min(size, self.remaining)
        if not size:
            return b''
        data = self._tar.read(min(size, _READ_SIZE))
        if not data:
            raise errors.PackageError('package ends inside a member')
        self.remaining -= len(data)
        return data

    def skip(self):
        while self.remaining:
            self.read(_READ_SIZE)


def _parse_number(field, what):
    field = bytes(field)
    if field[:1] in (b'\x80', b'\xff'):
        if field[0] == 0xFF:
            raise errors.PackageError('negative %s in a tar header' % what)
        return int.from_bytes(field[1:], 'big')
    text = field.split(b'\0', 1)[0].strip(b' ')
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise errors.PackageError('bad %s field %r in a tar header'
                                  % (what, field)) from None


def _parse_pax(data):
    records = {}
    position = 0
    while position < len(data):
        space = data.find(b' ', position)
        if space < 0:
            break
        try:
            length = int(data[position:space])
        except ValueError:
            raise errors.PackageError('bad pax record') from None
        if length <= 0 or position + length > len(data):
            raise errors.PackageError('bad pax record length')
        record = data[space + 1:position + length - 1]
        key, sep, value = record.partition(b'=')
        if not sep:
            raise errors.PackageError('bad pax record')
        records[key.decode('ascii', 'replace')] = value
        position += length
    return records


def _member_name(raw_name):
    """The bare member name, or raise for anything but a plain file name."""
    try:
        name = raw_name.decode('ascii')
    except UnicodeDecodeError:
        raise errors.PackageError('non-ASCII member name %r'
                                  % raw_name) from None
    if name.startswith('/'):
        raise errors.PackageError('absolute member path %r' % name)
    parts = [p for p in name.split('/') if p not in ('', '.')]
    if '..' in parts:
        raise errors.PackageError('member path with ".." %r' % name)
    if len(parts) > 1:
        raise errors.PackageError('member in a subdirectory %r' % name)
    return parts[0] if parts else ''


def iter_members(fileobj, limits=None):
    """Regular members of a package stream, checked as they come.

    Yields :class:`Member` objects; a member's stream must be read (or is
    skipped) before the next one comes.  Refuses links, devices, absolute
    paths, ``..``, subdirectories, unexpected names, duplicates, too many
    or too big members and inflating past the total limit.  Checks the
    completed set of names (no gaps, no mixing of old and new names) at the
    end.
    """
    limits = limits or PackageLimits()
    tar = _Inflater(fileobj, limits.max_total_size, limits.max_inflate_ratio)
    seen = set()
    count = 0
    pax = {}
    position = 0
    while True:
        header = tar.read_exact(TAR_BLOCK)
        if len(header) < TAR_BLOCK:
            raise errors.PackageError('package ends without a tar end '
                                      'marker', position)
        position += TAR_BLOCK
        if not any(header):
            _check_end(tar, position)
            break
        stored = _parse_number(header[148:156], 'checksum')
        block = bytearray(header)
        block[148:156] = b' ' * 8
        unsigned = sum(block)
        signed = unsigned - 256 * sum(1 for b in block if b > 127)
        if stored not in (unsigned, signed):
            raise errors.PackageError('bad tar header checksum', position)
        kind = header[156:157]
        size = _parse_number(header[124:136], 'size')
        if 'size' in pax:
            try:
                size = int(pax['size'])
            except ValueError:
                raise errors.PackageError('bad pax size', position) from None
        if kind in (b'x',):
            if size > limits.max_pax_size:
                raise errors.PackageError('pax header of %d bytes' % size,
                                          position)
            data = tar.read_exact(size + len(_padding(size)))
            position += len(data)
            pax = _parse_pax(data[:size])
            continue
        raw_name = header[0:100].split(b'\0', 1)[0]
        if header[257:263] == b'ustar\0' and header[345]:
            raw_name = header[345:500].split(b'\0', 1)[0] + b'/' + raw_name
        if 'path' in pax:
            raw_name = pax['path']
        pax = {}
        name = _member_name(raw_name)
        if kind == b'5':
            if name or size:
                raise errors.PackageError('unexpected directory %r'
                                          % raw_name, position)
            continue
        if kind not in (b'0', b'\0', b'7'):
            raise errors.PackageError(
                'member %r is not a regular file (type %r)'
                % (raw_name, kind), position)
        if not (_NUMBERED.match(name) or name in LEGACY_CHAIN
                or name in IGNORED_MEMBERS):
            raise errors.PackageError('unexpected member %r' % name,
                                      position)
        if name in seen:
            raise errors.PackageError('duplicate member %r' % name, position)
        seen.add(name)
        count += 1
        if count > limits.max_members:
            raise errors.PackageError('more than %d members'
                                      % limits.max_members, position)
        if size > limits.max_member_size:
            raise errors.PackageError('member %r declares %d bytes, over %d'
                                      % (name, size, limits.max_member_size),
                                      position)
        stream = _MemberStream(tar, size)
        if name not in IGNORED_MEMBERS:
            yield Member(name, size, stream)
        stream.skip()
        padding = len(_padding(size))
        if padding and len(tar.read_exact(padding)) != padding:
            raise errors.PackageError('package ends inside a member')
        position += size + padding
    chain_names(seen, limits)


def _check_end(tar, position):
    while True:
        rest = tar.read(_READ_SIZE)
        if not rest:
            return
        if any(rest):
            raise errors.PackageError('data after the tar end marker',
                                      position)


def chain_names(names, limits=None):
    """The chain's member names, leaf first; raise for a bad set."""
    limits = limits or PackageLimits()
    names = set(names) - set(IGNORED_MEMBERS)
    if not names:
        raise errors.PackageError('package holds no VHD')
    legacy = names & set(LEGACY_CHAIN)
    if legacy:
        if legacy != names:
            raise errors.PackageError('package mixes old and new member '
                                      'names')
        return [name for name in LEGACY_CHAIN if name in names]
    numbers = sorted(int(name[:-4]) for name in names)
    if numbers != list(range(len(numbers))):
        raise errors.PackageError('numbered members have gaps: %s'
                                  % ', '.join(sorted(names)))
    if len(numbers) > limits.max_chain_depth:
        raise errors.PackageError('chain of %d disks is too deep'
                                  % len(numbers))
    return ['%d.vhd' % n for n in numbers]


def unpack(fileobj, directory, limits=None, progress=None):
    """Extract a package into ``directory``; returns chain paths, leaf first.

    Only checked member names are ever written. Members go to a private
    temporary directory inside ``directory`` first and are moved in (never
    over an existing file) only once the whole package has been checked: a
    refused package leaves nothing behind.
    """
    staging = tempfile.mkdtemp(prefix='.rax-unpack-', dir=directory)
    moved = []
    try:
        written = []
        for member in iter_members(fileobj, limits):
            path = os.path.join(staging, member.name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            written.append(member.name)
            with os.fdopen(fd, 'wb') as out:
                while True:
                    data = member.stream.read(_READ_SIZE)
                    if not data:
                        break
                    out.write(data)
                    if progress is not None:
                        progress(len(data))
        names = chain_names(written)
        for name in written:
            target = os.path.join(directory, name)
            _move_new(os.path.join(staging, name), target)
            moved.append(target)
    except BaseException:
        for target in moved:
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [os.path.join(directory, name) for name in names]


def _move_new(source, target):
    """Move ``source`` to ``target``, never replacing an existing file."""
    try:
        os.link(source, target)   # atomic, and fails when target exists
    except FileExistsError:
        raise errors.PackageError('%s already exists'
                                  % os.path.basename(target)) from None
    except OSError:               # a file system without hard links
        if os.path.lexists(target):
            raise errors.PackageError('%s already exists'
                                      % os.path.basename(target)) from None
        os.rename(source, target)


# -- export ------------------------------------------------------------------

def export_stream(fileobj, tmpdir=None, limits=None, vhd_limits=None):
    """One dynamic VHD of the package's (coalesced) chain, as a stream.

    Returns an :class:`~rax_glance.vhd.content.IterStream` whose ``size`` is
    known.  Reading it may still raise typed errors (the rest of the
    package is checked as it streams).  Chains are spooled under
    ``tmpdir`` (a private directory, removed when the stream is exhausted
    or closed, or on error).
    """
    limits = limits or PackageLimits()
    vhd_limits = vhd_limits or validate.UNLIMITED
    members = iter_members(fileobj, limits)
    first = next(members, None)
    if first is None:
        raise errors.PackageError('package holds no VHD')
    prefix = _read_exact(first.stream, fmt.FOOTER_SIZE + fmt.HEADER_SIZE)
    stream = _Prefixed(prefix, first.stream)
    if first.name == '0.vhd' and _streamable(prefix):
        reader = vhd_reader.StreamReader(stream, first.size,
                                         vhd_limits).open()
        if reader.disk_type == fmt.DISK_DYNAMIC:
            content = vhd_content.StreamedVHDContent(reader)
            return _single_export(content, first.name, members)
    return _spooled_export(first.name, stream, members, tmpdir, vhd_limits)


def export_image(fileobj, size, container_format, disk_format, tmpdir=None,
                 limits=None, vhd_limits=None):
    """Any stored image as one dynamic VHD stream (what export uploads).

    ``ovf``/``vhd`` is a XenServer package (:func:`export_stream`); a
    ``bare`` ``vhd`` or ``raw`` image of ``size`` bytes is converted.
    """
    if container_format == 'ovf':
        return export_stream(fileobj, tmpdir, limits, vhd_limits)
    if container_format == 'bare' and disk_format in ('vhd', 'raw'):
        source = vhd_content.content_from_stream(
            fileobj, size, disk_format, tmpdir,
            vhd_limits or validate.UNLIMITED)
        return vhd_content.dynamic_stream(source)
    raise errors.PackageError('cannot export a %s image in a %s container'
                              % (disk_format, container_format))


def _read_exact(stream, size):
    parts = []
    while size:
        data = stream.read(size)
        if not data:
            break
        parts.append(data)
        size -= len(data)
    return b''.join(parts)


def _streamable(prefix):
    """A dynamic disk with its header at 512 and 2 MiB blocks."""
    if len(prefix) < fmt.FOOTER_SIZE + fmt.HEADER_SIZE:
        return False
    footer = fmt.Footer.parse(prefix[:fmt.FOOTER_SIZE])
    header = fmt.DynamicHeader.parse(prefix[fmt.FOOTER_SIZE:])
    return (footer.cookie == fmt.FOOTER_COOKIE
            and footer.disk_type == fmt.DISK_DYNAMIC
            and footer.data_offset == fmt.FOOTER_SIZE
            and header.block_size == fmt.DEFAULT_BLOCK_SIZE)


class _Prefixed:
    """``prefix`` then the rest of ``stream``."""

    def __init__(self, prefix, stream):
        self._prefix = prefix
        self._stream = stream

    def read(self, size=-1):
        if self._prefix:
            if size is None or size < 0:
                size = len(self._prefix)
            out, self._prefix = self._prefix[:size], self._prefix[size:]
            return out
        return self._stream.read(size)


def _single_export(content, name, members):
    vhd = vhd_content.dynamic_stream(content)

    def chunks():
        yield from vhd
        for extra in members:
            raise errors.PackageError('%s is a stand-alone disk but the '
                                      'package also holds %s'
                                      % (name, extra.name))
    return vhd_content.IterStream(chunks(), vhd.size)


def _spooled_export(first_name, first_stream, members, tmpdir, vhd_limits):
    directory = tempfile.mkdtemp(prefix='rax-glance-export-', dir=tmpdir)
    content = None
    try:
        names = [first_name]
        _spool(first_stream, os.path.join(directory, first_name))
        for member in members:
            _spool(member.stream, os.path.join(directory, member.name))
            names.append(member.name)
        paths = [os.path.join(directory, name) for name in chain_names(names)]
        content = coalesce.ChainContent(coalesce.open_chain(paths,
                                                            vhd_limits))
        vhd = vhd_content.dynamic_stream(content)
    except BaseException:
        if content is not None:
            content.close()
        shutil.rmtree(directory, ignore_errors=True)
        raise

    def chunks():
        try:
            yield from vhd
        finally:
            content.close()
            shutil.rmtree(directory, ignore_errors=True)
    return vhd_content.IterStream(chunks(), vhd.size)


def _spool(stream, path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'wb') as out:
        while True:
            data = stream.read(_READ_SIZE)
            if not data:
                break
            out.write(data)


def check_package(fileobj, limits=None, vhd_limits=None):
    """Validate a package stream: every member and the chain's links.

    One pass, nothing written to disk.  Returns a summary dict.
    """
    vhd_limits = dataclasses.replace(vhd_limits or validate.UNLIMITED,
                                     allow_differencing=True)
    found = {}
    for member in iter_members(fileobj, limits):
        # Hidden is only a defect on the leaf: checked below.
        reader = vhd_reader.StreamReader(member.stream, member.size,
                                         vhd_limits, leaf=False)
        reader.validate()
        found[member.name] = (reader, bool(reader.footer.hidden))
    names = chain_names(found)
    for position, name in enumerate(names):
        reader, hidden = found[name]
        footer = reader.footer
        is_base = position == len(names) - 1
        if position == 0 and hidden:
            raise errors.ChainError('leaf %s is marked hidden' % name)
        if footer.disk_type == fmt.DISK_DIFFERENCING:
            if is_base:
                raise errors.ChainError('missing parent of %s' % name)
            parent = found[names[position + 1]][0].footer
            if reader.header.parent_unique_id != parent.unique_id:
                raise errors.ChainError('parent id of %s does not match the '
                                        'unique id of %s'
                                        % (name, names[position + 1]))
        elif not is_base:
            raise errors.ChainError('%s is not a differencing disk but has '
                                    'a parent in the chain' % name)
    ids = [found[name][0].footer.unique_id for name in names]
    if len(set(ids)) != len(ids):
        raise errors.ChainError('cycle: a unique id appears twice')
    return {'format': 'package', 'members': names,
            'virtual_size': found[names[0]][0].virtual_size,
            'disks': [found[name][0].info() for name in names]}
