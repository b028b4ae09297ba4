"""The keepalived role's check script (roles/keepalived/files/keepalived-check.sh), run with
bash against local listeners: a 200, a 503, a listener that never answers, a closed port."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[4] / "roles" / "keepalived" / "files" / "keepalived-check.sh"


def serve(status):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"body\n")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def ok_server():
    server = serve(200)
    yield "127.0.0.1:%d" % server.server_address[1]
    server.shutdown()


@pytest.fixture
def failing_server():
    server = serve(503)
    yield "127.0.0.1:%d" % server.server_address[1]
    server.shutdown()


@pytest.fixture
def silent_listener():
    """Accepts connections (the kernel does) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    yield "127.0.0.1:%d" % sock.getsockname()[1]
    sock.close()


@pytest.fixture
def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return "127.0.0.1:%d" % port


def check(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=20, check=False)


def test_both_probes_pass(ok_server):
    result = check("--haproxy", ok_server, "--health", ok_server)
    assert (result.returncode, result.stdout) == (0, "")


def test_a_closed_frontend_fails(ok_server, closed_port):
    result = check("--haproxy", closed_port, "--health", ok_server)
    assert result.returncode == 1
    assert "tcp probe of %s failed" % closed_port in result.stdout


def test_a_503_fails_although_the_port_accepts(failing_server):
    assert check("--haproxy", failing_server).returncode == 0
    result = check("--health", failing_server)
    assert result.returncode == 1
    assert "http probe of %s failed" % failing_server in result.stdout


def test_a_silent_agent_fails_within_the_timeout(silent_listener):
    started = time.monotonic()
    result = check("--timeout", "1", "--health", silent_listener)
    assert result.returncode == 1
    assert time.monotonic() - started < 3


def test_only_the_probes_given_run(ok_server):
    assert check("--health", ok_server).returncode == 0
    assert check().returncode == 0


@pytest.mark.parametrize("args", [["--haproxy"], ["--bogus", "1"]])
def test_bad_arguments_exit_2(args):
    result = check(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_a_fresh_hold_skips_only_the_health_probe(failing_server, closed_port, ok_server, tmp_path):
    hold = tmp_path / "keepalived-hold"
    hold.touch()
    held = ["--hold", str(hold), "--hold-max-age", "300"]
    assert check("--health", failing_server, *held).returncode == 0
    result = check("--haproxy", closed_port, "--health", ok_server, *held)
    assert result.returncode == 1 and "tcp probe of %s failed" % closed_port in result.stdout


def test_a_missing_or_old_hold_does_not_count(failing_server, tmp_path):
    hold = tmp_path / "keepalived-hold"
    held = ["--health", failing_server, "--hold", str(hold), "--hold-max-age", "300"]
    assert check(*held).returncode == 1
    hold.touch()
    old = time.time() - 301
    os.utime(hold, (old, old))
    result = check(*held)
    assert result.returncode == 1 and "http probe of %s failed" % failing_server in result.stdout


def test_a_hold_max_age_must_be_seconds(tmp_path):
    result = check("--hold", str(tmp_path / "hold"), "--hold-max-age", "5m")
    assert result.returncode == 2 and "usage:" in result.stderr
