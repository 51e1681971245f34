"""The plugin's commands, client and error messages with a fake image proxy (no network)."""

import io
import json
import types

import pytest
from osc_lib import exceptions

from rax_cloudimages_osc import client as osc_client
from rax_cloudimages_osc import plugin
from rax_cloudimages_osc.v2 import tasks as cmds

TASK = {'id': 't-1', 'type': 'import', 'status': 'pending', 'input': {'import_from': 'c/o'},
        'result': None, 'message': '', 'owner': 'p', 'created_at': 'c', 'updated_at': 'u',
        'expires_at': None}


class Resp:
    def __init__(self, status, body=None, text=None, reason='Reason'):
        self.status_code, self.reason = status, reason
        self._body = body
        self.text = text if text is not None else json.dumps(body)

    def json(self):
        if self._body is None:
            raise ValueError('no json')
        return self._body


class FakeProxy:
    """The openstacksdk image proxy as the client uses it: request() and find_image()."""

    def __init__(self, answers=(), images=None):
        self.answers = list(answers)
        self.calls = []
        self.images = images or {}

    def request(self, url, method, raise_exc=True, **kwargs):
        assert raise_exc is False
        self.calls.append((method, url, kwargs.get('json')))
        return self.answers.pop(0)

    def find_image(self, name_or_id, ignore_missing=True):
        if name_or_id not in self.images:
            raise LookupError('No Image found for %s' % name_or_id)
        return types.SimpleNamespace(id=self.images[name_or_id])


class Tty(io.StringIO):
    def isatty(self):
        return True


def run(cmd_class, argv, proxy):
    app = types.SimpleNamespace(
        stdout=io.StringIO(), stderr=io.StringIO(),
        client_manager=types.SimpleNamespace(
            cloud_images=osc_client.CloudImagesClient(proxy)))
    cmd = cmd_class(app, None)
    parsed = cmd.get_parser('openstack cloud-image').parse_args(argv)
    code = cmd.run(parsed)
    return code, app.stdout.getvalue(), app.stderr.getvalue()


def test_plugin_module_interface():
    assert plugin.API_NAME == 'cloud_images' and plugin.DEFAULT_API_VERSION in plugin.API_VERSIONS
    proxy = object()
    made = plugin.make_client(types.SimpleNamespace(
        sdk_connection=types.SimpleNamespace(image=proxy)))
    assert made.image is proxy


def test_import_without_wait_posts_and_shows_the_task():
    proxy = FakeProxy([Resp(201, TASK)])
    code, out, err = run(cmds.ImportImage, ['images/disk.vhd', '--name', 'My image',
                                            '-f', 'json'], proxy)
    assert code == 0 and err == ''
    assert proxy.calls == [('POST', '/tasks', {'type': 'import', 'input': {
        'import_from': 'images/disk.vhd', 'import_from_format': 'vhd',
        'image_properties': {'name': 'My image'}}})]
    shown = json.loads(out)
    assert shown['id'] == 't-1' and shown['input'] == {'import_from': 'c/o'}
    assert 'progress' not in shown


@pytest.mark.parametrize('source', ['disk.vhd', '/disk.vhd', 'images/', ''])
def test_import_refuses_a_source_without_container_and_object(source):
    proxy = FakeProxy()
    with pytest.raises(exceptions.CommandError, match='CONTAINER/OBJECT'):
        run(cmds.ImportImage, [source, '--name', 'x'], proxy)
    assert proxy.calls == []


def test_import_wait_success_prints_the_finished_task():
    done = dict(TASK, status='success', result={'image_id': 'img-1'})
    proxy = FakeProxy([Resp(201, TASK), Resp(200, dict(TASK, status='processing')),
                       Resp(200, done)])
    code, out, err = run(cmds.ImportImage, ['c/o', '--name', 'n', '--wait',
                                            '--poll-interval', '0.01', '-f', 'json'], proxy)
    assert code == 0 and err == ''  # not a terminal: no progress line
    assert json.loads(out)['result'] == {'image_id': 'img-1'}
    assert [c[:2] for c in proxy.calls] == [('POST', '/tasks'), ('GET', '/tasks/t-1'),
                                           ('GET', '/tasks/t-1')]


def test_import_wait_failure_exits_1_with_the_message():
    failed = dict(TASK, status='failure', message='Image not found for import. Possible '
                                                  'invalid location')
    proxy = FakeProxy([Resp(201, TASK), Resp(200, failed)])
    code, out, err = run(cmds.ImportImage, ['c/o', '--name', 'n', '--wait', '-f', 'json'],
                         proxy)
    assert code == 1
    assert err == 'Task failed: Image not found for import. Possible invalid location\n'
    assert json.loads(out)['status'] == 'failure'


def test_wait_shows_progress_on_a_terminal_and_the_progress_column():
    body = dict(TASK, status='processing',
                progress={'stage': 'uploading', 'bytes_done': 5, 'bytes_total': 10})
    done = dict(body, status='success', result={'export_location': 'c/i.vhd'})
    proxy = FakeProxy([Resp(201, TASK), Resp(200, body), Resp(200, done)],
                      images={'my image': 'img-1'})
    app = types.SimpleNamespace(stdout=io.StringIO(), stderr=Tty(),
                                client_manager=types.SimpleNamespace(
                                    cloud_images=osc_client.CloudImagesClient(proxy)))
    cmd = cmds.ExportImage(app, None)
    parsed = cmd.get_parser('x').parse_args(['my image', 'exports', '--wait',
                                             '--poll-interval', '0.01', '-f', 'json'])
    assert cmd.run(parsed) == 0
    assert proxy.calls[0] == ('POST', '/tasks', {'type': 'export', 'input': {
        'image_uuid': 'img-1', 'receiving_swift_container': 'exports'}})
    assert ' 50% 5 B/10 B' in app.stderr.getvalue()
    shown = json.loads(app.stdout.getvalue())
    assert shown['progress'] == {'stage': 'uploading', 'bytes_done': 5, 'bytes_total': 10}


def test_export_unknown_image_is_a_clean_error_and_posts_nothing():
    proxy = FakeProxy()
    with pytest.raises(exceptions.CommandError, match='No Image found for nope'):
        run(cmds.ExportImage, ['nope', 'exports'], proxy)
    assert proxy.calls == []


@pytest.mark.parametrize('container', ['a/b', ''])
def test_export_refuses_container_paths(container):
    proxy = FakeProxy(images={'i': 'img'})
    with pytest.raises(exceptions.CommandError, match='container name'):
        run(cmds.ExportImage, ['i', container], proxy)
    assert proxy.calls == []


def test_clone_wait_posts_the_clone_task_and_shows_the_result():
    created = dict(TASK, type='clone', input={'image_uuid': 'img-1', 'target_region': 'DFW'})
    done = dict(created, status='success', result={'image_id': 'img-2', 'region': 'DFW'})
    proxy = FakeProxy([Resp(201, created), Resp(200, done)], images={'my image': 'img-1'})
    code, out, err = run(cmds.CloneImage, ['my image', '--region', 'DFW', '--wait',
                                           '--poll-interval', '0.01', '-f', 'json'], proxy)
    assert code == 0 and err == ''
    assert proxy.calls[0] == ('POST', '/tasks', {'type': 'clone', 'input': {
        'image_uuid': 'img-1', 'target_region': 'DFW'}})
    assert json.loads(out)['result'] == {'image_id': 'img-2', 'region': 'DFW'}


def test_clone_failure_exits_1_with_the_service_message():
    failed = dict(TASK, type='clone', status='failure',
                  message='An image may only be cloned by the image owner.')
    proxy = FakeProxy([Resp(201, TASK), Resp(200, failed)], images={'i': 'img'})
    code, _, err = run(cmds.CloneImage, ['i', '--region', 'DFW', '--wait',
                                         '--poll-interval', '0.01'], proxy)
    assert code == 1
    assert err == 'Task failed: An image may only be cloned by the image owner.\n'


@pytest.mark.parametrize('argv', [['i'], ['i', '--region', ''], ['i', '--region', 'D FW']])
def test_clone_needs_a_region_name_and_posts_nothing(argv):
    proxy = FakeProxy(images={'i': 'img'})
    with pytest.raises((exceptions.CommandError, SystemExit)):
        run(cmds.CloneImage, argv, proxy)
    assert proxy.calls == []


@pytest.mark.parametrize('argv', [['--timeout', '0'], ['--poll-interval', '-1']])
def test_wait_options_must_be_positive(argv):
    with pytest.raises(exceptions.CommandError, match='positive'):
        run(cmds.ImportImage, ['c/o', '--name', 'n', '--wait', *argv], FakeProxy())


def test_refusal_carries_the_service_message():
    proxy = FakeProxy([Resp(403, {'error': {'code': 403, 'title': 'Forbidden',
                                            'message': 'You are not authorized to create '
                                                       'tasks.'}}, reason='Forbidden')])
    with pytest.raises(osc_client.CloudImagesError,
                       match='^403 Forbidden: You are not authorized to create tasks.$'):
        run(cmds.ImportImage, ['c/o', '--name', 'n'], proxy)


@pytest.mark.parametrize('resp, expected', [
    (Resp(404, {'message': 'Task t not found'}, reason='Not Found'),
     '404 Not Found: Task t not found'),
    (Resp(500, None, text='<html>\n boom\n</html>', reason='Internal Server Error'),
     '500 Internal Server Error: <html> boom </html>'),
    (Resp(400, {'error': 'bad\nthing'}, reason='Bad Request'), '400 Bad Request: bad thing'),
    (Resp(502, None, text='', reason='Bad Gateway'), '502 Bad Gateway'),
    (Resp(413, None, text='x' * 5000, reason=''), '413: ' + 'x' * 1000),
])
def test_error_message_shapes(resp, expected):
    assert osc_client.error_message(resp) == expected


def test_non_json_success_is_a_clean_error():
    proxy = FakeProxy([Resp(200, None, text='<html>')])
    with pytest.raises(osc_client.CloudImagesError, match='not JSON'):
        run(cmds.ShowTask, ['t-1'], proxy)


def test_task_list_filters_and_follows_next_links():
    page1 = {'tasks': [dict(TASK, id='a')], 'next': '/v2/tasks?type=import&marker=a'}
    page2 = {'tasks': [dict(TASK, id='b', status='failure', message='boom')]}
    proxy = FakeProxy([Resp(200, page1), Resp(200, page2)])
    code, out, _ = run(cmds.ListTasks, ['--type', 'import', '-f', 'json'], proxy)
    assert code == 0
    assert [c[1] for c in proxy.calls] == ['/tasks?type=import', '/tasks?type=import&marker=a']
    rows = json.loads(out)
    assert [r['ID'] for r in rows] == ['a', 'b'] and rows[1]['Message'] == 'boom'
    assert set(rows[0]) == {'ID', 'Type', 'Status', 'Created At', 'Message'}


def test_task_list_stops_on_a_repeated_next_link():
    page = {'tasks': [dict(TASK, id='a')], 'next': '/v2/tasks?marker=a'}
    proxy = FakeProxy([Resp(200, page), Resp(200, page)])
    code, out, _ = run(cmds.ListTasks, ['-f', 'json'], proxy)
    assert len(json.loads(out)) == 2 and len(proxy.calls) == 2


@pytest.mark.parametrize('argv', [['--type', 'clone'], ['--status', 'done']])
def test_task_list_refuses_unknown_filters(argv):
    with pytest.raises(SystemExit):
        run(cmds.ListTasks, argv, FakeProxy())


def test_task_show_quotes_the_id():
    proxy = FakeProxy([Resp(200, TASK)])
    run(cmds.ShowTask, ['../images?x', '-f', 'value', '-c', 'status'], proxy)
    assert proxy.calls[0][1] == '/tasks/..%2Fimages%3Fx'


def test_failure_message_is_one_printable_line():
    failed = dict(TASK, status='failure', message='Container not found. Container: \x1b[2J'
                                                  'x\nTask succeeded')
    proxy = FakeProxy([Resp(201, TASK), Resp(200, failed)])
    code, _, err = run(cmds.ImportImage, ['c/o', '--name', 'n', '--wait', '-f', 'json'], proxy)
    assert code == 1
    assert err == 'Task failed: Container not found. Container: [2Jx Task succeeded\n'


def test_failure_without_message_still_says_so():
    proxy = FakeProxy([Resp(201, TASK), Resp(200, dict(TASK, status='failure', message=''))])
    code, _, err = run(cmds.ImportImage, ['c/o', '--name', 'n', '--wait'], proxy)
    assert code == 1 and err == 'Task failed: The task failed without a message.\n'


def test_error_message_strips_terminal_escapes():
    resp = Resp(400, {'error': {'message': 'bad \x1b]0;title\x07 name\r\n'}}, reason='Bad')
    assert osc_client.error_message(resp) == '400 Bad: bad ]0;title name'


def test_the_plugin_needs_neither_glance_nor_the_bundle():
    """A light distribution: its code imports only osc-lib, openstackclient's stack and the
    standard library, and its declared dependencies are pinned in constraints.txt."""
    import ast
    import pathlib
    import sys

    import tomllib

    root = pathlib.Path(__file__).resolve().parents[3]
    allowed = {'osc_lib', 'rax_cloudimages_osc', 'keystoneauth1', 'requests'}
    for path in (root / 'osc-plugin' / 'rax_cloudimages_osc').rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split('.')[0]
                assert top in allowed or top in sys.stdlib_module_names, (path, name)
    project = tomllib.loads((root / 'osc-plugin' / 'pyproject.toml').read_text())['project']
    pinned = {line.split('==')[0].lower() for line in
              (root / 'constraints.txt').read_text().splitlines() if '==' in line}
    deps = {dep.split('>')[0].split('=')[0].strip().lower() for dep in project['dependencies']}
    assert deps == {'osc-lib', 'python-openstackclient', 'keystoneauth1', 'requests'}
    assert deps <= pinned


def test_task_list_next_link_never_leaves_the_image_endpoint():
    """A `next` link naming another host or path is reduced to its query on /tasks: the
    token goes only to the endpoint openstackclient chose."""
    page1 = {'tasks': [dict(TASK, id='a')],
             'next': 'https://elsewhere.example/v2/images?marker=a&limit=1'}
    proxy = FakeProxy([Resp(200, page1), Resp(200, {'tasks': []})])
    run(cmds.ListTasks, ['-f', 'json'], proxy)
    assert [c[1] for c in proxy.calls] == ['/tasks', '/tasks?marker=a&limit=1']
