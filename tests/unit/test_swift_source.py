"""Unit tests of rax_glance.swift.source (import source resolution) against a fake Swift.

The fake models what Swift's proxy answers with ``symlink=get&multipart-manifest=get``: the
object itself (a symlink's target headers, a DLO's X-Object-Manifest, an SLO's manifest
JSON), and what it answers without them (it follows links into any account, as Swift does
for a reseller service user). Both Swift modes: the resolver sees only a connection and the
account of its storage URL.
"""

import base64
import hashlib
import json
import urllib.parse

import pytest
import swiftclient
from oslo_config import cfg

from rax_glance.store import swiftdlo
from rax_glance.swift import access
from rax_glance.swift import errors
from rax_glance.swift import source

OWN = 'AUTH_attacker'
OTHER = 'AUTH_victim'
STORE = 'AUTH_service'
EMPTY_MD5 = hashlib.md5(b'').hexdigest()


class FakeSwift:
    """Accounts of objects; each object: {'body': bytes, 'meta': {...}}."""

    def __init__(self):
        self.accounts = {}
        self.requests = []

    def put(self, account, container, name, body=b'', **meta):
        self.accounts.setdefault(account, {}).setdefault(container, {})[name] = {
            'body': body, 'meta': {k.replace('_', '-'): v for k, v in meta.items()}}

    def symlink(self, account, container, name, target, target_account=None):
        meta = {'x-symlink-target': urllib.parse.quote(target)}
        if target_account:
            meta['x-symlink-target-account'] = target_account
        self.accounts.setdefault(account, {}).setdefault(container, {})[name] = {
            'body': b'', 'meta': meta}

    def slo(self, account, container, name, segments):
        body = json.dumps(segments).encode()
        self.put(account, container, name, body, x_static_large_object='True')

    def connection(self, account):
        return FakeConnection(self, account)


class FakeConnection:
    def __init__(self, swift, account):
        self.swift = swift
        self.account = account
        self.closed = False

    def close(self):
        self.closed = True

    def _obj(self, account, container, name):
        try:
            return self.swift.accounts[account][container][name]
        except KeyError:
            raise swiftclient.ClientException('not found', http_status=404) from None

    def _follow(self, account, container, name, query, depth=0):
        """What a GET would serve: follow symlinks unless symlink=get (any account)."""
        obj = self._obj(account, container, name)
        meta = obj['meta']
        if 'symlink=get' not in (query or '') and 'x-symlink-target' in meta and depth < 5:
            t_account = meta.get('x-symlink-target-account', account)
            t_container, t_name = urllib.parse.unquote(meta['x-symlink-target']).split('/', 1)
            return self._follow(t_account, t_container, t_name, query, depth + 1)
        return obj

    def _headers(self, obj):
        headers = {'content-length': str(len(obj['body'])),
                   'etag': hashlib.md5(obj['body']).hexdigest()}
        headers.update(obj['meta'])
        return headers

    def head_object(self, container, name, query_string=None, headers=None):
        self.swift.requests.append(('HEAD', self.account, container, name, query_string))
        return self._headers(self._follow(self.account, container, name, query_string))

    def get_object(self, container, name, query_string=None, headers=None,
                   resp_chunk_size=None):
        self.swift.requests.append(('GET', self.account, container, name, query_string))
        obj = self._follow(self.account, container, name, query_string)
        resp = self._headers(obj)
        headers = headers or {}
        if 'If-Match' in headers and headers['If-Match'].strip('"') != resp['etag']:
            raise swiftclient.ClientException('precondition failed', http_status=412)
        body = obj['body']
        if 'Range' in headers:
            first, last = headers['Range'].split('=')[1].split('-')
            body = body[int(first):int(last) + 1]
        resp['content-length'] = str(len(body))
        step = resp_chunk_size or len(body) or 1
        return resp, iter([body[i:i + step] for i in range(0, len(body), step)])

    def head_container(self, container):
        if container not in self.swift.accounts.get(self.account, {}):
            raise swiftclient.ClientException('not found', http_status=404)
        return {}

    def get_container(self, container, prefix='', marker='', limit=None, full_listing=False):
        self.head_container(container)
        objs = self.swift.accounts[self.account][container]
        names_ = sorted(n for n in objs if n.startswith(prefix) and n > marker)
        if limit:
            names_ = names_[:limit]
        return {}, [{'name': n, 'bytes': len(objs[n]['body']),
                     'hash': hashlib.md5(objs[n]['body']).hexdigest()} for n in names_]


class Project:
    """A stand-in ProjectSwift: only the storage URL matters to the resolver."""

    def __init__(self, fake, account, url='http://swift:8080/v1/'):
        self.storage_url = url + account
        self.fake = fake
        self.account = account

    def connection(self):
        return self.fake.connection(self.account)


@pytest.fixture
def fake():
    swift = FakeSwift()
    swift.put(OTHER, 'private', 'victim.vhd', b'VICTIM' * 1000)
    swift.put(STORE, 'glance-images', 'img-00001', b'LICENSED' * 500)
    swift.put(OWN, 'c', 'plain.vhd', b'A' * 3000)
    return swift


def read(fake, account, container, name):
    project = Project(fake, account)
    resolved = source.resolve(project, container, name)
    data = b''.join(source.iter_source(project.connection(), resolved))
    assert len(data) == resolved.size
    return resolved, data


def refused(fake, account, container, name):
    with pytest.raises(source.SourceRefused) as err:
        read(fake, account, container, name)
    # Nothing was ever asked of another account, and nothing followed a link.
    for _method, acct, _c, _o, _query in fake.requests:
        assert acct == account
    for method, _acct, _c, _o, query in fake.requests:
        if method in ('HEAD', 'GET'):
            assert 'symlink=get' in query and 'multipart-manifest=get' in query
    return err.value


# -- plain objects and symlinks ---------------------------------------------------------
def test_plain_object(fake):
    resolved, data = read(fake, OWN, 'c', 'plain.vhd')
    assert data == b'A' * 3000 and len(resolved.pieces) == 1


def test_missing_object_is_refused(fake):
    assert 'answered 404' in refused(fake, OWN, 'c', 'nope').message


def test_missing_container_is_refused(fake):
    refused(fake, OWN, 'nope', 'x')


def test_same_account_symlink_is_followed(fake):
    fake.symlink(OWN, 'c', 'link', 'c/plain.vhd')
    assert read(fake, OWN, 'c', 'link')[1] == b'A' * 3000


def test_same_account_symlink_naming_its_account_is_followed(fake):
    fake.symlink(OWN, 'c', 'link', 'c/plain.vhd', target_account=OWN)
    assert read(fake, OWN, 'c', 'link')[1] == b'A' * 3000


@pytest.mark.parametrize('account', [OTHER, STORE, 'AUTH_attacker2', 'auth_attacker',
                                     OWN + '%00', ''])
def test_cross_account_symlink_is_refused(fake, account):
    fake.symlink(OWN, 'c', 'link', 'private/victim.vhd', target_account=account or ' ')
    err = refused(fake, OWN, 'c', 'link')
    assert 'symlink into account' in err.message


def test_cross_account_symlink_behind_a_same_account_one_is_refused(fake):
    fake.symlink(OWN, 'c', 'hop1', 'c/hop2')
    fake.symlink(OWN, 'c', 'hop2', 'glance-images/img-00001', target_account=STORE)
    refused(fake, OWN, 'c', 'hop1')


def test_symlink_loop_is_refused(fake):
    fake.symlink(OWN, 'c', 'a', 'c/b')
    fake.symlink(OWN, 'c', 'b', 'c/a')
    assert 'loop' in refused(fake, OWN, 'c', 'a').message


def test_long_symlink_chain_is_refused(fake):
    for i in range(source.MAX_DEPTH + 2):
        fake.symlink(OWN, 'c', 'l%d' % i, 'c/l%d' % (i + 1))
    fake.put(OWN, 'c', 'l%d' % (source.MAX_DEPTH + 2), b'x')
    assert 'levels' in refused(fake, OWN, 'c', 'l0').message


@pytest.mark.parametrize('target', ['nocontainer', '/c/plain.vhd', 'c/', 'c/%FF%FE',
                                    'c/a/../b'])
def test_malformed_symlink_target_is_refused(fake, target):
    fake.accounts[OWN]['c']['bad'] = {'body': b'', 'meta': {'x-symlink-target': target}}
    refused(fake, OWN, 'c', 'bad')


# -- DLO ----------------------------------------------------------------------------------
def test_own_dlo_is_read_segment_by_segment(fake):
    for i in range(3):
        fake.put(OWN, 'segs', 'big/%03d' % i, bytes([65 + i]) * 100)
    fake.put(OWN, 'c', 'dlo', x_object_manifest='segs/big/')
    resolved, data = read(fake, OWN, 'c', 'dlo')
    assert data == b'A' * 100 + b'B' * 100 + b'C' * 100
    assert [p.obj for p in resolved.pieces] == ['big/000', 'big/001', 'big/002']


def test_dlo_with_missing_segment_container_is_refused(fake):
    fake.put(OWN, 'c', 'dlo', x_object_manifest='private/victim')
    assert 'segment container' in refused(fake, OWN, 'c', 'dlo').message


def test_dlo_segment_that_is_a_foreign_symlink_is_refused(fake):
    fake.put(OWN, 'segs', 'big/000', b'A' * 10)
    fake.symlink(OWN, 'segs', 'big/001', 'private/victim.vhd', target_account=OTHER)
    fake.put(OWN, 'c', 'dlo', x_object_manifest='segs/big/')
    refused(fake, OWN, 'c', 'dlo')


def test_dlo_listing_is_bounded(fake, monkeypatch):
    monkeypatch.setattr(source, 'MAX_PIECES', 5)
    for i in range(7):
        fake.put(OWN, 'segs', 'p%d' % i, b'x')
    fake.put(OWN, 'c', 'dlo', x_object_manifest='segs/p')
    assert 'more than 5' in refused(fake, OWN, 'c', 'dlo').message


def test_dlo_listing_its_own_manifest_is_refused(fake):
    fake.put(OWN, 'c', 'dlo', x_object_manifest='c/')
    assert 'loop' in refused(fake, OWN, 'c', 'dlo').message


# -- SLO ----------------------------------------------------------------------------------
def _seg(fake, account, container, name, body):
    fake.put(account, container, name, body)
    return {'name': '/%s/%s' % (container, name), 'bytes': len(body),
            'hash': hashlib.md5(body).hexdigest()}


def test_own_slo_with_range_data_and_nesting(fake):
    s1 = _seg(fake, OWN, 'segs', 's1', b'1' * 50)
    s2 = _seg(fake, OWN, 'segs', 's2', b'2' * 50)
    fake.slo(OWN, 'segs', 'inner', [s1, s2])
    inner = {'name': '/segs/inner', 'bytes': 100, 'sub_slo': True}
    data_seg = {'data': base64.b64encode(b'DATA').decode()}
    ranged = dict(s2, range='10-19')
    fake.slo(OWN, 'c', 'slo', [inner, data_seg, ranged])
    resolved, data = read(fake, OWN, 'c', 'slo')
    assert data == b'1' * 50 + b'2' * 50 + b'DATA' + b'2' * 10


def test_slo_with_foreign_symlink_segment_is_refused(fake):
    fake.symlink(OWN, 'segs', 'evil', 'private/victim.vhd', target_account=OTHER)
    fake.slo(OWN, 'c', 'slo', [{'name': '/segs/evil', 'bytes': 6000}])
    refused(fake, OWN, 'c', 'slo')


def test_slo_segment_with_wrong_size_is_refused(fake):
    s1 = _seg(fake, OWN, 'segs', 's1', b'1' * 50)
    fake.slo(OWN, 'c', 'slo', [dict(s1, bytes=49)])
    assert 'manifest says' in refused(fake, OWN, 'c', 'slo').message


@pytest.mark.parametrize('manifest', [b'not json', b'{"a": 1}', b'[1, 2]',
                                      b'[{"bytes": 1}]', b'[{"name": "x", "bytes": 1}]',
                                      b'[{"data": "***"}]'])
def test_malformed_slo_is_refused(fake, manifest):
    fake.put(OWN, 'c', 'slo', manifest, x_static_large_object='True')
    refused(fake, OWN, 'c', 'slo')


def test_oversized_slo_manifest_is_refused(fake, monkeypatch):
    monkeypatch.setattr(source, 'MAX_MANIFEST_BYTES', 100)
    fake.put(OWN, 'c', 'slo', b'[' + b' ' * 200 + b']', x_static_large_object='True')
    assert 'larger than' in refused(fake, OWN, 'c', 'slo').message


def test_slo_nesting_is_bounded(fake):
    s = _seg(fake, OWN, 'segs', 's', b'x')
    fake.slo(OWN, 'c', 'n0', [s])
    for i in range(1, source.MAX_DEPTH + 3):
        fake.slo(OWN, 'c', 'n%d' % i, [{'name': '/c/n%d' % (i - 1), 'bytes': 1}])
    refused(fake, OWN, 'c', 'n%d' % (source.MAX_DEPTH + 2))


@pytest.mark.parametrize('value,size,expected', [
    ('0-9', 100, (0, 10)), ('90-', 100, (90, 10)), ('-5', 100, (95, 5)),
    ('50-200', 100, (50, 50)), ('5-1', 100, (0, None)), ('a-b', 100, (0, None)),
    ('1', 100, (0, None)), ('1-2-3', 100, (0, None)), (7, 100, (0, None))])
def test_parse_range(value, size, expected):
    assert source._parse_range(value, size) == expected


# -- versions -------------------------------------------------------------------------------
def _versioned(fake, account, container, name, version, obj):
    """What object versioning shows: the name is a link to `name?version-id=<version>`."""
    fake.accounts.setdefault(account, {}).setdefault(container, {})[name] = {
        'body': b'', 'meta': {'x-symlink-target': '%s/%s?version-id=%s'
                              % (container, name, version),
                              'x-object-version-id': version}}
    obj['meta']['x-object-version-id'] = version
    fake.accounts[account][container]['%s?version-id=%s' % (name, version)] = obj


class _VersionedConnection(FakeConnection):
    def _follow(self, account, container, name, query, depth=0):
        for part in (query or '').split('&'):
            if part.startswith('version-id='):
                name = '%s?%s' % (name, part)
        return super()._follow(account, container, name, query, depth)


@pytest.fixture
def vfake(fake):
    fake.connection = lambda account: _VersionedConnection(fake, account)
    return fake


def test_object_versioning_reads_the_current_version_by_id(vfake):
    _versioned(vfake, OWN, 'ver', 'o.vhd', '1700000000.00000',
               {'body': b'V' * 10, 'meta': {}})
    resolved, data = read(vfake, OWN, 'ver', 'o.vhd')
    assert data == b'V' * 10
    assert resolved.pieces[0].query.startswith('version-id=1700000000.00000&')


def test_object_version_that_is_a_foreign_symlink_is_refused(vfake):
    _versioned(vfake, OWN, 'ver', 'o.vhd', '1700000001.00000', {'body': b'', 'meta': {
        'x-symlink-target': 'private/victim.vhd', 'x-symlink-target-account': OTHER}})
    assert 'symlink into account' in refused(vfake, OWN, 'ver', 'o.vhd').message


def test_object_version_that_is_an_own_symlink_is_followed(vfake):
    _versioned(vfake, OWN, 'ver', 'o.vhd', '1700000002.00000', {'body': b'', 'meta': {
        'x-symlink-target': 'c/plain.vhd'}})
    assert read(vfake, OWN, 'ver', 'o.vhd')[1] == b'A' * 3000


def test_null_version_is_read_at_its_name(fake):
    fake.put(OWN, 'c', 'v', b'x', x_object_version_id='null')
    resolved, data = read(fake, OWN, 'c', 'v')
    assert data == b'x' and 'version-id' not in resolved.pieces[0].query


def test_null_version_foreign_symlink_is_refused(fake):
    fake.symlink(OWN, 'c', 'v', 'private/victim.vhd', target_account=OTHER)
    fake.accounts[OWN]['c']['v']['meta']['x-object-version-id'] = 'null'
    refused(fake, OWN, 'c', 'v')


@pytest.mark.parametrize('target', ['c/plain.vhd?version-id=1', '%00versions%00c/x'])
def test_plain_symlink_posing_as_a_version_link_is_refused(fake, target):
    fake.accounts[OWN]['c']['v'] = {'body': b'', 'meta': {'x-symlink-target': target}}
    assert 'only object versioning' in refused(fake, OWN, 'c', 'v').message


# -- time of check / time of use ----------------------------------------------------------
def test_object_replaced_after_resolution_is_refused(fake):
    project = Project(fake, OWN)
    resolved = source.resolve(project, 'c', 'plain.vhd')
    fake.symlink(OWN, 'c', 'plain.vhd', 'private/victim.vhd', target_account=OTHER)
    with pytest.raises(source.SourceRefused) as err:
        b''.join(source.iter_source(project.connection(), resolved))
    assert '412' in err.value.message


def test_segment_replaced_after_resolution_is_refused(fake):
    s1 = _seg(fake, OWN, 'segs', 's1', b'1' * 50)
    fake.slo(OWN, 'c', 'slo', [s1])
    project = Project(fake, OWN)
    resolved = source.resolve(project, 'c', 'slo')
    fake.put(OWN, 'segs', 's1', b'2' * 50)
    with pytest.raises(source.SourceRefused):
        b''.join(source.iter_source(project.connection(), resolved))


# -- keystone mode: the same resolver behind a catalog endpoint -----------------------------
def _keystone_conf():
    conf = cfg.ConfigOpts()
    access.register_opts(conf)
    conf([], project='rax-glance-tests')
    return conf


def test_keystone_mode_refuses_foreign_symlink(fake):
    conf = _keystone_conf()
    catalog = [{'type': 'object-store', 'endpoints': [
        {'interface': 'public', 'region_id': 'R', 'url': 'https://swift/v1/%s' % OWN}]}]
    swift = access.ProjectSwift.from_catalog('attacker', 'tok', catalog, conf)
    assert swift.account == OWN
    fake.symlink(OWN, 'c', 'link', 'private/victim.vhd', target_account=OTHER)
    with pytest.raises(source.SourceRefused):
        source.resolve(swift, 'c', 'link', conn=fake.connection(OWN))
    fake.symlink(OWN, 'c', 'ok', 'c/plain.vhd')
    assert source.resolve(swift, 'c', 'ok', conn=fake.connection(OWN)).size == 3000


# -- protected (store) accounts -------------------------------------------------------------
class _Auth:
    def __init__(self, url):
        self.url = url
        self.calls = 0

    def storage_url(self):
        self.calls += 1
        return self.url

    def token(self, refresh=False):
        return 'tok'


def _service_conf(**rax):
    conf = cfg.ConfigOpts()
    access.register_opts(conf)
    conf.register_opt(cfg.DictOpt('enabled_backends'))
    conf([], project='rax-glance-tests')
    values = dict(auth_mode='service', auth_url='http://swift/auth/v1.0', user='service:u',
                  key='k', auth_version='1',
                  storage_url_template='http://swift/v1/AUTH_%(project_id)s')
    values.update(rax)
    for key, value in values.items():
        conf.set_override(key, value, group='rax_swift')
    return conf


def test_store_accounts_from_enabled_backends(monkeypatch):
    monkeypatch.setattr(access, '_SERVICE_ACCOUNTS', {})
    conf = _service_conf(protected_accounts=['AUTH_extra'])
    conf.set_override('enabled_backends', {'local': 'file', 'swift': 'swiftdlo',
                                           'other': 'swiftdlo'})
    conf.register_opts(swiftdlo.OPTIONS, group='other')
    conf.set_override('swiftdlo_account_project', 'imgproj', group='other')
    auth = _Auth('http://swift/v1/AUTH_service')
    assert access.store_accounts(conf, auth) == {'AUTH_service', 'AUTH_imgproj',
                                                 'AUTH_extra'}


@pytest.mark.parametrize('project', ['service', 'imgproj', 'extra'])
def test_task_in_a_store_account_is_refused(monkeypatch, project):
    monkeypatch.setattr(access, '_SERVICE_ACCOUNTS', {})
    conf = _service_conf(protected_accounts=['AUTH_extra'])
    conf.set_override('enabled_backends', {'swift': 'swiftdlo', 'two': 'swiftdlo'})
    conf.register_opts(swiftdlo.OPTIONS, group='two')
    conf.set_override('swiftdlo_account_project', 'imgproj', group='two')
    ctx = type('Ctx', (), {'project_id': project})()
    with pytest.raises(errors.ProtectedAccount):
        access.ProjectSwift.from_context(ctx, conf, _Auth('http://swift/v1/AUTH_service'))
    ok = type('Ctx', (), {'project_id': 'customer'})()
    assert access.ProjectSwift.from_context(
        ok, conf, _Auth('http://swift/v1/AUTH_service')).account == 'AUTH_customer'


def test_keystone_task_in_a_protected_account_is_refused():
    conf = _keystone_conf()
    conf.set_override('protected_accounts', ['AUTH_glance'], group='rax_swift')
    catalog = [{'type': 'object-store', 'endpoints': [
        {'interface': 'public', 'url': 'https://swift/v1/AUTH_glance'}]}]
    ctx = type('Ctx', (), {'project_id': 'glance', 'auth_token': 't',
                           'service_catalog': catalog})()
    with pytest.raises(errors.ProtectedAccount):
        access.ProjectSwift.from_context(ctx, conf)


def test_single_store_configuration_is_protected_too(monkeypatch):
    monkeypatch.setattr(access, '_SERVICE_ACCOUNTS', {})
    conf = _service_conf()
    conf.register_opts([cfg.ListOpt('stores', default=['file', 'http']),
                        cfg.StrOpt('default_store', default='file')], group='glance_store')
    auth = _Auth('http://swift/v1/AUTH_service')
    assert access.store_accounts(conf, auth) == set()
    conf.set_override('default_store', 'swiftdlo', group='glance_store')
    assert access.store_accounts(conf, auth) == {'AUTH_service'}
    assert auth.calls == 1


# -- class 7: store errors shown to Glance API users name no location -----------------------
@pytest.mark.parametrize('exc', [
    errors.IntegrityError('glance-images', 'img-1', ['segment img-1-00002 is missing']),
    errors.ObjectNotFound('glance-images', 'img-1'),
    errors.ContainerNotFound('glance-images'),
    errors.NotADLO('glance-images/img-1 is not a verifiable Dynamic Large Object'),
    errors.UploadFailed('Writing glance-images/img-1 failed', 507,
                        leftovers=['img-1-00001'],
                        cause=swiftclient.ClientException('x', http_status=507)),
    errors.ObjectExists('glance-images', 'img-1'),
    errors.InvalidName('glance-images/img-1'),
])
def test_public_store_messages_name_no_location(exc):
    mapped = errors.to_store_exception(exc, 'Reading image data from Swift', public=True)
    text = getattr(mapped, 'msg', None) or str(mapped)
    assert text.startswith('Reading image data from Swift: ')
    assert 'glance-images' not in text and 'img-1' not in text
    # The detailed message is still there for the log.
    assert 'glance-images' in errors.describe(exc, 'Reading image data from Swift')


# -- the import flow's mapping: one message for every refusal, transient errors stay so -----
def _mapped(exc):
    from rax_glance.tasks import messages
    from rax_glance.tasks.flows import import_flow

    job = type('Job', (), {'id': 't1'})()
    try:
        with import_flow._refused_as_not_found(job, {'container': 'c', 'object': 'o'}):
            raise exc
    except messages.TaskFailed as failed:
        return failed.message
    except Exception as other:  # noqa: BLE001 - what the executor reports as unexpected
        return other


@pytest.mark.parametrize('exc', [
    source.SourceRefused('symlink into account AUTH_victim'),
    errors.ProtectedAccount('AUTH_service'),
    errors.InvalidName('bad'),
    swiftclient.ClientException('x', http_status=403),
    swiftclient.ClientException('x', http_status=404),
    swiftclient.ClientException('x', http_status=412),
])
def test_every_refusal_is_the_same_not_found_message(exc):
    assert _mapped(exc) == 'Image not found for import. Possible invalid location'


@pytest.mark.parametrize('exc', [
    swiftclient.ClientException('x', http_status=500),
    swiftclient.ClientException('x', http_status=503),
    errors.AccessError('Swift auth endpoint http://swift/auth is unreachable'),
])
def test_swift_outages_are_not_reported_as_not_found(exc):
    assert _mapped(exc) is exc
