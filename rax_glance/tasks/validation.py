"""Checks of `POST /v2/tasks` bodies and list parameters that answer 400 at once.

Only the request's shape is checked here. Problems that need a look at Swift, Glance or the
data (missing object, extra image properties, bad VHD, image not exportable) become a 201 task
that ends in `failure` with the documented message: the flows check those.
"""

import json

from rax_glance.tasks.db import api as db_api

MAX_DEPTH = 32


class BadRequest(ValueError):
    """The request is malformed; the message is shown to the caller with a 400."""


def parse_json(raw):
    """The JSON document in `raw` (bytes): strict UTF-8, nested at most MAX_DEPTH deep, and
    no string (key or value) holding a lone surrogate such as "\\ud800", which no UTF-8
    consumer (Swift, Glance, the database) could take later."""
    if not raw:
        return None
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError:
        raise BadRequest('The request body is not valid UTF-8.') from None
    try:
        body = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadRequest('The request body is nested too deeply (at most %d levels).'
                         % MAX_DEPTH) from None
    except ValueError:
        raise BadRequest('The request body is not valid JSON.') from None
    _check_value(body, 0)
    return body


def _no_constant(name):
    # NaN and Infinity are not JSON: stored, they would make the task unreadable by clients.
    raise BadRequest('The request body is not valid JSON (%s is not a JSON number).' % name)


def _finite_float(text):
    value = float(text)
    if value in (float('inf'), float('-inf')):
        raise BadRequest('The request body holds a number out of range.')
    return value


def _check_string(value):
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:
        raise BadRequest('The request body holds a string that is not valid Unicode (a lone '
                         'surrogate such as \\ud800).') from None


def _check_value(value, depth):
    if isinstance(value, str):
        _check_string(value)
        return
    if not isinstance(value, (dict, list)):
        return
    if depth >= MAX_DEPTH:
        raise BadRequest('The request body is nested too deeply (at most %d levels).'
                         % MAX_DEPTH)
    if isinstance(value, dict):
        for key, item in value.items():
            _check_string(key)
            _check_value(item, depth + 1)
    else:
        for item in value:
            _check_value(item, depth + 1)


_IMPORT_KEYS = {'import_from', 'import_from_format', 'image_properties'}
_EXPORT_KEYS = {'image_uuid', 'receiving_swift_container'}


def _require_string(data, key, where):
    value = data.get(key)
    if key not in data:
        raise BadRequest('%s is required in %s.' % (key, where))
    if not isinstance(value, str) or not value.strip():
        raise BadRequest('%s in %s must be a non-empty string.' % (key, where))
    if len(value) > 1024:
        raise BadRequest('%s in %s is too long (at most 1024 characters).' % (key, where))
    return value


def _unknown(data, allowed, where):
    extra = sorted(set(data) - allowed)
    if extra:
        raise BadRequest('Unknown element(s) in %s: %s.' % (where, ', '.join(extra)))


def validate_task_request(body):
    """Return (type, input) of a well-formed task request or raise BadRequest."""
    if not isinstance(body, dict):
        raise BadRequest('The request body must be a JSON object with "type" and "input".')
    _unknown(body, {'type', 'input'}, 'the request body')
    task_type = body.get('type')
    if task_type not in db_api.TYPES:
        raise BadRequest('Invalid task type %s: it must be one of %s.'
                         % (_short(task_type), ', '.join(db_api.TYPES)))
    task_input = body.get('input')
    if not isinstance(task_input, dict):
        raise BadRequest('"input" is required and must be a JSON object.')
    if task_type == 'import':
        _validate_import(task_input)
    else:
        _validate_export(task_input)
    return task_type, task_input


def _validate_import(task_input):
    _unknown(task_input, _IMPORT_KEYS, 'input')
    _require_string(task_input, 'import_from', 'input')
    if 'import_from_format' in task_input:
        fmt = task_input['import_from_format']
        if not isinstance(fmt, str) or fmt.lower() != 'vhd':
            raise BadRequest('import_from_format may only be "vhd".')
    # image_properties may be absent or {} (Rackspace's own test framework sends {}): the
    # image then has no name (null), as Glance allows for any image.
    props = task_input.get('image_properties', {})
    if not isinstance(props, dict):
        raise BadRequest('image_properties must be a JSON object.')
    if 'name' in props:
        name = props['name']
        if not isinstance(name, str) or len(name) > 255:
            raise BadRequest('image_properties.name must be a string of at most 255 '
                             'characters.')
    # Other keys in image_properties are a documented task failure, not a 400.


def _validate_export(task_input):
    _unknown(task_input, _EXPORT_KEYS, 'input')
    _require_string(task_input, 'image_uuid', 'input')
    _require_string(task_input, 'receiving_swift_container', 'input')


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + '...'


def parse_list_params(params, default_limit, max_limit):
    """Validated keyword arguments for TaskRepo.list from a GET query (a MultiDict)."""
    allowed = {'type', 'status', 'sort_key', 'sort_dir', 'limit', 'marker'}
    _unknown(params, allowed, 'the query')
    for key in allowed:
        if len(params.getall(key)) > 1:
            raise BadRequest('%s may be given only once.' % key)
    filters = {}
    if 'type' in params:
        if params['type'] not in db_api.TYPES:
            raise BadRequest('Invalid type filter: use one of %s.' % ', '.join(db_api.TYPES))
        filters['type'] = params['type']
    if 'status' in params:
        if params['status'] not in db_api.STATUSES:
            raise BadRequest('Invalid status filter: use one of %s.'
                             % ', '.join(db_api.STATUSES))
        filters['status'] = params['status']
    sort_key = params.get('sort_key', 'created_at')
    if sort_key not in db_api.SORT_KEYS:
        raise BadRequest('Invalid sort_key: use one of %s.' % ', '.join(db_api.SORT_KEYS))
    sort_dir = params.get('sort_dir', 'desc')
    if sort_dir not in ('asc', 'desc'):
        raise BadRequest('Invalid sort_dir: use asc or desc.')
    limit = default_limit
    if 'limit' in params:
        try:
            limit = int(params['limit'])
        except ValueError:
            raise BadRequest('limit must be an integer.') from None
        if limit < 0:
            raise BadRequest('limit must not be negative.')
    limit = min(limit, max_limit)
    marker = params.get('marker')
    return {'filters': filters, 'sort_key': sort_key, 'sort_dir': sort_dir, 'limit': limit,
            'marker': marker}
