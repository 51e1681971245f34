#!/usr/bin/env python3
"""``rax-glance-vhd check`` and ``convert --to raw`` against ``qemu-img``.

    .venv/bin/python bench/bench_check.py [--size-gib 1 --size-gib 4] \\
        [--layout none --layout mbr --layout gpt] [--rounds 3] \\
        [--workdir /var/tmp/rax-glance-bench-check] [--keep]

Goal 1 of issue 14.  For each size and partition layout it builds a raw
disk of mixed content (see ``bench_vhd.make_mixed_disk``: 45 % zeros, 20 %
text, 20 % binaries, 15 % random per 2 MiB block), writes the layout's
partition table into it with ``sfdisk`` (``none``: no table, the case that
made the Windows detector scan every block), makes a dynamic and a fixed
VHD of it with ``qemu-img convert -O vpc``, and then times, as a user would
run them (a fresh process each, the page cache warm for both sides):

* ``rax-glance-vhd check FILE`` against ``qemu-img convert -f vpc -O raw
  FILE /dev/shm/...`` (the closest thing qemu has to reading a whole image);
* ``rax-glance-vhd convert --to raw FILE OUT`` against ``qemu-img convert
  -f vpc -O raw FILE OUT``, both writing a sparse file in the work directory.

The two sides alternate ``--rounds`` times, the first side swapped every
round;
the ratio is qemu's median time over ours (> 1: we are faster).  The CPU
time (user + system) of the children is reported too.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_vhd  # noqa: E402

MIB = 1 << 20
GIB = 1 << 30
HERE = os.path.dirname(os.path.abspath(__file__))
VHD_TOOL = os.path.join(os.path.dirname(sys.executable), 'rax-glance-vhd')

SFDISK_SCRIPTS = {
    'mbr': 'label: dos\nstart=2048, type=83\n',
    'gpt': 'label: gpt\nstart=2048, type=L\n',
}


def make_disk(path, size, layout, random_fraction=0.15):
    bench_vhd.make_mixed_disk(path, size, random_fraction=random_fraction)
    if layout != 'none':
        subprocess.run(['sfdisk', '--quiet', '--no-reread', '--no-tell-kernel',
                        path], input=SFDISK_SCRIPTS[layout], text=True,
                       check=True, stdout=subprocess.DEVNULL)
    else:
        # No partition table: sector 0 holds data that is not an MBR.
        with open(path, 'r+b') as f:
            f.write(b'\x7fELF' + bytes(508))


def timed_child(cmd):
    """Wall time and CPU time (user + system) of one child process."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user
           + after.children_system - before.children_system)
    return wall, cpu


def alternate(ours, theirs, rounds, cleanup=None):
    """Median (wall, cpu) of each side, run alternately.

    The side that goes first changes every round (ours, qemu, qemu, ours,
    ours, qemu...): whichever runs second could find the other's reads in
    the page cache or compete with its dirty pages being written back.
    """
    mine, other = [], []
    for number in range(rounds):
        order = [(ours, mine), (theirs, other)]
        if number % 2:
            order.reverse()
        for cmd, results in order:
            results.append(timed_child(cmd))
            if cleanup:
                cleanup()
    return ((statistics.median(w for w, _ in mine),
             statistics.median(c for _, c in mine)),
            (statistics.median(w for w, _ in other),
             statistics.median(c for _, c in other)))


def row(job, ours, theirs):
    print('%-34s ours %6.2f s (cpu %5.2f)  qemu-img %6.2f s (cpu %5.2f)  '
          'ratio %5.2fx  load %.1f'
          % (job, ours[0], ours[1], theirs[0], theirs[1],
             theirs[0] / ours[0], os.getloadavg()[0]), flush=True)
    return job, ours, theirs


def bench(size_gib, layout, workdir, rounds):
    size = int(size_gib * GIB)
    d = os.path.join(workdir, '%gg-%s' % (size_gib, layout))
    os.makedirs(d, exist_ok=True)
    raw = os.path.join(d, 'disk.raw')
    if not os.path.exists(raw):
        make_disk(raw, size, layout)
    results = []
    for kind in ('dynamic', 'fixed'):
        vhd = os.path.join(d, '%s.vhd' % kind)
        if not os.path.exists(vhd):
            subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'vpc',
                            '-o', 'subformat=%s' % kind, raw, vhd],
                           check=True)
        bench_vhd.drop_page_cache_of(vhd)
        name = '%g GiB %s %s' % (size_gib, layout, kind)
        shm = '/dev/shm/rax-glance-bench-check-%d.raw' % os.getpid()
        out = os.path.join(d, 'out.raw')

        def remove(*paths):
            for path in paths:
                if os.path.exists(path):
                    os.unlink(path)
        results.append(row('check   ' + name, *alternate(
            [VHD_TOOL, 'check', vhd],
            ['qemu-img', 'convert', '-f', 'vpc', '-O', 'raw', vhd, shm],
            rounds, lambda shm=shm: remove(shm))))
        results.append(row('convert ' + name, *alternate(
            [VHD_TOOL, 'convert', '--to', 'raw', vhd, out],
            ['qemu-img', 'convert', '-f', 'vpc', '-O', 'raw', vhd, out],
            rounds, lambda out=out: remove(out))))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size-gib', type=float, action='append')
    parser.add_argument('--layout', action='append',
                        choices=('none', 'mbr', 'gpt'))
    parser.add_argument('--rounds', type=int, default=4)
    parser.add_argument('--workdir', default='/var/tmp/rax-glance-bench-check')
    parser.add_argument('--keep', action='store_true')
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    print('%d CPUs, load average %.1f %.1f %.1f at the start'
          % ((os.cpu_count(),) + os.getloadavg()), flush=True)
    try:
        for size in args.size_gib or [1, 4]:
            for layout in args.layout or ['none', 'mbr', 'gpt']:
                bench(size, layout, args.workdir, args.rounds)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print('load average at the end: %.1f' % os.getloadavg()[0])


if __name__ == '__main__':
    main()
