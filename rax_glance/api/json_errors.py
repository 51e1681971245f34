"""Paste filter: every error answer is JSON, whatever the `Accept` header asks for.

Cloud Images "returns JSON exclusively". Glance renders its errors with webob, which picks
HTML, JSON or plain text from `Accept`; keystonemiddleware, the bundle's filters and Glance's
fault wrapper each have their own. Placed OUTERMOST in every flavor's pipeline
(`etc/glance-api-paste.ini`), this filter

* asks everything below it for JSON (`Accept: application/json`), so an error's message is the
  same whatever the client sent (a media-type version request, `application/vnd.openstack.
  images-v2...`, is left alone: version negotiation reads it);
* answers every error (status >= 400) with one JSON shape and
  `Content-Type: application/json`:

      {"error": {"code": 403, "title": "Forbidden", "message": "..."}}

  (Keystone's shape; python-glanceclient reads `message` only from nested objects and fails
  on webob's flat `{"message": ..., "code": "403 Forbidden", ...}`; openstacksdk reads both).
  HTML and plain-text bodies give their text; webob's `<br />` markup is dropped;
* answers an exception escaping the pipeline with a JSON 500 (the traceback goes to the log,
  never to the client).

Successful answers (image data included) stream through untouched.

    [filter:json-errors]
    paste.filter_factory = rax_glance.api.json_errors:filter_factory
"""

import html.parser
import json
import re

import webob
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

_VND_MIME = 'application/vnd.openstack.images-'
# Error bodies are made by the servers below, never by clients; a cap keeps it bounded anyway.
_MAX_ERROR_BODY = 64 * 1024
_INTERNAL = ('The server has either erred or is incapable of performing the requested '
             'operation.')


def error_response(status, message):
    """A JSON error answer: {"error": {"code": int, "title": reason, "message": text}}."""
    resp = webob.Response(status=status, content_type='application/json', charset='utf-8')
    code, _, title = resp.status.partition(' ')
    resp.body = json.dumps({'error': {'code': int(code), 'title': title,
                                      'message': message}}).encode('utf-8')
    return resp


_BREAKS = re.compile(r'<br\s*/?>', re.I)


def _clean(text):
    """One line of text: webob's <br /> and blank lines gone, whitespace collapsed."""
    parts = (part.strip() for part in _BREAKS.sub('\n', text).splitlines())
    return ' '.join(part for part in parts if part)


def _json_message(body):
    """The message of a JSON error body (webob's flat shape or a nested one), else None."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get('message'), str):
        return data['message']
    for value in data.values():
        if isinstance(value, dict) and isinstance(value.get('message'), str):
            return value['message']
    return None


class _Text(html.parser.HTMLParser):
    """The text of an HTML body, without <title>/<h1> (webob repeats the status there)."""

    _SKIP = ('title', 'h1', 'script', 'style', 'head')

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self.skipping += 1
        elif tag in ('br', 'p', 'div'):
            self.parts.append('\n')

    def handle_endtag(self, tag):
        if tag in self._SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def _message(body, content_type, status):
    text = body.decode('utf-8', 'replace')
    if 'html' in (content_type or '') or text.lstrip().startswith('<'):
        parser = _Text()
        try:
            parser.feed(text)
            parser.close()
            text = ''.join(parser.parts)
        except Exception:  # noqa: BLE001 - a body we cannot parse keeps its raw text
            pass
    lines = [line.strip() for line in text.splitlines()]
    # webob's plain text starts with the status line ("403 Forbidden").
    if lines and lines[0] == status:
        lines = lines[1:]
    return _clean('\n'.join(lines))


def _is_json(content_type):
    media = (content_type or '').split(';', 1)[0].strip().lower()
    return media == 'application/json' or media.endswith('+json')


class JsonErrors:
    """WSGI middleware; see the module docstring."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        accept = environ.get('HTTP_ACCEPT', '')
        if not accept.strip().lower().startswith(_VND_MIME):
            environ['HTTP_ACCEPT'] = 'application/json'
        req = webob.Request(environ)
        try:
            resp = req.get_response(self.app)
        except Exception:
            LOG.exception('Unhandled error answering %s %s', req.method, req.path)
            return error_response(500, _INTERNAL)(environ, start_response)
        if resp.status_code < 400:
            return resp(environ, start_response)
        try:
            body = b''
            for chunk in resp.app_iter:
                body += chunk
                if len(body) >= _MAX_ERROR_BODY:
                    body = body[:_MAX_ERROR_BODY]
                    break
        except Exception:
            LOG.exception('Error reading an error body for %s %s', req.method, req.path)
            body = b''
        finally:
            close = getattr(resp.app_iter, 'close', None)
            if close is not None:
                close()
        message = None
        if _is_json(resp.content_type):
            message = _json_message(body)
            message = None if message is None else _clean(message)
        if message is None:
            message = _message(body, resp.content_type, resp.status)
        new = error_response(resp.status, message or resp.status.partition(' ')[2]
                             or resp.status)
        # Keep headers a client may need (Allow on 405, WWW-Authenticate on 401, ...).
        for key, value in resp.headerlist:
            if key.lower() not in ('content-type', 'content-length', 'content-encoding',
                                   'transfer-encoding'):
                new.headerlist.append((key, value))
        return new(environ, start_response)


def filter_factory(global_conf, **local_conf):
    def make(app):
        return JsonErrors(app)
    return make
