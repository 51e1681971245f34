"""A real one-node OpenStack Swift on loopback for the dev stack and the functional tests.

Account, container, object and proxy servers with tempauth (fernet tokens), rings built
in-process, devices on tmpfs (/dev/shm): ext4's xattr limit would make Swift answer 507 to
objects with a few KB of metadata.

The proxy runs the production pipeline: every middleware of Swift 2.38's sample
``proxy-server.conf`` pipeline, in its order, plus ``staticweb`` and ``formpost`` where Swift's
SAIO puts them, and a private ``memcached`` (Debian's package) on a free loopback port for
``cache``. Tests therefore see symlinks, SLO, DLO, object versioning, server-side copy, bulk,
temp URLs, static web and both quota middlewares exactly as a production Swift serves them.
"""

import base64
import os
import secrets
import shutil
import sys
from pathlib import Path

from rax_glance.devstack import process

SERVICE_ACCOUNT = 'service'
SERVICE_USER = 'rax-glance'
SERVERS = ('account', 'container', 'object')
MEMCACHED = '/usr/bin/memcached'
# Swift 2.38's etc/proxy-server.conf-sample pipeline (tempauth flavour), with staticweb and
# formpost where Swift's SAIO puts them. Only the sample's commented-out extras that need
# other services (s3api, keystone auth, encryption keymasters, domain_remap, cname_lookup)
# are not here.
PROXY_PIPELINE = (
    'catch_errors gatekeeper healthcheck proxy-logging cache listing_formats container_sync '
    'bulk tempurl ratelimit formpost tempauth staticweb copy container-quotas '
    'account-quotas slo dlo versioned_writes symlink proxy-logging proxy-server')
# pipeline name -> egg entry point (and options)
PROXY_FILTERS = {
    'catch_errors': {'use': 'egg:swift#catch_errors'},
    'gatekeeper': {'use': 'egg:swift#gatekeeper'},
    'healthcheck': {'use': 'egg:swift#healthcheck'},
    'proxy-logging': {'use': 'egg:swift#proxy_logging'},
    'listing_formats': {'use': 'egg:swift#listing_formats'},
    'container_sync': {'use': 'egg:swift#container_sync'},
    'bulk': {'use': 'egg:swift#bulk'},
    'tempurl': {'use': 'egg:swift#tempurl'},
    'ratelimit': {'use': 'egg:swift#ratelimit'},
    'formpost': {'use': 'egg:swift#formpost'},
    'staticweb': {'use': 'egg:swift#staticweb'},
    'copy': {'use': 'egg:swift#copy'},
    'container-quotas': {'use': 'egg:swift#container_quotas'},
    'account-quotas': {'use': 'egg:swift#account_quotas'},
    'slo': {'use': 'egg:swift#slo'},
    'dlo': {'use': 'egg:swift#dlo'},
    # Both the legacy X-Versions-Location / X-History-Location and the newer object
    # versioning (X-Versions-Enabled), as production Swift offers them.
    'versioned_writes': {'use': 'egg:swift#versioned_writes',
                         'allow_versioned_writes': 'true',
                         'allow_object_versioning': 'true'},
    'symlink': {'use': 'egg:swift#symlink'},
}

# Swift's keystoneauth as a production Swift behind Keystone runs it: accounts AUTH_<project id>
# for users holding an operator role there; SERVICE_<project id> accounts need the user's
# token *and* a service token (X-Service-Token) with the `service` role.
KEYSTONEAUTH = {
    'use': 'egg:swift#keystoneauth',
    'reseller_prefix': 'AUTH_, SERVICE_',
    'operator_roles': 'admin, swiftoperator',
    'reseller_admin_role': 'ResellerAdmin',
    'SERVICE_service_roles': 'service',
}


def keystone_authtoken_filter(keystone):
    """keystonemiddleware's authtoken for the proxy, as the `swift` service user."""
    from rax_glance.devstack.keystone import authtoken_section

    section = {'paste.filter_factory': 'keystonemiddleware.auth_token:filter_factory',
               # keystoneauth decides (anonymous tempurl/staticweb requests go on).
               'delay_auth_decision': 'true'}
    # No memcached_servers: keystonemiddleware's memcache pool needs python-memcached, which
    # Glance's set does not pin; the in-process token cache serves a one-proxy node.
    section.update(authtoken_section(keystone, 'swift'))
    return section


def _bin(name):
    return str(Path(sys.executable).parent / name)


def _write_conf(path, sections):
    lines = []
    for section, values in sections.items():
        lines.append('[%s]' % section)
        lines.extend('%s = %s' % (k, v) for k, v in values.items())
        lines.append('')
    Path(path).write_text('\n'.join(lines))


def _build_ring(swift_dir, kind, port):
    from swift.common.ring import RingBuilder

    builder = RingBuilder(6, 1, 1)
    builder.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': port,
                     'device': 'd1', 'weight': 1.0, 'meta': ''})
    builder.rebalance(seed=1)
    builder.save(str(swift_dir / ('%s.builder' % kind)))
    builder.get_ring().save(str(swift_dir / ('%s.ring.gz' % kind)))


class SwiftNode:
    """Configuration and processes of the one-node Swift under `<state>/swift`."""

    keystone = None

    def __init__(self, state_dir, stack_id):
        self.dir = Path(state_dir) / 'swift'
        self.devices = Path('/dev/shm') / ('rax-glance-devstack-%s' % stack_id)
        self.ports = {}
        self.service_key = secrets.token_urlsafe(16)
        self.project_users = {}

    @property
    def proxy_url(self):
        return 'http://127.0.0.1:%d' % self.ports['proxy']

    def allocate_ports(self):
        if not self.ports:
            for kind in SERVERS + ('proxy', 'memcached'):
                self.ports[kind] = process.free_port()

    def configure(self, projects=('demo', 'alt'), keystone=None):
        """Write swift.conf, rings and server configs; `projects` get a tempauth user each.
        With `keystone` (rax_glance.devstack.keystone's description of the identity world)
        the proxy authenticates with keystonemiddleware's authtoken + Swift's keystoneauth
        instead of tempauth."""
        self.keystone = keystone
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.devices / 'd1').mkdir(parents=True, exist_ok=True)
        self.allocate_ports()
        _write_conf(self.dir / 'swift.conf', {
            'swift-hash': {'swift_hash_path_prefix': secrets.token_hex(8),
                           'swift_hash_path_suffix': secrets.token_hex(8)},
            'storage-policy:0': {'name': 'gold', 'default': 'yes'},
        })
        common = {'bind_ip': '127.0.0.1', 'workers': '0', 'user': _current_user(),
                  'swift_dir': str(self.dir), 'devices': str(self.devices),
                  'mount_check': 'false', 'disable_fallocate': 'true',
                  'log_level': 'INFO'}
        for kind in SERVERS:
            _build_ring(self.dir, kind, self.ports[kind])
            defaults = dict(common, bind_port=str(self.ports[kind]),
                            log_name='%s-server' % kind)
            _write_conf(self.dir / ('%s-server.conf' % kind), {
                'DEFAULT': defaults,
                'pipeline:main': {'pipeline': 'healthcheck %s-server' % kind},
                'app:%s-server' % kind: {'use': 'egg:swift#%s' % kind},
                'filter:healthcheck': {'use': 'egg:swift#healthcheck'},
            })
        tempauth = {
            'use': 'egg:swift#tempauth',
            'user_%s_%s' % (SERVICE_ACCOUNT, SERVICE_USER):
                '%s .admin .reseller_admin' % self.service_key,
            'fernet_key_k1': base64.urlsafe_b64encode(os.urandom(32)).decode(),
            'active_fernet_key_id': 'k1',
            'token_life': '86400',
        }
        for project in projects:
            key = secrets.token_urlsafe(12)
            self.project_users[project] = {'user': '%s:user' % project, 'key': key}
            tempauth['user_%s_user' % project] = '%s .admin' % key
        pipeline = PROXY_PIPELINE
        if keystone:
            pipeline = pipeline.replace(' tempauth ', ' authtoken keystoneauth ')
            self.project_users = {}
        sections = {
            'DEFAULT': dict(common, bind_port=str(self.ports['proxy']), log_name='proxy-server'),
            'pipeline:main': {'pipeline': pipeline},
            # Generous backend timeouts: the one-process object server of a loaded 2-core
            # machine can take seconds to accept, and a 503 would fail a whole import.
            'app:proxy-server': {'use': 'egg:swift#proxy', 'account_autocreate': 'true',
                                 'node_timeout': '60', 'conn_timeout': '10',
                                 'error_suppression_limit': '1000'},
            'filter:tempauth': tempauth,
            'filter:cache': {'use': 'egg:swift#memcache',
                             'memcache_servers': '127.0.0.1:%d' % self.ports['memcached']},
        }
        for name, values in PROXY_FILTERS.items():
            sections['filter:%s' % name] = dict(values)
        if keystone:
            del sections['filter:tempauth']
            sections['filter:authtoken'] = keystone_authtoken_filter(keystone)
            sections['filter:keystoneauth'] = KEYSTONEAUTH.copy()
        _write_conf(self.dir / 'proxy-server.conf', sections)

    def start(self, logs_dir, on_spawn, timeout=60.0):
        """Start the four servers; `on_spawn(record)` is called at once for each, so a
        failure later in start-up still leaves every started process on record."""
        env = dict(os.environ, SWIFT_DIR=str(self.dir))
        if not os.path.exists(MEMCACHED):
            raise process.StackError('%s is missing: install Debian\'s memcached package '
                                     '(tools/bootstrap does)' % MEMCACHED)
        on_spawn(process.spawn(
            'swift-memcached', [MEMCACHED, '-l', '127.0.0.1', '-p', str(self.ports['memcached']),
                          '-U', '0', '-m', '64', '-u', _current_user()],
            Path(logs_dir) / 'memcached.log', env=env))
        started = []
        for kind in SERVERS + ('proxy',):
            conf = self.dir / ('%s-server.conf' % kind)
            rec = process.spawn(
                'swift-%s' % kind, [_bin('swift-%s-server' % kind), str(conf), '--verbose'],
                Path(logs_dir) / ('swift-%s.log' % kind), env=env)
            on_spawn(rec)
            started.append((kind, rec))
        for kind, rec in started:
            process.wait_http_ok(rec['name'], 'http://127.0.0.1:%d/healthcheck'
                                 % self.ports[kind], rec, timeout)

    def describe(self):
        if self.keystone:
            glance = self.keystone['services']['glance']
            return {
                'auth': 'keystone',
                'auth_url': self.keystone['auth_url'],
                'auth_version': '3',
                'proxy_url': self.proxy_url,
                'service_user': glance['name'],
                'service_key': glance['password'],
                'service_project': glance['project'],
                'storage_url_template': '%s/v1/AUTH_%%(project_id)s' % self.proxy_url,
                'devices': str(self.devices),
            }
        return {
            'auth': 'tempauth',
            'proxy_url': self.proxy_url,
            'auth_url': '%s/auth/v1.0' % self.proxy_url,
            'auth_version': '1',
            'service_user': '%s:%s' % (SERVICE_ACCOUNT, SERVICE_USER),
            'service_key': self.service_key,
            'storage_url_template': '%s/v1/AUTH_%%(project_id)s' % self.proxy_url,
            'project_users': self.project_users,
            'devices': str(self.devices),
        }

    @staticmethod
    def remove_devices(path):
        if path and str(path).startswith('/dev/shm/rax-glance-devstack-'):
            shutil.rmtree(path, ignore_errors=True)


def _current_user():
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
