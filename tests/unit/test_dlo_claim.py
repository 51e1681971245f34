"""Issue 10 class 6 at unit level: a claiming DLO writer never deletes what another writer
owns. An in-memory Swift (If-None-Match, last writer wins) stands in for the real one; the
functional proof is tests/functional/test_tasks_export_race.py."""

import hashlib
import io
import threading

import pytest
import swiftclient

from rax_glance.swift import dlo
from rax_glance.swift import errors


class FakeSwift:
    """One account: {container: {name: (bytes, headers)}}; shared by all connections."""

    def __init__(self):
        self.containers = {'exports': {}}
        self.lock = threading.Lock()
        self.deleted = []
        self.before_put = None      # hook(name, headers) run before a PUT lands

    def connection(self):
        return FakeConn(self)


class FakeConn:
    def __init__(self, swift):
        self.swift = swift

    def close(self):
        pass

    def _objects(self, container):
        if container not in self.swift.containers:
            raise swiftclient.ClientException('no container', http_status=404)
        return self.swift.containers[container]

    def head_container(self, container):
        self._objects(container)
        return {}

    def head_object(self, container, name, headers=None, query_string=None):
        with self.swift.lock:
            objects = self._objects(container)
            if name not in objects:
                raise swiftclient.ClientException('missing', http_status=404)
            return {k.lower(): v for k, v in objects[name][1].items()}

    def put_object(self, container, name, contents, content_length=None, etag=None,
                   content_type=None, headers=None):
        headers = dict(headers or {})
        data = contents if isinstance(contents, bytes) else contents.read()
        if self.swift.before_put is not None:
            self.swift.before_put(name, headers)
        with self.swift.lock:
            objects = self._objects(container)
            if headers.pop('If-None-Match', None) == '*' and name in objects:
                raise swiftclient.ClientException('exists', http_status=412)
            objects[name] = (data, headers)
        return hashlib.md5(data).hexdigest()

    def get_container(self, container, prefix='', limit=None, full_listing=False):
        with self.swift.lock:
            objects = self._objects(container)
            listing = [{'name': n, 'bytes': len(d), 'hash': hashlib.md5(d).hexdigest()}
                       for n, (d, _) in sorted(objects.items()) if n.startswith(prefix)]
        return {}, listing[:limit] if limit else listing

    def delete_object(self, container, name):
        with self.swift.lock:
            objects = self._objects(container)
            if name not in objects:
                raise swiftclient.ClientException('missing', http_status=404)
            del objects[name]
            self.swift.deleted.append(name)


SEG = 1000
DATA = bytes(range(256)) * 20   # 5120 bytes: 6 segments of 1000


def write(swift, writer_id, data=DATA, **kwargs):
    return dlo.write_dlo(swift, 'exports', 'img.vhd', io.BytesIO(data), segment_size=SEG,
                         concurrency=1, claim=True, writer_id=writer_id, claim_settle=0,
                         cleanup_timeout=1, **kwargs)


def test_claimed_write_keeps_the_layout_and_records_the_writer():
    swift = FakeSwift()
    record = write(swift, 'task-a')
    headers = swift.connection().head_object('exports', 'img.vhd')
    assert headers['x-object-meta-rax-dlo-writer'] == 'task-a'
    assert headers['x-object-meta-rax-dlo-state'] == 'complete'
    assert record['segments'] == ['img.vhd-%05d' % i for i in range(1, 7)]
    assert dlo.verify_dlo(swift, 'exports', 'img.vhd', read_data=False)['problems'] == []


def test_second_writer_fails_already_exists_and_deletes_nothing():
    swift = FakeSwift()
    write(swift, 'task-a')
    before = dict(swift.containers['exports'])
    with pytest.raises(errors.ObjectExists):
        write(swift, 'task-b')
    assert swift.containers['exports'] == before and swift.deleted == []


def test_placeholder_of_another_writer_blocks_and_is_kept():
    swift = FakeSwift()
    swift.containers['exports']['img.vhd'] = (b'', {
        dlo.WRITER_HEADER: 'task-a', dlo.STATE_HEADER: 'writing'})
    with pytest.raises(errors.ObjectExists):
        write(swift, 'task-b')
    assert list(swift.containers['exports']) == ['img.vhd'] and swift.deleted == []


def test_claim_overwritten_by_a_racing_put_loses_without_deleting(monkeypatch):
    """Both PUTs passed If-None-Match; the newer (task-b) lands just after task-a's: task-a
    reads it back after the settle time, fails, and deletes nothing at all."""
    swift = FakeSwift()

    def settle(seconds):
        swift.containers['exports']['img.vhd'] = (b'', {
            dlo.WRITER_HEADER: 'task-b', dlo.STATE_HEADER: 'writing'})

    monkeypatch.setattr(dlo.time, 'sleep', settle)
    with pytest.raises(errors.ObjectExists):
        write(swift, 'task-a')
    headers = swift.connection().head_object('exports', 'img.vhd')
    assert headers[dlo.WRITER_HEADER.lower()] == 'task-b' and swift.deleted == []
    assert list(swift.containers['exports']) == ['img.vhd']


def test_claim_lost_before_the_manifest_deletes_no_segment():
    swift = FakeSwift()
    segments_put = []

    def steal(name, headers):
        if name.startswith('img.vhd-'):
            segments_put.append(name)
            if len(segments_put) == 6:   # the last segment: another writer takes the name
                swift.containers['exports']['img.vhd'] = (b'', {
                    dlo.WRITER_HEADER: 'task-b', dlo.STATE_HEADER: 'writing'})

    swift.before_put = steal
    with pytest.raises(errors.ObjectExists):
        write(swift, 'task-a')
    assert swift.deleted == []
    headers = swift.connection().head_object('exports', 'img.vhd')
    assert headers[dlo.WRITER_HEADER.lower()] == 'task-b'


def test_claim_lost_between_segments_stops_writing_and_deletes_nothing():
    swift = FakeSwift()
    segments_put = []

    def steal(name, headers):
        if name.startswith('img.vhd-'):
            segments_put.append(name)
            if len(segments_put) == 2:
                swift.containers['exports']['img.vhd'] = (b'', {
                    dlo.WRITER_HEADER: 'task-b', dlo.STATE_HEADER: 'writing'})

    swift.before_put = steal
    with pytest.raises(errors.ObjectExists):
        write(swift, 'task-a')
    assert segments_put == ['img.vhd-00001', 'img.vhd-00002'] and swift.deleted == []


def test_failed_source_removes_own_segments_and_placeholder():
    swift = FakeSwift()

    def source():
        yield DATA[:2500]
        raise RuntimeError('bad data')

    with pytest.raises(RuntimeError):
        dlo.write_dlo(swift, 'exports', 'img.vhd', source(), segment_size=SEG,
                      concurrency=1, claim=True, writer_id='task-a', claim_settle=0,
                      cleanup_timeout=1)
    assert swift.containers['exports'] == {}
    assert 'img.vhd' in swift.deleted


def test_stray_segments_release_the_claim():
    swift = FakeSwift()
    swift.containers['exports']['img.vhd-00001'] = (b'old', {})
    with pytest.raises(errors.SegmentPrefixInUse):
        write(swift, 'task-a')
    assert list(swift.containers['exports']) == ['img.vhd-00001']


def test_delete_with_writer_id_only_deletes_own_object():
    swift = FakeSwift()
    write(swift, 'task-a')
    before = dict(swift.containers['exports'])
    with pytest.raises(errors.ObjectNotFound):
        dlo.delete_dlo(swift, 'exports', 'img.vhd', writer_id='task-b')
    assert swift.containers['exports'] == before
    assert dlo.delete_dlo(swift, 'exports', 'img.vhd', writer_id='task-a') == 7
    assert swift.containers['exports'] == {}
    assert swift.deleted[-1] == 'img.vhd'       # the manifest goes last


def test_delete_with_writer_id_of_a_missing_object_deletes_no_segment():
    """A loser's revert after the winner's segments exist but before its manifest."""
    swift = FakeSwift()
    swift.containers['exports']['img.vhd-00001'] = (b'winner', {})
    with pytest.raises(errors.ObjectNotFound):
        dlo.delete_dlo(swift, 'exports', 'img.vhd', writer_id='task-b')
    assert list(swift.containers['exports']) == ['img.vhd-00001']
