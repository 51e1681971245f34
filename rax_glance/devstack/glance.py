"""A real, stock glance-api 33 with the bundle loaded, served by gunicorn on loopback."""

import configparser
import os
import subprocess
import sys
from pathlib import Path

from rax_glance.devstack import process


def etc_dir():
    """The bundle's etc/ (the repo's in a checkout, else the installed data files)."""
    candidates = [Path(__file__).resolve().parents[2] / 'etc',
                  Path(sys.prefix) / 'etc' / 'rax-glance']
    for path in candidates:
        if (path / 'glance-api-paste.ini').exists():
            return path
    raise process.StackError('cannot find the bundle\'s etc/ (looked in %s)'
                             % ', '.join(map(str, candidates)))


class GlanceServer:
    """glance-api.conf, the database schema and the gunicorn process under `<state>/glance`."""

    def __init__(self, state_dir, workers=2):
        self.dir = Path(state_dir) / 'glance'
        self.port = None
        self.workers = workers

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.port

    def configure(self, db_url, extra_sections=None):
        """Write glance-api.conf; `extra_sections` ({section: {key: value}}) are merged in."""
        self.port = process.free_port()
        for sub in ('images', 'staging', 'tasks-store'):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        etc = etc_dir()
        conf = configparser.ConfigParser(interpolation=None)
        conf.optionxform = str
        conf.read_dict({
            'DEFAULT': {
                'enabled_backends': 'local:file',
                # Customer data enters only through the Cloud Images import task (VHD
                # checks, no Windows disks): Glance's own import methods are off.
                'enabled_import_methods': '[]',
                'image_cache_dir': str(self.dir / 'cache'),
                'use_stderr': 'true',
                'debug': 'false',
            },
            'database': {'connection': db_url},
            'glance_store': {'default_backend': 'local'},
            'local': {'filesystem_store_datadir': str(self.dir / 'images')},
            'os_glance_staging_store': {'filesystem_store_datadir': str(self.dir / 'staging')},
            'os_glance_tasks_store': {'filesystem_store_datadir': str(self.dir / 'tasks-store')},
            'paste_deploy': {'config_file': str(etc / 'glance-api-paste.ini'),
                             'flavor': 'trusted-headers'},
        })
        policy = etc / 'policy.yaml'
        if policy.exists():
            conf.read_dict({'oslo_policy': {'policy_file': str(policy)}})
        protections = etc / 'property-protections.conf'
        if protections.exists():
            # `policies`: the protections name rules of etc/policy.yaml (one place for roles).
            conf.read_dict({'DEFAULT': {'property_protection_file': str(protections),
                                        'property_protection_rule_format': 'policies'}})
        conf.read_dict(extra_sections or {})
        with open(self.config_file, 'w') as fh:
            conf.write(fh)

    @property
    def config_file(self):
        return self.dir / 'glance-api.conf'

    def db_sync(self, logs_dir):
        """Glance's schema, then the bundle's own tables (`rax-glance-manage db_sync`)."""
        for tool in ('glance-manage', 'rax-glance-manage'):
            log = Path(logs_dir) / ('%s.log' % tool)
            with open(log, 'ab') as fh:
                result = subprocess.run(
                    [str(Path(sys.executable).parent / tool), '--config-file',
                     str(self.config_file), 'db_sync'],
                    stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if result.returncode:
                raise process.StackError('%s db_sync failed (exit %d); see %s'
                                         % (tool, result.returncode, log))

    def start(self, logs_dir, on_spawn, timeout=90.0):
        if process.port_is_taken(self.port):
            raise process.StackError('port %d is taken; cannot start glance-api' % self.port)
        env = dict(os.environ, OS_GLANCE_CONFIG_DIR=str(self.dir))
        argv = [str(Path(sys.executable).parent / 'gunicorn'),
                '--bind', '127.0.0.1:%d' % self.port,
                '--workers', str(self.workers), '--worker-class', 'gthread', '--threads', '8',
                '--timeout', '600', '--graceful-timeout', '10',
                # gunicorn's 2 s default drops idle keep-alive connections while a slow
                # client is about to reuse them (it then sees "Remote end closed").
                '--keep-alive', '75',
                '--access-logfile', '-', '--error-logfile', '-',
                '--name', 'glance-api', 'glance.wsgi.api:application']
        rec = process.spawn('glance-api', argv, Path(logs_dir) / 'glance-api.log', env=env)
        on_spawn(rec)
        process.wait_http_ok('glance-api', self.url + '/healthcheck', rec, timeout)
        return rec
