#!/usr/bin/env python3
"""CPU of the import's package writer against qemu-img plus bare deflate.

    .venv/bin/python bench/bench_import_cpu.py [--size-gib 1] [--rounds 3] \\
        [--workdir /var/tmp/rax-glance-bench-cpu] [--keep]

Goal 1 of issue 14 asks that the import task's CPU per GiB stay within
qemu-img's plus the deflate's.  On the mixed disk of ``bench_vhd`` (as a
dynamic VHD made by qemu-img) it measures, in alternating rounds, the CPU
time (user + system, all threads) of:

* import: ``ova.pack_single_vhd`` over a pipe-like stream (validation,
  Windows check, tar, deflate: what the import task runs);
* deflate only: ``ova.pack_files(check=False)`` of the same file (tar and
  the same deflate, nothing judged);
* qemu-img: ``qemu-img convert -f vpc -O raw`` to /dev/shm (a child).

It prints the medians per GiB of VHD and ``import / (qemu-img + deflate)``
(at most 1.0: the goal is met).
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_vhd  # noqa: E402

from rax_glance import ova  # noqa: E402

GIB = 1 << 30


def _cpu(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size-gib', type=float, default=1)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--workdir', default='/var/tmp/rax-glance-bench-cpu')
    parser.add_argument('--keep', action='store_true')
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    raw = os.path.join(args.workdir, 'disk.raw')
    vhd = os.path.join(args.workdir, 'disk.vhd')
    try:
        if not os.path.exists(vhd):
            bench_vhd.make_mixed_disk(raw, int(args.size_gib * GIB))
            subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'vpc',
                            raw, vhd], check=True)
        out = os.path.join(args.workdir, 'out.tgz')
        shm = '/dev/shm/rax-glance-bench-cpu-%d.raw' % os.getpid()
        found = {'import': [], 'deflate only': [], 'qemu-img': []}
        for _ in range(args.rounds):
            start = _cpu(resource.RUSAGE_SELF)
            bench_vhd.ours_pack(vhd, out)
            found['import'].append(_cpu(resource.RUSAGE_SELF) - start)
            start = _cpu(resource.RUSAGE_SELF)
            with open(out, 'wb') as o:
                ova.pack_files([vhd], o, check=False)
            found['deflate only'].append(_cpu(resource.RUSAGE_SELF) - start)
            start = _cpu(resource.RUSAGE_CHILDREN)
            subprocess.run(['qemu-img', 'convert', '-f', 'vpc', '-O', 'raw',
                            vhd, shm], check=True)
            found['qemu-img'].append(_cpu(resource.RUSAGE_CHILDREN) - start)
            os.unlink(shm)
        gib = os.path.getsize(vhd) / GIB
        median = {k: statistics.median(v) / gib for k, v in found.items()}
        for name, value in median.items():
            print('%-13s %5.2f s CPU per GiB of VHD' % (name, value))
        print('import / (qemu-img + deflate only): %.2f (goal: <= 1.00); '
              'load average %.1f'
              % (median['import'] / (median['qemu-img']
                                     + median['deflate only']),
                 os.getloadavg()[0]))
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == '__main__':
    main()
