"""Dev stack start-up errors that need no running servers."""

import socket

import pytest

from rax_glance.devstack import process
from rax_glance.devstack.glance import GlanceServer


def test_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen(1)
        server = GlanceServer(tmp_path)
        server.port = sock.getsockname()[1]
        started = []
        with pytest.raises(process.StackError, match='port %d is taken' % server.port):
            server.start(tmp_path, started.append, timeout=5)
        assert started == []


def test_free_port_is_bindable():
    port = process.free_port()
    assert not process.port_is_taken(port)
