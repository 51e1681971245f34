"""rax-glance-conductor processes of the dev stack, reading glance-api's own config file."""

import os
import sys
import time
from pathlib import Path

from cryptography.fernet import Fernet

from rax_glance.devstack import process

READY_MARK = b'claiming jobs'


def jobboard_sections(redis_host, claim_expiry=10, conductor_jobs=2):
    """glance-api.conf settings that switch the tasks to the jobboard executor."""
    return {
        'rax_tasks': {'executor': 'jobboard'},
        'rax_jobboard': {
            'board': 'redis',
            'hosts': redis_host,
            'board_name': 'rax-glance-devstack',
            # Short so a killed conductor's jobs move on quickly in tests and demos.
            'claim_expiry': str(claim_expiry),
            'conductor_type': 'nonblocking',
            'max_simultaneous_jobs': str(conductor_jobs),
            'poll_interval': '0.2',
            # Seals the Keystone token a keystone-mode job carries on the board.
            'auth_keys': Fernet.generate_key().decode(),
        },
    }


def start(index, config_file, logs_dir, on_spawn, timeout=60.0):
    """Start conductor number `index`; returns its process record once it polls the board."""
    name = 'conductor-%d' % index
    log = Path(logs_dir) / ('%s.log' % name)
    argv = [str(Path(sys.executable).parent / 'rax-glance-conductor'),
            '--config-file', str(config_file), '--name', name]
    offset = log.stat().st_size if log.exists() else 0
    rec = process.spawn(name, argv, log, env=dict(os.environ))
    rec['index'] = index
    on_spawn(rec)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.is_alive(rec):
            raise process.StackError('%s exited during start-up; see its log: %s'
                                     % (name, log))
        with open(log, 'rb') as fh:
            fh.seek(offset)
            if READY_MARK in fh.read():
                return rec
        time.sleep(0.1)
    raise process.StackError('%s did not start within %.0fs; see its log: %s'
                             % (name, timeout, log))
