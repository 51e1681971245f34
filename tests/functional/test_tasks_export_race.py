"""Issue 10 class 6: exports of the same image into the same container, posted together.
Exactly one wins and its object stays intact (`rax-glance-export-verify`); the others fail
with the "already exists" message and delete nothing they did not write. Real Swift and a
real glance-api (two worker processes), nothing mocked."""

import concurrent.futures
import io
import subprocess
import sys
from pathlib import Path

import pytest

from rax_glance.swift import dlo
from tests.functional import tasks_helpers as th

EXISTS = "Object already exists in user's container. Container/Object: %s/%s.vhd"
ROUNDS = 3
RACERS = 3


@pytest.fixture
def imported(glance_factory, swift_factory):
    glance = glance_factory()
    swift = swift_factory(glance.project)
    swift.put_container('exports')
    _, vhd = th.sample_disk(size=12 * th.MIB, seed=11)
    th.upload(swift, 'exports', 'src.vhd', vhd)
    task = th.run_import(glance, 'exports/src.vhd')
    assert task['status'] == 'success', task
    return glance, swift, task['result']['image_id']


def _verify(stack_info, project, location):
    return subprocess.run(
        [str(Path(sys.executable).parent / 'rax-glance-export-verify'), '--config-file',
         stack_info['glance']['config_file'], '--project', project, location],
        capture_output=True, text=True)


def _post_together(glance, image_id, container):
    with concurrent.futures.ThreadPoolExecutor(RACERS) as pool:
        posted = list(pool.map(lambda _: th.post_export(glance, image_id, container),
                               range(RACERS)))
    return [th.wait_task(glance, task['id']) for task in posted]


@pytest.mark.parametrize('round_', range(ROUNDS))
def test_concurrent_exports_exactly_one_wins_intact(imported, stack_info, round_):
    glance, swift, image_id = imported
    container = 'race-%d' % round_
    swift.put_container(container)
    tasks = _post_together(glance, image_id, container)
    won = [t for t in tasks if t['status'] == 'success']
    lost = [t for t in tasks if t['status'] != 'success']
    assert len(won) == 1, tasks
    location = '%s/%s.vhd' % (container, image_id)
    assert won[0]['result'] == {'export_location': location}
    # The winner's object is intact (the losers' cleanup deleted none of it) ...
    verify = _verify(stack_info, glance.project, location)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # ... and the losers say why.
    for task in lost:
        assert task['status'] == 'failure', task
        assert task['message'] == EXISTS % (container, image_id), task
    # Nothing but the winner's manifest and its segments is left.
    names = [o['name'] for o in swift.get_container(container, full_listing=True)[1]]
    headers = swift.head_object(container, '%s.vhd' % image_id)
    count = int(headers['x-object-meta-rax-dlo-segment-count'])
    assert sorted(names) == ['%s.vhd' % image_id] + [
        dlo.segment_name('%s.vhd' % image_id, i) for i in range(1, count + 1)]
    assert headers['x-object-meta-rax-dlo-writer'] == won[0]['id']


def test_export_onto_an_object_written_meanwhile_deletes_nothing(imported, stack_info):
    """A name taken by someone else (here the customer) between the container check and
    the upload: the export fails with the message and the customer's object is untouched."""
    glance, swift, image_id = imported
    swift.put_container('taken')
    swift.put_object('taken', '%s.vhd' % image_id, io.BytesIO(b'mine'), content_length=4)
    task = th.run_export(glance, image_id, 'taken')
    assert task['status'] == 'failure' and task['message'] == EXISTS % ('taken', image_id)
    assert swift.get_object('taken', '%s.vhd' % image_id)[1] == b'mine'


@pytest.mark.parametrize('versioning', ['object-versioning', 'versions-location',
                                        'history-location'])
def test_concurrent_exports_into_a_versioned_container(imported, stack_info, versioning):
    """The same race where the customer turned on Swift's object versioning (the
    production pipeline has `versioned_writes`): still exactly one intact winner, and the
    name claim is never left behind."""
    glance, swift, image_id = imported
    container = 'race-%s' % versioning
    headers = {'object-versioning': {'X-Versions-Enabled': 'true'},
               'versions-location': {'X-Versions-Location': container + '-v'},
               'history-location': {'X-History-Location': container + '-v'}}[versioning]
    if versioning != 'object-versioning':
        swift.put_container(container + '-v')
    swift.put_container(container, headers=headers)
    tasks = _post_together(glance, image_id, container)
    won = [t for t in tasks if t['status'] == 'success']
    assert len(won) == 1, tasks
    location = '%s/%s.vhd' % (container, image_id)
    verify = _verify(stack_info, glance.project, location)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    for task in tasks:
        if task is not won[0]:
            assert task['message'] == EXISTS % (container, image_id), task
    head = swift.head_object(container, '%s.vhd' % image_id)
    assert head['x-object-meta-rax-dlo-writer'] == won[0]['id']
    assert head['x-object-meta-rax-dlo-state'] == 'complete'
