"""Tasks on the TaskFlow jobboard: real Redis, real rax-glance-conductor processes, real
glance-api (jobboard executor) and Swift, on PostgreSQL.

The stack of this module is its own (`up(conductors=2)`, claims expiring after 3 s); the
session stack keeps the in-process executor.
"""

import json
import os
import re
import shutil
import signal
import tempfile
import time

import pytest
import sqlalchemy as sa

from rax_glance.devstack.stack import DevStack
from rax_glance.tasks import messages
from tests.functional import clients
from tests.functional import tasks_helpers as th
from tests.functional import vhd_images

MIB = th.MIB
CLAIM_EXPIRY = 3


@pytest.fixture(scope='module')
def jb():
    # Not under pytest's private tmp dir: as root the PostgreSQL cluster runs as `postgres`.
    state_dir = tempfile.mkdtemp(prefix='rax-glance-jobboard-')
    os.chmod(state_dir, 0o755)
    dev = DevStack(state_dir)
    try:
        info = dev.up(db='postgresql', conductors=2, claim_expiry=CLAIM_EXPIRY)
        db = sa.create_engine(info['db']['url'], poolclass=sa.pool.NullPool)
        yield dev, info, db
    finally:
        dev.down()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def project(jb):
    _dev, info, _db = jb
    glance = clients.GlanceClient(info['glance']['endpoint'], clients.new_project(),
                                  clients.CUSTOMER_ADMIN_ROLES)
    swift = clients.project_swift(info, glance.project)
    swift.put_container('exports')
    yield glance, swift
    glance.close()


def _worker(db, task_id):
    """The worker (`host:pid:token`) the task record names: who ran it."""
    with db.connect() as conn:
        return conn.execute(sa.text('SELECT worker FROM rax_tasks WHERE id = :i'),
                            {'i': task_id}).scalar()


def _conductor_of(dev, worker):
    pid = int(worker.split(':')[1])
    return next((rec for rec in dev.conductors() if rec['pid'] == pid), None)


def _atom_state(db, flow_name, atom):
    with db.connect() as conn:
        return conn.execute(sa.text(
            'SELECT a.state FROM atomdetails a JOIN flowdetails f ON a.parent_uuid = f.uuid '
            'WHERE f.name = :f AND a.name = :a'), {'f': flow_name, 'a': atom}).scalar()


def _listing(swift, container='exports'):
    return sorted(o['name'] for o in swift.get_container(container, full_listing=True)[1])


def _live_conductors(dev):
    from rax_glance.devstack import process

    return [rec for rec in dev.conductors() if process.is_alive(rec)]


def test_import_and_export_run_in_the_conductors(jb, project):
    dev, info, db = jb
    glance, swift = project
    raw, vhd = th.sample_disk(seed=7)
    th.upload(swift, 'exports', 'src.vhd', vhd)
    task = th.run_import(glance, 'exports/src.vhd', name='through the board')
    assert task['status'] == 'success' and task['message'] == '', task
    image_id = task['result']['image_id']
    image = glance.get('/v2/images/%s' % image_id).json()
    assert (image['status'], image['disk_format'], image['container_format'],
            image['owner'], image['name']) == ('active', 'vhd', 'ovf', glance.project,
                                               'through the board')
    assert image['image_type'] == 'import'
    package = glance.get('/v2/images/%s/file' % image_id).content
    assert vhd_images.vhd_to_raw(vhd_images.package_members(package)['0.vhd'])[:len(raw)] \
        == raw
    # Run by a conductor, not by glance-api.
    assert _conductor_of(dev, _worker(db, task['id'])) is not None

    export = th.run_export(glance, image_id)
    assert export['status'] == 'success', export
    assert export['result'] == {'export_location': 'exports/%s.vhd' % image_id}
    assert _conductor_of(dev, _worker(db, export['id'])) is not None
    _, exported = swift.get_object('exports', '%s.vhd' % image_id)
    disk = vhd_images.vhd_to_raw(exported)
    assert disk[:len(raw)] == raw and not disk[len(raw):].strip(b'\0')


def test_failure_messages_are_those_of_the_in_process_executor(jb, project):
    glance, swift = project
    th.upload(swift, 'exports', 'not-a-vhd', b'x' * 4096)
    # Listed before posting: a task may already hold its (short-lived) image right after.
    before = th.image_ids(glance)
    cases = [
        (th.post_import(glance, 'exports/absent.vhd'), messages.IMPORT_NOT_FOUND),
        (th.post_import(glance, 'exports/src.vhd', os_type='windows'),
         messages.UNSUPPORTED_PROPERTY),
        (th.post_import(glance, 'exports/not-a-vhd'),
         'The image cannot be imported. The file is not a valid VHD.'),
        (th.post_export(glance, '11111111-2222-3333-4444-555555555555'),
         messages.EXPORT_IMAGE_NOT_FOUND % {'image': '11111111-2222-3333-4444-555555555555'}),
    ]
    for posted, message in cases:
        task = th.wait_task(glance, posted['id'])
        assert (task['status'], task['message']) == ('failure', message), task
        assert 'result' not in task or task['result'] is None
    assert th.image_ids(glance) == before
    assert _listing(swift) == ['not-a-vhd']


def test_ten_tasks_spread_over_both_conductors(jb, project):
    dev, _info, db = jb
    glance, swift = project
    _raw, vhd = th.sample_disk(seed=11)
    th.upload(swift, 'exports', 'many.vhd', vhd)
    posted = [th.post_import(glance, 'exports/many.vhd', name='n%d' % i) for i in range(10)]
    finished = [th.wait_task(glance, t['id']) for t in posted]
    assert [t['status'] for t in finished] == ['success'] * 10, finished
    ran_by = {}
    for task in finished:
        rec = _conductor_of(dev, _worker(db, task['id']))
        assert rec is not None, task
        ran_by.setdefault(rec['name'], []).append(task['id'])
    assert sorted(ran_by) == ['conductor-0', 'conductor-1'], ran_by
    assert len({t['result']['image_id'] for t in finished}) == 10


def _killed_mid_step(dev, db, glance, task, atom, started):
    """SIGKILL the conductor running `task` while its step `atom` runs and `started()` says
    it has written something; returns the killed record, or None if it was too fast."""
    flow = 'rax-%s-%s' % (task['type'], task['id'])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _atom_state(db, flow, atom) == 'RUNNING' and started():
            rec = _conductor_of(dev, _worker(db, task['id']))
            dev.kill_conductor(rec['index'], sig=signal.SIGKILL)
            return rec if _atom_state(db, flow, atom) == 'RUNNING' else None
        if glance.get('/v2/tasks/%s' % task['id']).json()['status'] in th.FINAL:
            return None
        time.sleep(0.005)
    raise AssertionError('task %s never reached its step %s' % (task['id'], atom))


def _export_killed_mid_upload(dev, db, glance, swift, image_id):
    """Post an export and SIGKILL its conductor while the upload step runs and at least one
    segment is in Swift; returns (task id, killed record or None)."""
    task = th.post_export(glance, image_id)
    prefix = '%s.vhd-' % image_id
    rec = _killed_mid_step(dev, db, glance, task, 'upload_vhd', lambda: any(
        o['name'].startswith(prefix) for o in swift.get_container('exports', prefix=prefix)[1]))
    return task['id'], rec


def test_sigkill_mid_export_the_other_conductor_reverts_it(jb, project):
    dev, _info, db = jb
    glance, swift = project
    # A raw image of random data: converting and uploading it takes a while (1 MiB segments).
    image = glance.create_image(disk_format='raw', container_format='bare')
    glance.upload_as_operator(image['id'], os.urandom(40 * MIB))
    images_before = th.image_ids(glance)
    killed = None
    for _attempt in range(3):
        task_id, killed = _export_killed_mid_upload(dev, db, glance, swift, image['id'])
        if killed is not None:
            break
        dev.start_conductor()  # replace the one killed too late, if any
        th.wait_task(glance, task_id)
        for name in _listing(swift):
            swift.delete_object('exports', name)
    assert killed is not None, 'never caught an export in its upload step'
    survivors = _live_conductors(dev)
    assert len(survivors) == 1
    task = th.wait_task(glance, task_id, timeout=120)
    # Taken over once the claim expired: reverted (the upload cannot be resumed midway).
    assert task['status'] == 'failure', task
    assert task['message'] == messages.INTERRUPTED
    assert _conductor_of(dev, _worker(db, task_id))['name'] == survivors[0]['name']
    assert _listing(swift) == [], 'orphaned manifest or segments'
    assert th.image_ids(glance) == images_before
    # The job left the board and nothing is stuck; the same export now succeeds.
    again = th.run_export(glance, image['id'])
    assert again['status'] == 'success', again
    assert _atom_state(db, 'rax-export-%s' % task_id, 'upload_vhd') is None  # logbook gone
    dev.start_conductor()
    assert dev.describe()['status'] == 'running'  # a conductor killed on purpose is no fault


def _work(db, task_id):
    with db.connect() as conn:
        return json.loads(conn.execute(sa.text('SELECT work FROM rax_tasks WHERE id = :i'),
                                       {'i': task_id}).scalar() or '{}')


def test_sigkill_mid_import_leaves_no_image_and_no_partial_data(jb, project):
    dev, info, db = jb
    glance, swift = project
    store = os.path.join(info['glance']['config_dir'], 'images')
    raw = os.urandom(40 * MIB)  # incompressible: packing it takes a while
    th.upload(swift, 'exports', 'big.vhd', vhd_images.dynamic_vhd(raw))
    killed = None
    for _attempt in range(3):
        task = th.post_import(glance, 'exports/big.vhd')

        def writing(task_id=task['id']):
            image_id = _work(db, task_id).get('image_id')
            return bool(image_id) and os.path.exists(os.path.join(store, image_id))

        killed = _killed_mid_step(dev, db, glance, task, 'upload_package', writing)
        if killed is not None:
            break
        dev.start_conductor()
        th.wait_task(glance, task['id'])
    assert killed is not None, 'never caught an import in its upload step'
    image_id = _work(db, task['id'])['image_id']
    done = th.wait_task(glance, task['id'], timeout=120)
    assert (done['status'], done['message']) == ('failure', messages.INTERRUPTED), done
    assert glance.get('/v2/images/%s' % image_id).status_code == 404
    assert not os.path.exists(os.path.join(store, image_id)), 'partial data left in the store'
    dev.start_conductor()


def test_sigterm_mid_export_hands_the_flow_over_and_it_resumes(jb, project):
    """A clean stop finishes the running step, suspends the flow and gives the job back;
    the other conductor resumes it from the next step: the export succeeds."""
    dev, _info, db = jb
    glance, swift = project
    image = glance.create_image(disk_format='raw', container_format='bare')
    glance.upload_as_operator(image['id'], os.urandom(40 * MIB))
    task = th.post_export(glance, image['id'])
    flow = 'rax-export-%s' % task['id']
    deadline = time.monotonic() + 60
    while _atom_state(db, flow, 'upload_vhd') != 'RUNNING':
        assert time.monotonic() < deadline, 'the export never reached its upload step'
        assert glance.get('/v2/tasks/%s' % task['id']).json()['status'] not in th.FINAL
        time.sleep(0.005)
    stopped = _conductor_of(dev, _worker(db, task['id']))
    dev.kill_conductor(stopped['index'], sig=signal.SIGTERM)
    with open(stopped['log']) as fh:
        log = fh.read()
    assert 'suspending job' in log and re.search(r'Conductor %s@\S+ stopped' % stopped['name'],
                                                  log)
    done = th.wait_task(glance, task['id'], timeout=120)
    assert done['status'] == 'success', done
    assert done['result'] == {'export_location': 'exports/%s.vhd' % image['id']}
    resumed_by = _conductor_of(dev, _worker(db, task['id']))
    assert resumed_by['name'] != stopped['name']
    with open(resumed_by['log']) as fh:
        assert 'running task %s' % task['id'] in fh.read()
    headers = swift.head_object('exports', '%s.vhd' % image['id'])
    assert int(headers['x-object-meta-rax-dlo-size']) > 40 * MIB
    dev.start_conductor()


def test_conductor_started_after_jobs_were_posted_picks_them_up(jb, project):
    dev, _info, db = jb
    glance, swift = project
    running = _live_conductors(dev)
    assert running
    for rec in running:
        dev.kill_conductor(rec['index'], sig=signal.SIGTERM)
    assert _live_conductors(dev) == []
    for rec in running:  # a clean stop, not the SIGKILL that process.stop falls back to
        with open(rec['log']) as fh:
            assert re.search(r'Conductor %s@\S+ stopped' % rec['name'], fh.read())
    _raw, vhd = th.sample_disk(seed=13)
    th.upload(swift, 'exports', 'late.vhd', vhd)
    posted = [th.post_import(glance, 'exports/late.vhd', name='late%d' % i) for i in range(3)]
    time.sleep(CLAIM_EXPIRY)
    for task in posted:
        assert glance.get('/v2/tasks/%s' % task['id']).json()['status'] == 'pending'
    late = dev.start_conductor()
    finished = [th.wait_task(glance, t['id']) for t in posted]
    assert [t['status'] for t in finished] == ['success'] * 3, finished
    for task in finished:
        assert _conductor_of(dev, _worker(db, task['id']))['name'] == late['name']
