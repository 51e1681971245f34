"""Starting, watching and stopping the dev stack's server processes.

Every server runs in its own session (so a signal reaches its workers too), writes to a log file
under the state dir, and is recorded with its pid *and* its start time: `down` only ever signals
a pid whose start time still matches, so a recycled pid is never touched.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import psutil


class StackError(Exception):
    """A dev stack problem a person can act on; the message says what and where to look."""


def free_port(host='127.0.0.1'):
    """A TCP port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_taken(port, host='127.0.0.1'):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def spawn(name, argv, log_path, env=None, cwd=None, user=None):
    """Start one server detached from our terminal; returns its process record."""
    log = open(log_path, 'ab')
    kwargs = {}
    if user is not None:
        kwargs['user'] = user
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, start_new_session=True, **kwargs)
    except OSError as exc:
        raise StackError('%s: cannot start %s: %s' % (name, argv[0], exc)) from exc
    finally:
        log.close()
    return {'name': name, 'pid': proc.pid, 'create_time': _create_time(proc.pid),
            'log': str(log_path)}


def _create_time(pid):
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_alive(record):
    """True while the recorded process (same pid, same start time) runs and is not a zombie."""
    try:
        proc = psutil.Process(record['pid'])
        if record.get('create_time') and abs(
                proc.create_time() - record['create_time']) > 0.01:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap(pid):
    # Our own children must be waited for or they linger as zombies.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(records, sig=signal.SIGTERM, timeout=20.0):
    """Signal every live recorded process group, wait, then SIGKILL what is left."""
    live = [r for r in records if is_alive(r)]
    for rec in live:
        _signal_group(rec, rec.get('stop_signal', sig))
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        for rec in live:
            _reap(rec['pid'])
        live = [r for r in live if is_alive(r)]
        if live:
            time.sleep(0.1)
    for rec in live:
        _signal_group(rec, signal.SIGKILL)
    for rec in records:
        _reap(rec['pid'])
    # Workers that outlived their parent (same session id) go too.
    for rec in records:
        _kill_session_leftovers(rec)


def _signal_group(rec, sig):
    try:
        os.killpg(rec['pid'], sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(rec['pid'], sig)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_session_leftovers(rec):
    for proc in psutil.process_iter(['pid']):
        try:
            if os.getsid(proc.pid) == rec['pid'] and proc.pid != os.getpid():
                proc.kill()
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass


def wait_http_ok(name, url, record, timeout=60.0):
    """Poll `url` until it answers 2xx; fail fast, naming the log, if the process dies."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not is_alive(record):
            raise StackError('%s exited during start-up; see its log: %s'
                             % (name, record['log']))
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
                last = 'HTTP %s' % resp.status
        except urllib.error.HTTPError as exc:
            last = 'HTTP %s' % exc.code
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise StackError('%s did not become ready at %s within %.0fs (last: %s); see its log: %s'
                     % (name, url, timeout, last, record['log']))
