#!/usr/bin/env python3
"""Benchmark: our verifiable DLO upload/download vs python-swiftclient's CLI, same Swift.

    .venv/bin/python bench/bench_swift.py [--size-mib 1024] [--segment-mib 128] \\
        [--concurrency 4] [--repeat 2] [--state-dir DIR] [--workdir /var/tmp/rax-bench]

Without --state-dir it starts a private one-node Swift (rax_glance.devstack.swift) in a temp
dir and stops it at the end; with it, it uses the Swift of that running dev stack.

Jobs, each timed against a baseline doing the same job on the same Swift, in the same run:

* upload: ``rax_glance.swift.dlo.write_dlo`` reading a file as a stream (segment md5 ETags,
  md5 and sha256 of the whole, manifest + record, listing check after writing) vs
  ``swift upload --use-dlo --segment-size S`` of the same file (its default checksum check on);
* download: ``open_dlo`` (listing check, then length and sha256 verified while streaming)
  discarding the bytes vs ``swift download ... -o /dev/null``.

Ratios are ``baseline time / our time`` (> 1: we are faster). Our side runs in a fresh
process per job so its peak RSS (ru_maxrss) is its own; the baseline's comes from wait4().
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

MIB = 1 << 20
VENV_BIN = Path(sys.executable).parent


def _child(argv):
    """Runs one of our jobs in this (fresh) process; prints JSON with time and max RSS."""
    import resource

    from rax_glance.swift import access
    from rax_glance.swift import dlo

    job, url, token, container, obj = argv[:5]
    rss_before = _rss(os.getpid())
    swift = access.ProjectSwift(url, token=token, timeout=120, retries=3)
    start = time.perf_counter()
    if job == 'upload':
        path, segment, concurrency, spool = argv[5], int(argv[6]), int(argv[7]), int(argv[8])
        spool_dir = argv[9] or None
        with open(path, 'rb') as src:
            result = dlo.write_dlo(swift, container, obj, src, segment_size=segment,
                                   concurrency=concurrency, spool_memory=spool,
                                   spool_dir=spool_dir)
        size = result['size']
    else:
        reader = dlo.open_dlo(swift, container, obj, chunk_size=MIB)
        size = 0
        for chunk in reader:
            size += len(chunk)
    elapsed = time.perf_counter() - start
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({'seconds': elapsed, 'bytes': size, 'max_rss': _hwm(os.getpid()),
                      'rss_before': rss_before, 'cpu': cpu.ru_utime + cpu.ru_stime}))


def _rss(pid):
    return _status_kib(pid, 'VmRSS:')


def _hwm(pid):
    return _status_kib(pid, 'VmHWM:')


def _status_kib(pid, key):
    """Peak RSS (VmHWM) of a live process, in bytes. (ru_maxrss is no good here: Linux
    carries the forking parent's peak across exec.)"""
    try:
        with open('/proc/%d/status' % pid) as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _run_timed(argv, env=None):
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit('%s failed (%d): %s' % (argv[:3], proc.returncode, err.decode()[-2000:]))
    return elapsed, out


def _baseline(argv, env):
    """Run a swift CLI command; (seconds, peak RSS bytes) of that process alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = 0
    while True:
        # VmHWM only grows: its last reading before exit is the peak (polled, 20 ms).
        peak = max(peak, _hwm(proc.pid))
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit('%s failed: %s' % (' '.join(argv[:3]), proc.stderr.read().decode()))
    return elapsed, peak, usage.ru_utime + usage.ru_stime


def _ours(job, args_list):
    _, out = _run_timed([sys.executable, __file__, '--child', job] + args_list)
    return json.loads(out.decode().strip().splitlines()[-1])


def _make_source(path, size):
    # Incompressible data, written once; both sides then read it from the page cache.
    with open(path, 'wb') as fh:
        left = size
        block = os.urandom(8 * MIB)
        n = 0
        while left:
            take = min(left, len(block))
            # Vary each block so segments differ (a few bytes suffice for distinct md5s).
            fh.write(n.to_bytes(8, 'big') + block[8:take] if take >= 8 else block[:take])
            left -= take
            n += 1


class _ServerCpu:
    """CPU seconds the Swift servers spent, so a job's whole cost (client + Swift) can be
    compared: a number the machine's other load hardly changes, unlike wall time."""

    def __init__(self, pids):
        import psutil

        self.procs = [psutil.Process(pid) for pid in pids]

    def total(self):
        return sum(sum(p.cpu_times()[:2]) for p in self.procs)


def _private_swift(base):
    from rax_glance.devstack.swift import SwiftNode

    node = SwiftNode(base, secrets.token_hex(4))
    records = []
    node.configure(projects=())
    logs = Path(base) / 'logs'
    logs.mkdir(parents=True, exist_ok=True)
    node.start(logs, records.append, timeout=60)
    return node, records


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size-mib', type=int, default=1024)
    p.add_argument('--segment-mib', type=int, default=128)
    p.add_argument('--concurrency', type=int, default=4)
    p.add_argument('--spool-mib', type=int, default=4)
    p.add_argument('--repeat', type=int, default=2)
    p.add_argument('--spool-dir', default='',
                   help='[rax_swift] spool_dir for our upload (default: the system temp dir)')
    p.add_argument('--state-dir', help='use the Swift of this running dev stack')
    p.add_argument('--workdir', default=None, help='where the source file goes')
    args = p.parse_args()

    import swiftclient

    from rax_glance.devstack import process

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix='rax-bench-swift-'))
    workdir.mkdir(parents=True, exist_ok=True)
    node = records = None
    try:
        if args.state_dir:
            state = json.loads((Path(args.state_dir) / 'stack.json').read_text())
            info = state['swift']
            swift_pids = [p['pid'] for p in state['processes']
                          if p['name'].startswith('swift-')]
        else:
            node, records = _private_swift(workdir / 'swift')
            info = node.describe()
            swift_pids = [r['pid'] for r in records]
        server = _ServerCpu(swift_pids)
        project = 'bench%s' % secrets.token_hex(3)
        url, token = swiftclient.get_auth(info['auth_url'], info['service_user'],
                                          info['service_key'], auth_version='1')
        storage_url = info['storage_url_template'] % {'project_id': project}
        conn = swiftclient.Connection(preauthurl=storage_url, preauthtoken=token)
        conn.put_container('bench')

        size = args.size_mib * MIB
        segment = args.segment_mib * MIB
        src = workdir / 'source.bin'
        _make_source(src, size)
        env = dict(os.environ, OS_STORAGE_URL=storage_url, OS_AUTH_TOKEN=token)
        swift_cli = [str(VENV_BIN / 'swift'), '--os-storage-url', storage_url,
                     '--os-auth-token', token]
        print('Swift %s, %d MiB stream, %d MiB segments, %d segments in flight (ours), '
              'spool memory %d MiB, spool dir %s'
              % (storage_url.rsplit('/v1/', 1)[0], args.size_mib, args.segment_mib,
                 args.concurrency, args.spool_mib, args.spool_dir or tempfile.gettempdir()))
        results = {'upload': [], 'download': []}
        for i in range(args.repeat):
            base_name = 'base-%d' % i
            ours_name = 'ours-%d' % i
            mark = server.total()
            b_up, b_up_rss, b_up_cpu = _baseline(swift_cli + [
                'upload', '--use-dlo', '--segment-size', str(segment), '--object-name',
                base_name, 'bench', str(src)], env)
            b_up_srv, mark = server.total() - mark, server.total()
            o_up = _ours('upload', [storage_url, token, 'bench', ours_name, str(src),
                                    str(segment), str(args.concurrency),
                                    str(args.spool_mib * MIB), args.spool_dir])
            o_up_srv, mark = server.total() - mark, server.total()
            b_down, b_down_rss, b_down_cpu = _baseline(swift_cli + [
                'download', 'bench', base_name, '-o', '/dev/null'], env)
            b_down_srv, mark = server.total() - mark, server.total()
            o_down = _ours('download', [storage_url, token, 'bench', ours_name])
            o_down_srv = server.total() - mark
            assert o_up['bytes'] == size and o_down['bytes'] == size
            results['upload'].append((b_up, o_up['seconds'], b_up_rss, o_up['max_rss'],
                                      o_up['max_rss'] - o_up['rss_before'], b_up_cpu,
                                      o_up['cpu'], b_up_srv, o_up_srv))
            results['download'].append((b_down, o_down['seconds'], b_down_rss,
                                        o_down['max_rss'],
                                        o_down['max_rss'] - o_down['rss_before'], b_down_cpu,
                                        o_down['cpu'], b_down_srv, o_down_srv))
            print('round %d: upload %.2fs vs %.2fs, download %.2fs vs %.2fs (baseline vs ours)'
                  % (i + 1, b_up, o_up['seconds'], b_down, o_down['seconds']), flush=True)
            # Both sides' objects go before the next round (keeps tmpfs small).
            subprocess.run(swift_cli + ['delete', 'bench', base_name], env=env,
                           stdout=subprocess.DEVNULL, check=True)
            from rax_glance.swift import access
            from rax_glance.swift import dlo
            dlo.delete_dlo(access.ProjectSwift(storage_url, token=token), 'bench', ours_name)

        print('\n%-9s %12s %12s %7s %13s %13s %15s %14s %14s' % (
            'job', 'baseline', 'ours', 'ratio', 'base RSS MiB', 'ours RSS MiB',
            'ours growth MiB', 'client CPU s', 'Swift CPU s'))
        for job, runs in results.items():
            base = min(r[0] for r in runs)
            ours = min(r[1] for r in runs)
            print('%-9s %7.1f MB/s %7.1f MB/s %6.2fx %13.0f %13.0f %15.0f %6.1f vs %4.1f '
                  '%6.1f vs %4.1f' % (
                      job, size / base / 1e6, size / ours / 1e6, base / ours,
                      max(r[2] for r in runs) / MIB, max(r[3] for r in runs) / MIB,
                      max(r[4] for r in runs) / MIB, min(r[5] for r in runs),
                      min(r[6] for r in runs), min(r[7] for r in runs),
                      min(r[8] for r in runs)))
        print('(growth: peak RSS minus RSS after imports; bound (concurrency + 1) x spool '
              '+ a few 1 MiB buffers = %d MiB + buffers)'
              % ((args.concurrency + 1) * args.spool_mib))
        print('(CPU: baseline vs ours, best round; Swift CPU = its four servers during the job)')
        print('\nbaseline: swift upload --use-dlo --segment-size %d / swift download -o '
              '/dev/null (python-swiftclient CLI); best of %d' % (segment, args.repeat))
    finally:
        if records:
            process.stop(list(reversed(records)))
            from rax_glance.devstack.swift import SwiftNode
            SwiftNode.remove_devices(node.devices)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--child':
        _child(sys.argv[2:])
    else:
        main()
