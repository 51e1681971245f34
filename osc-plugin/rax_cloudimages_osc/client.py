"""Calls to the Cloud Images tasks API (`/v2/tasks`) and image lookups.

The HTTP goes through the openstacksdk image proxy openstackclient already configured (a
keystoneauth adapter: session, catalog or endpoint override, version discovery), so the plugin
authenticates and finds the endpoint exactly like `openstack image ...`. Task bodies are read
raw: fields the SDK's Task resource does not know (such as `progress`) survive.
"""

import unicodedata
from urllib import parse

from osc_lib import exceptions

FINAL_STATUSES = ('success', 'failure')


def one_line(text, limit=1000):
    """`text` as one printable line: control characters (terminal escapes, CR, NUL...) and
    runs of whitespace become single spaces, and at most `limit` characters are kept."""
    text = ''.join(' ' if unicodedata.category(ch) in ('Cc', 'Cf', 'Zl', 'Zp') else ch
                   for ch in str(text))
    return ' '.join(text.split())[:limit]


class CloudImagesError(exceptions.CommandError):
    """A refusal or failure, carrying the service's own message."""


def error_message(resp):
    """The service's message from an error answer: Cloud Images' {"error": {...}} shape,
    Glance's other shapes, or plain text; never a traceback."""
    text = ''
    try:
        body = resp.json()
    except ValueError:
        body = None
        text = (resp.text or '').strip()
    if isinstance(body, dict):
        inner = body.get('error', body)
        if isinstance(inner, dict):
            text = inner.get('message') or inner.get('title') or ''
        elif isinstance(inner, str):
            text = inner
        if not text and isinstance(body.get('message'), str):
            text = body['message']
    text = one_line(text)
    reason = getattr(resp, 'reason', '') or ''
    head = ('%s %s' % (resp.status_code, reason)).strip()
    return '%s: %s' % (head, text) if text else head


class CloudImagesClient:
    def __init__(self, image_proxy):
        self.image = image_proxy

    def _request(self, method, url, **kwargs):
        resp = self.image.request(url, method, raise_exc=False, **kwargs)
        if resp.status_code >= 400:
            raise CloudImagesError(error_message(resp))
        try:
            return resp.json()
        except ValueError:
            raise CloudImagesError('%s %s: the service answered something that is not JSON'
                                   % (resp.status_code, getattr(resp, 'reason', ''))) from None

    def create_task(self, task_type, task_input):
        return self._request('POST', '/tasks', json={'type': task_type, 'input': task_input})

    def get_task(self, task_id):
        return self._request('GET', '/tasks/%s' % parse.quote(task_id, safe=''))

    def list_tasks(self, task_type=None, status=None, limit=None):
        """Every task of the project matching the filters, following `next` links."""
        query = {key: value for key, value in (('type', task_type), ('status', status),
                                              ('limit', limit)) if value is not None}
        url = '/tasks' + ('?' + parse.urlencode(query) if query else '')
        seen = set()
        while url and url not in seen:
            seen.add(url)
            body = self._request('GET', url)
            yield from body.get('tasks', [])
            nxt = body.get('next')
            # Glance answers `next` as /v2/tasks?...: relative to the versioned endpoint.
            url = '/tasks?' + parse.urlsplit(nxt).query if nxt else None

    def find_image(self, name_or_id):
        """An image id from a name or id, resolved as `openstack image show` does."""
        try:
            image = self.image.find_image(name_or_id, ignore_missing=False)
        except Exception as exc:  # openstacksdk's NotFound / DuplicateResource / HTTP errors
            raise CloudImagesError(str(getattr(exc, 'message', None) or exc)) from None
        return image.id
