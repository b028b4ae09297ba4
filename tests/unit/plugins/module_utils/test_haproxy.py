"""Unit tests of plugins/module_utils/_haproxy.py, on runtime API answers recorded from
Debian's HAProxy (tests/unit/fixtures/haproxy; see its README.md)."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _haproxy  # noqa: E402

FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "haproxy"
VERSIONS = sorted({path.name.split("_")[-1].removesuffix(".txt") for path in FIXTURES.glob("show_stat_*.txt")} - {"maint"})


def fixture(name):
    return (FIXTURES / name).read_text()


def status(version, server, suffix=""):
    states = _haproxy.parse_servers_state(fixture("show_servers_state_%s%s.txt" % (version, suffix)))
    stats = _haproxy.parse_stat(fixture("show_stat_%s%s.txt" % (version, suffix)))
    return _haproxy.find_server(states, stats, "pgbouncer", server)


def test_fixtures_cover_haproxy_2_6():
    assert "2.6" in VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
def test_up_down_and_weight_zero_servers(version):
    up, down, drained = (status(version, name) for name in ("pg-srv1", "pg-srv2", "pg-srv3"))
    assert (up["operational"], up["admin_state"], up["weight"], up["status"], up["check_status"]) == ("up", "ready", 100, "UP", "L7OK")
    assert up["sessions"] == 1
    assert (down["operational"], down["admin_state"], down["status"], down["sessions"]) == ("down", "ready", "DOWN", 0)
    assert (drained["weight"], drained["initial_weight"], drained["admin_state"]) == (0, 0, "ready")


@pytest.mark.parametrize("version", VERSIONS)
def test_drain_and_maint_states(version):
    drained = status(version, "pg-srv1", "_drain_maint")
    assert (drained["admin_state"], drained["admin_state_bits"], drained["operational"], drained["status"]) == (
        "drain", _haproxy.FDRAIN, "up", "DRAIN")
    assert drained["sessions"] == 1  # a drained server keeps its session
    maint = status(version, "pg-srv3", "_drain_maint")
    assert (maint["admin_state"], maint["admin_state_bits"], maint["weight"], maint["initial_weight"]) == (
        "maint", _haproxy.FMAINT, 50, 0)


def test_unknown_server_names_the_servers_there_are():
    states = _haproxy.parse_servers_state(fixture("show_servers_state_2.6.txt"))
    with pytest.raises(_haproxy.RuntimeApiError, match="backend pgbouncer has no server pg-srv9; its servers: pg-srv1, pg-srv2, pg-srv3"):
        _haproxy.find_server(states, [], "pgbouncer", "pg-srv9")


@pytest.mark.parametrize("answer", ["Can't find backend.\n\n", "", "Unknown command.\n"])
def test_unexpected_answers_are_errors(answer):
    with pytest.raises(_haproxy.RuntimeApiError, match="unexpected answer"):
        _haproxy.parse_servers_state(answer)
    with pytest.raises(_haproxy.RuntimeApiError, match="unexpected answer"):
        _haproxy.parse_stat(answer)


@pytest.mark.parametrize("bits, state", [
    (0, "ready"), (_haproxy.FDRAIN, "drain"), (_haproxy.IDRAIN, "drain"), (_haproxy.FMAINT, "maint"),
    (_haproxy.CMAINT, "maint"), (_haproxy.FMAINT | _haproxy.FDRAIN, "maint"), (_haproxy.RMAINT, "maint"),
])
def test_admin_state(bits, state):
    assert _haproxy.admin_state(bits) == state


# --- decisions ------------------------------------------------------------------------

READY = status("2.6", "pg-srv1")
DRAINING = status("2.6", "pg-srv1", "_drain_maint")
MAINT = status("2.6", "pg-srv3", "_drain_maint")


@pytest.mark.parametrize("current, weight, state, commands", [
    (READY, None, None, []),
    (READY, 100, "ready", []),
    (READY, 0, None, ["set server pgbouncer/pg-srv1 weight 0"]),
    (READY, None, "drain", ["set server pgbouncer/pg-srv1 state drain"]),
    (DRAINING, None, "drain", []),
    (DRAINING, None, "ready", ["set server pgbouncer/pg-srv1 state ready"]),
    (MAINT, None, "maint", []),
    (MAINT, None, "drain", ["set server pgbouncer/pg-srv1 state drain"]),
    (MAINT, 100, "ready", ["set server pgbouncer/pg-srv1 state ready", "set server pgbouncer/pg-srv1 weight 100"]),
    (READY, 0, "maint", ["set server pgbouncer/pg-srv1 state maint", "set server pgbouncer/pg-srv1 weight 0"]),
])
def test_plan_sends_only_what_differs(current, weight, state, commands):
    assert _haproxy.plan("pgbouncer", "pg-srv1", current, weight, state) == commands


def test_predict_is_what_check_mode_reports():
    after = _haproxy.predict(DRAINING, weight=0, state="maint")
    assert (after["weight"], after["admin_state"], after["admin_state_bits"]) == (0, "maint", _haproxy.FMAINT)
    assert _haproxy.plan("pgbouncer", "pg-srv1", after, 0, "maint") == []
    ready = _haproxy.predict(MAINT, state="ready")
    assert (ready["admin_state"], ready["admin_state_bits"], ready["weight"]) == ("ready", 0, 50)


@pytest.mark.parametrize("current, wait_for, reached", [
    (READY, "up", True), (status("2.6", "pg-srv2"), "up", False), (DRAINING, "up", True), (MAINT, "up", False),
    (READY, "no_sessions", False), (status("2.6", "pg-srv2"), "no_sessions", True), (READY, None, True),
])
def test_wait_reached(current, wait_for, reached):
    assert _haproxy.wait_reached(current, wait_for) is reached


@pytest.mark.parametrize("kwargs, problem", [
    (dict(weight=257), "weight must be between 0 and 256, not 257"),
    (dict(weight=-1), "weight must be between 0 and 256, not -1"),
    (dict(state="maint", wait_for="up"), "wait_for=up cannot be reached with state=maint"),
])
def test_check_request(kwargs, problem):
    assert any(problem in text for text in _haproxy.check_request(**kwargs))


def test_check_request_accepts_the_bounds():
    assert _haproxy.check_request(weight=0) == [] and _haproxy.check_request(weight=256, state="ready", wait_for="up") == []


@pytest.mark.parametrize("answer, refused", [
    ("\n", None), ("", None),
    ("No such server.\n\n", "No such server."),
    ("Absolute weight can only be between 0 and 256 inclusive.\n\n", "Absolute weight can only be between 0 and 256 inclusive."),
])
def test_refusal(answer, refused):
    assert _haproxy.refusal(answer) == refused


def test_diff_view():
    assert _haproxy.diff_view(DRAINING) == "weight: 100\nadmin_state: drain\nhealth: enabled\n"


# --- talking --------------------------------------------------------------------------


def test_runtime_command_sends_one_line_and_reads_until_the_socket_closes(tmp_path):
    path = str(tmp_path / "admin.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    received = []

    def serve():
        conn = server.accept()[0]
        received.append(conn.recv(1024))
        conn.sendall(fixture("show_servers_state_2.6.txt").encode())
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    answer = _haproxy.runtime_command(path, "show servers state pgbouncer", timeout=5)
    thread.join(5)
    server.close()
    assert received == [b"show servers state pgbouncer\n"]
    assert answer == fixture("show_servers_state_2.6.txt")


def test_runtime_command_without_socket_says_what_to_check(tmp_path):
    with pytest.raises(_haproxy.RuntimeApiError, match="no HAProxy runtime API socket at .*level admin"):
        _haproxy.runtime_command(str(tmp_path / "missing.sock"), "show stat")


# --- recorded on the lab (pg-srv1's haproxy, Debian 12) ------------------------------


def lab_status(server, suffix=""):
    states = _haproxy.parse_servers_state(fixture("lab_show_servers_state_2.6%s.txt" % suffix))
    stats = _haproxy.parse_stat(fixture("lab_show_stat_2.6%s.txt" % suffix))
    return _haproxy.find_server(states, stats, "pgbouncer", server)


def test_lab_recording_every_server_up_and_ready():
    for server, address in (("pg-srv1", "10.129.0.21"), ("pg-srv2", "10.129.0.22"), ("pg-srv3", "10.129.0.23")):
        current = lab_status(server)
        assert (current["operational"], current["admin_state"], current["weight"], current["status"], current["address"]) == (
            "up", "ready", 100, "UP", address)
        assert _haproxy.plan("pgbouncer", server, current, 100, "ready") == []


def test_lab_recording_drain_and_maint():
    drained, maint = lab_status("pg-srv2", "_drain_maint"), lab_status("pg-srv3", "_drain_maint")
    assert (drained["admin_state"], drained["operational"], drained["status"]) == ("drain", "up", "DRAIN")
    assert (maint["admin_state"], maint["operational"], maint["weight"], maint["initial_weight"], maint["status"]) == (
        "maint", "down", 50, 100, "MAINT")
    assert _haproxy.plan("pgbouncer", "pg-srv3", maint, 100, "ready") == [
        "set server pgbouncer/pg-srv3 state ready", "set server pgbouncer/pg-srv3 weight 100"]


# --- health checks (the switchover's handover) ----------------------------------------

def health_disabled_states():
    return _haproxy.parse_servers_state(fixture("lab_show_servers_state_3.0_health_disabled.txt"))


def test_health_is_read_from_srv_check_state():
    states = health_disabled_states()
    assert [_haproxy.server_status(states[name], None)["health"] for name in ("pg-srv1", "pg-srv2")] == ["disabled", "enabled"]
    assert READY["health"] == "enabled"
    assert _haproxy.health_state(0) == "none"


@pytest.mark.parametrize("health, commands", [
    ("enabled", []),
    ("disabled", ["disable health pgbouncer/pg-srv1"]),
])
def test_plan_turns_the_health_check_off_and_on_only_when_it_differs(health, commands):
    assert _haproxy.plan("pgbouncer", "pg-srv1", READY, health=health) == commands
    disabled = _haproxy.predict(READY, health="disabled")
    assert _haproxy.plan("pgbouncer", "pg-srv1", disabled, health="disabled") == []
    assert _haproxy.plan("pgbouncer", "pg-srv1", disabled, health="enabled") == ["enable health pgbouncer/pg-srv1"]


def test_forced_up_turns_the_check_off_and_marks_a_down_server_up():
    down = status("2.6", "pg-srv2")
    assert down["operational"] == "down" and down["health"] == "enabled"
    assert _haproxy.plan("pgbouncer", "pg-srv2", down, health="forced_up") == [
        "disable health pgbouncer/pg-srv2", "set server pgbouncer/pg-srv2 health up"]
    forced = _haproxy.predict(down, health="forced_up")
    assert (forced["operational"], forced["health"]) == ("up", "disabled")
    # Forced once, nothing more to send; enabling the check again gives it back its say.
    assert _haproxy.plan("pgbouncer", "pg-srv2", forced, health="forced_up") == []
    assert _haproxy.plan("pgbouncer", "pg-srv2", forced, health="enabled") == ["enable health pgbouncer/pg-srv2"]
    # An UP server only loses its check.
    assert _haproxy.plan("pgbouncer", "pg-srv1", READY, health="forced_up") == ["disable health pgbouncer/pg-srv1"]


def test_health_on_a_server_without_a_check_is_refused():
    unchecked = dict(READY, health="none")
    assert any("no health check" in text for text in _haproxy.check_request(health="disabled", current=unchecked))
    assert _haproxy.check_request(health="disabled", current=READY) == []


def test_wait_for_down():
    assert _haproxy.wait_reached(status("2.6", "pg-srv2"), "down") is True
    assert _haproxy.wait_reached(READY, "down") is False
