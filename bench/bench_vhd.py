#!/usr/bin/env python3
"""Benchmarks of the VHD engine against qemu-img and tar+gzip, same run.

    .venv/bin/python bench/bench_vhd.py --size-gib 1 [--size-gib 4] \\
        [--workdir /var/tmp/rax-bench] [--skip-engines]

For each size it builds a sparse raw disk of mixed content (zeros, text,
binaries, random data: about half the disk holds data), converts it with
qemu-img to a dynamic VHD, and times each job against a baseline doing the
same job, printing ``ours / baseline`` throughput ratios (> 1: faster):

* check+read: our one-pass validating reader over a pipe-like stream
  (content read, then dropped) vs ``qemu-img convert -f vpc -O raw`` to a
  file in /dev/shm (qemu cannot write to /dev/null; it validates far less);
* vhd->raw, raw->vhd: ours vs ``qemu-img convert`` writing a file;
* coalesce: a 2-deep chain (leaf with 10 % of the blocks) to one dynamic
  VHD vs ``qemu-img convert -O vpc`` of the single VHD (qemu cannot read
  chains: same amount of output, an easier job);
* pack: the import package (validate + gzip + tar in one pass) vs
  ``tar -cz`` (gzip -6) of the same VHD, plus the size ratio;
* unpack: our bounded package reader vs ``tar -xzf`` and vs the bare
  fastest inflate (ISA-L) of the same package;
* peak RSS of the import (check+pack) and export (unpack+write) flows,
  in a fresh process each.

The deflate engines (stdlib zlib, ISA-L, zlib-ng at their fast levels) are
compared first on the same disk, with ``gzip -6`` as the reference.
"""

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from rax_glance import ova  # noqa: E402
from rax_glance.vhd import content  # noqa: E402
from rax_glance.vhd import reader  # noqa: E402
from rax_glance.vhd import validate  # noqa: E402

MIB = 1 << 20
GIB = 1 << 30
BLOCK = 2 * MIB
LIMITS = validate.Limits(max_virtual_size=64 * GIB, max_physical_size=64 * GIB)


def timed(func, *args):
    start = time.perf_counter()
    result = func(*args)
    return time.perf_counter() - start, result


def run(*cmd, **kwargs):
    return subprocess.run(cmd, check=True, **kwargs)


def drop_page_cache_of(path):
    """Keep runs comparable: everything is read from the page cache."""
    with open(path, 'rb') as f:
        while f.read(8 * MIB):
            pass


# -- the test disk -------------------------------------------------------------

def _binary_corpus():
    corpus = bytearray()
    for directory in ('/usr/lib/x86_64-linux-gnu', '/usr/bin'):
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, 'rb') as f:
                    corpus += f.read(4 * MIB)
            if len(corpus) > 64 * MIB:
                return bytes(corpus)
    return bytes(corpus)


def _text_corpus():
    corpus = bytearray()
    for root, _, files in os.walk('/usr/share/doc'):
        for name in files:
            path = os.path.join(root, name)
            if name.endswith(('.gz', '.bz2', '.xz')) or os.path.islink(path):
                continue
            try:
                with open(path, 'rb') as f:
                    corpus += f.read(MIB)
            except OSError:
                continue
            if len(corpus) > 32 * MIB:
                return bytes(corpus)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(('.py', '.md', '.txt')):
                with open(os.path.join(dirpath, name), 'rb') as f:
                    corpus += f.read()
    return bytes(corpus * (1 + 16 * MIB // max(len(corpus), 1)))


def make_mixed_disk(path, size, random_fraction=0.15):
    """Per 2 MiB block: 45 % zeros, 20 % text, 20 % binaries, 15 % random.

    With another ``random_fraction``, text and binaries share what is left
    of the 55 % of data blocks equally.
    """
    rng = random.Random(size)
    text_end = 0.45 + (0.55 - random_fraction) / 2
    binary_end = 1.0 - random_fraction
    text, binary = _text_corpus(), _binary_corpus()
    with open(path, 'wb') as f:
        f.truncate(size)
        for index in range(size // BLOCK):
            kind = rng.random()
            if kind < 0.45:
                continue
            if kind < text_end:
                source = text
            elif kind < binary_end:
                source = binary
            else:
                f.seek(index * BLOCK)
                f.write(rng.randbytes(BLOCK))
                continue
            start = rng.randrange(0, len(source) - BLOCK)
            f.seek(index * BLOCK)
            f.write(source[start:start + BLOCK])


def make_child(parent_path, child_path, fraction=0.1):
    """A differencing child of ``parent_path`` rewriting some blocks."""
    from rax_glance.vhd import format as fmt
    from rax_glance.vhd import writer
    parent = reader.VHDFile.open_path(parent_path)
    size = parent.virtual_size
    rng = random.Random(1)
    blocks = sorted(rng.sample(range(size // BLOCK),
                               int(size // BLOCK * fraction)))
    vhd = writer.DynamicWriter(size, blocks)
    chunks = vhd.chunks(rng.randbytes(BLOCK) for _ in blocks)
    head = bytearray(next(chunks))
    footer = fmt.Footer.parse(head[:512])
    footer.disk_type = fmt.DISK_DIFFERENCING
    header = fmt.DynamicHeader.parse(head[512:1536])
    header.parent_unique_id = parent.unique_id
    header.parent_name = 'parent.vhd'.encode('utf-16-be').ljust(512, b'\0')
    head[:512] = footer.pack()
    head[512:1536] = header.pack()
    with open(child_path, 'wb') as out:
        out.write(head)
        for chunk in chunks:
            out.write(footer.pack() if len(chunk) == 512 and bytes(
                chunk[:8]) == b'conectix' else chunk)
    parent.close()


# -- jobs ----------------------------------------------------------------------

class PipeLike:
    """A file that offers only read(), like a Swift GET body."""

    def __init__(self, path):
        self._f = open(path, 'rb', buffering=0)

    def read(self, n=-1):
        return self._f.read(n)


def ours_check(path):
    stream = reader.StreamReader(PipeLike(path), os.path.getsize(path),
                                 LIMITS)
    total = 0
    for _, data in stream.extents():
        total += len(data)
    return total


def ours_to_raw(path, out):
    size = os.path.getsize(path)
    source = content.content_from_stream(PipeLike(path), size, 'vhd',
                                         limits=LIMITS)
    with open(out, 'wb') as f:
        for chunk in content.raw_stream(source):
            if len(chunk) == BLOCK and not any(chunk[:64]) and bytes(
                    chunk) == bytes(BLOCK):
                f.seek(len(chunk), os.SEEK_CUR)
            else:
                f.write(chunk)
        f.truncate(source.virtual_size)


def ours_from_raw(path, out):
    with open(path, 'rb') as f, open(out, 'wb') as o:
        stream = content.dynamic_stream(content.RawFileContent(f))
        for chunk in stream:
            o.write(chunk)


def ours_coalesce(paths, out):
    from rax_glance.vhd import coalesce
    chain = coalesce.open_chain(paths)
    with open(out, 'wb') as o:
        for chunk in content.dynamic_stream(coalesce.ChainContent(chain)):
            o.write(chunk)


def ours_pack(path, out, engine=None, level=None):
    size = os.path.getsize(path)
    with open(out, 'wb') as o:
        package = ova.pack_single_vhd(PipeLike(path), size, LIMITS,
                                      engine=engine, level=level)
        for chunk in package:
            o.write(chunk)


def ours_unpack(path):
    total = 0
    with open(path, 'rb') as f:
        for member in ova.iter_members(f):
            while True:
                data = member.stream.read(MIB)
                if not data:
                    break
                total += len(data)
    return total


def bare_inflate(path):
    from isal import isal_zlib
    d = isal_zlib.decompressobj(31)
    with open(path, 'rb') as f:
        while True:
            data = f.read(MIB)
            if not data:
                break
            d.decompress(data)


def engine_table(path, sample_bytes):
    """Throughput and size of each deflate engine on the first bytes."""
    with open(path, 'rb') as f:
        sample = f.read(sample_bytes)       # freed on return
    engines = [('zlib', zlib, lvl) for lvl in (1, 6)]
    try:
        from isal import isal_zlib
        engines += [('isal', isal_zlib, lvl) for lvl in (0, 1, 2, 3)]
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng
        engines += [('zlib-ng', zlib_ng, lvl) for lvl in (1, 2, 6)]
    except ImportError:
        pass
    rows = []
    for name, module, level in engines:
        start = time.perf_counter()
        c = module.compressobj(level, module.DEFLATED, 31)
        size = 0
        for i in range(0, len(sample), MIB):
            size += len(c.compress(sample[i:i + MIB]))
        size += len(c.flush())
        rows.append((name, level, time.perf_counter() - start, size))
    return rows


def peak_rss(job, *args):
    """Peak RSS (MiB) of ``job`` run in a fresh interpreter.

    VmHWM of the child's own address space: ru_maxrss would carry over the
    high-water mark of this (forked) process across exec.
    """
    code = ('import sys; sys.path.insert(0, %r); '
            'import bench_vhd as b; b.%s(*%r); '
            'print([l for l in open("/proc/self/status") '
            'if l.startswith("VmHWM")][0].split()[1])'
            % (os.path.dirname(os.path.abspath(__file__)), job, args))
    out = run(sys.executable, '-c', code, capture_output=True,
              text=True).stdout
    return int(out.split()[-1]) / 1024


def idle():
    pass


def export_job(package, out):
    with open(package, 'rb') as f, open(out, 'wb') as o:
        for chunk in ova.export_stream(f, tmpdir=os.path.dirname(out)):
            o.write(chunk)


# -- driver --------------------------------------------------------------------

def report(name, ours, base, volume, baseline_name, extra=''):
    rate = volume / ours / MIB
    print('%-12s ours %7.2f s (%7.1f MiB/s)  %-34s %7.2f s  ratio %5.2fx%s'
          % (name, ours, rate, baseline_name, base, base / ours, extra),
          flush=True)


def bench_size(size_gib, workdir, skip_engines, random_fraction=0.15,
               layout='none'):
    size = int(size_gib * GIB)
    d = os.path.join(workdir, '%gg-%s-r%g' % (size_gib, layout,
                                              random_fraction))
    os.makedirs(d, exist_ok=True)
    raw = os.path.join(d, 'disk.raw')
    vhd = os.path.join(d, 'disk.vhd')
    print('\n== %s GiB virtual disk, %d %% random blocks, partition table: '
          '%s (load average %.1f) =='
          % (size_gib, random_fraction * 100, layout, os.getloadavg()[0]),
          flush=True)
    if not os.path.exists(raw):
        make_mixed_disk(raw, size, random_fraction)
        if layout != 'none':
            subprocess.run(['sfdisk', '--quiet', '--no-reread',
                            '--no-tell-kernel', raw],
                           input='label: %s\nstart=2048, type=L\n'
                           % ('dos' if layout == 'mbr' else 'gpt'),
                           text=True, check=True, stdout=subprocess.DEVNULL)
    if not os.path.exists(vhd):
        run('qemu-img', 'convert', '-f', 'raw', '-O', 'vpc', raw, vhd)
    vhd_size = os.path.getsize(vhd)
    print('dynamic VHD by qemu-img: %.0f MiB in the file' % (vhd_size / MIB))
    for path in (raw, vhd):
        drop_page_cache_of(path)

    if not skip_engines:
        sample = min(vhd_size, 512 * MIB)
        print('deflate engines on the first %d MiB of the VHD:'
              % (sample // MIB))
        for name, level, secs, out in engine_table(vhd, sample):
            print('  %-8s level %d: %7.1f MiB/s, output %5.1f %% of input'
                  % (name, level, sample / secs / MIB, 100.0 * out / sample))

    ours, _ = timed(ours_check, vhd)
    shm = '/dev/shm/rax-glance-bench-%d.raw' % os.getpid()
    base, _ = timed(run, 'qemu-img', 'convert', '-f', 'vpc', '-O', 'raw',
                    vhd, shm)
    os.unlink(shm)
    report('check+read', ours, base, vhd_size,
           'qemu-img convert -> tmpfs')

    out_raw = os.path.join(d, 'out.raw')
    ours, _ = timed(ours_to_raw, vhd, out_raw)
    base, _ = timed(run, 'qemu-img', 'convert', '-f', 'vpc', '-O', 'raw',
                    vhd, out_raw + '.qemu')
    report('vhd->raw', ours, base, vhd_size, 'qemu-img convert -O raw')
    os.unlink(out_raw + '.qemu')
    os.unlink(out_raw)

    out_vhd = os.path.join(d, 'out.vhd')
    ours, _ = timed(ours_from_raw, raw, out_vhd)
    base, _ = timed(run, 'qemu-img', 'convert', '-f', 'raw', '-O', 'vpc',
                    raw, out_vhd + '.qemu')
    report('raw->vhd', ours, base, vhd_size, 'qemu-img convert -O vpc')
    os.unlink(out_vhd + '.qemu')
    os.unlink(out_vhd)

    child = os.path.join(d, 'child.vhd')
    make_child(vhd, child)
    merged = os.path.join(d, 'merged.vhd')
    ours, _ = timed(ours_coalesce, [child, vhd], merged)
    base, _ = timed(run, 'qemu-img', 'convert', '-f', 'vpc', '-O', 'vpc',
                    vhd, merged + '.qemu')
    report('coalesce', ours, base, os.path.getsize(merged),
           'qemu-img convert vpc->vpc (1 disk)')
    for path in (child, merged, merged + '.qemu'):
        os.unlink(path)

    package = os.path.join(d, 'ours.tgz')
    ours, _ = timed(ours_pack, vhd, package)
    staging = os.path.join(d, 'staging')
    os.makedirs(staging, exist_ok=True)
    staged = os.path.join(staging, '0.vhd')
    if not os.path.exists(staged):
        os.link(vhd, staged)
    tar_package = os.path.join(d, 'tar.tgz')
    base, _ = timed(run, 'tar', '-zcf', tar_package, '--directory', staging,
                    '.')
    ours_size, tar_size = os.path.getsize(package), os.path.getsize(
        tar_package)
    report('pack', ours, base, vhd_size, 'tar -zc (gzip -6)',
           '  size %.3f of tar (%d vs %d MiB)' % (
               ours_size / tar_size, ours_size // MIB, tar_size // MIB))

    ours, _ = timed(ours_unpack, package)
    untar = os.path.join(d, 'untar')
    os.makedirs(untar, exist_ok=True)
    base, _ = timed(run, 'tar', '-xzf', package, '-C', untar)
    report('unpack', ours, base, vhd_size, 'tar -xzf')
    inflate, _ = timed(bare_inflate, package)
    report('unpack', ours, inflate, vhd_size, 'bare ISA-L inflate')
    shutil.rmtree(untar)

    rss_idle = peak_rss('idle')
    rss_import = peak_rss('ours_pack', vhd, package + '.rss')
    rss_export = peak_rss('export_job', package, os.path.join(d, 'exp.vhd'))
    print('load average at the end: %.1f' % os.getloadavg()[0])
    print('peak RSS    import (check+pack) %.0f MiB, export (unpack+vhd) '
          '%.0f MiB; the interpreter with the modules loaded: %.0f MiB'
          % (rss_import, rss_export, rss_idle), flush=True)
    for path in (package + '.rss', os.path.join(d, 'exp.vhd'), tar_package):
        os.unlink(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size-gib', type=float, action='append')
    parser.add_argument('--workdir', default='/var/tmp/rax-glance-bench')
    parser.add_argument('--skip-engines', action='store_true')
    parser.add_argument('--random-fraction', type=float, action='append',
                        help='share of random 2 MiB blocks (default 0.15; '
                        'repeat for several mixes)')
    parser.add_argument('--layout', choices=('none', 'mbr', 'gpt'),
                        default='none', help='partition table written '
                        'into the disk (default: none)')
    parser.add_argument('--keep', action='store_true',
                        help='keep the generated disks for the next run')
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    print('python %s, %d CPUs, rusage baseline %d MiB'
          % (sys.version.split()[0], os.cpu_count(),
             resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024))
    try:
        for size in args.size_gib or [1]:
            for fraction in args.random_fraction or [0.15]:
                bench_size(size, args.workdir, args.skip_engines, fraction,
                           args.layout)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == '__main__':
    main()
