"""rax_glance.api.json_errors as WSGI: every error answer is JSON whatever Accept says."""

import json

import pytest
import webob
import webob.dec
import webob.exc

from rax_glance.api import json_errors

ACCEPTS = [None, '*/*', 'text/html', 'application/xml', 'text/plain',
           'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
           'application/json', 'image/png', 'garbage;;;q=x']


def _call(app, path='/v2/images/x', method='GET', accept=None):
    req = webob.Request.blank(path, method=method)
    if accept is not None:
        req.headers['Accept'] = accept
    return req.get_response(json_errors.JsonErrors(app))


@webob.dec.wsgify
def _webob_forbidden(req):
    raise webob.exc.HTTPForbidden(explanation='You are not authorized to do <that>.')


def _plain_teapot(environ, start_response):
    start_response('418 I\'m a teapot', [('Content-Type', 'text/plain'),
                                        ('X-Extra', 'kept')])
    return [b'418 I\'m a teapot\n\nShort and stout.\n']


def _html_405(environ, start_response):
    start_response('405 Method Not Allowed', [('Content-Type', 'text/html; charset=UTF-8'),
                                              ('Allow', 'GET, HEAD')])
    return [b'<html><head><title>405 Method Not Allowed</title></head><body>'
            b'<h1>405 Method Not Allowed</h1>The method POST is not allowed.<br /><br />'
            b'</body></html>']


def _no_content_type_500(environ, start_response):
    start_response('500 Internal Server Error', [])
    return [b'boom']


def _raises(environ, start_response):
    raise RuntimeError('secret internals /etc/glance')


def _lazy_raises(environ, start_response):
    yield b''
    raise RuntimeError('secret internals')


@pytest.mark.parametrize('accept', ACCEPTS)
def test_webob_errors_are_json_with_one_message_whatever_accept(accept):
    resp = _call(_webob_forbidden, accept=accept)
    assert resp.status_int == 403
    assert resp.content_type == 'application/json'
    body = json.loads(resp.body)
    assert body == {'error': {'code': 403, 'title': 'Forbidden',
                              'message': 'You are not authorized to do <that>.'}}


@pytest.mark.parametrize('accept', ACCEPTS)
@pytest.mark.parametrize('app,status,message,header', [
    (_plain_teapot, 418, 'Short and stout.', ('X-Extra', 'kept')),
    (_html_405, 405, 'The method POST is not allowed.', ('Allow', 'GET, HEAD')),
    (_no_content_type_500, 500, 'boom', None),
])
def test_non_json_errors_are_rewritten(accept, app, status, message, header):
    resp = _call(app, accept=accept)
    assert resp.status_int == status
    assert resp.content_type == 'application/json'
    body = json.loads(resp.body)['error']
    assert body['code'] == status and body['message'] == message and body['title']
    assert len(resp.body) == int(resp.headers['Content-Length'])
    if header:
        assert resp.headers[header[0]] == header[1]


@pytest.mark.parametrize('app', [_raises, _lazy_raises])
def test_exceptions_become_a_json_500_without_internals(app):
    resp = _call(app, accept='text/html')
    assert resp.status_int == 500 and resp.content_type == 'application/json'
    assert 'secret' not in resp.text and 'Traceback' not in resp.text
    assert json.loads(resp.body)['error']['code'] == 500


def test_success_streams_untouched():
    chunks = [b'a' * 10, b'b' * 10]
    seen = {}

    def app(environ, start_response):
        seen['accept'] = environ.get('HTTP_ACCEPT')
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        return iter(chunks)

    resp = _call(app, accept='*/*')
    assert resp.status_int == 200 and resp.body == b''.join(chunks)
    assert resp.content_type == 'application/octet-stream'
    assert seen['accept'] == 'application/json'


@pytest.mark.parametrize('body,message', [
    # webob's flat JSON (Glance), the bundle's flat JSON, Keystone's nested JSON.
    (b'{"message": "No <br /><br />\\n\\n\\n", "code": "401 Unauthorized", "title": "U"}',
     'No'),
    (b'{"code": 401, "title": "Unauthorized", "message": "No token."}', 'No token.'),
    (b'{"error": {"code": 401, "title": "Unauthorized", "message": "No token."}}',
     'No token.'),
    (b'[1, 2]', '[1, 2]'),
    (b'{"truncated": ', '{"truncated":'),
])
def test_json_errors_get_one_nested_shape(body, message):
    def app(environ, start_response):
        start_response('401 Unauthorized', [('Content-Type', 'application/json'),
                                            ('WWW-Authenticate', 'Keystone uri="x"')])
        return [body]

    resp = _call(app, accept='text/html')
    assert resp.status_int == 401 and resp.content_type == 'application/json'
    assert json.loads(resp.body) == {'error': {'code': 401, 'title': 'Unauthorized',
                                               'message': message}}
    assert resp.headers['WWW-Authenticate'] == 'Keystone uri="x"'


def test_glanceclient_and_openstacksdk_read_the_message():
    import requests
    from glanceclient import exc as glance_exc
    from openstack import exceptions as sdk_exc

    resp = _call(_webob_forbidden, accept='*/*')
    fake = requests.Response()
    fake.status_code, fake._content = 403, resp.body
    fake.headers['content-type'] = resp.content_type
    assert 'You are not authorized to do <that>.' in str(
        glance_exc.from_response(fake, resp.body))
    with pytest.raises(sdk_exc.ForbiddenException) as caught:
        sdk_exc.raise_from_response(fake)
    assert caught.value.details == 'You are not authorized to do <that>.'


def test_media_type_version_requests_keep_their_accept():
    seen = {}

    def app(environ, start_response):
        seen['accept'] = environ.get('HTTP_ACCEPT')
        return webob.exc.HTTPNotFound()(environ, start_response)

    resp = _call(app, accept='application/vnd.openstack.images-v2')
    assert seen['accept'] == 'application/vnd.openstack.images-v2'
    assert resp.status_int == 404 and resp.content_type == 'application/json'
    assert json.loads(resp.body)['error']['message'] == 'The resource could not be found.'


def test_head_errors_have_no_body():
    resp = _call(_html_405, method='HEAD', accept='text/html')
    assert resp.status_int == 405 and resp.content_type == 'application/json'
    assert resp.body == b''
