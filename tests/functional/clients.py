"""Small HTTP helpers for talking to the real stack in functional tests."""

import uuid

import requests

from rax_glance.devstack import demo

# A Cloud Images customer-admin; the bundle's policy needs no stock member/reader role.
CUSTOMER_ADMIN_ROLES = 'cloudImages:admin'
# The cloud operator (context_is_admin). Customers cannot PUT image data (upload_image is for
# the operator and services): tests that need an image with data have the operator upload it.
OPERATOR_ROLES = 'rax-glance-operator'
project_swift = demo.project_swift


def new_project():
    """A fresh project id per test keeps tests independent on the shared stack."""
    return uuid.uuid4().hex


class GlanceClient:
    """A requests session that carries a Keystone-style identity in headers."""

    def __init__(self, endpoint, project, roles, user=None):
        self.endpoint = endpoint.rstrip('/')
        self.project = project
        self.user = user or 'user-%s' % uuid.uuid4().hex[:8]
        self.session = requests.Session()
        self.session.headers.update(demo.identity_headers(project, self.user, roles))

    def request(self, method, path, **kwargs):
        kwargs.setdefault('timeout', 120)
        return self.session.request(method, self.endpoint + path, **kwargs)

    def get(self, path, **kwargs):
        return self.request('GET', path, **kwargs)

    def post(self, path, **kwargs):
        return self.request('POST', path, **kwargs)

    def put(self, path, **kwargs):
        return self.request('PUT', path, **kwargs)

    def patch(self, path, ops, **kwargs):
        headers = {'Content-Type': 'application/openstack-images-v2.1-json-patch'}
        return self.request('PATCH', path, json=ops, headers=headers, **kwargs)

    def delete(self, path, **kwargs):
        return self.request('DELETE', path, **kwargs)

    def create_image(self, **fields):
        body = {'name': 'test-%s' % uuid.uuid4().hex[:8], 'disk_format': 'raw',
                'container_format': 'bare'}
        body.update(fields)
        resp = self.post('/v2/images', json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()

    def upload(self, image_id, data, headers=None):
        resp = self.put('/v2/images/%s/file' % image_id, data=data,
                        headers=dict({'Content-Type': 'application/octet-stream'},
                                     **(headers or {})))
        assert resp.status_code == 204, resp.text
        return resp

    def upload_as_operator(self, image_id, data, headers=None):
        """Upload `data` to an image (of any project) with the operator identity."""
        operator = GlanceClient(self.endpoint, 'operators-%s' % uuid.uuid4().hex[:8],
                                OPERATOR_ROLES, user='operator')
        try:
            return operator.upload(image_id, data, headers)
        finally:
            operator.close()

    def close(self):
        self.session.close()
