"""The haproxy_server module refuses names that would chain runtime API commands, before it
opens the socket (issue 15, item 8)."""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
from contextlib import redirect_stdout
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _haproxy  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.modules import haproxy_server  # noqa: E402


@pytest.fixture
def runtime_socket(tmp_path):
    """A unix socket that records every command line sent to it and answers nothing."""
    path = str(tmp_path / "admin.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    server.settimeout(0.2)
    received, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except TimeoutError:
                continue
            received.append(conn.recv(4096))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, received
    stop.set()
    thread.join(2)
    server.close()


def run_module(**args):
    out = io.StringIO()
    with patch_module_args(args), redirect_stdout(out), pytest.raises(SystemExit):
        haproxy_server.main()
    return json.loads(out.getvalue())


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("option, value", [
    ("backend", "pgbouncer;disable server pgbouncer/pg-srv1"),
    ("backend", "pgbouncer\nshutdown sessions server pgbouncer/pg-srv1"),
    ("backend", "pg bouncer"),
    ("server", "pg-srv1;shutdown sessions server pgbouncer/pg-srv1"),
    ("server", "pg-srv1/x"),
])
def test_bad_names_fail_before_any_socket_io(runtime_socket, check_mode, option, value):
    path, received = runtime_socket
    args = dict(socket=path, server="pg-srv1", weight=0, _ansible_check_mode=check_mode)
    args[option] = value
    result = run_module(**args)
    assert result["failed"]
    assert "%s %r is not an HAProxy name" % (option, value) in result["msg"]
    assert "letters, digits and - _ . :" in result["msg"]
    assert received == []


@pytest.mark.parametrize("name", ["pgbouncer", "pg-srv1", "be_app.v2", "srv:1"])
def test_names_in_haproxys_charset_pass(name):
    assert _haproxy.name_problem("backend", name) is None
    assert _haproxy.check_request(backend=name, server=name) == []
