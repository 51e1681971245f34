"""The list-marker filter with a fake Glance: a hidden marker gets the unknown-marker answer,
everything else passes untouched. tests/functional/test_image_patch_guard.py runs it against
the real glance-api."""

import json
import urllib.parse

import pytest
import webob

from rax_glance.api import list_marker

HIDDEN = '11111111-2222-4333-8444-555555555555'
VISIBLE = '99999999-2222-4333-8444-555555555555'


def fake_glance(environ, start_response):
    """403 for the hidden marker, 400 naming any unknown one, 200 otherwise. Like Glance's
    router it moves the path it consumed into SCRIPT_NAME (a second question must not reuse
    that environ)."""
    if environ['PATH_INFO'] != '/v2/images':
        start_response('404 Not Found', [('Content-Type', 'text/plain')])
        return [b'routed twice']
    environ['SCRIPT_NAME'] += '/v2/images'
    environ['PATH_INFO'] = ''
    req = webob.Request(environ)
    marker = req.GET.get('marker')
    if getattr(req, 'context', None) == 'no-role':
        resp = webob.Response(status=403, json_body={'message': 'not authorized'})
    elif marker is None or marker == VISIBLE:
        resp = webob.Response(status=200, json_body={'images': []})
    elif marker == HIDDEN:
        resp = webob.Response(status=403, json_body={
            'message': 'Forbidding request, image %s not visible' % marker})
    else:
        resp = webob.Response(status=400, json_body={
            'message': 'No image found with ID %s' % marker})
    return resp(environ, start_response)


def _get(query, context='customer'):
    req = webob.Request.blank('/v2/images?' + urllib.parse.urlencode(query))
    req.context = context
    return req.get_response(list_marker.ListMarkerFilter(fake_glance))


def test_hidden_marker_answers_exactly_like_an_unknown_one():
    hidden = _get([('marker', HIDDEN), ('limit', '2')])
    unknown = _get([('marker', '22222222-2222-4333-8444-555555555555'), ('limit', '2')])
    assert hidden.status_int == unknown.status_int == 400
    assert hidden.json == {'message': 'No image found with ID %s' % HIDDEN}
    assert len(hidden.body) == len(unknown.body)
    assert hidden.headers['Content-Length'] == str(len(hidden.body))


def test_marker_is_escaped_for_the_answer_format():
    odd = 'a"b\\c'

    def glance(environ, start_response):
        marker = webob.Request(environ).GET['marker']
        status = 403 if marker == odd else 400
        body = json.dumps({'message': 'No image found with ID %s' % marker})
        start_response('%d X' % status, [('Content-Type', 'application/json')])
        return [body.encode()]

    req = webob.Request.blank('/v2/images?' + urllib.parse.urlencode([('marker', odd)]))
    resp = req.get_response(list_marker.ListMarkerFilter(glance))
    assert resp.status_int == 400 and resp.json['message'].endswith(odd)


@pytest.mark.parametrize('query,status', [([('marker', VISIBLE)], 200), ([], 200),
                                          ([('marker', 'nope')], 400)])
def test_other_answers_pass_untouched(query, status):
    assert _get(query).status_int == status


def test_refusal_unrelated_to_the_marker_stays():
    resp = _get([('marker', HIDDEN)], context='no-role')
    assert resp.status_int == 403 and resp.json == {'message': 'not authorized'}


def test_other_paths_and_methods_pass_through():
    calls = []

    def glance(environ, start_response):
        calls.append(environ['PATH_INFO'])
        start_response('403 Forbidden', [('Content-Type', 'text/plain')])
        return [b'no']

    app = list_marker.ListMarkerFilter(glance)
    for path, method in (('/v2/images/%s?marker=%s' % (HIDDEN, HIDDEN), 'GET'),
                         ('/v2/images?marker=%s' % HIDDEN, 'POST')):
        assert webob.Request.blank(path, method=method).get_response(app).status_int == 403
    assert len(calls) == 2
