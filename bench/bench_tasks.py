#!/usr/bin/env python3
"""Benchmark: Cloud Images import and export tasks end to end through the API.

    .venv/bin/python bench/bench_tasks.py [--size-mib 1024] [--small-mib 256] \\
        [--workdir /var/tmp/rax-bench-tasks] [--keep]

Starts a private dev stack (real Swift, real glance-api 33 with the bundle, sqlite), with
production-like settings (40 GB import limits, 256 MiB export segments), and makes a dynamic
VHD of `--size-mib` virtual size: a third of its 2 MiB blocks random, a third text-like
(compressible), a third unallocated. Then, in the same run and on the same stack:

import (Swift object -> validated XenServer package in Glance's store), against
  (a) stock Glance importing the same VHD from an http source with its own import machinery
      (`web-download`; the legacy `/v2/tasks` import is shadowed by the bundle's tasks API on
      this endpoint, and web-download is Glance 33's own http import; the dev stack turns
      it off, so this script enables `[web-download]` on its private stack and runs it as the
      operator);
  (b) the shell pipeline doing the same data work:
      `swift download <obj> -o 0.vhd && tar -czf pkg.tgz 0.vhd`;
export (Glance image -> unpack -> one VHD -> verifiable DLO in the project's container),
  against (b) `swift upload --segment-size 256M` of the same VHD file.

Ratios are baseline time / our time (> 1: we are faster). The peak RSS of glance-api (master
plus workers, sampled every 50 ms) is reported for each API job, at `--small-mib` and
`--size-mib`, to show whether memory stays flat as the image grows.
"""

import argparse
import configparser
import functools
import http.server
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import psutil  # noqa: E402
import requests  # noqa: E402

from rax_glance.devstack import demo  # noqa: E402
from rax_glance.devstack.stack import DevStack  # noqa: E402
from rax_glance.vhd import content as vhd_content  # noqa: E402

MIB = 1 << 20
BLOCK = 2 * MIB
VENV_BIN = Path(sys.executable).parent
PROJECT = 'bench'
ROLES = 'cloudImages:admin'
OPERATOR_ROLES = 'rax-glance-operator'
SEGMENT = 256 * MIB


def make_vhd(path, size):
    """A dynamic VHD of `size` virtual bytes written by the bundle's engine."""
    rnd = random.Random(size)
    words = [bytes(rnd.choice(b'abcdefghijklmnopqrstuvwxyz') for _ in range(rnd.randint(2, 9)))
             for _ in range(2000)]
    raw_path = str(path) + '.raw'
    with open(raw_path, 'wb') as raw:
        raw.truncate(size)
        for index in range(size // BLOCK):
            kind = index % 3
            if kind == 2:
                continue  # unallocated
            raw.seek(index * BLOCK)
            if kind == 0:
                raw.write(rnd.randbytes(BLOCK))
            else:
                text = b' '.join(rnd.choice(words) for _ in range(BLOCK // 5))
                raw.write(text[:BLOCK].ljust(BLOCK, b'\n'))
    with open(raw_path, 'rb') as raw, open(path, 'wb') as out:
        stream = vhd_content.dynamic_stream(vhd_content.RawFileContent(raw, size))
        for chunk in stream:
            out.write(chunk)
    os.unlink(raw_path)
    return os.path.getsize(path)


class RSSSampler:
    """Peak RSS of glance-api's master and workers, sampled in a thread."""

    def __init__(self, master_pid):
        self.master = psutil.Process(master_pid)
        self.peak_total = self.peak_single = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                procs = [self.master] + self.master.children(recursive=True)
                sizes = [p.memory_info().rss for p in procs]
            except psutil.Error:
                sizes = [0]
            self.peak_total = max(self.peak_total, sum(sizes))
            self.peak_single = max(self.peak_single, max(sizes))
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def reconfigure(dev, info, http_port):
    """Production-like limits and segments, and let web-download fetch from loopback."""
    path = info['glance']['config_file']
    conf = configparser.ConfigParser(interpolation=None)
    conf.optionxform = str
    conf.read(path)
    conf.read_dict({
        'rax_tasks': {'max_physical_size_gb': '40', 'max_virtual_size_gb': '40'},
        'rax_swift': {'segment_size': str(SEGMENT)},
        'import_filtering_opts': {'allowed_hosts': '[127.0.0.1]',
                                  'allowed_ports': '[%d]' % http_port},
    })
    with open(path, 'w') as fh:
        conf.write(fh)
    dev.restart_glance()
    return dev.describe()


def session(roles):
    s = requests.Session()
    s.headers.update(demo.identity_headers(PROJECT, 'bench-user', roles))
    return s


def wait(predicate, timeout=3600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit('timed out')


def timed_task(glance, s, master, body):
    with RSSSampler(master) as rss:
        start = time.perf_counter()
        resp = s.post(glance + '/v2/tasks', json=body)
        resp.raise_for_status()
        task_id = resp.json()['id']

        def done():
            task = s.get('%s/v2/tasks/%s' % (glance, task_id)).json()
            return task if task['status'] in ('success', 'failure') else None
        task = wait(done)
        elapsed = time.perf_counter() - start
    if task['status'] != 'success':
        raise SystemExit('task failed: %s' % task['message'])
    return elapsed, rss, task


def web_download(glance, master, url):
    s = session(OPERATOR_ROLES)
    resp = s.post(glance + '/v2/images', json={'name': 'bench web-download',
                                               'disk_format': 'vhd',
                                               'container_format': 'bare'})
    resp.raise_for_status()
    image_id = resp.json()['id']
    with RSSSampler(master) as rss:
        start = time.perf_counter()
        resp = s.post('%s/v2/images/%s/import' % (glance, image_id),
                      json={'method': {'name': 'web-download', 'uri': url}})
        if resp.status_code != 202:
            raise SystemExit('web-download refused: %s %s' % (resp.status_code, resp.text))

        def active():
            image = s.get('%s/v2/images/%s' % (glance, image_id)).json()
            if image['status'] in ('killed', 'deleted'):
                raise SystemExit('web-download failed: %s' % image)
            return image if image['status'] == 'active' else None
        wait(active)
        elapsed = time.perf_counter() - start
    return elapsed, rss


def shell(cmd, env):
    start = time.perf_counter()
    subprocess.run(['bash', '-c', 'set -euo pipefail; ' + cmd], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(directory):
    handler = functools.partial(_QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_size(info, master, work, size_mib, swift_env, server):
    glance = info['glance']['endpoint']
    conn = demo.project_swift(info, PROJECT)
    conn.put_container('imports')
    conn.put_container('exports')
    conn.put_container('pipeline')
    name = 'disk-%d.vhd' % size_mib
    vhd_path = work / name
    vhd_size = make_vhd(vhd_path, size_mib * MIB)
    with open(vhd_path, 'rb') as fh:
        conn.put_object('imports', name, fh, content_length=vhd_size)
    s = session(ROLES)
    result = {'virtual_mib': size_mib, 'vhd_bytes': vhd_size,
              'load_average_before': os.getloadavg()[0]}

    t_imp, rss_imp, task = timed_task(glance, s, master, {
        'type': 'import', 'input': {'import_from': 'imports/' + name,
                                    'import_from_format': 'vhd',
                                    'image_properties': {'name': 'bench %d' % size_mib}}})
    image_id = task['result']['image_id']
    t_exp, rss_exp, _ = timed_task(glance, s, master, {
        'type': 'export', 'input': {'image_uuid': image_id,
                                    'receiving_swift_container': 'exports'}})
    t_web, rss_web = web_download(glance, master,
                                  'http://127.0.0.1:%d/%s' % (server.server_port, name))
    pipe_dir = tempfile.mkdtemp(dir=work)
    t_pipe_imp = shell('swift download imports %s -o %s/0.vhd && tar -czf %s/pkg.tgz -C %s '
                       '0.vhd' % (name, pipe_dir, pipe_dir, pipe_dir), swift_env)
    t_pipe_exp = shell('cd %s && swift upload --segment-size %d --object-name %s pipeline '
                       '0.vhd' % (pipe_dir, SEGMENT, name), swift_env)
    shutil.rmtree(pipe_dir)
    os.unlink(vhd_path)
    result.update({
        'load_average_after': os.getloadavg()[0],
        'import_s': t_imp, 'export_s': t_exp, 'web_download_s': t_web,
        'pipeline_import_s': t_pipe_imp, 'pipeline_export_s': t_pipe_exp,
        'import_vs_web_download': t_web / t_imp, 'import_vs_pipeline': t_pipe_imp / t_imp,
        'export_vs_pipeline': t_pipe_exp / t_exp,
        'rss_mib': {'import': rss_imp.peak_total / MIB, 'export': rss_exp.peak_total / MIB,
                    'web_download': rss_web.peak_total / MIB},
        'rss_worker_mib': {'import': rss_imp.peak_single / MIB,
                           'export': rss_exp.peak_single / MIB,
                           'web_download': rss_web.peak_single / MIB},
    })
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size-mib', type=int, default=1024)
    parser.add_argument('--small-mib', type=int, default=256)
    parser.add_argument('--workdir', default='/var/tmp/rax-bench-tasks')
    parser.add_argument('--keep', action='store_true', help='leave the stack running')
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    state = tempfile.mkdtemp(prefix='rax-bench-tasks-stack-')
    dev = DevStack(state)
    server = serve(str(work))
    try:
        # The dev stack turns Glance's import methods off (customer data enters only through
        # the import task); this private stack turns web-download back on for the baseline.
        info = dev.up(glance_config={'DEFAULT': {'enabled_import_methods': '[web-download]'}})
        info = reconfigure(dev, info, server.server_port)
        master = info['pids']['glance-api']
        conn = demo.project_swift(info, PROJECT)
        url, token = conn.url, conn.token
        swift_env = dict(os.environ, OS_STORAGE_URL=url, OS_AUTH_TOKEN=token,
                         PATH='%s:%s' % (VENV_BIN, os.environ.get('PATH', '')))
        results = [run_size(info, master, work, size, swift_env, server)
                   for size in (args.small_mib, args.size_mib)]
    finally:
        server.shutdown()
        if not args.keep:
            dev.down()
            shutil.rmtree(state, ignore_errors=True)
    print(json.dumps(results, indent=2))
    print()
    print('%-10s %9s %9s %9s %9s %9s | %8s %8s %8s | RSS MiB imp/exp/web' % (
        'virtual', 'import s', 'web-dl s', 'pipe-i s', 'export s', 'pipe-e s', 'vs web',
        'vs pipe', 'exp/pipe'))
    for r in results:
        print('%-10s %9.2f %9.2f %9.2f %9.2f %9.2f | %8.2f %8.2f %8.2f | %.0f/%.0f/%.0f' % (
            '%d MiB' % r['virtual_mib'], r['import_s'], r['web_download_s'],
            r['pipeline_import_s'], r['export_s'], r['pipeline_export_s'],
            r['import_vs_web_download'], r['import_vs_pipeline'], r['export_vs_pipeline'],
            r['rss_mib']['import'], r['rss_mib']['export'], r['rss_mib']['web_download']))


if __name__ == '__main__':
    main()
