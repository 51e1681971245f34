"""A private Redis for the TaskFlow jobboard (Debian's `redis-server`), on loopback.

Jobs are short-lived coordination data: the flows' state lives in the SQL persistence, so this
Redis keeps nothing on disk (no RDB snapshots, no AOF); its working dir is under the state dir.
"""

import shutil
import time
from pathlib import Path

from rax_glance.devstack import process


def redis_server():
    found = shutil.which('redis-server') or (
        '/usr/bin/redis-server' if Path('/usr/bin/redis-server').exists() else None)
    if not found:
        raise process.StackError('redis-server is not installed; run tools/bootstrap or '
                                 '`apt-get install redis-server`')
    return found


class RedisServer:
    def __init__(self, state_dir):
        self.dir = Path(state_dir) / 'redis'
        self.port = None

    def configure(self):
        self.port = process.free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / 'redis.conf').write_text('\n'.join([
            'bind 127.0.0.1',
            'port %d' % self.port,
            'protected-mode yes',
            'dir %s' % self.dir,
            'save ""',
            'appendonly no',
            'daemonize no',
            'loglevel notice',
            '',
        ]))

    @property
    def host(self):
        return '127.0.0.1:%d' % self.port

    def start(self, logs_dir, on_spawn, timeout=30.0):
        if process.port_is_taken(self.port):
            raise process.StackError('port %d is taken; cannot start redis-server' % self.port)
        rec = process.spawn('redis', [redis_server(), str(self.dir / 'redis.conf')],
                            Path(logs_dir) / 'redis.log', cwd=str(self.dir))
        on_spawn(rec)
        self.wait_ready(rec, timeout)
        return rec

    def wait_ready(self, rec, timeout):
        import redis

        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not process.is_alive(rec):
                raise process.StackError('redis-server exited during start-up; see its '
                                         'log: %s' % rec['log'])
            try:
                client = redis.Redis(host='127.0.0.1', port=self.port, socket_timeout=2)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            except redis.RedisError as exc:
                last = exc
            time.sleep(0.1)
        raise process.StackError('redis-server did not answer PING on port %d within %.0fs '
                                 '(last: %s); see %s' % (self.port, timeout, last, rec['log']))
