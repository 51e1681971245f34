"""Paste filter answering `GET /v2/info/stores/detail` when a `swiftdlo` store is enabled.

Stock glance-api 33 builds that answer from a fixed table of its own store types and calls
`None` for any other, so with the bundle's `swiftdlo` store it answers 500 with a traceback in
its log. This filter answers the request itself, exactly as Glance would (the same store list
from Glance's own `InfoController.get_stores`, the same `stores_info_detail` policy check, the
same properties for Glance's store types), adding the `swiftdlo` store's own properties. Any
other request, and every request while no `swiftdlo` store is enabled, goes to Glance
untouched. Place it after `context` (it needs the request context):

    [filter:cloudimages-stores]
    paste.filter_factory = rax_glance.api.stores:filter_factory
"""

import json

import webob
from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)
PATHS = ('/v2/info/stores/detail', '/v2/info/stores/detail/')
SWIFTDLO = 'swiftdlo'


def _swiftdlo_properties(store_conf, rax_swift):
    return {
        'container': store_conf.swiftdlo_container,
        'large_object_size': 0,  # every image is a DLO
        'large_object_chunk_size': store_conf.swiftdlo_segment_size or rax_swift.segment_size,
        'segment_concurrency': (store_conf.swiftdlo_segment_concurrency or
                                rax_swift.segment_concurrency),
        'verified_dlo': True,
    }


class StoresDetailFilter:
    def __init__(self, app, conf=None):
        self.app = app
        self.conf = conf or cfg.CONF

    def _has_swiftdlo(self):
        try:
            backends = self.conf.enabled_backends or {}
        except cfg.NoSuchOptError:
            return False
        return SWIFTDLO in backends.values()

    def __call__(self, environ, start_response):
        if (environ.get('REQUEST_METHOD') != 'GET' or environ.get('PATH_INFO') not in PATHS
                or not self._has_swiftdlo()):
            return self.app(environ, start_response)
        req = webob.Request(environ)
        context = getattr(req, 'context', None)
        if context is None:
            return self.app(environ, start_response)
        try:
            body = self._detail(req)
        except webob.exc.HTTPException as exc:
            return exc(environ, start_response)
        resp = webob.Response(status=200, content_type='application/json', charset='utf-8')
        resp.body = json.dumps(body).encode('utf-8')
        return resp(environ, start_response)

    def _detail(self, req):
        import glance_store as g_store
        from glance.api.v2 import discovery
        from glance.api.v2 import policy as api_policy
        from glance.common import exception

        from rax_glance.swift import access

        controller = discovery.InfoController()
        stores = controller.get_stores(req).get('stores')
        try:
            api_policy.DiscoveryAPIPolicy(
                req.context, enforcer=controller.policy).stores_info_detail()
        except exception.Forbidden as exc:
            raise webob.exc.HTTPForbidden(explanation=exc.msg) from exc
        glance_types = {
            'rbd': controller._get_rbd_properties,
            'file': controller._get_file_properties,
            'cinder': controller._get_cinder_properties,
            'swift': controller._get_swift_properties,
            's3': controller._get_s3_properties,
            'http': controller._get_http_properties,
        }
        backends = self.conf.enabled_backends
        for store in stores:
            store_type = backends[store['id']]
            store['type'] = store_type
            detail = g_store.get_store_from_store_identifier(store['id'])
            if store_type == SWIFTDLO:
                access.register_opts(self.conf)
                store['properties'] = _swiftdlo_properties(detail.store_conf,
                                                           self.conf.rax_swift)
            elif store_type in glance_types:
                store['properties'] = glance_types[store_type](detail)
            else:
                store['properties'] = {}
            store['weight'] = getattr(self.conf, store['id']).weight
        return {'stores': stores}


def filter_factory(global_conf, **local_conf):
    def make(app):
        return StoresDetailFilter(app)
    return make
