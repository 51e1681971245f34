"""The image PATCH guard as WSGI: which operations it refuses, how it decodes JSON pointers like
Glance, that it hands Glance the very bytes it checked, and its bounds (413, 400). Glance is a
fake downstream app here; tests/functional/test_image_patch_guard.py runs the real one."""

import io
import json

import pytest
import webob
from oslo_config import cfg

from rax_glance.api import image_patch_guard as guard
from rax_glance.api import options

V21 = 'application/openstack-images-v2.1-json-patch'
V20 = 'application/openstack-images-v2.0-json-patch'


class FakeContext:
    def __init__(self, roles=('cloudImages:admin',), project='p1'):
        self.roles = list(roles)
        self.project_id = project


class Downstream:
    """Stands in for Glance: records the body it reads."""

    def __init__(self):
        self.bodies = []

    def __call__(self, environ, start_response):
        req = webob.Request(environ)
        self.bodies.append(req.body)
        start_response('200 OK', [('Content-Type', 'application/json')])
        return [b'{}']


@pytest.fixture
def app(monkeypatch):
    conf = cfg.ConfigOpts()
    options.register(conf)
    conf([], project='test')
    conf.set_override('max_image_body_bytes', 4096, group='rax_api')
    monkeypatch.setattr(guard.policies, 'authorize',
                        lambda ctx, rule, target: (rule == guard.POLICY_RULE
                                                   and 'rax-glance-operator' in ctx.roles))
    downstream = Downstream()
    return guard.ImagePatchGuard(downstream, conf=conf), downstream


def _patch(app, body, content_type=V21, ctx=None, raw=None, headers=None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = webob.Request.blank('/v2/images/abc', method='PATCH', body=data,
                              content_type=content_type, headers=headers or {})
    req.context = ctx or FakeContext()
    return req.get_response(app)


def test_guarded_set_is_glance_schema_minus_customer_editable():
    from glance.api.v2 import images as glance_images

    guarded = guard.guarded_attributes()
    schema = set(glance_images.get_base_properties())
    for name in ('owner', 'id', 'status', 'locations', 'checksum', 'os_hash_algo',
                 'os_hash_value', 'size', 'virtual_size', 'created_at', 'updated_at',
                 'direct_url', 'file', 'schema', 'self', 'stores',
                 'location', 'deleted', 'deleted_at'):
        assert name in guarded, name
    assert not guarded & guard.CUSTOMER_EDITABLE
    assert guard.CUSTOMER_EDITABLE <= schema
    assert schema - guard.CUSTOMER_EDITABLE <= guarded


@pytest.mark.parametrize('pointer,root', [
    ('/owner', 'owner'), ('//owner', 'owner'), ('/ owner ', 'owner'), ('/owner/x', 'owner'),
    ('/locations/-', 'locations'), ('/own~0er', 'own~er'), ('/a~1b', 'a/b'),
    ('/~01', '~1'), ('/\towner\n', 'owner'),
])
def test_pointer_root_decodes_like_glance(pointer, root):
    assert guard.pointer_root(pointer) == root


@pytest.mark.parametrize('op', ['add', 'replace', 'remove', 'move', 'copy', 'test', 'ADD', 'x'])
@pytest.mark.parametrize('path', ['/owner', '//owner', '/ owner', '/status', '/locations/0',
                                  '/locations/-', '/checksum', '/size', '/id', '/self'])
def test_every_operation_on_a_guarded_attribute_is_refused(app, op, path):
    guard_app, downstream = app
    resp = _patch(guard_app, [{'op': op, 'path': path, 'value': 'x'}])
    assert resp.status_int == 403 and resp.content_type == 'application/json'
    assert resp.json['code'] == 403 and 'cannot be changed' in resp.json['message']
    assert downstream.bodies == []


@pytest.mark.parametrize('op', ['move', 'copy'])
def test_from_of_move_and_copy_is_checked(app, op):
    guard_app, downstream = app
    resp = _patch(guard_app, [{'op': op, 'from': '/owner', 'path': '/my_note'}])
    assert resp.status_int == 403 and "'owner'" in resp.json['message']
    assert downstream.bodies == []


@pytest.mark.parametrize('change', [{'add': '/owner', 'value': 'x'},
                                    {'replace': '/status', 'value': 'active'},
                                    {'remove': '/locations/0'},
                                    {'replace': '/name', 'add': '/owner', 'value': 'x'}])
def test_draft4_media_type_is_checked(app, change):
    guard_app, downstream = app
    resp = _patch(guard_app, [change], content_type=V20)
    assert resp.status_int == 403
    assert downstream.bodies == []


def test_one_guarded_operation_refuses_the_whole_patch(app):
    guard_app, downstream = app
    resp = _patch(guard_app, [{'op': 'replace', 'path': '/name', 'value': 'n'},
                              {'op': 'add', 'path': '/owner', 'value': 'other'}])
    assert resp.status_int == 403 and downstream.bodies == []


@pytest.mark.parametrize('content_type', [V21, V21.upper(), V21 + '; charset=utf-8', V20])
def test_allowed_operations_reach_glance_byte_for_byte(app, content_type):
    guard_app, downstream = app
    raw = json.dumps([{'op': 'replace', 'path': '/name', 'value': 'n'},
                      {'op': 'add', 'path': '/my_owner', 'value': 'x'},
                      {'op': 'replace', 'path': '/tags', 'value': ['a']}]).encode()
    if content_type == V20:
        raw = json.dumps([{'replace': '/name', 'value': 'n'}]).encode()
    resp = _patch(guard_app, None, content_type=content_type, raw=raw)
    assert resp.status_int == 200
    assert downstream.bodies == [raw]


def test_chunked_body_is_read_bounded_and_handed_on(app):
    guard_app, downstream = app
    raw = json.dumps([{'op': 'replace', 'path': '/name', 'value': 'n'}]).encode()
    environ = webob.Request.blank('/v2/images/abc', method='PATCH').environ
    environ.update({'CONTENT_TYPE': V21, 'HTTP_TRANSFER_ENCODING': 'chunked',
                    'wsgi.input': io.BytesIO(raw)})
    environ.pop('CONTENT_LENGTH', None)
    req = webob.Request(environ)
    req.context = FakeContext()
    resp = req.get_response(guard_app)
    assert resp.status_int == 200 and downstream.bodies == [raw]


def test_chunked_body_over_the_limit_is_413(app):
    guard_app, downstream = app
    environ = webob.Request.blank('/v2/images/abc', method='PATCH').environ
    environ.update({'CONTENT_TYPE': V21, 'HTTP_TRANSFER_ENCODING': 'chunked',
                    'wsgi.input': io.BytesIO(b'[' + b' ' * 10000 + b']')})
    environ.pop('CONTENT_LENGTH', None)
    req = webob.Request(environ)
    req.context = FakeContext()
    resp = req.get_response(guard_app)
    assert resp.status_int == 413 and resp.json['code'] == 413 and downstream.bodies == []


def test_declared_length_over_the_limit_is_413_without_reading(app):
    guard_app, downstream = app

    class Exploding(io.RawIOBase):
        def read(self, size=-1):
            raise AssertionError('the body must not be read')

    environ = webob.Request.blank('/v2/images/abc', method='PATCH').environ
    environ.update({'CONTENT_TYPE': V21, 'CONTENT_LENGTH': str(1 << 30),
                    'wsgi.input': Exploding()})
    req = webob.Request(environ)
    req.context = FakeContext()
    resp = req.get_response(guard_app)
    assert resp.status_int == 413 and downstream.bodies == []


@pytest.mark.parametrize('raw', [b'[{"op": "add", "path": "/owner"', b'\xff\xfe[]',
                                 b'\xef\xbb\xbf[]', b'[' * 3000 + b']' * 3000])
def test_unparseable_bodies_are_400_json(app, raw):
    guard_app, downstream = app
    resp = _patch(guard_app, None, raw=raw)
    assert resp.status_int in (400, 413) and resp.content_type == 'application/json'
    assert downstream.bodies == []


def test_very_deep_nesting_is_400_not_500(app, monkeypatch):
    guard_app, downstream = app
    guard_app.conf.set_override('max_image_body_bytes', 1 << 20, group='rax_api')
    resp = _patch(guard_app, None, raw=b'[' * 200000 + b']' * 200000)
    assert resp.status_int == 400 and 'not valid JSON' in resp.json['message']


@pytest.mark.parametrize('change', [{'op': 'add', 'path': ['owner'], 'value': 'x'},
                                    {'op': 'move', 'from': 7, 'path': '/a'}])
def test_non_string_pointers_are_400(app, change):
    guard_app, downstream = app
    resp = _patch(guard_app, [change])
    assert resp.status_int == 400 and downstream.bodies == []


@pytest.mark.parametrize('body', [{}, 'x', [1, 'a'], []])
def test_other_malformed_documents_are_left_to_glance(app, body):
    guard_app, downstream = app
    assert _patch(guard_app, body).status_int == 200
    assert len(downstream.bodies) == 1


def test_operator_passes_unchecked(app):
    guard_app, downstream = app
    resp = _patch(guard_app, [{'op': 'replace', 'path': '/owner', 'value': 'other'}],
                  ctx=FakeContext(roles=['rax-glance-operator']))
    assert resp.status_int == 200 and len(downstream.bodies) == 1


def test_customer_admin_role_named_admin_is_refused(app):
    guard_app, _ = app
    resp = _patch(guard_app, [{'op': 'add', 'path': '/owner', 'value': 'other'}],
                  ctx=FakeContext(roles=['admin']))
    assert resp.status_int == 403


def test_missing_context_is_refused(app):
    guard_app, downstream = app
    req = webob.Request.blank('/v2/images/abc', method='PATCH', content_type=V21,
                              body=b'[{"op": "add", "path": "/owner", "value": "x"}]')
    assert req.get_response(guard_app).status_int == 403 and downstream.bodies == []


@pytest.mark.parametrize('method,content_type', [('GET', V21), ('PATCH', 'application/json'),
                                                 ('PUT', V21)])
def test_other_requests_pass_through(app, method, content_type):
    guard_app, downstream = app
    req = webob.Request.blank('/v2/images/abc', method=method, content_type=content_type,
                              body=b'[{"op": "add", "path": "/owner", "value": "x"}]')
    req.context = FakeContext()
    assert req.get_response(guard_app).status_int == 200


def test_the_bound_holds_for_the_operator_too(app):
    guard_app, downstream = app
    raw = json.dumps([{'op': 'add', 'path': '/my_note', 'value': 'x' * 5000}]).encode()
    resp = _patch(guard_app, None, raw=raw, ctx=FakeContext(roles=['rax-glance-operator']))
    assert resp.status_int == 413 and downstream.bodies == []


def _create(app, body, ctx=None, raw=None, content_type='application/json'):
    data = raw if raw is not None else json.dumps(body).encode()
    req = webob.Request.blank('/v2/images', method='POST', body=data, content_type=content_type)
    req.context = ctx or FakeContext()
    return req.get_response(app)


@pytest.mark.parametrize('attribute', ['os_hash_algo', 'os_hash_value', 'status', 'checksum',
                                       'size', 'locations', 'created_at', 'stores'])
@pytest.mark.parametrize('content_type', ['application/json', 'text/plain'])
def test_create_cannot_set_guarded_attributes(app, attribute, content_type):
    guard_app, downstream = app
    resp = _create(guard_app, {'name': 'n', attribute: 'x'}, content_type=content_type)
    assert resp.status_int == 403 and ("'%s' cannot be set" % attribute) in resp.json['message']
    assert downstream.bodies == []


def test_create_with_id_owner_and_editable_attributes_reaches_glance(app):
    guard_app, downstream = app
    body = {'id': '9f3c1c9e-1111-4111-8111-111111111111', 'owner': 'p1', 'name': 'n',
            'disk_format': 'raw', 'container_format': 'bare', 'min_ram': 1, 'tags': ['a'],
            'visibility': 'private', 'protected': False, 'os_hidden': False, 'my_prop': 'x'}
    resp = _create(guard_app, body)
    assert resp.status_int == 200 and downstream.bodies == [json.dumps(body).encode()]


def test_create_by_operator_and_other_paths_pass(app):
    guard_app, downstream = app
    resp = _create(guard_app, {'os_hash_algo': 'x'},
                   ctx=FakeContext(roles=['rax-glance-operator']))
    assert resp.status_int == 200
    req = webob.Request.blank('/v2/images/abc/members', method='POST',
                              body=b'{"status": "x"}', content_type='application/json')
    req.context = FakeContext()
    assert req.get_response(guard_app).status_int == 200
    assert len(downstream.bodies) == 2
