"""Unit tests (no servers) of rax_glance.swift and the swiftdlo driver: names, error
mapping, catalog and account selection, locations, configuration, listing checks."""

import hashlib
import os
import socket
import types

import pytest
import requests
import swiftclient
from glance_store import capabilities
from glance_store import exceptions as store_exc
from glance_store import location as store_location
from oslo_config import cfg

from rax_glance.store import swiftdlo
from rax_glance.swift import access
from rax_glance.swift import dlo
from rax_glance.swift import errors
from rax_glance.swift import names


# -- names ------------------------------------------------------------------------------
@pytest.mark.parametrize('name', ['exports', 'a' * 256, 'ünïcode', 'with space'])
def test_valid_containers(name):
    assert names.validate_container(name) == name


@pytest.mark.parametrize('name,fragment', [
    ('', 'must not be empty'), ('a' * 257, 'at most 256'), ('a/b', '"/"'),
    ('..', '"." or ".."'), (None, 'must be a string'), ('a\x00b', 'NUL'),
    ('\udcff', 'not valid UTF-8'), ('é' * 129, '258 bytes'),
])
def test_invalid_containers(name, fragment):
    with pytest.raises(errors.InvalidName) as err:
        names.validate_container(name)
    assert fragment in str(err.value)


@pytest.mark.parametrize('name', ['ex.ports', 'ex?ports', 'ex/ports', '.'])
def test_export_container_rules(name):
    with pytest.raises(errors.InvalidName):
        names.validate_export_container(name)
    assert names.validate_export_container('exports_2024-01') == 'exports_2024-01'


def test_object_names_leave_room_for_segment_suffix():
    assert names.validate_object('a' * 1018)
    with pytest.raises(errors.InvalidName) as err:
        names.validate_object('a' * 1019)
    assert 'segments add a 6-character suffix' in str(err.value)
    assert names.validate_object('a' * 1024, segmented=False)
    for bad in ('', 'a/../b', './x'):
        with pytest.raises(errors.InvalidName):
            names.validate_object(bad)


def test_split_path():
    assert names.split_path('exports/dir/img.vhd') == ('exports', 'dir/img.vhd')
    for bad in ('exports', '/img.vhd', 'exports/', 42):
        with pytest.raises(errors.InvalidName):
            names.split_path(bad)


# -- error mapping ----------------------------------------------------------------------
def _client_error(status):
    return swiftclient.ClientException('Object PUT failed', http_status=status,
                                       http_reason='Reason')


@pytest.mark.parametrize('status,expected,fragment', [
    (401, store_exc.NotAuthenticated, 'rejected the credentials (401)'),
    (403, store_exc.Forbidden, 'denied access (403)'),
    (404, store_exc.NotFound, 'not found in Swift (404)'),
    (409, store_exc.Duplicate, 'conflict (409)'),
    (413, store_exc.StorageFull, 'refused the size (413'),
    (507, store_exc.StorageFull, 'no space left (507)'),
    (500, store_exc.RemoteServiceUnavailable, 'unavailable (500)'),
    (503, store_exc.RemoteServiceUnavailable, 'unavailable (503)'),
    (408, store_exc.TimeoutError, 'Swift answered 408'),
    (422, store_exc.BackendException, 'checksum mismatch'),
])
def test_swift_statuses_map_to_store_exceptions(status, expected, fragment):
    mapped = errors.to_store_exception(_client_error(status), 'Adding image data', 30)
    assert type(mapped) is expected
    text = getattr(mapped, 'msg', None) or str(mapped)
    assert text.startswith('Adding image data')
    assert fragment in text


@pytest.mark.parametrize('exc,expected,fragment', [
    (requests.exceptions.ReadTimeout(), store_exc.TimeoutError, 'did not answer in time'),
    (socket.timeout(), store_exc.TimeoutError, 'did not answer in time'),
    (requests.exceptions.ConnectionError(), store_exc.RemoteServiceUnavailable,
     'cannot connect'),
    (ConnectionRefusedError(), store_exc.RemoteServiceUnavailable, 'cannot connect'),
    (errors.ObjectExists('c', 'o'), store_exc.Duplicate, 'already exists'),
    (errors.ObjectNotFound('c', 'o'), store_exc.NotFound, 'Object not found: c/o'),
    (errors.IntegrityError('c', 'o', ['segment o-00002 is missing']),
     store_exc.RemoteServiceUnavailable, 'c/o is damaged: segment o-00002 is missing'),
    (errors.InvalidName('bad'), store_exc.BadStoreUri, 'bad'),
    (errors.AccessError('no catalog'), store_exc.BadStoreConfiguration, 'no catalog'),
])
def test_other_failures_map_to_store_exceptions(exc, expected, fragment):
    mapped = errors.to_store_exception(exc, 'Reading image data')
    assert type(mapped) is expected
    assert fragment in str(mapped)


def test_failed_upload_is_classified_by_its_cause_and_keeps_its_message():
    exc = errors.UploadFailed('Writing c/o failed: Swift has no space left (507)', 507,
                              leftovers=['o-00001'], cause=_client_error(507))
    mapped = errors.to_store_exception(exc, 'Adding')
    assert type(mapped) is store_exc.StorageFull
    assert '1 segment(s) could not be deleted: o-00001' in mapped.msg


def test_store_exceptions_pass_through():
    exc = store_exc.NotFound(message='x')
    assert errors.to_store_exception(exc, 'y') is exc


# -- access -----------------------------------------------------------------------------
@pytest.fixture
def conf():
    conf = cfg.ConfigOpts()
    access.register_opts(conf)
    conf([], project='rax-glance-tests')
    return conf


V3_CATALOG = [
    {'type': 'image', 'endpoints': [{'interface': 'public', 'region_id': 'ORD',
                                     'url': 'http://glance'}]},
    {'type': 'object-store', 'endpoints': [
        {'interface': 'public', 'region_id': 'ORD', 'url': 'https://ord/v1/AUTH_p1'},
        {'interface': 'internal', 'region_id': 'ORD', 'url': 'http://ord-int/v1/AUTH_p1'},
        {'interface': 'public', 'region_id': 'DFW', 'url': 'https://dfw/v1/AUTH_p1'}]},
]


def test_catalog_endpoint_selection():
    with pytest.raises(errors.AccessError) as err:
        access.catalog_endpoint(V3_CATALOG)
    assert 'set [rax_swift] region_name' in str(err.value)
    assert access.catalog_endpoint(V3_CATALOG, 'DFW') == 'https://dfw/v1/AUTH_p1'
    assert access.catalog_endpoint(V3_CATALOG, 'ORD', 'internal') == 'http://ord-int/v1/AUTH_p1'
    v2 = [{'type': 'object-store', 'endpoints': [
        {'region': 'ORD', 'publicURL': 'https://ord/v1/AUTH_p1',
         'internalURL': 'http://snet/v1/AUTH_p1'}]}]
    assert access.catalog_endpoint(v2, 'ORD', 'internal') == 'http://snet/v1/AUTH_p1'
    for catalog in (None, [], [V3_CATALOG[0]]):
        with pytest.raises(errors.AccessError):
            access.catalog_endpoint(catalog)
    with pytest.raises(errors.AccessError):
        access.catalog_endpoint(V3_CATALOG, 'IAD')


def test_keystone_mode_uses_the_context_token_and_project_account(conf):
    conf.set_override('region_name', 'ORD', group='rax_swift')
    ctx = types.SimpleNamespace(project_id='p1', auth_token='tok',
                                service_catalog=V3_CATALOG)
    swift = access.ProjectSwift.from_context(ctx, conf)
    assert swift.storage_url == 'https://ord/v1/AUTH_p1'
    conn = swift.connection()
    assert (conn.url, conn.token) == ('https://ord/v1/AUTH_p1', 'tok')
    # A user token cannot be refreshed: a 401 must surface, not switch accounts.
    with pytest.raises(swiftclient.ClientException) as err:
        conn.get_auth()
    assert err.value.http_status == 401


def test_keystone_mode_refuses_another_projects_endpoint(conf):
    conf.set_override('region_name', 'ORD', group='rax_swift')
    for project in ('p2', 'other_p1x'):
        ctx = types.SimpleNamespace(project_id=project, auth_token='tok',
                                    service_catalog=V3_CATALOG)
        with pytest.raises(errors.AccessError) as err:
            access.ProjectSwift.from_context(ctx, conf)
        assert 'not the account of project' in str(err.value)
    ctx = types.SimpleNamespace(project_id='p1', auth_token=None, service_catalog=V3_CATALOG)
    with pytest.raises(errors.AccessError):
        access.ProjectSwift.from_context(ctx, conf)


def test_service_mode_derives_the_url_from_the_project_only(conf):
    conf.set_override('auth_mode', 'service', group='rax_swift')
    for key, value in dict(auth_url='http://swift/auth/v1.0', auth_version='1', user='s:u',
                           key='k', storage_url_template='http://swift/v1/AUTH_%(project_id)s'
                           ).items():
        conf.set_override(key, value, group='rax_swift')
    tokens = []

    def token_source(refresh=False):
        tokens.append(refresh)
        return 'svc-token-%d' % len(tokens)

    auth = types.SimpleNamespace(token=token_source)
    # The catalog of the context is ignored in service mode.
    ctx = types.SimpleNamespace(project_id='p7', auth_token='user', service_catalog=V3_CATALOG)
    swift = access.ProjectSwift.from_context(ctx, conf, service_auth=auth)
    assert swift.storage_url == 'http://swift/v1/AUTH_p7'
    conn = swift.connection()
    assert conn.token == 'svc-token-1'
    assert conn.get_auth() == ('http://swift/v1/AUTH_p7', 'svc-token-2')
    assert tokens == [False, True]
    for bad in ('p7/../AUTH_p8', 'p7?x', '', None, 'x' * 65):
        ctx.project_id = bad
        with pytest.raises(errors.AccessError):
            access.ProjectSwift.from_context(ctx, conf, service_auth=auth)


def test_service_mode_needs_a_template_and_credentials(conf):
    conf.set_override('auth_mode', 'service', group='rax_swift')
    with pytest.raises(errors.AccessError) as err:
        access.ProjectSwift.for_project('p1', conf)
    assert 'storage_url_template' in str(err.value)
    conf.set_override('storage_url_template', 'http://s/v1/AUTH_%(project_id)s',
                      group='rax_swift')
    with pytest.raises(errors.AccessError) as err:
        access.ProjectSwift.for_project('p1', conf)
    assert 'set auth_url, user, key in [rax_swift]' in str(err.value)


def test_list_opts_have_help():
    for group, opts in access.list_opts() + swiftdlo.list_opts():
        for opt in opts:
            assert opt.help, '%s.%s has no help' % (group, opt.name)


# -- listing checks and the verified reader -----------------------------------------------
def _record(data, seg):
    md5s = [hashlib.md5(data[i:i + seg]).hexdigest() for i in range(0, len(data), seg)]
    return {'size': len(data), 'segment-size': seg, 'segment-count': len(md5s),
            'md5': hashlib.md5(data).hexdigest(), 'sha256': hashlib.sha256(data).hexdigest(),
            'segments-etag': hashlib.md5(''.join(md5s).encode()).hexdigest()}, md5s


def _listing(obj, data, seg, md5s):
    return [{'name': dlo.segment_name(obj, i + 1), 'bytes': len(data[i * seg:(i + 1) * seg]),
             'hash': md5} for i, md5 in enumerate(md5s)]


def test_check_listing():
    data = os.urandom(4096 * 2 + 1000)
    record, md5s = _record(data, 4096)
    listing = _listing('o', data, 4096, md5s)
    assert dlo.check_listing('o', record, listing) == []
    assert dlo.check_listing('o', record, listing[:1] + listing[2:]) == [
        'segment o-00002 is missing']
    assert dlo.check_listing('o', record, listing + [
        {'name': 'o-extra', 'bytes': 1, 'hash': 'x'}]) == [
        'unexpected object o-extra under the segment prefix']
    resized = [dict(listing[0], bytes=10)] + listing[1:]
    assert dlo.check_listing('o', record, resized) == ['segment o-00001 has 10 bytes, '
                                                       'expected 4096']
    # Same names and sizes, first two segments' contents swapped.
    swapped = [dict(listing[0], hash=listing[1]['hash']),
               dict(listing[1], hash=listing[0]['hash'])] + listing[2:]
    assert dlo.check_listing('o', record, swapped) == [
        'segment contents were replaced (segment ETags do not match)']


class _Body:
    def __init__(self, chunks):
        self.chunks = chunks
        self.closed = False

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        self.closed = True


def test_verified_reader_withholds_the_last_chunk_on_mismatch():
    data = b'a' * 100 + b'b' * 100 + b'c' * 50
    record, _ = _record(data, 100)
    good = dlo.VerifiedReader('c', 'o', record, _Body([data[:100], data[100:200], data[200:]]),
                              {'content-length': '250'}, None)
    assert b''.join(good) == data

    altered = data[:-1] + b'X'
    body = _Body([altered[:100], altered[100:200], altered[200:]])
    got = []
    with pytest.raises(errors.IntegrityError) as err:
        for chunk in dlo.VerifiedReader('c', 'o', record, body, {}, None):
            got.append(chunk)
    assert b''.join(got) == data[:200]
    assert 'sha256 of the served bytes' in str(err.value)
    assert body.closed

    with pytest.raises(errors.IntegrityError) as err:
        list(dlo.VerifiedReader('c', 'o', record, _Body([data[:200]]), {}, None))
    assert 'served 200 bytes, recorded 250' in str(err.value)
    with pytest.raises(errors.IntegrityError) as err:
        list(dlo.VerifiedReader('c', 'o', record, _Body([data, b'more']), {}, None))
    assert 'served more than 250 bytes' in str(err.value)


def test_read_record_rejects_plain_objects():
    with pytest.raises(errors.NotADLO) as err:
        dlo.read_record({'content-length': '5'}, 'c', 'o')
    assert 'X-Object-Manifest' in str(err.value)
    headers = {'x-object-manifest': 'c/other-'}
    headers.update({dlo.META + k: '1' for k in dlo.RECORD_KEYS})
    with pytest.raises(errors.IntegrityError) as err:
        dlo.read_record(headers, 'c', 'o')
    assert 'manifest points to c/other- instead of c/o-' in str(err.value)


# -- the glance_store driver without Swift -------------------------------------------------
def _location(uri):
    loc = swiftdlo.StoreLocation({}, cfg.CONF)
    loc.parse_uri(uri)
    return loc


def test_location_round_trip():
    loc = swiftdlo.StoreLocation({'container': 'glance images', 'obj': 'a/b?c'}, cfg.CONF)
    uri = loc.get_uri()
    assert uri == 'swiftdlo://glance%20images/a%2Fb%3Fc'
    parsed = _location(uri)
    assert (parsed.container, parsed.obj) == ('glance images', 'a/b?c')


@pytest.mark.parametrize('uri', [
    'swift://c/o', 'swiftdlo://c', 'swiftdlo://c/', 'swiftdlo:///o', 'swiftdlo://c/o?x=1',
    'swiftdlo://c/o#f', 'swiftdlo://c%2Fd/o', 'swiftdlo://c/' + 'a' * 1100])
def test_bad_locations(uri):
    with pytest.raises(store_exc.BadStoreUri):
        _location(uri)


def _store(**rax):
    conf = cfg.ConfigOpts()
    conf([], project='rax-glance-tests')
    store = swiftdlo.Store(conf, backend='swift')
    conf.register_opts(swiftdlo.OPTIONS, group='swift')
    access.register_opts(conf)
    for key, value in rax.items():
        conf.set_override(key, value, group='rax_swift')
    return store


def test_store_without_credentials_disables_add_only():
    store = _store()
    store.configure()
    assert store.get_schemes() == ('swiftdlo',)
    assert not store.is_capable(capabilities.BitMasks.WRITE_ACCESS)
    assert store.is_capable(capabilities.BitMasks.READ_ACCESS)
    with pytest.raises(store_exc.StoreAddDisabled):
        store.add('id', None, 0, 'sha512')
    with pytest.raises(store_exc.BadStoreConfiguration) as err:
        store.configure_add()
    assert 'set auth_url, user, key in [rax_swift]' in str(err.value)


def test_store_configured_does_not_contact_swift():
    store = _store(auth_url='http://127.0.0.1:9/auth/v1.0', user='s:u', key='k',
                   auth_version='1')
    store.configure(re_raise_bsc=True)
    assert store.is_capable(capabilities.BitMasks.WRITE_ACCESS)
    loc = store_location.Location('swiftdlo', swiftdlo.StoreLocation, store.conf,
                                  uri='swiftdlo://glance-images/abc', backend='swift')
    # Swift is unreachable (port 9): the error is a glance_store one with a message.
    with pytest.raises(store_exc.BadStoreConfiguration) as err:
        store.get_size(loc)
    assert 'unreachable' in str(err.value)


def test_service_auth_options_for_keystone_and_tempauth(conf):
    for key, value in dict(auth_url='http://keystone/v3', user='glance', key='k',
                           project_name='service', region_name='ORD',
                           endpoint_interface='internal').items():
        conf.set_override(key, value, group='rax_swift')
    assert access.ServiceAuth.from_conf(conf).os_options == {
        'project_name': 'service', 'region_name': 'ORD', 'endpoint_type': 'internalURL',
        'user_domain_name': 'Default', 'project_domain_name': 'Default'}
    conf.set_override('auth_version', '1', group='rax_swift')
    assert access.ServiceAuth.from_conf(conf).os_options == {}
