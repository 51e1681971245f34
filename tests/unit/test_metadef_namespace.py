"""The metadef-namespace filter with a fake Glance: reads below a namespace the caller cannot
read answer as for a missing namespace; errors inside a readable one stay. The real glance-api
is in tests/functional/test_image_patch_guard.py."""

import webob

from rax_glance.api import metadef_namespace

READABLE, HIDDEN = 'pub', 'secret'


def fake_glance(environ, start_response):
    path = environ['PATH_INFO']
    assert path.startswith('/v2/metadefs/namespaces/'), path  # never a routed environ
    environ['SCRIPT_NAME'] += '/v2'
    environ['PATH_INFO'] = path[3:]
    name, _, rest = path[len('/v2/metadefs/namespaces/'):].partition('/')
    if name == READABLE:
        status, text = (200, 'ok') if rest in ('', 'objects') else (404, 'no object %s' % rest)
    elif name == HIDDEN:
        status, text = 404, 'The resource could not be found.'
    else:
        status, text = 404, 'Metadata definition namespace=%s was not found.' % name
    return webob.Response(status=status, json_body={'message': text})(environ, start_response)


def _get(path, method='GET'):
    req = webob.Request.blank(path, method=method)
    return req.get_response(metadef_namespace.MetadefNamespaceFilter(fake_glance))


def test_hidden_namespace_answers_like_a_missing_one():
    for rest in ('', '/objects', '/tags/t1'):
        hidden = _get('/v2/metadefs/namespaces/%s%s' % (HIDDEN, rest))
        missing = _get('/v2/metadefs/namespaces/%s%s' % ('other', rest))
        assert hidden.status_int == missing.status_int == 404
        assert hidden.json['message'] == 'Metadata definition namespace=%s was not found.' % HIDDEN
        assert missing.json['message'].replace('other', HIDDEN) == hidden.json['message']


def test_errors_inside_a_readable_namespace_stay():
    resp = _get('/v2/metadefs/namespaces/%s/objects/o9' % READABLE)
    assert resp.status_int == 404 and resp.json['message'] == 'no object objects/o9'
    assert _get('/v2/metadefs/namespaces/%s' % READABLE).status_int == 200


def test_writes_and_other_paths_pass_through():
    resp = _get('/v2/metadefs/namespaces/%s' % HIDDEN, method='DELETE')
    assert resp.json['message'] == 'The resource could not be found.'
