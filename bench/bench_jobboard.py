#!/usr/bin/env python3
"""Benchmark: imports on the TaskFlow jobboard (rax-glance-conductor) vs in glance-api.

    .venv/bin/python bench/bench_jobboard.py [--size-mib 60] [--imports 8] [--rounds 1]

Starts private dev stacks on PostgreSQL (real Swift, real glance-api 33 under gunicorn with 2
workers) one after the other, and on each posts `--imports` import tasks at once of the same
dynamic VHD (`--size-mib` virtual size: a third of its 2 MiB blocks random, a third text-like,
a third unallocated; the dev stack accepts VHDs up to 64 MiB), timing until all finished:

* in-process: the embedded executor (glance-api's own thread pools) -- the named baseline;
* jobboard, 1 conductor: glance-api only posts jobs; one nonblocking conductor running
  `--conductor-jobs` (4) jobs at once;
* jobboard, 2 conductors: the same with a second conductor started (8 slots, as in-process:
  2 gunicorn workers x `[rax_tasks] workers` 4).

Meanwhile a client lists images (`GET /v2/images`) back to back: its latency (p50/p95/max) is
the API's responsiveness while imports run, next to the same list on the idle stack. Ratios:
throughput / in-process throughput, and 2 conductors / 1 conductor.
"""

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import requests  # noqa: E402

from rax_glance.devstack import demo  # noqa: E402
from rax_glance.devstack.stack import DevStack  # noqa: E402
from rax_glance.vhd import content as vhd_content  # noqa: E402

MIB = 1 << 20
BLOCK = 2 * MIB
ROLES = 'cloudImages:admin'


def make_vhd(size):
    rnd = random.Random(size)
    raw = bytearray(size)
    for index in range(size // BLOCK):
        kind = index % 3
        start = index * BLOCK
        if kind == 0:
            raw[start:start + BLOCK] = rnd.randbytes(BLOCK)
        elif kind == 1:
            text = b' '.join(b'word%d' % rnd.randint(0, 5000) for _ in range(BLOCK // 6))
            raw[start:start + BLOCK] = text[:BLOCK].ljust(BLOCK, b'\n')
    import io

    return vhd_content.dynamic_stream(
        vhd_content.RawFileContent(io.BytesIO(bytes(raw)), size)).read()


class Lister(threading.Thread):
    """GET /v2/images back to back; latencies in seconds."""

    def __init__(self, endpoint, project):
        super().__init__(daemon=True)
        self.url = endpoint + '/v2/images?limit=20'
        self.session = requests.Session()
        self.session.headers.update(demo.identity_headers(project, 'bench-lister', ROLES))
        self.latencies = []
        self.errors = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            start = time.perf_counter()
            resp = self.session.get(self.url, timeout=60)
            self.latencies.append(time.perf_counter() - start)
            if resp.status_code != 200:
                self.errors += 1


def latency_stats(values):
    values = sorted(values)
    if not values:
        return {'n': 0}
    return {'n': len(values), 'p50_ms': 1000 * statistics.median(values),
            'p95_ms': 1000 * values[int(0.95 * (len(values) - 1))],
            'max_ms': 1000 * values[-1]}


def idle_latency(endpoint, project, seconds=3.0):
    lister = Lister(endpoint, project)
    lister.start()
    time.sleep(seconds)
    lister.stop.set()
    lister.join()
    return latency_stats(lister.latencies)


def run_imports(info, project, count):
    """Post `count` imports at once; (seconds until all finished, listing latency stats)."""
    endpoint = info['glance']['endpoint']
    s = requests.Session()
    s.headers.update(demo.identity_headers(project, 'bench-user', ROLES))
    lister = Lister(endpoint, project)
    lister.start()
    start = time.perf_counter()
    ids = []
    for i in range(count):
        resp = s.post(endpoint + '/v2/tasks', json={'type': 'import', 'input': {
            'import_from': 'bench/disk.vhd', 'import_from_format': 'vhd',
            'image_properties': {'name': 'bench-%d' % i}}}, timeout=60)
        resp.raise_for_status()
        ids.append(resp.json()['id'])
    pending = set(ids)
    while pending:
        for task_id in list(pending):
            task = s.get(endpoint + '/v2/tasks/%s' % task_id, timeout=60).json()
            if task['status'] == 'failure':
                raise SystemExit('import failed: %s' % task['message'])
            if task['status'] == 'success':
                pending.discard(task_id)
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    lister.stop.set()
    lister.join()
    if lister.errors:
        raise SystemExit('%d image-list requests failed' % lister.errors)
    # The finished images are deleted so each round lists the same few images.
    for image in s.get(endpoint + '/v2/images?limit=100', timeout=60).json()['images']:
        s.delete(endpoint + '/v2/images/%s' % image['id'], timeout=60)
    return elapsed, latency_stats(lister.latencies)


def prepare(info, vhd):
    project = 'bench%s' % os.urandom(4).hex()
    swift = demo.project_swift(info, project)
    swift.put_container('bench')
    swift.put_object('bench', 'disk.vhd', vhd)
    return project


def measure(label, info, project, args, results):
    idle = idle_latency(info['glance']['endpoint'], project)
    times, busy = [], []
    for _ in range(args.rounds):
        elapsed, stats = run_imports(info, project, args.imports)
        times.append(elapsed)
        busy.append(stats)
    best = min(times)
    results[label] = {'seconds': best, 'imports_per_min': 60 * args.imports / best,
                      'idle': idle, 'busy': busy[times.index(best)]}
    row = results[label]
    print('%-26s %7.1f s  %6.1f imports/min   list p50 %6.1f ms p95 %6.1f ms max %7.1f ms '
          '(idle p50 %5.1f ms)' % (label, best, row['imports_per_min'], row['busy']['p50_ms'],
                                   row['busy']['p95_ms'], row['busy']['max_ms'],
                                   idle['p50_ms']), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size-mib', type=int, default=60)
    parser.add_argument('--imports', type=int, default=8)
    parser.add_argument('--rounds', type=int, default=1)
    parser.add_argument('--conductor-jobs', type=int, default=4,
                        help='jobs per (nonblocking) conductor; 4 gives 2 conductors the '
                             'same 8 slots as glance-api\'s 2 workers x 4 in-process threads')
    args = parser.parse_args()
    vhd = make_vhd(args.size_mib * MIB)
    print('%d concurrent imports of a %d MiB dynamic VHD (%.1f MiB file), %d CPU(s)'
          % (args.imports, args.size_mib, len(vhd) / MIB, os.cpu_count()), flush=True)
    results = {}
    base = tempfile.mkdtemp(prefix='rax-bench-jobboard-')
    os.chmod(base, 0o755)  # as root, PostgreSQL runs as `postgres` and needs to reach it
    try:
        dev = DevStack(os.path.join(base, 'inprocess'))
        try:
            info = dev.up(db='postgresql')
            measure('in-process (baseline)', info, prepare(info, vhd), args, results)
        finally:
            dev.down()
        dev = DevStack(os.path.join(base, 'jobboard'))
        try:
            info = dev.up(db='postgresql', conductors=1, conductor_jobs=args.conductor_jobs)
            project = prepare(info, vhd)
            measure('jobboard, 1 conductor', info, project, args, results)
            dev.start_conductor()
            measure('jobboard, 2 conductors', info, project, args, results)
        finally:
            dev.down()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    base_rate = results['in-process (baseline)']['imports_per_min']
    one = results['jobboard, 1 conductor']
    two = results['jobboard, 2 conductors']
    print()
    print('throughput vs in-process: 1 conductor x%.2f, 2 conductors x%.2f; '
          '2 vs 1 conductor x%.2f' % (one['imports_per_min'] / base_rate,
                                      two['imports_per_min'] / base_rate,
                                      two['imports_per_min'] / one['imports_per_min']))
    inproc = results['in-process (baseline)']['busy']
    print('image-list p95 while importing: in-process %.1f ms, jobboard (2 conductors) %.1f ms '
          '(x%.2f)' % (inproc['p95_ms'], two['busy']['p95_ms'],
                       inproc['p95_ms'] / two['busy']['p95_ms']))


if __name__ == '__main__':
    main()
