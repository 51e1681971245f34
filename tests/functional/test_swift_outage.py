"""Uploads that fail because Swift itself fails, on a private one-node Swift (not the shared
stack's): its proxy is killed mid-upload, and a container quota rejects segments."""

import io
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

import pytest

from rax_glance.devstack import process
from rax_glance.devstack.swift import SwiftNode
from rax_glance.swift import dlo
from rax_glance.swift import errors
from tests.functional import clients
from tests.functional.swift_helpers import SEG
from tests.functional.swift_helpers import names_under
from tests.functional.swift_helpers import project_access
from tests.functional.swift_helpers import random_bytes


class PrivateSwift:
    def __init__(self, base):
        self.node = SwiftNode(base, secrets.token_hex(4))
        self.logs = Path(base) / 'logs'
        self.records = []

    def start(self):
        self.logs.mkdir(parents=True, exist_ok=True)
        self.node.configure(projects=())
        # The production pipeline has container_quotas, so a test can make Swift refuse a
        # PUT (413); without `cache` the quota is checked against the container's live usage
        # (with memcached Swift compares with usage cached up to 60 s, and a whole upload
        # can fit under a stale figure).
        conf = self.node.dir / 'proxy-server.conf'
        text = conf.read_text()
        assert ' container-quotas ' in text
        conf.write_text(text.replace(' cache ', ' ', 1))
        self.node.start(self.logs, self.records.append, timeout=60)
        return dict(self.node.describe())

    def _proxy(self):
        return next(r for r in self.records if r['name'] == 'swift-proxy')

    def kill_proxy(self):
        process.stop([self._proxy()], sig=signal.SIGKILL, timeout=10)

    def start_proxy(self):
        old = self._proxy()
        self.records.remove(old)
        conf = self.node.dir / 'proxy-server.conf'
        rec = process.spawn('swift-proxy', [_bin('swift-proxy-server'), str(conf), '--verbose'],
                            self.logs / 'swift-proxy.log',
                            env=dict(os.environ, SWIFT_DIR=str(self.node.dir)))
        self.records.append(rec)
        process.wait_http_ok('swift-proxy', self.node.proxy_url + '/healthcheck', rec, 60)

    def stop(self):
        process.stop(list(reversed(self.records)))
        SwiftNode.remove_devices(self.node.devices)


def _bin(name):
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope='module')
def private_swift(tmp_path_factory):
    swift = PrivateSwift(tmp_path_factory.mktemp('private-swift'))
    try:
        info = swift.start()
        yield swift, info
    finally:
        swift.stop()


@pytest.fixture
def project(private_swift):
    swift, info = private_swift
    access = project_access(info, clients.new_project(), cleanup_timeout=30)
    conn = access.connection()
    conn.put_container('exports')
    return swift, info, access


def _killing_source(data, swift, kill_at, restart_after=None):
    """Yields `data`; kills the proxy once `kill_at` bytes went out, and restarts it
    `restart_after` seconds later (in the background) when given."""
    for pos in range(0, len(data), 16384):
        if pos == kill_at:
            swift.kill_proxy()
            if restart_after is not None:
                timer = threading.Timer(restart_after, swift.start_proxy)
                timer.daemon = True
                timer.start()
        yield data[pos:pos + 16384]


def test_proxy_killed_mid_upload_leaves_nothing(project):
    swift, info, access = project
    data = random_bytes(10 * SEG)
    with pytest.raises(errors.UploadFailed) as err:
        dlo.write_dlo(access, 'exports', 'outage.vhd',
                      _killing_source(data, swift, 4 * SEG, restart_after=2.0),
                      segment_size=SEG, concurrency=2, cleanup_timeout=30)
    assert 'cannot connect to Swift' in err.value.message
    assert err.value.leftovers == []
    # The proxy is back: nothing of the failed upload is left.
    assert names_under(access.connection(), 'exports', 'outage.vhd') == []


def test_proxy_down_for_good_reports_leftovers(project):
    swift, info, access = project
    data = random_bytes(6 * SEG)
    with pytest.raises(errors.UploadFailed) as err:
        dlo.write_dlo(access, 'exports', 'stranded.vhd',
                      _killing_source(data, swift, 3 * SEG),
                      segment_size=SEG, concurrency=1, cleanup_timeout=1)
    leftovers = err.value.leftovers
    assert leftovers, 'segments written before the outage must be reported'
    assert 'could not be deleted' in err.value.message
    swift.start_proxy()
    conn = access.connection()
    # Everything left is among what was reported (a PUT cut by the outage may not have
    # landed); no manifest was ever written.
    listed = names_under(conn, 'exports', 'stranded.vhd')
    assert listed and set(listed) <= set(leftovers)
    assert 'stranded.vhd' not in listed + leftovers
    assert dlo.delete_dlo(access, 'exports', 'stranded.vhd') == len(listed)
    assert names_under(conn, 'exports', 'stranded.vhd') == []


def test_segment_rejected_by_container_quota_leaves_nothing(project):
    swift, info, access = project
    conn = access.connection()
    conn.put_container('quota', headers={'X-Container-Meta-Quota-Bytes': str(3 * SEG + 100)})
    data = random_bytes(8 * SEG)
    with pytest.raises(errors.UploadFailed) as err:
        dlo.write_dlo(access, 'quota', 'too-big.vhd', io.BytesIO(data),
                      segment_size=SEG, concurrency=2)
    assert err.value.http_status == 413
    assert 'refused the size (413' in err.value.message
    assert names_under(conn, 'quota', 'too-big.vhd') == []
    store_error = errors.to_store_exception(err.value, 'Adding image')
    assert type(store_error).__name__ == 'StorageFull'
