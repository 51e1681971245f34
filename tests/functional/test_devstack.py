"""The dev stack itself: real glance-api and Swift, and a clean shutdown."""

import hashlib
import os
import subprocess
import sys

import psutil
import pytest
import swiftclient

from rax_glance.devstack import process
from rax_glance.devstack.stack import DevStack
from rax_glance.devstack.stack import StackError


def test_image_round_trip_through_bundle_pipeline(glance_factory):
    glance = glance_factory()
    image = glance.create_image()
    assert image['status'] == 'queued'
    assert image['owner'] == glance.project
    payload = os.urandom(2 * 1024 * 1024 + 3)
    glance.upload_as_operator(image['id'], payload)
    shown = glance.get('/v2/images/%s' % image['id']).json()
    assert shown['status'] == 'active'
    assert shown['size'] == len(payload)
    assert shown['os_hash_value'] == hashlib.sha512(payload).hexdigest()
    resp = glance.get('/v2/images/%s/file' % image['id'])
    assert resp.status_code == 200
    assert resp.content == payload


def test_glance_runs_the_bundle_paste_file(stack_info):
    conf = open(stack_info['glance']['config_file']).read()
    assert 'glance-api-paste.ini' in conf
    assert 'flavor = trusted-headers' in conf


def test_unidentified_request_is_refused(stack_info):
    import requests

    resp = requests.get(stack_info['glance']['endpoint'] + '/v2/images', timeout=30)
    assert resp.status_code in (401, 403)


def test_project_swift_through_reseller_user(swift_factory):
    conn = swift_factory('demo')
    conn.put_container('fn-devstack')
    conn.put_object('fn-devstack', 'obj', contents=b'payload-1')
    _, body = conn.get_object('fn-devstack', 'obj')
    assert body == b'payload-1'
    # The same name in another project's account is a different object.
    other = swift_factory('alt')
    with pytest.raises(swiftclient.ClientException) as exc:
        other.get_object('fn-devstack', 'obj')
    assert exc.value.http_status == 404


def test_one_project_cannot_read_another(stack_info, swift_factory):
    swift_factory('alt').put_container('private')
    swift_factory('alt').put_object('private', 'secret', contents=b'alt only')
    demo_user = stack_info['swift']['project_users']['demo']
    conn = swiftclient.Connection(authurl=stack_info['swift']['auth_url'],
                                  user=demo_user['user'], key=demo_user['key'],
                                  auth_version='1', retries=0)
    url, token = conn.get_auth()
    assert url.endswith('/AUTH_demo')
    alt_url = url.replace('/AUTH_demo', '/AUTH_alt')
    with pytest.raises(swiftclient.ClientException) as exc:
        swiftclient.get_object(alt_url, token, 'private', 'secret')
    assert exc.value.http_status == 403
    # and its own account still works with the same token
    swiftclient.put_container(url, token, 'mine')


def test_status_json_is_stable(devstack):
    dev, info = devstack
    out = subprocess.run([sys.executable, '-m', 'rax_glance.cmd.devstack', '--state-dir',
                          str(dev.state_dir), 'status', '--json'],
                         capture_output=True, text=True, check=True)
    import json

    status = json.loads(out.stdout)
    assert status['status'] == 'running'
    assert set(status['swift']) >= {'auth_url', 'service_user', 'service_key',
                                    'storage_url_template'}
    assert status['glance']['endpoint'].startswith('http://127.0.0.1:')
    assert set(status['pids']) == {'swift-account', 'swift-container', 'swift-object',
                                   'swift-proxy', 'swift-memcached', 'glance-api'}


def test_up_refuses_a_running_stack(devstack):
    dev, _ = devstack
    with pytest.raises(StackError, match='already runs'):
        DevStack(dev.state_dir).up()


def test_down_leaves_nothing_behind_and_is_idempotent(tmp_path):
    dev = DevStack(tmp_path / 'stack')
    info = dev.up(glance_workers=1)
    procs = [psutil.Process(pid) for pid in info['pids'].values()]
    children = [c for p in procs for c in p.children(recursive=True)]
    assert os.path.isdir(info['swift']['devices'])
    assert dev.down() is True
    for proc in procs + children:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE, proc
    assert not os.path.exists(info['swift']['devices'])
    assert dev.down() is False
    assert dev.describe()['status'] == 'stopped'


def test_stale_state_dir_is_a_clear_error(tmp_path):
    dev = DevStack(tmp_path / 'stale')
    dev.state_dir.mkdir()
    dev.logs_dir.mkdir()
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    dev._write_state({'status': 'running', 'processes': [
        {'name': 'glance-api', 'pid': dead.pid, 'create_time': 1.0,
         'log': str(dev.logs_dir / 'glance-api.log')}]})
    with pytest.raises(StackError, match='stale state dir .*glance-api.log'):
        dev.up()
    dev.down()
    assert dev.describe()['status'] == 'stopped'


def test_server_that_fails_to_start_names_its_log(tmp_path):
    rec = process.spawn('broken', [sys.executable, '-c', 'raise SystemExit(3)'],
                        tmp_path / 'broken.log')
    with pytest.raises(StackError, match='broken exited.*broken.log'):
        process.wait_http_ok('broken', 'http://127.0.0.1:9/', rec, timeout=10)
