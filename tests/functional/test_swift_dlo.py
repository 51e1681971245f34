"""rax_glance.swift against the dev stack's real Swift: DLO round trips, damage detection,
failed uploads leaving nothing behind, and project isolation."""

import hashlib
import io
import threading
import urllib.parse
import uuid

import pytest
import requests
import swiftclient

from rax_glance.swift import access
from rax_glance.swift import dlo
from rax_glance.swift import errors
from tests.functional import clients
from tests.functional.swift_helpers import SEG
from tests.functional.swift_helpers import chunked
from tests.functional.swift_helpers import names_under
from tests.functional.swift_helpers import project_access
from tests.functional.swift_helpers import random_bytes


@pytest.fixture
def project(stack_info):
    """(ProjectSwift, raw swiftclient Connection, container) for a fresh project."""
    swift = project_access(stack_info['swift'], clients.new_project())
    conn = swift.connection()
    conn.put_container('exports')
    return swift, conn, 'exports'


def _write(swift, obj, data, **kwargs):
    kwargs.setdefault('segment_size', SEG)
    kwargs.setdefault('spool_memory', 10 * 1024)
    return dlo.write_dlo(swift, 'exports', obj, kwargs.pop('source', io.BytesIO(data)),
                         **kwargs)


@pytest.mark.parametrize('size,segments', [
    (0, 0), (1, 1), (SEG, 1), (5 * SEG + 4321, 6)])
def test_round_trip(project, size, segments):
    swift, conn, container = project
    data = random_bytes(size)
    obj = 'img-%d.vhd' % size
    result = _write(swift, obj, data, source=chunked(data), concurrency=3)

    assert result['size'] == size
    assert result['segment_count'] == segments
    assert result['md5'] == hashlib.md5(data).hexdigest()
    assert result['sha256'] == hashlib.sha256(data).hexdigest()
    expected = [dlo.segment_name(obj, i) for i in range(1, segments + 1)]
    assert result['segments'] == expected
    assert names_under(conn, container, obj) == sorted([obj] + expected)

    # What any Swift client sees: a DLO whose metadata records size and hashes.
    headers, body = conn.get_object(container, obj)
    assert body == data
    assert headers['x-object-manifest'] == urllib.parse.quote('exports/%s-' % obj)
    assert headers['x-object-meta-rax-dlo-size'] == str(size)
    assert headers['x-object-meta-rax-dlo-sha256'] == hashlib.sha256(data).hexdigest()
    assert headers['x-object-meta-rax-dlo-md5'] == hashlib.md5(data).hexdigest()
    assert headers['x-object-meta-rax-dlo-segment-count'] == str(segments)
    # Swift's own DLO ETag is the recorded segments etag.
    assert headers['etag'].strip('"') == result['segments_etag']

    reader = dlo.open_dlo(swift, container, obj, chunk_size=10000)
    assert reader.size == size
    assert b''.join(reader) == data
    assert b''.join(dlo.open_dlo(swift, container, obj, via_manifest=True)) == data
    report = dlo.verify_dlo(swift, container, obj)
    assert report['ok'], report
    assert report['bytes_read'] == size


def test_single_segment_in_flight_matches_parallel(project):
    swift, conn, container = project
    data = random_bytes(3 * SEG + 1)
    one = _write(swift, 'serial', data, concurrency=1)
    many = _write(swift, 'parallel', data, concurrency=4, spool_memory=0)
    assert one['segments_etag'] == many['segments_etag']
    assert conn.get_object(container, 'parallel')[1] == data


def _damaged(project, size=4 * SEG + 10):
    swift, conn, container = project
    data = random_bytes(size)
    obj = 'damaged-%s' % uuid.uuid4().hex[:6]
    _write(swift, obj, data)
    return swift, conn, container, obj, data


def test_deleted_segment_is_detected(project):
    swift, conn, container, obj, data = _damaged(project)
    conn.delete_object(container, dlo.segment_name(obj, 3))
    # Plain Swift silently serves a short object: the failure this bundle guards against.
    assert len(conn.get_object(container, obj)[1]) == len(data) - SEG

    with pytest.raises(errors.IntegrityError) as err:
        dlo.open_dlo(swift, container, obj)
    assert 'segment %s is missing' % dlo.segment_name(obj, 3) in str(err.value)
    report = dlo.verify_dlo(swift, container, obj)
    assert not report['ok']
    assert 'segment %s is missing' % dlo.segment_name(obj, 3) in report['problems']
    assert 'Swift served %d bytes, recorded %d' % (len(data) - SEG, len(data)) \
        in report['problems']


def test_stray_object_is_detected(project):
    swift, conn, container, obj, data = _damaged(project)
    conn.put_object(container, obj + '-zzz', b'appended by someone')
    assert conn.get_object(container, obj)[1] == data + b'appended by someone'

    with pytest.raises(errors.IntegrityError) as err:
        dlo.open_dlo(swift, container, obj)
    assert 'unexpected object %s-zzz under the segment prefix' % obj in str(err.value)
    report = dlo.verify_dlo(swift, container, obj)
    assert not report['ok']
    assert any('unexpected object' in p for p in report['problems'])


def test_replaced_segment_is_detected(project):
    swift, conn, container, obj, data = _damaged(project)
    conn.put_object(container, dlo.segment_name(obj, 2), random_bytes(SEG))
    with pytest.raises(errors.IntegrityError) as err:
        dlo.open_dlo(swift, container, obj)
    assert 'segment contents were replaced' in str(err.value)
    assert not dlo.verify_dlo(swift, container, obj)['ok']


def test_stream_check_withholds_the_last_chunk(project):
    """When only the bytes betray the damage (here: a tampered record), the reader raises
    before handing out the final chunk, so a consumer never gets a complete-looking file."""
    swift, conn, container, obj, data = _damaged(project)
    headers = conn.head_object(container, obj, query_string='multipart-manifest=get')
    keep = {k: v for k, v in headers.items() if k.startswith('x-object-meta-')}
    keep['x-object-meta-rax-dlo-sha256'] = hashlib.sha256(b'other').hexdigest()
    keep['x-object-manifest'] = headers['x-object-manifest']
    conn.post_object(container, obj, headers=keep)

    reader = dlo.open_dlo(swift, container, obj, chunk_size=SEG // 2)
    received = bytearray()
    with pytest.raises(errors.IntegrityError) as err:
        for chunk in reader:
            received += chunk
    assert 'sha256 of the served bytes' in str(err.value)
    assert 0 < len(received) < len(data)
    assert bytes(received) == data[:len(received)]


def test_preflight_errors(project):
    swift, conn, container = project
    with pytest.raises(errors.ContainerNotFound) as err:
        dlo.write_dlo(swift, 'nope', 'x.vhd', io.BytesIO(b'abc'), segment_size=SEG)
    assert err.value.message == 'Container not found. Container: nope'

    conn.put_object(container, 'taken.vhd', b'already here')
    with pytest.raises(errors.ObjectExists) as err:
        _write(swift, 'taken.vhd', b'abc')
    assert err.value.message == ("Object already exists in user's container. "
                                 "Container/Object: exports/taken.vhd")
    assert conn.get_object(container, 'taken.vhd')[1] == b'already here'

    conn.put_object(container, 'prefixed.vhd-00001', b'old segment')
    with pytest.raises(errors.SegmentPrefixInUse):
        _write(swift, 'prefixed.vhd', b'abc')
    assert names_under(conn, container, 'prefixed.vhd') == ['prefixed.vhd-00001']

    with pytest.raises(errors.InvalidName):
        _write(swift, 'x' * 1020, b'abc')


class _Boom(Exception):
    pass


def _failing_source(data, fail_after):
    pos = 0
    while pos < len(data):
        if pos >= fail_after:
            raise _Boom('source broke at %d' % pos)
        yield data[pos:pos + 10000]
        pos += 10000


def test_source_failure_leaves_nothing(project):
    swift, conn, container = project
    data = random_bytes(8 * SEG)
    with pytest.raises(_Boom):
        _write(swift, 'broken.vhd', data, source=_failing_source(data, 5 * SEG),
               concurrency=2)
    assert names_under(conn, container, 'broken.vhd') == []


class _EtagCorruptingSwift:
    """Sends a wrong ETag for one segment so that the real Swift rejects that PUT (422)."""

    def __init__(self, swift, bad_segment):
        self.swift = swift
        self.bad_segment = bad_segment
        self.rejected = []

    def connection(self):
        conn = self.swift.connection()
        put = conn.put_object
        outer = self

        def put_object(container, obj, contents, **kwargs):
            if obj.endswith(outer.bad_segment) and kwargs.get('etag'):
                kwargs['etag'] = hashlib.md5(b'not the data').hexdigest()
                try:
                    return put(container, obj, contents, **kwargs)
                except swiftclient.ClientException as exc:
                    outer.rejected.append(exc.http_status)
                    raise
            return put(container, obj, contents, **kwargs)

        conn.put_object = put_object
        return conn


def test_rejected_segment_leaves_nothing(project):
    swift, conn, container = project
    faulty = _EtagCorruptingSwift(swift, '-00003')
    with pytest.raises(errors.UploadFailed) as err:
        _write(faulty, 'rejected.vhd', random_bytes(6 * SEG), concurrency=2)
    assert faulty.rejected and set(faulty.rejected) == {422}
    assert err.value.http_status == 422
    assert 'checksum mismatch' in err.value.message
    assert err.value.leftovers == []
    assert names_under(conn, container, 'rejected.vhd') == []


def test_cancel_leaves_nothing(project):
    swift, conn, container = project
    cancel = threading.Event()
    data = random_bytes(8 * SEG)

    def source():
        for i in range(0, len(data), 8192):
            if i >= 4 * SEG:
                cancel.set()
            yield data[i:i + 8192]

    with pytest.raises(errors.UploadCancelled):
        _write(swift, 'cancelled.vhd', data, source=source(), cancel_event=cancel)
    assert names_under(conn, container, 'cancelled.vhd') == []


def test_projects_are_isolated(stack_info):
    info = stack_info['swift']
    a, b = clients.new_project(), clients.new_project()
    swift_a = project_access(info, a)
    swift_b = project_access(info, b)
    assert swift_a.storage_url.endswith('/AUTH_%s' % a)
    assert swift_b.storage_url.endswith('/AUTH_%s' % b)
    conn_a, conn_b = swift_a.connection(), swift_b.connection()
    conn_a.put_container('exports')
    conn_b.put_container('exports')
    dlo.write_dlo(swift_a, 'exports', 'secret.vhd', io.BytesIO(b'A' * 1000),
                  segment_size=SEG)

    # B's access, acting for B, cannot see A's export under the same names.
    with pytest.raises(errors.ObjectNotFound):
        dlo.open_dlo(swift_b, 'exports', 'secret.vhd')
    assert names_under(conn_b, 'exports', 'secret.vhd') == []
    # And a project's own Swift user cannot reach another project's account.
    demo = info['project_users']['demo']
    url, token = swiftclient.get_auth(info['auth_url'], demo['user'], demo['key'],
                                      auth_version='1')
    resp = requests.get(swift_a.storage_url + '/exports/secret.vhd',
                        headers={'X-Auth-Token': token}, timeout=10)
    assert resp.status_code == 403
    # A project id cannot smuggle in another account's path.
    for bad in ('%s/../AUTH_%s' % (b, a), '', None, 'a?b', 'a/b'):
        with pytest.raises(errors.AccessError):
            project_access(info, bad)


def test_token_refresh_keeps_the_project_account(stack_info):
    """After a 401 the connection fetches a new token but stays on the project's account
    (swiftclient's own re-auth would switch to the service user's account)."""
    info = stack_info['swift']
    project = clients.new_project()
    real = project_access(info, project)
    calls = []

    def token_source(refresh=False):
        calls.append(refresh)
        return real.connection().token if refresh else 'not-a-valid-token'

    swift = access.ProjectSwift(real.storage_url, token_source=token_source,
                                project_id=project, retries=1, retry_backoff=0.1)
    conn = swift.connection()
    conn.put_container('after-refresh')
    assert calls == [False, True]
    assert conn.url == real.storage_url
    real.connection().head_container('after-refresh')


def test_ranges(project):
    swift, conn, container, obj, data = _damaged(project)  # intact until we damage it
    for offset, length in ((0, 1), (SEG - 1, 2), (SEG, SEG), (3 * SEG + 5, None),
                           (len(data) - 1, 1), (7, 0)):
        reader = dlo.open_dlo_range(swift, container, obj, offset, length)
        expected = data[offset:] if length is None else data[offset:offset + length]
        assert reader.size == len(expected)
        assert b''.join(reader) == expected
    for offset, length in ((-1, 1), (len(data), 1), (0, len(data) + 1)):
        with pytest.raises(ValueError):
            dlo.open_dlo_range(swift, container, obj, offset, length)
    conn.delete_object(container, dlo.segment_name(obj, 4))
    with pytest.raises(errors.IntegrityError):
        dlo.open_dlo_range(swift, container, obj, 0, 10)


def test_segment_changed_after_the_listing_check(project):
    swift, conn, container, obj, data = _damaged(project)
    reader = dlo.open_dlo(swift, container, obj, chunk_size=SEG // 4)
    # Damage lands between the up-front check and the read of that segment.
    conn.put_object(container, dlo.segment_name(obj, 3), random_bytes(SEG))
    received = bytearray()
    with pytest.raises(errors.IntegrityError) as err:
        for chunk in reader:
            received += chunk
    assert 'segment %s changed while being read' % dlo.segment_name(obj, 3) in str(err.value)
    assert bytes(received) == data[:len(received)] and len(received) <= 2 * SEG


def test_segment_deleted_after_the_listing_check(project):
    swift, conn, container, obj, data = _damaged(project)
    reader = dlo.open_dlo(swift, container, obj)
    conn.delete_object(container, dlo.segment_name(obj, 5))
    with pytest.raises(errors.IntegrityError) as err:
        b''.join(reader)
    assert 'segment %s is missing' % dlo.segment_name(obj, 5) in str(err.value)
