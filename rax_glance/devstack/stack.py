"""The dev stack: a real Swift and a real glance-api with the bundle, all state in one directory.

One implementation serves `rax-glance-devstack` (the README's demo) and the functional-test
fixtures. `<state>/stack.json` records what runs (pids with start times, ports, credentials);
`down` reads it, stops only those processes, removes the tmpfs devices and is idempotent.
"""

import json
import os
import secrets
import shutil
import time
from pathlib import Path

from rax_glance import sqlite_plugin
from rax_glance.devstack import conductor as devstack_conductor
from rax_glance.devstack import keystone as devstack_keystone
from rax_glance.devstack import process
from rax_glance.devstack.glance import GlanceServer
from rax_glance.devstack.keystone import authtoken_section as keystone_authtoken_section
from rax_glance.devstack.postgres import PostgresCluster
from rax_glance.devstack.redis import RedisServer
from rax_glance.devstack.swift import SwiftNode

StackError = process.StackError
DEFAULT_STATE_DIR = '.devstack'
DB_KINDS = ('sqlite', 'postgresql')
AUTH_KINDS = ('trusted-headers', 'keystone')


def bundle_glance_sections(swift_info, keystone_info=None):
    """glance-api.conf sections that wire the bundle to the stack's Swift (and Keystone)."""
    sections = {
        # A second Glance store on Swift (the swiftdlo driver); `local` stays the default.
        'DEFAULT': {'enabled_backends': 'local:file, swift:swiftdlo'},
        'swift': {
            'store_description': 'Swift (verified Dynamic Large Objects)',
            'swiftdlo_container': 'glance-images',
        },
    }
    if keystone_info:
        glance = keystone_info['services']['glance']
        sections.update({
            # Production mode: a task reaches the project's account with the request's own
            # token and the catalog's object-store endpoint; the swiftdlo store uses the
            # glance service user's own account.
            'rax_swift': {
                'auth_mode': 'keystone',
                'auth_url': keystone_info['auth_url'],
                'auth_version': '3',
                'user': glance['name'],
                'key': glance['password'],
                'project_name': glance['project'],
                'region_name': keystone_info['region'],
                'segment_size': str(1024 * 1024),
            },
            'keystone_authtoken': keystone_authtoken_section(keystone_info, 'glance'),
            'paste_deploy': {'flavor': 'keystone'},
        })
        return sections
    # Projects' Swift accounts through the reseller service user (tempauth: no Keystone).
    sections['rax_swift'] = {
        'auth_mode': 'service',
        'auth_url': swift_info['auth_url'],
        'auth_version': swift_info.get('auth_version', '1'),
        'user': swift_info['service_user'],
        'key': swift_info['service_key'],
        'storage_url_template': swift_info['storage_url_template'],
        # Small segments so the tests' few-MiB exports span several of them.
        'segment_size': str(1024 * 1024),
    }
    return sections


class DevStack:
    def __init__(self, state_dir=DEFAULT_STATE_DIR):
        self.state_dir = Path(state_dir).resolve()
        self.state_file = self.state_dir / 'stack.json'
        self.logs_dir = self.state_dir / 'logs'

    # -- state file ---------------------------------------------------------------------
    def read_state(self):
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise StackError('%s is not valid JSON (%s); remove the state dir %s by hand'
                             % (self.state_file, exc, self.state_dir)) from exc

    def _write_state(self, state):
        tmp = self.state_file.with_suffix('.tmp')
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, self.state_file)

    # -- lifecycle ----------------------------------------------------------------------
    def up(self, db='sqlite', glance_workers=2, timeout=90.0, conductors=0,
           claim_expiry=10, conductor_jobs=2, glance_config=None, auth='trusted-headers',
           token_expiration=3600):
        """Start everything; `conductors` > 0 adds Redis and that many rax-glance-conductor
        processes, and glance-api runs tasks through the jobboard instead of in-process.
        `glance_config` ({section: {key: value}}) is merged last into glance-api.conf.
        `auth='keystone'` adds a real Keystone (tokens living `token_expiration` seconds):
        glance-api in the `keystone` paste flavor, Swift behind authtoken + keystoneauth."""
        if db not in DB_KINDS:
            raise StackError('unknown --db %r; choose one of %s' % (db, ', '.join(DB_KINDS)))
        if auth not in AUTH_KINDS:
            raise StackError('unknown --auth %r; choose one of %s'
                             % (auth, ', '.join(AUTH_KINDS)))
        self._refuse_running_or_stale()
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.logs_dir.mkdir(parents=True)
        stack_id = secrets.token_hex(4)
        state = {'status': 'starting', 'id': stack_id, 'state_dir': str(self.state_dir),
                 'db': {'kind': db}, 'auth': auth, 'processes': [],
                 'started_at': time.time()}
        self._write_state(state)
        try:
            self._start_all(state, stack_id, db, glance_workers, timeout, conductors,
                            claim_expiry, conductor_jobs, glance_config or {}, auth,
                            token_expiration)
        except BaseException:
            self.down()
            raise
        state['status'] = 'running'
        self._write_state(state)
        return self.describe()

    def _start_all(self, state, stack_id, db, glance_workers, timeout, conductors,
                   claim_expiry, conductor_jobs, glance_config, auth='trusted-headers',
                   token_expiration=3600):
        swift = SwiftNode(self.state_dir, stack_id)
        state['swift'] = {'devices': str(swift.devices)}
        self._write_state(state)

        def record(rec):
            state['processes'].append(rec)
            self._write_state(state)

        keystone_info = None
        if auth == 'keystone':
            keystone = devstack_keystone.KeystoneServer(self.state_dir)
            keystone.configure(token_expiration)
            keystone.setup(self.logs_dir)
            keystone.start(self.logs_dir, record, timeout)
            swift.allocate_ports()
            keystone_info = devstack_keystone.bootstrap(keystone, swift.proxy_url)
            state['keystone'] = keystone_info
            self._write_state(state)
        swift.configure(keystone=keystone_info)

        swift.start(self.logs_dir, record, timeout)
        state['swift'] = swift.describe()
        self._write_state(state)

        if db == 'postgresql':
            pg = PostgresCluster(swift.devices)
            pg.configure(self.logs_dir)
            pg.start(self.logs_dir, record, timeout)
            db_url = pg.url
        else:
            # BEGIN IMMEDIATE and a busy timeout (rax_glance.sqlite_plugin), WAL after
            # db_sync: parallel clients queue for the write lock instead of getting 500.
            db_url = ('sqlite:///%s?plugin=rax_glance_sqlite'
                      % (self.state_dir / 'glance' / 'glance.sqlite'))
            (self.state_dir / 'glance').mkdir(parents=True, exist_ok=True)
        state['db']['url'] = db_url
        self._write_state(state)

        sections = bundle_glance_sections(state['swift'], keystone_info)
        if conductors:
            redis = RedisServer(self.state_dir)
            redis.configure()
            redis.start(self.logs_dir, record, timeout)
            state['jobboard'] = {'redis': redis.host, 'claim_expiry': claim_expiry}
            self._write_state(state)
            for section, values in devstack_conductor.jobboard_sections(
                    redis.host, claim_expiry, conductor_jobs).items():
                sections.setdefault(section, {}).update(values)

        for section, values in glance_config.items():
            sections.setdefault(section, {}).update(values)
        glance = GlanceServer(self.state_dir, workers=glance_workers)
        glance.configure(db_url, sections)
        if keystone_info:
            devstack_keystone.add_image_endpoint(keystone_info, glance.url)
        glance.db_sync(self.logs_dir)
        if db == 'sqlite':
            sqlite_plugin.enable_wal(str(self.state_dir / 'glance' / 'glance.sqlite'))
        glance.start(self.logs_dir, record, timeout)
        state['glance'] = {'endpoint': glance.url, 'config_dir': str(glance.dir),
                           'config_file': str(glance.config_file),
                           'workers': glance_workers,
                           'identity': ('keystone (authtoken; tokens from %s)'
                                        % keystone_info['auth_url'] if keystone_info else
                                        'trusted-headers (X-Project-Id, X-User-Id, X-Roles)')}
        self._write_state(state)
        for _ in range(conductors):
            self._start_conductor(state, timeout)

    # -- jobboard conductors ------------------------------------------------------------
    def _start_conductor(self, state, timeout=60.0):
        index = max([p.get('index', -1) for p in state['processes']
                     if p['name'].startswith('conductor-')], default=-1) + 1

        def record(rec):
            state['processes'].append(rec)
            self._write_state(state)

        return devstack_conductor.start(index, state['glance']['config_file'], self.logs_dir,
                                        record, timeout)

    def start_conductor(self, timeout=60.0):
        """One more rax-glance-conductor (the stack must run with the jobboard); its record."""
        state = self.read_state()
        if not state.get('jobboard'):
            raise StackError('this stack runs tasks in-process; start it with --conductors N')
        return self._start_conductor(state, timeout)

    def conductors(self):
        """Records of the conductors started so far (alive or not), by index."""
        state = self.read_state() or {}
        return sorted((p for p in state.get('processes', [])
                       if p['name'].startswith('conductor-')), key=lambda p: p['index'])

    def kill_conductor(self, index, sig=9):
        """Signal conductor `index` (SIGKILL by default) and wait until it is gone."""
        state = self.read_state()
        rec = next(p for p in state['processes']
                   if p['name'].startswith('conductor-') and p['index'] == index)
        process.stop([rec], sig=sig, timeout=30)
        rec['stopped'] = True  # on purpose: the stack is not degraded by it
        self._write_state(state)
        return rec

    def _refuse_running_or_stale(self):
        state = self.read_state()
        if not state or state.get('status') == 'stopped':
            return
        alive = [p for p in state.get('processes', []) if process.is_alive(p)]
        if alive:
            raise StackError('a dev stack already runs from %s (pids %s); stop it with '
                             '`rax-glance-devstack down --state-dir %s`'
                             % (self.state_dir, ', '.join(str(p['pid']) for p in alive),
                                self.state_dir))
        logs = ', '.join(p['log'] for p in state.get('processes', [])) or str(self.logs_dir)
        raise StackError('stale state dir %s: it says %r but none of its processes runs '
                         '(crashed? see %s); clean it with `rax-glance-devstack down '
                         '--state-dir %s`' % (self.state_dir, state.get('status'), logs,
                                              self.state_dir))

    def down(self):
        """Stop what this state dir started; safe to call any number of times."""
        state = self.read_state()
        if not state:
            return False
        records = state.get('processes', [])
        # Glance first (it talks to the others), then Swift's proxy, then the rest.
        process.stop(list(reversed(records)))
        SwiftNode.remove_devices(state.get('swift', {}).get('devices'))
        was_up = state.get('status') != 'stopped'
        state['status'] = 'stopped'
        state['stopped_at'] = time.time()
        self._write_state(state)
        return was_up

    def restart_glance(self, timeout=90.0):
        """Kill glance-api hard and start it again on the same port and config."""
        state = self.read_state()
        rec = next(p for p in state['processes'] if p['name'] == 'glance-api')
        process.stop([rec], sig=9, timeout=10)
        glance = GlanceServer(self.state_dir, workers=state['glance'].get('workers', 2))
        glance.port = int(state['glance']['endpoint'].rsplit(':', 1)[1])
        # Killed workers release the listening socket only once the kernel reaped them.
        deadline = time.monotonic() + 15
        while process.port_is_taken(glance.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        state['processes'] = [p for p in state['processes'] if p is not rec]

        def record(new):
            state['processes'].append(new)
            self._write_state(state)

        glance.start(self.logs_dir, record, timeout)
        return state['processes'][-1]

    def describe(self):
        state = self.read_state()
        if not state:
            return {'status': 'absent', 'state_dir': str(self.state_dir)}
        procs = state.get('processes', [])
        status = state.get('status')
        if status == 'running' and not all(process.is_alive(p) for p in procs
                                           if not p.get('stopped')):
            status = 'degraded'
        return {
            'status': status,
            'state_dir': str(self.state_dir),
            'glance': state.get('glance', {}),
            'swift': state.get('swift', {}),
            'db': state.get('db', {}),
            'auth': state.get('auth', 'trusted-headers'),
            'keystone': state.get('keystone', {}),
            'jobboard': state.get('jobboard', {}),
            'pids': {p['name']: p['pid'] for p in procs},
            'alive': {p['name']: process.is_alive(p) for p in procs},
            'logs': {p['name']: p['log'] for p in procs},
        }
