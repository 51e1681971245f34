"""Paste filter: a list's `marker` says nothing about resources the caller cannot see.

Place it after `context` in the glance-api pipeline (`etc/glance-api-paste.ini`):

    [filter:cloudimages-list-marker]
    paste.filter_factory = rax_glance.api.list_marker:filter_factory

Glance 33 answers a list whose marker is another project's private image with 403 ("image ...
not visible") and a marker that names no image with 400 ("No image found with ID ..."): an
oracle telling whether any image id exists. When Glance refuses a list request that has a
marker, this filter asks Glance the same question with a marker that certainly names no image
(a fresh random UUID) and answers what Glance answers to that, with the caller's marker written
back where Glance names the fresh one. So a hidden image and a missing one get the same answer,
byte for byte, and a refusal that has nothing to do with the marker (e.g. a caller without any
read role) stays what it was. `GET /v2/metadefs/namespaces?marker=` (403 for another project's
private namespace, 404 for an unknown one) is treated the same way.
"""

import html
import json
import urllib.parse
import uuid

import webob

# Lists whose marker names a resource of another project: images, and metadata definition
# namespaces (which Glance answers 403 "... not visible" vs 404 "... was not found").
_LIST_PATHS = ('/v2/images', '/v2/images/', '/v2/metadefs/namespaces',
               '/v2/metadefs/namespaces/')


def _escaped(text, content_type):
    if content_type == 'application/json':
        return json.dumps(text)[1:-1]
    if content_type == 'text/html':
        return html.escape(text, quote=False)
    return text


class ListMarkerFilter:
    """WSGI middleware in front of Glance's v2 API."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if (environ.get('REQUEST_METHOD', '').upper() != 'GET'
                or environ.get('PATH_INFO', '') not in _LIST_PATHS):
            return self.app(environ, start_response)
        query = urllib.parse.parse_qsl(environ.get('QUERY_STRING', ''),
                                       keep_blank_values=True)
        markers = [value for key, value in query if key == 'marker']
        if not markers:
            return self.app(environ, start_response)
        # Glance's routing rewrites SCRIPT_NAME and PATH_INFO in the environ it is given: keep
        # a pristine copy for the second question.
        pristine = dict(environ)
        resp = webob.Request(environ).get_response(self.app)
        if resp.status_code != 403:
            return resp(environ, start_response)
        return self._as_unknown_marker(pristine, query, markers[0])(environ, start_response)

    def _as_unknown_marker(self, environ, query, marker):
        fresh = str(uuid.uuid4())
        environ['QUERY_STRING'] = urllib.parse.urlencode(
            [(key, fresh if key == 'marker' else value) for key, value in query])
        resp = webob.Request(environ).get_response(self.app)
        content_type = (resp.content_type or '').lower()
        body = resp.body
        if fresh.encode() in body:
            resp.body = body.replace(fresh.encode(),
                                     _escaped(marker, content_type).encode('utf-8'))
        return resp


def filter_factory(global_conf, **local_conf):
    def _filter(app):
        return ListMarkerFilter(app)
    return _filter
