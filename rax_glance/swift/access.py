"""Swift access that acts for exactly one project's account.

Two modes (``[rax_swift] auth_mode``):

``keystone``
    The request context's token and the ``object-store`` endpoint of its service catalog
    (region and interface configurable). The endpoint must be the context project's account.
``service``
    Service credentials with reseller-admin rights (``auth_url``, ``user``, ``key``) and an
    endpoint template such as ``http://swift:8080/v1/AUTH_%(project_id)s``.

Either way the storage URL is derived from the project id once, when the
:class:`ProjectSwift` is built, and every connection it hands out is pinned to it: a token
refresh after a 401 never swaps in another account (python-swiftclient's own re-auth would
switch to the service user's account).
"""

import re
import threading
import urllib.parse

import swiftclient
from oslo_config import cfg
from oslo_log import log as logging

from rax_glance.swift.errors import AccessError
from rax_glance.swift.errors import ProtectedAccount

LOG = logging.getLogger(__name__)
CONF = cfg.CONF
GROUP = 'rax_swift'
MiB = 1024 * 1024
# Swift refuses objects over 5 GiB unless configured otherwise.
MAX_SEGMENT_SIZE = 5 * 1024 * MiB
SEND_BLOCK_SIZE = MiB

OPTS = [
    cfg.StrOpt('auth_mode', default='keystone', choices=[
        ('keystone', "use the request's Keystone token and the object-store endpoint of its "
                     "service catalog"),
        ('service', 'use the service credentials below with reseller-admin rights and '
                    'storage_url_template')],
        help='How the bundle reaches a project\'s Swift account.'),
    cfg.URIOpt('auth_url', help='Auth endpoint of the service credentials, e.g. '
                                'http://swift:8080/auth/v1.0 (tempauth) or '
                                'http://keystone:5000/v3.'),
    cfg.StrOpt('auth_version', default='3', choices=[
        ('1', 'Swift v1 auth (tempauth, swauth)'), ('2.0', 'Keystone v2.0'),
        ('3', 'Keystone v3')],
        help='Auth protocol of auth_url.'),
    cfg.StrOpt('user', help='Service user name (tempauth: account:user).'),
    cfg.StrOpt('key', secret=True, help='Password or key of the service user.'),
    cfg.StrOpt('project_name', help='Project of the service user (Keystone only).'),
    cfg.StrOpt('user_domain_name', default='Default',
               help='Domain of the service user (Keystone v3 only).'),
    cfg.StrOpt('project_domain_name', default='Default',
               help='Domain of the service project (Keystone v3 only).'),
    cfg.StrOpt('storage_url_template',
               help='Storage URL of a project\'s account in service mode, with '
                    '%(project_id)s, e.g. http://swift:8080/v1/AUTH_%(project_id)s.'),
    cfg.StrOpt('region_name', help='Region of the object-store endpoint in keystone mode '
                                   '(any region when unset and there is only one).'),
    cfg.StrOpt('endpoint_interface', default='public',
               choices=['public', 'internal', 'admin'],
               help='Interface of the object-store endpoint in keystone mode.'),
    cfg.FloatOpt('timeout', default=60.0, min=1.0,
                 help='Seconds to wait for Swift to connect or answer before a request '
                      'counts as failed (and is retried).'),
    cfg.IntOpt('retries', default=5, min=0,
               help='How many times a failed Swift request (connection error, timeout, '
                    '5xx) is retried, with exponential backoff.'),
    cfg.FloatOpt('retry_backoff', default=1.0, min=0.0,
                 help='Seconds before the first retry; doubles on each retry.'),
    cfg.StrOpt('cafile', help='CA bundle to verify Swift\'s TLS certificate.'),
    cfg.BoolOpt('insecure', default=False,
                help='Do not verify Swift\'s TLS certificate (tests only).'),
    cfg.IntOpt('segment_size', default=256 * MiB, min=1, max=MAX_SEGMENT_SIZE,
               help='Size in bytes of each segment of a Dynamic Large Object.'),
    cfg.IntOpt('segment_concurrency', default=4, min=1, max=64,
               help='How many segments are uploaded at once.'),
    cfg.IntOpt('spool_memory', default=4 * MiB, min=0,
               help='Bytes of a segment kept in memory before it is spooled to disk while '
                    'it waits to be sent (and re-sent on retry). Peak memory is about '
                    '(segment_concurrency + 1) x spool_memory.'),
    cfg.StrOpt('spool_dir', help='Directory for segment spool files (system temp dir when '
                                 'unset); needs (segment_concurrency + 1) x segment_size '
                                 'free bytes.'),
    cfg.ListOpt('protected_accounts', default=[],
                help='Swift accounts (e.g. AUTH_glance) that no import or export task may '
                     'read or write, whichever project asks, in addition to the accounts '
                     'of the swiftdlo stores of [DEFAULT] enabled_backends (always '
                     'protected). List here the account of any other Swift that Glance '
                     'keeps images in (e.g. a glance_store `swift` backend).'),
    cfg.FloatOpt('cleanup_timeout', default=60.0, min=0.0,
                 help='After a failed upload, for how many seconds deleting the segments '
                      'already written is retried (Swift may be briefly unreachable).'),
]

# A project id becomes part of a URL path: allow only what Keystone and tempauth produce.
_PROJECT_ID = re.compile(r'^[A-Za-z0-9_-]{1,64}$')


def register_opts(conf=CONF):
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    return [(GROUP, OPTS)]


def account_of(storage_url):
    """The account part (`AUTH_...`) of a storage URL."""
    return urllib.parse.unquote(
        urllib.parse.urlparse(storage_url).path.rstrip('/').rsplit('/', 1)[-1])


_SERVICE_ACCOUNTS = {}
_SERVICE_ACCOUNTS_LOCK = threading.Lock()


def _service_account(conf, service_auth=None):
    """The service user's own account (asked of its auth endpoint once per process)."""
    group = getattr(conf, GROUP)
    key = (group.auth_url, group.user, group.auth_version, group.project_name,
           group.region_name, group.endpoint_interface)
    with _SERVICE_ACCOUNTS_LOCK:
        if key not in _SERVICE_ACCOUNTS:
            auth = service_auth or ServiceAuth.from_conf(conf)
            _SERVICE_ACCOUNTS[key] = account_of(auth.storage_url())
        return _SERVICE_ACCOUNTS[key]


def store_accounts(conf=CONF, service_auth=None):
    """Every Swift account a task must never touch: the account of each `swiftdlo` backend
    of ``[DEFAULT] enabled_backends`` (or of ``[glance_store]`` when its single store is
    `swiftdlo`): ``swiftdlo_account_project``'s, else the service user's own; and
    ``[rax_swift] protected_accounts``."""
    group = getattr(conf, GROUP)
    accounts = {a.strip() for a in group.protected_accounts or () if a.strip()}
    try:
        backends = conf.enabled_backends or {}
    except (cfg.NoSuchOptError, AttributeError):
        backends = {}
    backends = dict(backends)
    try:
        # Single-store configuration ([glance_store] stores / default_store).
        legacy = conf.glance_store
        if 'swiftdlo' in [str(x).strip() for x in (legacy.stores or [])] + \
                [str(legacy.default_store or '').strip()]:
            backends['glance_store'] = 'swiftdlo'
    except (cfg.NoSuchOptError, AttributeError):
        pass
    for name, kind in backends.items():
        if str(kind).strip() != 'swiftdlo':
            continue
        from rax_glance.store import swiftdlo  # late: the store imports this module

        conf.register_opts(swiftdlo.OPTIONS, group=name)
        project = getattr(conf, name).swiftdlo_account_project
        if project:
            template = group.storage_url_template or ''
            if '%(project_id)s' not in template:
                raise AccessError('swiftdlo_account_project needs [%s] storage_url_template'
                                  % GROUP)
            accounts.add(account_of(template % {'project_id': project}))
        else:
            accounts.add(_service_account(conf, service_auth))
    return accounts


def check_task_account(swift, conf=CONF, service_auth=None):
    """Refuse (ProtectedAccount) when `swift`'s account is one a task must never touch."""
    if swift.account in store_accounts(conf, service_auth):
        raise ProtectedAccount(swift.account)
    return swift


def check_project_id(project_id):
    if not isinstance(project_id, str) or not _PROJECT_ID.match(project_id):
        raise AccessError('Not a valid project id: %r' % (project_id,))
    return project_id


class ServiceAuth:
    """Tokens of the service user, fetched once and refreshed on demand (thread safe)."""

    def __init__(self, auth_url, user, key, auth_version='3', os_options=None, timeout=60.0,
                 cacert=None, insecure=False):
        missing = [n for n, v in (('auth_url', auth_url), ('user', user), ('key', key)) if not v]
        if missing:
            raise AccessError('Swift service credentials are incomplete: set %s in [%s]'
                              % (', '.join(missing), GROUP))
        self.auth_url = auth_url
        self.user = user
        self.key = key
        self.auth_version = auth_version
        self.os_options = dict(os_options or {})
        self.timeout = timeout
        self.cacert = cacert
        self.insecure = insecure
        self._lock = threading.Lock()
        self._token = None
        self._storage_url = None

    @classmethod
    def from_conf(cls, conf=CONF):
        group = getattr(conf, GROUP)
        os_options = {}
        if group.auth_version != '1':
            # Keystone: which object-store endpoint of the catalog is the service account's.
            os_options = {'project_name': group.project_name,
                          'region_name': group.region_name,
                          'endpoint_type': '%sURL' % group.endpoint_interface}
        if group.auth_version == '3':
            os_options.update(user_domain_name=group.user_domain_name,
                              project_domain_name=group.project_domain_name)
        return cls(group.auth_url, group.user, group.key, group.auth_version, os_options,
                   group.timeout, group.cafile, group.insecure)

    def _authenticate(self):
        try:
            url, token = swiftclient.get_auth(
                self.auth_url, self.user, self.key, auth_version=self.auth_version,
                os_options=dict(self.os_options), timeout=self.timeout, cacert=self.cacert,
                insecure=self.insecure)
        except swiftclient.ClientException as exc:
            raise AccessError('Swift service user %s cannot authenticate at %s (%s)'
                              % (self.user, self.auth_url, exc.http_status or exc.msg),
                              http_status=exc.http_status) from exc
        except Exception as exc:
            raise AccessError('Swift auth endpoint %s is unreachable (%s)'
                              % (self.auth_url, exc.__class__.__name__)) from exc
        self._storage_url = url
        self._token = token

    def token(self, refresh=False):
        with self._lock:
            if refresh or self._token is None:
                self._authenticate()
            return self._token

    def storage_url(self):
        """The service user's own account (where Glance keeps its images)."""
        with self._lock:
            if self._storage_url is None:
                self._authenticate()
            return self._storage_url


class ProjectConnection(swiftclient.Connection):
    """A swiftclient Connection whose storage URL never changes; re-auth only renews the
    token (and only when a token source can)."""

    def __init__(self, storage_url, token, token_source=None, service_token_source=None,
                 **kwargs):
        self._pinned_url = storage_url
        self._token_source = token_source
        self._user_token = token
        self._service_token_source = service_token_source
        self._service_fetches = 0
        if token_source is not None or service_token_source is not None:
            # swiftclient re-authenticates after a 401 only when these three are set;
            # get_auth below ignores them and asks the token source instead.
            kwargs.update(authurl='pinned', user='pinned', key='pinned')
        super().__init__(preauthurl=storage_url, preauthtoken=token, **kwargs)
        if service_token_source is not None:
            # Every request also carries X-Service-Token (swiftclient sends it when set).
            self.service_auth = True

    def http_connection(self, url=None):
        parsed, conn = super().http_connection(url)
        # Send request bodies in big writes (urllib3 defaults to 16 KiB): far fewer
        # syscalls per GiB uploaded.
        for adapter in conn.request_session.adapters.values():
            pool_kw = getattr(getattr(adapter, 'poolmanager', None), 'connection_pool_kw', None)
            if pool_kw is not None:
                pool_kw['blocksize'] = SEND_BLOCK_SIZE
        return parsed, conn

    def get_auth(self):
        if self._token_source is None:
            if self._service_token_source is not None:
                # The user's token cannot be renewed here; with a valid service token Swift's
                # authtoken accepts it even expired (Keystone's allow_expired window). Only
                # the service token is fetched again (get_service_auth).
                self.url, self.token = self._pinned_url, self._user_token
                return self.url, self.token
            raise swiftclient.ClientException('Swift token expired or was rejected',
                                              http_status=401)
        self.url, self.token = self._pinned_url, self._token_source(refresh=True)
        return self.url, self.token

    def get_service_auth(self):
        """The service user's token for X-Service-Token: cached first, renewed after a 401."""
        refresh = self._service_fetches > 0
        self._service_fetches += 1
        return self._pinned_url, self._service_token_source(refresh=refresh)


class ProjectSwift:
    """Access to one Swift account; `connection()` gives a new Connection per thread."""

    def __init__(self, storage_url, token=None, token_source=None, project_id=None,
                 timeout=60.0, retries=5, retry_backoff=1.0, cacert=None, insecure=False,
                 service_token_source=None):
        if not storage_url:
            raise AccessError('No Swift storage URL')
        if token is None and token_source is None:
            raise AccessError('No Swift token')
        self.storage_url = storage_url
        self.project_id = project_id
        self._token = token
        self._token_source = token_source
        self._service_token_source = service_token_source
        self.timeout = timeout
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.cacert = cacert
        self.insecure = insecure

    def __repr__(self):
        return '<ProjectSwift %s>' % self.storage_url

    @property
    def account(self):
        return account_of(self.storage_url)

    def connection(self):
        token = self._token
        if self._token_source is not None:
            token = self._token_source(refresh=False)
        return ProjectConnection(
            self.storage_url, token, token_source=self._token_source,
            service_token_source=self._service_token_source, retries=self.retries,
            starting_backoff=self.retry_backoff, max_backoff=max(self.retry_backoff * 16, 1),
            timeout=self.timeout, cacert=self.cacert, insecure=self.insecure,
            retry_on_ratelimit=True)

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def _from_group(cls, group, storage_url, **kwargs):
        return cls(storage_url, timeout=group.timeout, retries=group.retries,
                   retry_backoff=group.retry_backoff, cacert=group.cafile,
                   insecure=group.insecure, **kwargs)

    @classmethod
    def for_project(cls, project_id, conf=CONF, service_auth=None):
        """Service mode: the reseller service user acting on `project_id`'s account."""
        check_project_id(project_id)
        group = getattr(conf, GROUP)
        template = group.storage_url_template
        if not template or '%(project_id)s' not in template:
            raise AccessError('[%s] storage_url_template must be set and contain '
                              '%%(project_id)s' % GROUP)
        service_auth = service_auth or ServiceAuth.from_conf(conf)
        storage_url = template % {'project_id': project_id}
        return cls._from_group(group, storage_url, token_source=service_auth.token,
                               project_id=project_id)

    @classmethod
    def service_account(cls, conf=CONF, service_auth=None, project_id=None):
        """The service user's own account, or `project_id`'s through the template."""
        if project_id:
            return cls.for_project(project_id, conf, service_auth)
        group = getattr(conf, GROUP)
        service_auth = service_auth or ServiceAuth.from_conf(conf)
        return cls._from_group(group, service_auth.storage_url(),
                               token_source=service_auth.token)

    @classmethod
    def from_catalog(cls, project_id, token, service_catalog, conf=CONF, service_auth=None):
        """Keystone mode: the user's token and the catalog's object-store endpoint, which
        must be `project_id`'s own account.

        When the service credentials of ``[rax_swift]`` are set (Keystone v3: the glance
        service user, which needs Keystone's ``service`` role), every request also carries
        that user's token as ``X-Service-Token``: Swift's authtoken then accepts the user's
        token after it expired (Keystone's ``[token] allow_expired_window``), so a task that
        runs or waits on the jobboard longer than the token lives still reaches the account.
        The service token adds no authority: keystoneauth grants ``AUTH_`` accounts on the
        user's roles only."""
        check_project_id(project_id)
        if not token:
            raise AccessError('The request carries no auth token for Swift')
        group = getattr(conf, GROUP)
        url = catalog_endpoint(service_catalog, group.region_name, group.endpoint_interface)
        account = urllib.parse.urlparse(url).path.rstrip('/').rsplit('/', 1)[-1]
        if not (account == project_id or account.endswith('_' + project_id)):
            raise AccessError('The object-store endpoint %s is not the account of project %s'
                              % (url, project_id))
        service_token_source = None
        if group.auth_version == '3' and group.auth_url and group.user and group.key:
            service_token_source = (service_auth or ServiceAuth.from_conf(conf)).token
        return cls._from_group(group, url, token=token, project_id=project_id,
                               service_token_source=service_token_source)

    @classmethod
    def from_context(cls, context, conf=CONF, service_auth=None):
        """Access for the project of a Glance/oslo request context (a task's), in the
        configured auth mode. Only ``context.project_id`` chooses the account, and it must
        not be the account of a Glance store (:func:`store_accounts`): ProtectedAccount."""
        project_id = getattr(context, 'project_id', None)
        if getattr(conf, GROUP).auth_mode == 'service':
            swift = cls.for_project(project_id, conf, service_auth)
        else:
            swift = cls.from_catalog(project_id, getattr(context, 'auth_token', None),
                                     getattr(context, 'service_catalog', None), conf,
                                     service_auth)
        return check_task_account(swift, conf, service_auth)


def catalog_endpoint(catalog, region=None, interface='public'):
    """The object-store URL of a Keystone service catalog (v3 or v2 layout)."""
    matches = []
    for service in catalog or []:
        if service.get('type') != 'object-store':
            continue
        for ep in service.get('endpoints', []):
            ep_region = ep.get('region_id') or ep.get('region')
            if region and ep_region != region:
                continue
            if 'interface' in ep:  # v3
                if ep['interface'] == interface and ep.get('url'):
                    matches.append(ep['url'])
            else:  # v2: publicURL / internalURL / adminURL
                url = ep.get('%sURL' % interface)
                if url:
                    matches.append(url)
    matches = sorted(set(matches))
    if not matches:
        raise AccessError('No %s object-store endpoint%s in the service catalog'
                          % (interface, ' in region %s' % region if region else ''))
    if len(matches) > 1:
        raise AccessError('Several object-store endpoints match (%s); set [%s] region_name'
                          % (', '.join(matches), GROUP))
    return matches[0]
