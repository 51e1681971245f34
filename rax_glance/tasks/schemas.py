"""JSON schemas of `/v2/schemas/task` and `/v2/schemas/tasks` and the task views they describe."""

import copy

from rax_glance.tasks.db import api as db_api

_UUID = '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$'

# No `required` list, as in stock Glance's task schema: python-glanceclient validates its own
# POST body (no id yet), show bodies (it pops `self`) and list entries (no input, no result)
# against `/v2/schemas/task`, so any required key breaks `glance task-create/show/list`.
_TASK = {
    'name': 'task',
    'type': 'object',
    'additionalProperties': False,
    'properties': {
        'id': {'type': 'string', 'pattern': _UUID,
               'description': 'An identifier for the task'},
        'type': {'type': 'string', 'enum': list(db_api.TYPES),
                 'description': 'The type of task represented by this content'},
        'status': {'type': 'string', 'enum': list(db_api.STATUSES),
                   'description': 'The current status of this task'},
        'input': {'type': 'object',
                  'description': 'The parameters required by task, JSON blob (echoed as '
                                 'submitted)'},
        'result': {'type': ['null', 'object'],
                   'description': 'The result of current task, JSON blob: `image_id` of an '
                                  'import, `export_location` of an export; only on success'},
        'owner': {'type': 'string', 'description': 'An identifier for the owner of this task'},
        'message': {'type': 'string',
                    'description': 'Human-readable informative message only included when '
                                   'appropriate (usually on failure); otherwise ""'},
        'expires_at': {'type': ['null', 'string'], 'format': 'date-time',
                       'description': 'Datetime when this resource would be subject to '
                                      'removal; present once the task finished'},
        'created_at': {'type': 'string', 'format': 'date-time',
                       'description': 'Datetime when this resource was created'},
        'updated_at': {'type': 'string', 'format': 'date-time',
                       'description': 'Datetime when this resource was updated'},
        'self': {'type': 'string', 'description': 'The URI of this task'},
        'schema': {'type': 'string', 'description': 'The URI of the task schema'},
    },
    'links': [
        {'rel': 'self', 'href': '{self}'},
        {'rel': 'describedby', 'href': '{schema}'},
    ],
}

# List entries leave out the (possibly large) input and result.
_LIST_ENTRY_DROPS = ('input', 'result')


def task_schema():
    return copy.deepcopy(_TASK)


def tasks_schema():
    entry = task_schema()
    for key in _LIST_ENTRY_DROPS:
        entry['properties'].pop(key)
    return {
        'name': 'tasks',
        'type': 'object',
        'properties': {
            'tasks': {'type': 'array', 'items': entry},
            'schema': {'type': 'string'},
            'first': {'type': 'string'},
            'next': {'type': 'string'},
        },
        'links': [
            {'rel': 'first', 'href': '{first}'},
            {'rel': 'next', 'href': '{next}'},
            {'rel': 'describedby', 'href': '{schema}'},
        ],
    }


def _timestamp(value):
    return None if value is None else value.strftime('%Y-%m-%dT%H:%M:%SZ')


def task_view(task, entry=False):
    """The API body of a task record; `entry` for list entries (no input, no result)."""
    body = {
        'id': task['id'],
        'type': task['type'],
        'status': task['status'],
        'owner': task['owner'],
        'message': task['message'] or '',
        'created_at': _timestamp(task['created_at']),
        'updated_at': _timestamp(task['updated_at']),
        'self': '/v2/tasks/%s' % task['id'],
        'schema': '/v2/schemas/task',
    }
    if task['expires_at'] is not None:
        body['expires_at'] = _timestamp(task['expires_at'])
    if not entry:
        body['input'] = task['input']
        if task['result'] is not None:
            body['result'] = task['result']
    return body
