"""Paste filter: metadata definition namespaces the caller cannot see answer as missing ones.

Place it after `context` in the glance-api pipeline (`etc/glance-api-paste.ini`):

    [filter:cloudimages-metadef-namespace]
    paste.filter_factory = rax_glance.api.metadef_namespace:filter_factory

Glance 33 answers `GET /v2/metadefs/namespaces/{namespace}` for another project's private
namespace with 404 "The resource could not be found." and for a missing one with 404 "Metadata
definition namespace=<name> was not found." (and `.../objects` with a third text): an oracle
for the names of other projects' private namespaces. When Glance answers a read below
`/v2/metadefs/namespaces/{namespace}` with 403 or 404 and the caller cannot read the namespace
itself, this filter answers what Glance answers for the same request on a namespace that
certainly does not exist (a fresh random name), with the caller's name written back where Glance
names the fresh one. Errors inside a namespace the caller can read are left as they are.
"""

import io
import re
import uuid

import webob

from rax_glance.api import list_marker

_NAMESPACE_PATH = re.compile(r'^/v2/metadefs/namespaces/(?P<name>[^/]+)(?P<rest>/.*)?$')


class MetadefNamespaceFilter:
    """WSGI middleware in front of Glance's v2 API."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        match = _NAMESPACE_PATH.match(environ.get('PATH_INFO', ''))
        if environ.get('REQUEST_METHOD', '').upper() not in ('GET', 'HEAD') or not match:
            return self.app(environ, start_response)
        # Glance's routing rewrites SCRIPT_NAME and PATH_INFO: keep pristine copies.
        pristine = dict(environ)
        resp = webob.Request(environ).get_response(self.app)
        if resp.status_code not in (403, 404):
            return resp(environ, start_response)
        name, rest = match.group('name'), match.group('rest') or ''
        if self._readable(pristine, name):
            return resp(environ, start_response)
        fresh = 'rax-%s' % uuid.uuid4().hex
        probe = dict(pristine, PATH_INFO='/v2/metadefs/namespaces/%s%s' % (fresh, rest))
        answer = webob.Request(probe).get_response(self.app)
        content_type = (answer.content_type or '').lower()
        body = answer.body
        if fresh.encode() in body:
            answer.body = body.replace(
                fresh.encode(), list_marker._escaped(name, content_type).encode('utf-8'))
        return answer(environ, start_response)

    def _readable(self, pristine, name):
        probe = dict(pristine, REQUEST_METHOD='GET', QUERY_STRING='', CONTENT_LENGTH='0',
                     PATH_INFO='/v2/metadefs/namespaces/%s' % name)
        probe['wsgi.input'] = io.BytesIO(b'')
        probe.pop('CONTENT_TYPE', None)
        return webob.Request(probe).get_response(self.app).status_code == 200


def filter_factory(global_conf, **local_conf):
    def _filter(app):
        return MetadefNamespaceFilter(app)
    return _filter
