"""The health agent's bounds (issue 15, item 7), against the real HTTP server on loopback:
a generic 503 body with the reason in the journal (stderr), one cached probe for many
requests, at most max_clients connections, and a socket timeout for idle clients."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("pgbouncer_health", ROOT / "roles/pgbouncer_health/files/pgbouncer_health.py")
agent = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(agent)

LIBPQ = 'connection to server at "127.0.0.1", port 6432 failed: FATAL:  password authentication failed for user "x"'


class Probe:
    """Counts probes; answers `result` after `delay` seconds."""

    def __init__(self, result=(True, ""), delay=0.0):
        self.result, self.delay, self.calls = result, delay, 0

    def __call__(self, kind="health"):
        self.calls += 1
        time.sleep(self.delay)
        return self.result


@pytest.fixture
def serve():
    servers = []

    def start(probe, **settings):
        base = dict(agent.settings_from_env({}), listen_addr="127.0.0.1", listen_port=0)
        server = agent.HealthServer(dict(base, **settings), probe)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def get(port, path="/health"):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_failure_body_is_generic_and_the_reason_goes_to_the_journal(serve, capfd):
    port = serve(Probe((False, "PgBouncer at 127.0.0.1:6432: " + LIBPQ)))
    assert get(port) == (503, "FAIL\n")
    assert "unhealthy: PgBouncer at 127.0.0.1:6432: " + LIBPQ in capfd.readouterr().err


def test_one_probe_serves_every_request_within_the_cache_time(serve):
    probe = Probe()
    port = serve(probe, cache=30)
    assert [get(port)[0] for _request in range(10)] == [200] * 10
    assert probe.calls == 1


def test_cache_zero_probes_for_each_request(serve):
    probe = Probe()
    port = serve(probe, cache=0)
    for _request in range(3):
        get(port)
    assert probe.calls == 3


def test_concurrent_requests_share_one_probe(serve):
    probe = Probe(delay=0.5)
    port = serve(probe, cache=0.3, max_clients=8, max_clients_per_source=8)
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(get(port))) for _client in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == [(200, "OK\n")] * 6
    assert probe.calls == 1


def idle_client(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    time.sleep(0.1)  # let the server take it
    return sock


def test_a_new_connection_pushes_out_the_oldest_one_still_sending(serve):
    """Over max_clients the oldest connection without a complete request is closed for the new
    one, which is answered. Milliseconds."""
    port = serve(Probe(), max_clients=2, socket_timeout=30)
    held = [idle_client(port), idle_client(port)]
    assert get(port) == (200, "OK\n")
    assert held[0].recv(1024) == b""  # the oldest was closed for it
    held[1].close()


def test_busy_only_when_every_slot_holds_a_complete_request(serve):
    """Requests being answered are never pushed out: with every slot answering (a slow probe),
    a further connection gets 503 BUSY at once and is closed. About a second."""
    port = serve(Probe(delay=1.0), max_clients=2, max_clients_per_source=2, cache=0, socket_timeout=30)
    answering = [threading.Thread(target=get, args=(port,)) for _client in range(2)]
    for thread in answering:
        thread.start()
    time.sleep(0.3)  # both are in the probe
    extra = socket.create_connection(("127.0.0.1", port), timeout=5)
    answer = extra.recv(1024)
    assert answer.startswith(b"HTTP/1.0 503 ") and answer.endswith(b"BUSY\n")
    assert extra.recv(1024) == b""  # and closed
    for thread in answering:
        thread.join(5)
    assert get(port) == (200, "OK\n")  # a slot is free again


def test_an_idle_client_is_dropped_after_the_socket_timeout_and_frees_its_slot(serve):
    port = serve(Probe(), max_clients=1, socket_timeout=0.3)
    idle = idle_client(port)
    started = time.monotonic()
    assert idle.recv(1024) == b""  # the server closed it
    assert time.monotonic() - started < 3
    assert get(port) == (200, "OK\n")


def test_a_client_that_hangs_up_after_the_status_line_is_not_logged(capfd):
    """HAProxy's httpchk resets the connection once it has the status: one line per check would
    flood the journal. Other errors are still logged."""
    server = agent.HealthServer(dict(agent.settings_from_env({}), listen_addr="127.0.0.1", listen_port=0), lambda kind: (True, ""))
    try:
        for error in (ConnectionResetError(104, "Connection reset by peer"), ValueError("bad request line")):
            try:
                raise error
            except Exception:  # noqa: BLE001 (handle_error reads sys.exc_info, as socketserver calls it)
                server.handle_error(None, ("10.129.0.21", 40000))
    finally:
        server.server_close()
    assert capfd.readouterr().err == "request from 10.129.0.21 failed: bad request line\n"


class SlowSender:
    """A client from `source` (a loopback address) that sends a health check one byte every
    `every` seconds, as issue 23 item 2's attack did (a byte every 3 s, under the old per-recv
    timeout), until stopped or closed by the server."""

    def __init__(self, port, source, every=0.2):
        self.sock = socket.socket()
        self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))
        self.every, self.stop = every, threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self):
        for byte in b"GET /primary HTTP/1.0\r\nX-Padding: " + b"x" * 1000:
            if self.stop.wait(self.every):
                return
            try:
                self.sock.send(bytes([byte]))
            except OSError:
                return  # closed by the server

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def slow_senders():
    senders = []

    def open_from(port, sources):
        senders.extend(SlowSender(port, source) for source in sources)
        time.sleep(0.3)  # let the server take them all

    yield open_from
    for sender in senders:
        sender.close()


def answered_within(port, seconds, source="127.0.0.1"):
    """(status, body) of a well-behaved GET /primary from `source`, retried until `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
            sock.sendall(b"GET /primary HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        status = int(answer.split(b" ", 2)[1])
        if status != 503 or not answer.endswith(b"BUSY\n") or time.monotonic() >= deadline:
            return status, answer.split(b"\r\n\r\n", 1)[1].decode()
        time.sleep(0.1)


def test_slow_senders_from_one_source_leave_the_other_sources_served(serve, slow_senders):
    """Issue 23 item 2: eight slow senders from one address held every slot and HAProxy read
    503 BUSY. One source may hold max_clients_per_source slots; a check from another address is
    answered at once. About a second."""
    port = serve(Probe(), max_clients=8, max_clients_per_source=4, socket_timeout=30)
    slow_senders(port, ["127.0.0.2"] * 8)
    started = time.monotonic()
    assert answered_within(port, 0, source="127.0.0.3") == (200, "OK\n")
    assert time.monotonic() - started < 2  # at once, with a margin for a busy machine


def test_slow_senders_from_the_checks_own_address_do_not_keep_it_out(serve, slow_senders):
    """A local user on a node connects from the node's address, as that node's HAProxy does: its
    slow senders fill that source's slots, and a check from the same address still gets its answer
    at once (it pushes out the oldest trickling connection). Milliseconds."""
    port = serve(Probe(), max_clients=16, max_clients_per_source=4, socket_timeout=30)
    slow_senders(port, ["127.0.0.2"] * 8)
    started = time.monotonic()
    for _check in range(5):
        assert answered_within(port, 0, source="127.0.0.2") == (200, "OK\n")
    assert time.monotonic() - started < 2


def test_slow_senders_from_many_sources_are_cut_at_one_deadline_per_request(serve, slow_senders):
    """Slow senders from as many addresses as there are slots: each is dropped once the
    request timeout has passed since it connected, however often it sends a byte, so a
    well-behaved check gets its slot within that time (on the old code: never, 5 s). About a second."""
    port = serve(Probe(), max_clients=4, max_clients_per_source=4, socket_timeout=1)
    slow_senders(port, ["127.0.0.%d" % host for host in range(2, 6)])
    started = time.monotonic()
    assert answered_within(port, 5) == (200, "OK\n")
    assert time.monotonic() - started < 3  # the 1 s deadline, with a margin for a busy machine
