"""Tasks under load and across a glance-api crash, on the PostgreSQL stack (sqlite locks
under concurrent writes, as stock Glance does)."""

import concurrent.futures
import os
import random
import tempfile
import time

import pytest

from tests.functional import clients
from tests.functional import tasks_helpers as th
from tests.functional import vhd_images
from tests.unit.vhd import builder

MIB = th.MIB
ACTIVE = ('pending', 'processing')
INTERRUPTED = ('The task was interrupted because the service restarted; nothing was kept. '
               'Please submit the task again.')


@pytest.fixture
def pg(pg_devstack):
    dev, info = pg_devstack
    made = []

    def client(project=None):
        glance = clients.GlanceClient(info['glance']['endpoint'],
                                      project or clients.new_project(),
                                      clients.CUSTOMER_ADMIN_ROLES)
        made.append(glance)
        return glance, clients.project_swift(info, glance.project)

    yield dev, info, client
    for glance in made:
        glance.close()


def test_five_concurrent_imports_and_five_concurrent_exports(pg):
    _dev, _info, client = pg
    glance, swift = client()
    disks = {}
    for i in range(5):
        raw, vhd = th.sample_disk(seed=100 + i)
        th.upload(swift, 'exports', 'c%d.vhd' % i, vhd)
        disks[i] = raw
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        imports = list(pool.map(lambda i: th.run_import(glance, 'exports/c%d.vhd' % i),
                                range(5)))
    assert [t['status'] for t in imports] == ['success'] * 5, imports
    image_ids = [t['result']['image_id'] for t in imports]
    assert len(set(image_ids)) == 5

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        exports = list(pool.map(lambda image_id: th.run_export(glance, image_id), image_ids))
    assert [t['status'] for t in exports] == ['success'] * 5, exports
    for i, (image_id, task) in enumerate(zip(image_ids, exports, strict=True)):
        assert task['result']['export_location'] == 'exports/%s.vhd' % image_id
        _, data = swift.get_object('exports', '%s.vhd' % image_id)
        disk = vhd_images.vhd_to_raw(data)
        assert disk[:len(disks[i])] == disks[i], i


def _store_files(info):
    root = os.path.join(info['state_dir'], 'glance')
    return {sub: {f for _, _, files in os.walk(os.path.join(root, sub)) for f in files}
            for sub in ('images', 'staging')}


def _big_disk(size=40 * MIB):
    """Incompressible data (a few seconds of work per import on 2 cores), made once."""
    rnd = random.Random(42)
    disk = builder.Dynamic(size)
    for offset in range(0, size, 2 * MIB):
        disk.write(offset, rnd.randbytes(2 * MIB))
    return disk.build()


def test_killed_glance_api_leaves_no_stuck_task_and_no_orphans(pg):
    dev, info, client = pg
    glance, swift = client()
    th.upload(swift, 'exports', 'big.vhd', _big_disk())
    _, small = th.sample_disk(seed=9)
    th.upload(swift, 'exports', 'small.vhd', small)
    first = th.run_import(glance, 'exports/small.vhd')
    assert first['status'] == 'success', first
    before = _store_files(info)

    # More tasks than the pools run at once: some processing, some pending at the kill.
    tasks = [th.post_import(glance, 'exports/big.vhd')['id'] for _ in range(6)]
    tasks += [th.post_export(glance, first['result']['image_id'])['id']]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = [glance.get('/v2/tasks/%s' % t).json()['status'] for t in tasks]
        if 'processing' in states:
            break
        time.sleep(0.05)
    assert 'processing' in states, states
    dev.restart_glance()

    finished = [th.wait_task(glance, t, timeout=240) for t in tasks]
    assert all(t['status'] in ('success', 'failure') for t in finished)
    interrupted = [t for t in finished if t['message'] == INTERRUPTED]
    assert interrupted, [t['message'] for t in finished]
    for task in finished:
        assert task['status'] == 'success' or task['message'] == INTERRUPTED, task
    # Nothing half-made: the project's images are exactly the successful imports' results.
    made = {t['result']['image_id'] for t in finished
            if t['status'] == 'success' and t['type'] == 'import'}
    images = glance.get('/v2/images?owner=%s' % glance.project).json()['images']
    assert {i['id'] for i in images} == made | {first['result']['image_id']}
    assert all(i['status'] == 'active' for i in images)
    after = _store_files(info)
    assert after['staging'] <= before['staging']
    assert after['images'] - before['images'] == made
    # An export either finished as a complete DLO or left nothing in the container.
    export = finished[-1]
    listing = [o['name'] for o in swift.get_container('exports', full_listing=True)[1]]
    exported = [n for n in listing if n.startswith(first['result']['image_id'])]
    if export['status'] == 'success':
        assert len(exported) >= 2
    else:
        assert exported == []
    # Nor a spool directory of any of these tasks (work_dir unset: the system temp dir).
    assert not [t for t in tasks
                if os.path.exists(os.path.join(tempfile.gettempdir(), 'rax-glance-task-' + t))]
    # No task of any project is left running on this stack.
    assert not [t for t in glance.get('/v2/tasks?limit=1000').json()['tasks']
                if t['status'] in ACTIVE]
