"""rax-glance-vhd: inspect, check, convert, coalesce and package VHDs.

    rax-glance-vhd inspect [--json] FILE
    rax-glance-vhd check [--json] [limits] FILE
    rax-glance-vhd convert --to raw|vhd-dynamic|vhd-fixed IN OUT
    rax-glance-vhd coalesce OUT LEAF [PARENT ...] BASE
    rax-glance-vhd pack OUT.tgz VHD...          (leaf first)
    rax-glance-vhd unpack PACKAGE DIR

``-`` means standard input (IN, FILE, PACKAGE) or output (OUT).  Inputs are
detected: a XenServer image package (gzip), a VHD, or else raw data.

Exit status: 0 success (``check``: valid); 1 the image is invalid (the
Cloud Images code and message are printed; ``check --json`` prints
``{"valid": false, "code": N, "message": "...", "detail": "...",
"offset": N}``, and ``{"valid": true, ...}`` with a summary when valid);
2 usage or I/O errors.  A progress bar goes to stderr when it is a
terminal.
"""

import argparse
import collections
import contextlib
import json
import os
import queue
import shutil
import stat
import struct
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures

from rax_glance import cmd
from rax_glance import errors
from rax_glance import ova
from rax_glance import windows
from rax_glance.vhd import coalesce
from rax_glance.vhd import content as vhd_content
from rax_glance.vhd import format as fmt
from rax_glance.vhd import reader as vhd_reader
from rax_glance.vhd import validate

GIB = 1 << 30
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = cmd.EXIT_BROKEN_PIPE


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total, label, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = bool(total) and self.stream.isatty()
        self.total = total
        self.label = label
        self.done = 0
        self.started = time.monotonic()
        self._last = 0.0

    def advance(self, count):
        self.update(self.done + count)

    def update(self, done):
        self.done = done
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.2:
            return
        self._last = now
        fraction = min(1.0, done / self.total)
        rate = done / max(now - self.started, 1e-6) / (1 << 20)
        bar = '#' * int(fraction * 30)
        self.stream.write('\r%s [%-30s] %3d%% %7.1f MiB/s'
                          % (self.label, bar, fraction * 100, rate))
        self.stream.flush()

    def close(self):
        if self.enabled:
            self._last = 0.0
            self.update(self.total)
            self.stream.write('\n')
            self.stream.flush()


class _CountingReader:
    """Reads from ``fileobj`` and reports progress."""

    def __init__(self, fileobj, progress):
        self._file = fileobj
        self._progress = progress

    def read(self, size=-1):
        data = self._file.read(size)
        self._progress.advance(len(data))
        return data


@contextlib.contextmanager
def _input(path, tmpdir=None):
    """``(fileobj, size, seekable)``; a stdin pipe is spooled to a file."""
    if path == '-':
        stdin = sys.stdin.buffer
        if stat.S_ISREG(os.fstat(stdin.fileno()).st_mode):
            yield stdin, os.fstat(stdin.fileno()).st_size, True
            return
        with tempfile.TemporaryFile(dir=tmpdir) as spool:
            shutil.copyfileobj(stdin, spool, 1 << 20)
            size = spool.tell()
            spool.seek(0)
            yield spool, size, True
        return
    with open(path, 'rb') as fileobj:
        yield fileobj, os.fstat(fileobj.fileno()).st_size, True


def _seekable(fileobj):
    try:
        return fileobj.seekable()
    except (AttributeError, OSError):
        return False


@contextlib.contextmanager
def _output(path):
    if path == '-':
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with open(path, 'wb') as out:
        yield out


def detect_format(fileobj, size):
    """``package``, ``vhd`` or ``raw`` for a seekable file."""
    fileobj.seek(0)
    head = fileobj.read(fmt.FOOTER_SIZE)
    fileobj.seek(0)
    if head[:2] == b'\x1f\x8b':
        return 'package'
    if head[:8] == fmt.FOOTER_COOKIE:
        return 'vhd'
    length = validate.footer_length(size)
    if length and size >= fmt.FOOTER_SIZE:
        fileobj.seek(size - length)
        tail = fileobj.read(8)
        fileobj.seek(0)
        if tail == fmt.FOOTER_COOKIE:
            return 'vhd'
    return 'raw'


def _limits(args):
    return validate.Limits(
        max_virtual_size=int(args.max_virtual_size * GIB),
        max_physical_size=int(args.max_physical_size * GIB),
        allow_differencing=args.allow_differencing)


# -- commands -----------------------------------------------------------------

def cmd_check(args):
    limits = _limits(args)
    with _input(args.file, args.tmpdir) as (fileobj, size, _):
        kind = detect_format(fileobj, size)
        progress = Progress(size, 'check')
        source = _CountingReader(fileobj, progress)
        try:
            if kind == 'package':
                info = ova.check_package(source, vhd_limits=limits)
            elif not progress.enabled and _regular_file(fileobj):
                # Read by position: gaps between blocks and the holes of
                # a sparse file are skipped, not read.
                info = _check_vhd(fileobj, size, limits, args.windows,
                                  file_input=True)
            else:
                info = _check_vhd(source, size, limits, args.windows)
        except errors.ImageError as exc:
            progress.close()
            _report_invalid(args, exc)
            return EXIT_INVALID
        progress.close()
    if args.json:
        print(json.dumps(dict(valid=True, **info), sort_keys=True))
    else:
        print('valid: %s disk, virtual size %d bytes'
              % (info.get('format'), info.get('virtual_size') or 0))
        for warning in info.get('warnings', []):
            print('warning: %s' % warning)
    return 0


def _regular_file(fileobj):
    try:
        return stat.S_ISREG(os.fstat(fileobj.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        return False


def _read_ahead(items, depth=4):
    """``items`` produced by a thread, ``depth`` ahead of the consumer.

    Reading a file by position releases the GIL: the next extents are read
    while this thread judges the last ones.  What the producer raises is
    raised here, in order; closing the generator stops the producer.
    """
    slots = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def offer(entry):
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not offer((item, None)):
                    return
        except BaseException as exc:    # handed to the consumer
            offer((done, exc))
            return
        offer((done, None))

    thread = threading.Thread(target=produce, name='rax-glance-vhd-read',
                              daemon=True)
    thread.start()
    try:
        while True:
            item, exc = slots.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        thread.join()


_READ_AHEAD = 4


def _check_vhd(source, size, limits, windows_rule, file_input=False):
    # Read ahead from a file: buffers are recycled once the read-ahead
    # queue, the item being read and the one being judged are past them
    # (the Windows detector copies what it keeps); fresh 2 MiB buffers
    # freed by another thread cost a page fault per 4 KiB.
    reader = vhd_reader.StreamReader(
        source, size, limits, file_input=file_input,
        reuse_buffers=_READ_AHEAD + 3 if file_input else 0)
    detector = windows.WindowsDetector()
    extents = reader.extents()
    if file_input:
        extents = _read_ahead(extents, _READ_AHEAD)
    for offset, data in extents:
        try:
            detector.feed(offset, data)
        except errors.WindowsImageError:
            if windows_rule == 'reject':
                raise
    try:
        detector.finish()
    except errors.WindowsImageError:
        if windows_rule == 'reject':
            raise
    info = reader.info()
    info['windows'] = detector.windows
    return info


def _report_invalid(args, exc):
    if args.json:
        print(json.dumps({'valid': False, 'code': exc.code,
                          'message': exc.message, 'detail': exc.detail,
                          'offset': exc.offset}, sort_keys=True))
    else:
        print('invalid: %s' % exc.describe())
        print(exc.message)


def cmd_inspect(args):
    with _input(args.file, args.tmpdir) as (fileobj, size, _):
        info = inspect_file(fileobj, size)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    for section in ('footer', 'header', 'bat'):
        if section in info:
            print('%s:' % section)
            for key, value in info[section].items():
                print('  %-20s %s' % (key, value))
    for key in ('format', 'file_size', 'note'):
        if key in info:
            print('%s: %s' % (key, info[key]))
    return 0


def _footer_info(footer):
    return {
        'cookie': footer.cookie.decode('latin-1'),
        'features': '0x%08x' % footer.features,
        'version': '0x%08x' % footer.version,
        'data_offset': footer.data_offset,
        'timestamp': footer.timestamp,
        'creator_app': footer.creator_app.decode('latin-1'),
        'creator_version': '0x%08x' % footer.creator_version,
        'creator_os': footer.creator_os.decode('latin-1'),
        'original_size': footer.original_size,
        'current_size': footer.current_size,
        'geometry': '%d/%d/%d' % footer.geometry,
        'disk_type': fmt.DISK_TYPE_NAMES.get(footer.disk_type,
                                             str(footer.disk_type)),
        'checksum': '0x%08x' % footer.checksum,
        'checksum_ok': footer.checksum == footer.computed_checksum,
        'unique_id': str(footer.unique_uuid),
        'saved_state': footer.saved_state,
        'hidden': footer.hidden,
    }


def inspect_file(fileobj, size):
    """What the file's metadata says, without judging it (see ``check``)."""
    kind = detect_format(fileobj, size)
    info = {'format': kind, 'file_size': size}
    if kind != 'vhd':
        info['note'] = 'not a VHD; use "check" on packages'
        return info
    length = validate.footer_length(size) or fmt.FOOTER_SIZE
    fileobj.seek(size - length)
    trailing = fmt.Footer.parse(fileobj.read(length))
    fileobj.seek(0)
    copy = fmt.Footer.parse(fileobj.read(fmt.FOOTER_SIZE))
    footer = trailing if trailing.cookie == fmt.FOOTER_COOKIE else copy
    info['footer'] = _footer_info(footer)
    if footer.disk_type == fmt.DISK_FIXED or copy.cookie != (
            fmt.FOOTER_COOKIE):
        return info
    info['footer']['copy_matches'] = copy.raw[:length] == trailing.raw[
        :length]
    fileobj.seek(copy.data_offset)
    header = fmt.DynamicHeader.parse(
        fileobj.read(fmt.HEADER_SIZE).ljust(fmt.HEADER_SIZE, b'\0'))
    info['header'] = {
        'cookie': header.cookie.decode('latin-1'),
        'table_offset': header.table_offset,
        'version': '0x%08x' % header.version,
        'max_table_entries': header.max_table_entries,
        'block_size': header.block_size,
        'checksum_ok': header.checksum == header.computed_checksum,
        'parent_unique_id': str(uuid.UUID(
            bytes=header.parent_unique_id)),
        'parent_name': header.decoded_parent_name(),
    }
    entries = min(header.max_table_entries, 1 << 22)
    fileobj.seek(header.table_offset)
    raw = fileobj.read(entries * 4)
    allocated = [s for s in struct.unpack('>%dI' % (len(raw) // 4), raw)
                 if s != fmt.UNALLOCATED]
    info['bat'] = {
        'entries': entries,
        'allocated_blocks': len(allocated),
        'first_block_offset': min(allocated) * fmt.SECTOR if allocated
        else None,
        'last_block_offset': max(allocated) * fmt.SECTOR if allocated
        else None,
        'blocks_in_order': allocated == sorted(allocated),
    }
    return info


def _content_for(path, fileobj, size, kind, tmpdir, cleanup):
    """Writer content for any input (packages are unpacked to tmpdir)."""
    if kind == 'package':
        directory = tempfile.mkdtemp(prefix='rax-glance-vhd-', dir=tmpdir)
        cleanup.callback(shutil.rmtree, directory, True)
        paths = ova.unpack(fileobj, directory)
        chain = coalesce.open_chain(paths)
        cleanup.callback(lambda: [disk.close() for disk in chain])
        return coalesce.ChainContent(chain)
    if kind == 'raw':
        return vhd_content.RawFileContent(fileobj, size)
    return vhd_content.content_from_stream(fileobj, size, 'vhd', tmpdir,
                                           validate.UNLIMITED)


def _write(stream, out, progress):
    """Copy an IterStream to ``out``; zero chunks become holes in files.

    Only in regular files: a block device keeps what it held where a
    hole is skipped.
    """
    sparse = (out is not sys.stdout.buffer and _seekable(out)
              and _regular_file(out))
    written = 0
    for chunk in stream:
        if sparse and len(chunk) >= 4096 and fmt.is_zero(chunk):
            out.seek(len(chunk), os.SEEK_CUR)
        else:
            out.write(chunk)
        written += len(chunk)
        progress.update(written)
    if sparse:
        out.truncate(written)
    progress.close()


def cmd_convert(args):
    with contextlib.ExitStack() as cleanup:
        fileobj, size, _ = cleanup.enter_context(_input(args.input,
                                                        args.tmpdir))
        kind = args.source_format or detect_format(fileobj, size)
        out = None
        if (args.to == 'raw' and kind == 'vhd' and args.output != '-'
                and _regular_file(fileobj)):
            reader = _open_vhd_file(fileobj, size)
            out = cleanup.enter_context(_output(args.output))
            if _regular_file(out):
                _vhd_to_raw_file(reader, size, out)
                return 0
        content = _content_for(args.input, fileobj, size, kind, args.tmpdir,
                               cleanup)
        if args.to == 'raw':
            stream = vhd_content.raw_stream(content, args.tmpdir)
        elif args.to == 'vhd-fixed':
            stream = vhd_content.fixed_stream(content, args.tmpdir)
        else:
            stream = vhd_content.dynamic_stream(content)
        if out is None:
            out = cleanup.enter_context(_output(args.output))
        _write(stream, out, Progress(stream.size, 'convert'))
    return 0


def _open_vhd_file(fileobj, size):
    reader = vhd_reader.StreamReader(
        fileobj, size, validate.UNLIMITED, file_input=True,
        reuse_buffers=_WRITES_IN_FLIGHT + 2).open()
    if reader.disk_type == fmt.DISK_DIFFERENCING:
        raise errors.HasParentError('differencing disk without its parents')
    return reader


def _vhd_to_raw_file(reader, size, out):
    """A (fixed or dynamic) VHD file to a sparse raw file, in one pass.

    The VHD is read by position (holes and gaps skipped), its extents are
    written where they belong in any order, zeros stay holes: no
    temporary copy, whatever the block order.
    """
    progress = Progress(size, 'convert')
    out.flush()
    fd = out.fileno()
    # The whole size first: writes inside the file do not extend it, as
    # qemu-img does.  A fixed disk's size is confirmed by its footer at
    # the end.
    os.ftruncate(fd, reader.virtual_size if reader.virtual_size is not None
                 else size - validate.footer_length(size))
    # Writes go to two threads (os.pwrite releases the GIL) while this one
    # reads and validates the next extents: at most _WRITES_IN_FLIGHT
    # extents (a block each) are held.
    with futures.ThreadPoolExecutor(
            2, thread_name_prefix='rax-glance-vhd-write') as pool:
        pending = collections.deque()
        for offset, data in reader.extents():
            if not fmt.is_zero(data):
                # Held for up to _WRITES_IN_FLIGHT more items: the
                # reader recycles a buffer only after more.
                pending.append(pool.submit(_pwrite_all, fd, data, offset))
                while len(pending) >= _WRITES_IN_FLIGHT:
                    pending.popleft().result()
            progress.update(reader.position)
        while pending:
            pending.popleft().result()
    os.ftruncate(fd, reader.virtual_size)
    progress.close()


_WRITES_IN_FLIGHT = 4


def _pwrite_all(fd, data, offset):
    view = memoryview(data).cast('B')
    while len(view):
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def cmd_coalesce(args):
    paths = [args.leaf] + args.parents
    chain = coalesce.open_chain(paths)
    content = coalesce.ChainContent(chain)
    try:
        stream = vhd_content.dynamic_stream(content)
        with _output(args.output) as out:
            _write(stream, out, Progress(stream.size, 'coalesce'))
    finally:
        content.close()
    return 0


def cmd_pack(args):
    total = sum(os.path.getsize(p) for p in args.vhds)
    progress = Progress(total, 'pack')
    with _output(args.output) as out:
        ova.pack_files(args.vhds, out, level=args.level,
                       progress=progress.update)
    progress.close()
    return 0


def _ratio(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError('must be 0 (no bound) or more')
    return value


def cmd_unpack(args):
    created = not os.path.isdir(args.directory)
    os.makedirs(args.directory, exist_ok=True)
    limits = ova.PackageLimits(max_inflate_ratio=args.max_inflate_ratio)
    try:
        with _input(args.package, args.tmpdir) as (fileobj, size, _):
            progress = Progress(size, 'unpack')
            try:
                paths = ova.unpack(_CountingReader(fileobj, progress),
                                   args.directory, limits)
            finally:
                progress.close()
    except BaseException:
        if created:  # a refused package leaves nothing behind
            with contextlib.suppress(OSError):
                os.rmdir(args.directory)
        raise
    for path in paths:
        print(path)
    return 0


def _parser():
    parser = argparse.ArgumentParser(
        prog='rax-glance-vhd', description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--tmpdir', help='where temporary files go')
    sub = parser.add_subparsers(dest='command', required=True)

    inspect = sub.add_parser('inspect', help='show footer, header and BAT')
    inspect.add_argument('--json', action='store_true')
    inspect.add_argument('file')
    inspect.set_defaults(func=cmd_inspect)

    check = sub.add_parser('check', help='validate like an import does')
    check.add_argument('--json', action='store_true')
    check.add_argument('--max-virtual-size', type=float, default=40,
                       metavar='GIB', help='default: %(default)s')
    check.add_argument('--max-physical-size', type=float, default=40,
                       metavar='GIB', help='default: %(default)s')
    check.add_argument('--allow-differencing', action='store_true',
                       help='accept a differencing disk (no code 721)')
    check.add_argument('--windows', choices=('report', 'reject'),
                       default='reject',
                       help='reject Windows disks (code 901) like an '
                            'import, or only report them in the summary')
    check.add_argument('file')
    check.set_defaults(func=cmd_check)

    convert = sub.add_parser('convert', help='convert between formats')
    convert.add_argument('--to', required=True,
                         choices=('raw', 'vhd-dynamic', 'vhd-fixed'))
    convert.add_argument('--from', dest='source_format',
                         choices=('raw', 'vhd', 'package'),
                         help='input format (default: detected)')
    convert.add_argument('input')
    convert.add_argument('output')
    convert.set_defaults(func=cmd_convert)

    merge = sub.add_parser('coalesce',
                           help='one dynamic VHD from a chain, leaf first')
    merge.add_argument('output')
    merge.add_argument('leaf')
    merge.add_argument('parents', nargs='+', metavar='PARENT... BASE')
    merge.set_defaults(func=cmd_coalesce)

    pack = sub.add_parser('pack', help='XenServer image package of a chain')
    pack.add_argument('--level', type=int, default=None,
                      help='deflate level of the engine')
    pack.add_argument('output')
    pack.add_argument('vhds', nargs='+', metavar='VHD')
    pack.set_defaults(func=cmd_pack)

    unpack = sub.add_parser('unpack', help='extract a package (bounded)')
    unpack.add_argument('--max-inflate-ratio', type=_ratio,
                        default=ova.DEFAULT_MAX_INFLATE_RATIO, metavar='N',
                        help='refuse a package that inflates to more than N '
                             'times the compressed bytes read so far '
                             '(counted as at least 1 MiB); 0: no bound '
                             '(default: %(default)s)')
    unpack.add_argument('package')
    unpack.add_argument('directory')
    unpack.set_defaults(func=cmd_unpack)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except errors.ImageError as exc:
        if getattr(args, 'json', False):
            _report_invalid(args, exc)
        else:
            print('rax-glance-vhd: invalid image: %s' % exc.describe(),
                  file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:
        return cmd.closed_pipe_exit()
    except (OSError, ValueError) as exc:
        print('rax-glance-vhd: %s' % exc, file=sys.stderr)
        return EXIT_USAGE


if __name__ == '__main__':
    sys.exit(main())
