"""Keystone mode: Swift requests carry the service user's token as X-Service-Token, so Swift
accepts the customer's token after it expired (issue 12 item 3). A local HTTP server plays
Swift: it records the tokens of each request and answers 401 as told."""

import http.server
import threading

import pytest
import swiftclient
from oslo_config import cfg

from rax_glance.swift import access


class _Swift(http.server.BaseHTTPRequestHandler):
    seen = []
    refuse = []  # statuses to answer before 204s

    def do_HEAD(self):  # noqa: N802
        _Swift.seen.append((self.headers.get('X-Auth-Token'),
                            self.headers.get('X-Service-Token')))
        status = _Swift.refuse.pop(0) if _Swift.refuse else 204
        self.send_response(status)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def swift_url():
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Swift)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Swift.seen, _Swift.refuse = [], []
    yield 'http://127.0.0.1:%d/v1/AUTH_p1' % server.server_address[1]
    server.shutdown()
    server.server_close()


class _ServiceTokens:
    def __init__(self):
        self.calls = []

    def __call__(self, refresh=False):
        self.calls.append(refresh)
        return 'service-%d' % len(self.calls)


def _swift(url, source):
    return access.ProjectSwift(url, token='user-token', project_id='p1', retries=1,
                               retry_backoff=0, service_token_source=source)


def test_every_request_carries_the_service_token(swift_url):
    source = _ServiceTokens()
    conn = _swift(swift_url, source).connection()
    conn.head_account()
    conn.head_account()
    assert _Swift.seen == [('user-token', 'service-1')] * 2
    assert source.calls == [False]


def test_401_renews_only_the_service_token_and_keeps_the_users(swift_url):
    source = _ServiceTokens()
    _Swift.refuse = [401]
    _swift(swift_url, source).connection().head_account()
    assert _Swift.seen == [('user-token', 'service-1'), ('user-token', 'service-2')]
    assert source.calls == [False, True]


def test_a_token_swift_keeps_refusing_is_an_error_not_a_loop(swift_url):
    _Swift.refuse = [401, 401, 401]
    with pytest.raises(swiftclient.ClientException) as exc:
        _swift(swift_url, _ServiceTokens()).connection().head_account()
    assert exc.value.http_status == 401
    assert len(_Swift.seen) == 2


def test_without_a_service_token_a_401_is_final(swift_url):
    _Swift.refuse = [401]
    swift = access.ProjectSwift(swift_url, token='user-token', project_id='p1', retries=1,
                                retry_backoff=0)
    with pytest.raises(swiftclient.ClientException):
        swift.connection().head_account()
    assert _Swift.seen == [('user-token', None)]


CATALOG = [{'type': 'object-store', 'endpoints': [
    {'interface': 'public', 'region_id': 'R', 'url': 'http://swift/v1/AUTH_p1'}]}]


def _conf(**values):
    conf = cfg.ConfigOpts()
    access.register_opts(conf)
    conf([], default_config_files=[])
    for key, value in values.items():
        conf.set_override(key, value, group=access.GROUP)
    return conf


def test_from_catalog_sends_the_service_token_when_service_credentials_are_set():
    conf = _conf(auth_url='http://keystone/v3', user='glance', key='secret',
                 project_name='service')
    calls = []

    class FakeAuth:
        def token(self, refresh=False):
            calls.append(refresh)
            return 'svc'

    swift = access.ProjectSwift.from_catalog('p1', 'user-token', CATALOG, conf, FakeAuth())
    assert swift.account == 'AUTH_p1'
    conn = swift.connection()
    assert conn.service_auth is True
    assert conn.get_service_auth() == ('http://swift/v1/AUTH_p1', 'svc')
    assert conn.get_auth() == ('http://swift/v1/AUTH_p1', 'user-token')


@pytest.mark.parametrize('values', [{}, {'auth_url': 'http://swift/auth/v1.0',
                                         'auth_version': '1', 'user': 'a:b', 'key': 'k'}])
def test_no_service_token_without_keystone_service_credentials(values):
    swift = access.ProjectSwift.from_catalog('p1', 'user-token', CATALOG, _conf(**values))
    assert swift.connection().service_auth is False
