"""Paste filter: customers' JSON-patch requests never touch the core attributes Glance manages.

Place it after `context` in the glance-api pipeline (`etc/glance-api-paste.ini`):

    [filter:cloudimages-image-patch-guard]
    paste.filter_factory = rax_glance.api.image_patch_guard:filter_factory

Why: Glance 33 applies each operation of an image PATCH to the image before it checks the next
one, and its `add` on `/owner` lacks the admin check its `replace` has. A customer-admin's
`[{"op": "add", "path": "/owner", "value": "<other project>"}]` answers 403 but the new owner
is saved: the image leaves its project. This filter refuses, before Glance reads the body, every
JSON-patch operation whose `path` (or `from`) names a *guarded* core attribute, whatever the
operation (`add`, `replace`, `remove`, `move`, `copy`, `test` or anything else), in both patch
media types Glance accepts (v2.1: `{"op": ..., "path": ...}`; v2.0: `{"add": "/path"}`). JSON
pointers are decoded exactly as Glance decodes them (leading slashes stripped, `~1` and `~0`
unescaped, white space around the token stripped), so no spelling reaches Glance as `owner`
without reaching this check as `owner`.

Guarded attributes are derived from Glance's own image schema at start-up: every property of
`glance.api.v2.images.get_base_properties()` except the few a customer may edit
(CUSTOMER_EDITABLE), plus the names Glance itself refuses in a PATCH (read-only, reserved,
disallowed). An attribute a future Glance adds to its schema is therefore guarded by default.

Who passes: a caller for whom the policy rule `rax_glance:modify_core_attributes` holds (the
operator by default) is not checked here; Glance's own checks still apply to it.

The same check covers the body of `POST /v2/images`: a customer may not set a guarded attribute
when creating an image either (except `id` and `owner`, which Glance and the `add_image` policy
judge). Glance 33 refuses most of them itself but hands `os_hash_algo` and `os_hash_value` on
as extra properties (a customer's create with `os_hash_algo` answered 201).

The body of every image PATCH and create (the operator's too) is read with a bounded size
(`[rax_api] max_image_body_bytes`, 413 beyond it) and handed on to Glance byte for byte, so
Glance parses exactly what was checked. A customer's body that is not valid UTF-8 JSON answers
400 here (Glance would answer 400 too, or 500 for very deep nesting).
"""

import io
import json

import webob
from oslo_config import cfg
from oslo_log import log as logging

from rax_glance import policies
from rax_glance.api import options

LOG = logging.getLogger(__name__)

# The JSON-patch media types of Glance 33's image PATCH, with the JSON-patch draft each uses.
PATCH_MEDIA_TYPES = {
    'application/openstack-images-v2.0-json-patch': 4,
    'application/openstack-images-v2.1-json-patch': 10,
}
# Operation keys of draft 4 (`{"add": "/path", "value": ...}`), and of RFC 6902 for good measure.
DRAFT4_OPERATION_KEYS = ('add', 'remove', 'replace', 'move', 'copy', 'test')

# Core attributes of Glance's image schema that a customer-admin may change on their own image
# (doc/api.md section 1: "PATCH image (any property, incl. name)"). Glance's policy still
# decides the values (e.g. visibility `public` and `community` are the operator's).
CUSTOMER_EDITABLE = frozenset({
    'name', 'visibility', 'protected', 'os_hidden', 'container_format', 'disk_format',
    'min_ram', 'min_disk', 'tags',
})

POLICY_RULE = 'rax_glance:modify_core_attributes'

# Image creation (POST /v2/images): Glance 33 refuses most guarded attributes itself, but hands
# `os_hash_algo` and `os_hash_value` on as extra properties.
CREATE_PATHS = ('/v2/images', '/v2/images/')
CREATE_ALLOWED = frozenset({'id', 'owner'})


def guarded_attributes():
    """Every core attribute of Glance's image schema a customer may not change."""
    from glance.api.v2 import images as glance_images

    schema = set(glance_images.get_base_properties())
    deserializer = glance_images.RequestDeserializer
    refused_by_glance = set()
    for name in ('_readonly_properties', '_reserved_properties', '_disallowed_properties'):
        refused_by_glance.update(getattr(deserializer, name, ()))
    return frozenset((schema - CUSTOMER_EDITABLE) | refused_by_glance)


def pointer_root(pointer):
    """The attribute a JSON pointer names, decoded as Glance 33 decodes it."""
    first = pointer.lstrip('/').split('/')[0]
    return first.replace('~1', '/').replace('~0', '~').strip()


def refused_create_attribute(document, guarded):
    """The first guarded attribute an image-create body sets, or None.

    `id` (a customer may choose the id of a new image) and `owner` (the add_image policy keeps
    it to the caller's project) are Glance's to judge.
    """
    if not isinstance(document, dict):
        return None  # Glance answers 400
    for key in sorted(document):
        if key in guarded and key not in CREATE_ALLOWED:
            return key
    return None


class BadPatch(ValueError):
    """The PATCH body cannot be checked (400)."""


def _json(status, body):
    resp = webob.Response(status=status, content_type='application/json', charset='utf-8')
    resp.body = json.dumps(body).encode('utf-8')
    return resp


def _error(status, message):
    code, _, title = webob.Response(status=status).status.partition(' ')
    return _json(status, {'code': int(code), 'title': title, 'message': message})


def operation_paths(change, draft):
    """The JSON pointers one operation object names (its target and, for move/copy, source)."""
    if not isinstance(change, dict):
        return []  # Glance answers 400 for it
    keys = ['path', 'from']
    if draft == 4:
        keys += DRAFT4_OPERATION_KEYS
    paths = []
    for key in keys:
        if key not in change:
            continue
        value = change[key]
        if not isinstance(value, str):
            raise BadPatch('The "%s" member of a JSON-patch operation must be a string.' % key)
        paths.append(value)
    return paths


def refused_attribute(document, draft, guarded):
    """The first guarded attribute the patch document touches, or None."""
    if not isinstance(document, list):
        return None  # Glance answers 400: "Request body must be a JSON array ..."
    for change in document:
        for path in operation_paths(change, draft):
            root = pointer_root(path)
            if root in guarded:
                return root
    return None


class ImagePatchGuard:
    """WSGI middleware in front of Glance's v2 API."""

    def __init__(self, app, conf=None, guarded=None):
        self.app = app
        self.conf = options.register(conf or cfg.CONF)
        self.guarded = guarded if guarded is not None else guarded_attributes()

    def __call__(self, environ, start_response):
        method = environ.get('REQUEST_METHOD', '').upper()
        req = webob.Request(environ)
        if method == 'PATCH':
            draft = PATCH_MEDIA_TYPES.get((req.content_type or '').strip().lower())
            if draft is None:
                return self.app(environ, start_response)  # Glance answers 415
        elif method == 'POST' and environ.get('PATH_INFO', '') in CREATE_PATHS:
            draft = None  # Glance parses a create body as JSON whatever its content type
        else:
            return self.app(environ, start_response)
        try:
            resp = self._check(req, draft)
        except Exception:
            LOG.exception('Image PATCH guard failed on %s', req.path_info)
            resp = _error(500, 'The server could not complete the request; please retry.')
        if resp is not None:
            return resp(environ, start_response)
        return self.app(environ, start_response)

    @staticmethod
    def _context(req):
        try:
            return req.context
        except AttributeError:
            return None

    def _privileged(self, ctx):
        if ctx is None:
            return False
        return policies.authorize(ctx, POLICY_RULE, {'project_id': ctx.project_id})

    def _read_body(self, req):
        """The body's bytes, at most the limit; None when it is larger. Re-presented to Glance."""
        limit = self.conf.rax_api.max_image_body_bytes
        environ = req.environ
        stream = environ.get('wsgi.input')
        length = req.content_length
        if length is not None:
            if length > limit:
                return None
            chunks, left = [], length
            while left > 0 and stream is not None:
                chunk = stream.read(min(left, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            data = b''.join(chunks)
        elif 'HTTP_TRANSFER_ENCODING' in environ and stream is not None:
            chunks, total = [], 0
            while total <= limit:
                chunk = stream.read(min(limit + 1 - total, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            data = b''.join(chunks)
            if len(data) > limit:
                return None
        else:
            data = b''
        # Glance reads exactly these bytes (a fixed-length body now).
        environ.pop('HTTP_TRANSFER_ENCODING', None)
        environ['wsgi.input'] = io.BytesIO(data)
        environ['CONTENT_LENGTH'] = str(len(data))
        return data

    def _check(self, req, draft):
        data = self._read_body(req)
        if data is None:  # the bound holds for everybody, the operator included
            return _error(413, 'The request body exceeds %d bytes.'
                          % self.conf.rax_api.max_image_body_bytes)
        ctx = self._context(req)
        if self._privileged(ctx):
            return None
        if not data:
            return None  # Glance answers 400: "Body expected in request."
        try:
            document = json.loads(data.decode('utf-8'))
        except (ValueError, RecursionError):
            return _error(400, 'The request body is not valid JSON.')
        if draft is None:
            attribute = refused_create_attribute(document, self.guarded)
        else:
            try:
                attribute = refused_attribute(document, draft, self.guarded)
            except BadPatch as exc:
                return _error(400, str(exc))
        if attribute is None:
            return None
        LOG.info('Refused an image %s touching %r by project %s', req.method, attribute,
                 getattr(ctx, 'project_id', None))
        return _error(403, "Attribute '%s' cannot be %s: Cloud Images manages it."
                      % (attribute, 'set' if draft is None else 'changed'))


def filter_factory(global_conf, **local_conf):
    def _filter(app):
        return ImagePatchGuard(app)
    return _filter
