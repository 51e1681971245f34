"""Paste filter serving the Cloud Images tasks API; everything else goes to Glance untouched.

Place it after `context` in the glance-api pipeline (`etc/glance-api-paste.ini`):

    [filter:cloudimages-tasks]
    paste.filter_factory = rax_glance.tasks.filter:filter_factory

It answers `/v2/tasks`, `/v2/tasks/{id}`, `/v2/schemas/task` and `/v2/schemas/tasks`.
Policy (`rax_glance:add_task`, `get_task`, `get_tasks`) is checked here, in the request thread:
Glance 33 does not check policy for work done later in the background.
"""

import json
import re
import threading
import urllib.parse
import uuid

import webob
from oslo_config import cfg
from oslo_log import log as logging

from rax_glance import policies
from rax_glance.tasks import executor as executor_mod
from rax_glance.tasks import lifecycle
from rax_glance.tasks import options
from rax_glance.tasks import schemas
from rax_glance.tasks import validation
from rax_glance.tasks.db import api as db_api

LOG = logging.getLogger(__name__)

_TASK_PATH = re.compile(r'^/v2/tasks/(?P<id>[^/]+)/?$')
_TASKS_PATHS = ('/v2/tasks', '/v2/tasks/')
_SCHEMA_PATHS = {'/v2/schemas/task': schemas.task_schema,
                 '/v2/schemas/tasks': schemas.tasks_schema}


def _json(status, body, headers=None):
    resp = webob.Response(status=status, content_type='application/json', charset='utf-8')
    resp.body = json.dumps(body).encode('utf-8')
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _error(status, message, headers=None):
    code, _, title = webob.Response(status=status).status.partition(' ')
    return _json(status, {'code': int(code), 'title': title, 'message': message}, headers)


# Flows act in this context (the executor side owns it; kept here under its old name).
background_context = lifecycle.background_context


class TasksFilter:
    """WSGI middleware: the tasks API in front of Glance's v2 app."""

    def __init__(self, app, conf=None, repo=None, executor=None):
        self.app = app
        self.conf = options.register(conf or cfg.CONF)
        self._repo = repo
        self._executor = executor
        self._lock = threading.Lock()

    # -- lazy wiring: the config is parsed and we run in the worker process by now ---------
    @property
    def repo(self):
        if self._repo is None:
            with self._lock:
                if self._repo is None:
                    url = self.conf.rax_tasks.connection or self.conf.database.connection
                    self._repo = db_api.TaskRepo(db_api.get_engine(url))
        return self._repo

    @property
    def executor(self):
        if self._executor is None:
            repo = self.repo
            with self._lock:
                if self._executor is None:
                    self._executor = executor_mod.load_executor(self.conf, repo,
                                                                lifecycle.background_context)
        self._executor.start()
        return self._executor

    def start_executor(self):
        return self.executor

    # -- WSGI ---------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        path = environ.get('PATH_INFO', '')
        if path in _SCHEMA_PATHS:
            handler = self._schema
        elif path in _TASKS_PATHS:
            handler = self._tasks
        elif _TASK_PATH.match(path):
            handler = self._task
        else:
            return self.app(environ, start_response)
        req = webob.Request(environ)
        try:
            resp = handler(req)
        except UnicodeDecodeError:
            # webob decodes the query string and path as UTF-8 on first use.
            resp = _error(400, 'The request URL is not valid UTF-8.')
        except Exception:
            LOG.exception('Tasks API request %s %s failed', req.method, path)
            resp = _error(500, 'The server could not complete the request; please retry.')
        return resp(environ, start_response)

    @staticmethod
    def _context(req):
        try:
            return req.context
        except AttributeError:
            return None

    def _allowed(self, ctx, rule):
        if ctx is None or not ctx.project_id:
            return False
        return policies.authorize(ctx, rule, {'project_id': ctx.project_id,
                                              'owner': ctx.project_id})

    def _schema(self, req):
        if req.method != 'GET':
            return _error(405, 'Method not allowed.', {'Allow': 'GET'})
        return _json(200, _SCHEMA_PATHS[req.path_info]())

    def _tasks(self, req):
        if req.method == 'GET':
            return self._list(req)
        if req.method == 'POST':
            return self._create(req)
        return _error(405, 'Method not allowed.', {'Allow': 'GET, POST'})

    def _task(self, req):
        task_id = _TASK_PATH.match(req.path_info).group('id')
        if req.method != 'GET':
            # Tasks are never deleted nor changed by users; they expire.
            return _error(405, 'Method not allowed: tasks cannot be deleted or changed.',
                          {'Allow': 'GET'})
        ctx = self._context(req)
        if not self._allowed(ctx, 'rax_glance:get_task'):
            return _error(403, 'You are not authorized to view this task.')
        task = self.repo.get(task_id, ctx.project_id)
        if task is None:
            return _error(404, 'Task not found: %s' % task_id)
        return _json(200, schemas.task_view(task))

    def _list(self, req):
        ctx = self._context(req)
        if not self._allowed(ctx, 'rax_glance:get_tasks'):
            return _error(403, 'You are not authorized to list tasks.')
        opts = self.conf.rax_tasks
        try:
            params = validation.parse_list_params(req.GET, opts.default_limit, opts.max_limit)
            tasks = self.repo.list(ctx.project_id, **params)
        except validation.BadRequest as exc:
            return _error(400, str(exc))
        except db_api.InvalidMarker:
            return _error(400, 'Invalid marker: no task %s.' % params['marker'])
        body = {'tasks': [schemas.task_view(t, entry=True) for t in tasks],
                'first': '/v2/tasks', 'schema': '/v2/schemas/tasks'}
        query = [(k, v) for k, v in req.GET.items() if k != 'marker']
        if query:
            body['first'] += '?' + urllib.parse.urlencode(query)
        if tasks and params['limit'] and len(tasks) == params['limit']:
            body['next'] = '/v2/tasks?' + urllib.parse.urlencode(
                query + [('marker', tasks[-1]['id'])])
        return _json(200, body)

    def _create(self, req):
        ctx = self._context(req)
        if not self._allowed(ctx, 'rax_glance:add_task'):
            return _error(403, 'You are not authorized to create tasks.')
        limit = self.conf.rax_tasks.max_request_body_bytes
        raw = _read_body(req, limit)
        if raw is None:
            return _error(413, 'The request body is larger than %d bytes.' % limit,
                          {'Connection': 'close'})
        try:
            body = validation.parse_json(raw)
            task_type, task_input = validation.validate_task_request(body)
        except validation.BadRequest as exc:
            return _error(400, str(exc))
        if task_type == 'import' and not self._may_create_image(ctx):
            return _error(403, 'You are not authorized to create images.')
        executor = self.executor
        opts = self.conf.rax_tasks
        try:
            task = self.repo.create(str(uuid.uuid4()), task_type, ctx.project_id, ctx.user_id,
                                    ctx.roles, task_input, executor.worker,
                                    opts.lease_seconds,
                                    max_unfinished=opts.max_unfinished_tasks_per_project,
                                    max_visible=opts.max_tasks_per_project)
        except db_api.TooManyTasks as exc:
            if exc.which == 'visible':
                return _error(429, 'Your project already holds %d tasks, the most allowed; '
                                   'finished tasks count until they expire %d hours after '
                                   'they finished. Please submit the task later.'
                              % (opts.max_tasks_per_project, opts.task_time_to_live),
                              {'Retry-After': '3600'})
            return _error(429, 'Your project already has %d unfinished (pending or processing) '
                               'tasks, the most allowed at once. Please wait for one of '
                               'them to finish, then submit the task again.'
                          % opts.max_unfinished_tasks_per_project, {'Retry-After': '60'})
        lifecycle.stash_request_auth(task['id'], getattr(ctx, 'auth_token', None),
                                        getattr(ctx, 'service_catalog', None))
        executor.submit(task['id'])
        LOG.info('Task %s (%s) created for project %s', task['id'], task_type,
                 ctx.project_id)
        return _json(201, schemas.task_view(task), {'Location': '/v2/tasks/%s' % task['id']})

    @staticmethod
    def _may_create_image(ctx):
        """Glance's own add_image rule, since the import creates an image later."""
        from glance.api.v2 import policy as image_policy
        from glance.common import exception as glance_exc

        target = {'project_id': ctx.project_id, 'owner': ctx.project_id,
                  'visibility': 'private'}
        try:
            image_policy.ImageAPIPolicy(ctx, target,
                                        enforcer=ctx.policy_enforcer).add_image()
        except glance_exc.Forbidden:
            return False
        return True


def _read_body(req, limit):
    """The request body, read to at most `limit` + 1 bytes; None when it is larger.

    A declared `Content-Length` above the limit is refused before anything is read; a
    chunked (or undeclared) body is read in pieces and refused as soon as it passes the
    limit, so a huge body never sits in memory."""
    length = req.content_length
    if length is not None and length > limit:
        return None
    if length is not None:
        stream = req.body_file
        remaining = length
    elif 'chunked' in req.environ.get('HTTP_TRANSFER_ENCODING', '').lower():
        stream = req.environ['wsgi.input']
        remaining = limit + 1
    else:
        return b''
    parts, total = [], 0
    while remaining > 0:
        chunk = stream.read(min(remaining, 64 * 1024))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
        remaining -= len(chunk)
        if total > limit:
            return None
    return b''.join(parts)


def filter_factory(global_conf, **local_conf):
    """paste.filter_factory entry point (`rax_glance_tasks`)."""
    def _filter(app):
        tasks_filter = TasksFilter(app)
        try:
            # Start the executor now so tasks orphaned by a dead process are recovered even
            # before the first tasks request reaches this process.
            tasks_filter.start_executor()
        except Exception:
            LOG.exception('Cannot start the task executor yet; retrying on the first tasks '
                          'request (did `rax-glance-manage db_sync` run?)')
        return tasks_filter
    return _filter
