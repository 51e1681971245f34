"""Task records: owner scoping, filters, sorting, paging, claims, leases and expiry (sqlite)."""

import datetime
import uuid

import pytest

from rax_glance.tasks.db import api as db_api
from rax_glance.tasks.db import migration


@pytest.fixture
def repo(tmp_path):
    url = 'sqlite:///%s' % (tmp_path / 'tasks.sqlite')
    migration.db_sync(url)
    return db_api.TaskRepo(db_api.get_engine(url))


def _make(repo, owner='p1', task_type='import', worker='w1', **kwargs):
    return repo.create(str(uuid.uuid4()), task_type, owner, 'u1', ['reader'],
                       {'import_from': 'c/o'}, worker, 60, **kwargs)


def test_db_sync_is_idempotent_and_versioned(tmp_path):
    url = 'sqlite:///%s' % (tmp_path / 'x.sqlite')
    migration.db_sync(url)
    migration.db_sync(url)
    assert migration.current_revision(url) == '0001_rax_tasks'


def test_create_and_get_scoped_to_owner(repo):
    task = _make(repo)
    assert task['status'] == 'pending' and task['message'] == ''
    assert task['input'] == {'import_from': 'c/o'}
    assert repo.get(task['id'], 'p1')['id'] == task['id']
    assert repo.get(task['id'], 'p2') is None
    assert repo.get(str(uuid.uuid4()), 'p1') is None


def test_list_scoped_filtered_and_sorted(repo):
    mine = [_make(repo, task_type=t) for t in ('import', 'export', 'import')]
    _make(repo, owner='p2')
    listed = repo.list('p1')
    assert [t['id'] for t in listed] == [t['id'] for t in reversed(mine)]
    assert {t['id'] for t in repo.list('p1', filters={'type': 'export'})} == {mine[1]['id']}
    assert repo.list('p1', filters={'status': 'success'}) == []
    asc = repo.list('p1', sort_key='created_at', sort_dir='asc')
    assert [t['id'] for t in asc] == [t['id'] for t in mine]
    by_id = repo.list('p1', sort_key='id', sort_dir='asc')
    assert [t['id'] for t in by_id] == sorted(t['id'] for t in mine)


def test_paging_with_marker_visits_every_task_once(repo):
    ids = {_make(repo)['id'] for _ in range(7)}
    seen, marker = [], None
    while True:
        page = repo.list('p1', limit=3, marker=marker, sort_key='type', sort_dir='asc')
        if not page:
            break
        seen.extend(t['id'] for t in page)
        marker = page[-1]['id']
    assert len(seen) == 7 and set(seen) == ids


def test_marker_of_another_project_is_invalid(repo):
    other = _make(repo, owner='p2')
    _make(repo)
    with pytest.raises(db_api.InvalidMarker):
        repo.list('p1', marker=other['id'])


def test_claim_only_by_holder_and_only_once(repo):
    task = _make(repo, worker='w1')
    assert not repo.claim(task['id'], 'w2', 60)
    assert repo.claim(task['id'], 'w1', 60)
    assert not repo.claim(task['id'], 'w1', 60)
    assert repo.get_any(task['id'])['status'] == 'processing'


def test_finish_is_fenced_and_sets_expiry(repo):
    task = _make(repo, worker='w1')
    repo.claim(task['id'], 'w1', 60)
    assert not repo.finish(task['id'], 'w2', 'success', 48, result={'image_id': 'x'})
    assert repo.finish(task['id'], 'w1', 'success', 48, result={'image_id': 'x'})
    done = repo.get(task['id'], 'p1')
    assert done['status'] == 'success' and done['result'] == {'image_id': 'x'}
    assert done['expires_at'] - done['updated_at'] == datetime.timedelta(hours=48)
    # A finished task cannot be finished again (e.g. by a worker that lost it).
    assert not repo.finish(task['id'], 'w1', 'failure', 48, message='late')


def test_expired_tasks_disappear_and_are_purged(repo):
    task = _make(repo)
    repo.claim(task['id'], 'w1', 60)
    repo.finish(task['id'], 'w1', 'failure', 1, message='bad')
    assert repo.get(task['id'], 'p1')['message'] == 'bad'
    later = db_api.utcnow() + datetime.timedelta(hours=2)
    with repo.engine.begin() as conn:  # move the clock of this row instead of waiting
        conn.execute(db_api.T.update().values(
            expires_at=db_api.utcnow() - datetime.timedelta(seconds=1)))
    assert repo.get(task['id'], 'p1') is None
    assert repo.list('p1') == []
    assert repo.purge_expired(later) == 1
    assert repo.get_any(task['id']) is None


def test_take_over_is_compare_and_set(repo):
    task = _make(repo, worker='dead')
    assert repo.take_over(task, 'w2', 60)
    # The same stale view cannot win twice.
    assert not repo.take_over(task, 'w3', 60)
    assert repo.get_any(task['id'])['worker'] == 'w2'


def test_work_record_and_lease_renewal(repo):
    task = _make(repo, worker='w1')
    repo.record_work(task['id'], 'w1', {'image_id': 'i'})
    repo.record_work(task['id'], 'other', {'image_id': 'nope'})
    assert repo.get_any(task['id'])['work'] == {'image_id': 'i'}
    assert repo.renew_leases('w1', 600) == 1
    assert repo.get_any(task['id'])['lease_until'] > db_api.utcnow() + datetime.timedelta(
        seconds=500)


def _manage(*args):
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.run([str(Path(sys.executable).parent / 'rax-glance-manage'), *args],
                          capture_output=True, text=True)


def test_manage_db_sync_uses_glance_database_or_the_override(tmp_path):
    glance_db = tmp_path / 'glance.sqlite'
    own_db = tmp_path / 'own.sqlite'
    conf = tmp_path / 'glance-api.conf'
    conf.write_text('[database]\nconnection = sqlite:///%s\n' % glance_db)
    result = _manage('--config-file', str(conf), 'db_sync')
    assert result.returncode == 0, result.stderr
    assert migration.current_revision('sqlite:///%s' % glance_db) == '0001_rax_tasks'
    conf.write_text(conf.read_text() + '[rax_tasks]\nconnection = sqlite:///%s\n' % own_db)
    assert _manage('--config-file', str(conf), 'db_sync').returncode == 0
    assert migration.current_revision('sqlite:///%s' % own_db) == '0001_rax_tasks'
    version = _manage('--config-file', str(conf), 'db_version')
    assert version.stdout.strip() == '0001_rax_tasks'


def test_manage_without_a_database_explains(tmp_path):
    conf = tmp_path / 'empty.conf'
    conf.write_text('[DEFAULT]\n')
    result = _manage('--config-file', str(conf), 'db_sync')
    assert result.returncode != 0
    assert 'no database' in result.stderr and 'Traceback' not in result.stderr
