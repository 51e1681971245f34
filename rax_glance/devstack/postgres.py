"""A private PostgreSQL cluster under the state dir (Debian's `postgresql` package).

Stock Glance on sqlite answers "database is locked" to concurrent uploads, so concurrency
tests run the stack with `--db postgresql`. PostgreSQL refuses to run as root: when we are root
the cluster belongs to the `postgres` system user that the Debian package creates.
"""

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from rax_glance.devstack import process


def _pg_bin(name):
    base = Path('/usr/lib/postgresql')
    versions = sorted((p for p in base.glob('*/bin/%s' % name)),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if not versions:
        found = shutil.which(name)
        if found:
            return found
        raise process.StackError(
            'PostgreSQL is not installed (no %s under %s); run tools/bootstrap or '
            '`apt-get install postgresql`' % (name, base))
    return str(versions[-1])


class PostgresCluster:
    """The cluster lives in `runtime_dir` (the stack's tmpfs directory, removed by `down`):
    the state dir may sit under a 0700 directory (pytest's tmp dirs do) that the `postgres`
    user cannot traverse, and tmpfs makes the database fast."""

    def __init__(self, runtime_dir):
        self.dir = Path(runtime_dir) / 'postgres'
        self.data = self.dir / 'data'
        self.port = None
        self.user = None

    def _run_as(self):
        if os.getuid() != 0:
            return None
        try:
            pwd.getpwnam('postgres')
        except KeyError as exc:
            raise process.StackError('running as root needs the `postgres` system user '
                                     '(apt-get install postgresql)') from exc
        return 'postgres'

    def configure(self, logs_dir):
        self.port = process.free_port()
        self.user = self._run_as()
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            self.dir.parent.chmod(0o755)
            shutil.chown(self.dir, self.user)
        log = Path(logs_dir) / 'postgres-initdb.log'
        with open(log, 'ab') as fh:
            result = subprocess.run(
                [_pg_bin('initdb'), '-D', str(self.data), '--auth=trust', '-U', 'glance',
                 '--encoding=UTF8', '--no-sync'],
                stdout=fh, stderr=subprocess.STDOUT, user=self.user, cwd=str(self.dir))
        if result.returncode:
            raise process.StackError('initdb failed (exit %d); see %s'
                                     % (result.returncode, log))

    @property
    def url(self):
        return 'postgresql+psycopg2://glance@127.0.0.1:%d/glance' % self.port

    def start(self, logs_dir, on_spawn, timeout=60.0):
        log = Path(logs_dir) / 'postgres.log'
        if self.user:
            # The server (running as postgres) must be able to append to its log.
            log.touch()
            shutil.chown(log, self.user)
        argv = [_pg_bin('postgres'), '-D', str(self.data), '-h', '127.0.0.1',
                '-p', str(self.port), '-k', str(self.dir), '-c', 'fsync=off',
                '-c', 'synchronous_commit=off', '-c', 'max_connections=200']
        rec = process.spawn('postgres', argv, log, user=self.user, cwd=str(self.dir))
        # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to leave.
        rec['stop_signal'] = int(signal.SIGINT)
        on_spawn(rec)
        self._wait_and_create_db(rec, timeout)
        return rec

    def _wait_and_create_db(self, rec, timeout):
        import time

        deadline = time.monotonic() + timeout
        last = ''
        while time.monotonic() < deadline:
            if not process.is_alive(rec):
                raise process.StackError('postgres exited during start-up; see its log: %s'
                                         % rec['log'])
            result = subprocess.run(
                [_pg_bin('createdb'), '-h', '127.0.0.1', '-p', str(self.port), '-U', 'glance',
                 'glance'], capture_output=True, text=True, user=self.user,
                cwd=str(self.dir))
            if result.returncode == 0 or 'already exists' in result.stderr:
                return
            last = result.stderr.strip()
            time.sleep(0.3)
        raise process.StackError('postgres did not accept connections within %.0fs (%s); '
                                 'see its log: %s' % (timeout, last, rec['log']))
