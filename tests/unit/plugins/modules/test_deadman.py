"""Dead man's switches (issue 24): the undo timers pgbouncer_admin and haproxy_server arm before
a change, and disarm after it. The fake module records the commands instead of running
systemd; the console is the fake of test_admin_check_mode. Milliseconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _deadman, _haproxy  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.modules import pgbouncer_admin  # noqa: E402
from test_admin_check_mode import FakeConsole  # noqa: E402

from conftest import module_result  # noqa: E402


class Recorder:
    """A module whose run_command records argv; systemd-run answers `arm_rc`."""

    def __init__(self, arm_rc=0, active=False):
        self.commands, self.arm_rc, self.active = [], arm_rc, active

    def run_command(self, argv):
        self.commands.append(list(argv))
        if argv[0] == "systemd-run":
            return self.arm_rc, "", "Failed to start transient timer unit" if self.arm_rc else ""
        if argv[1] == "is-active":
            return (0, "active\n", "") if self.active else (3, "inactive\n", "")
        return 0, "", ""

    def fail_json(self, **kwargs):
        raise RuntimeError(kwargs["msg"])


def test_unit_names_are_unique_and_need_no_quoting():
    name = _deadman.unit_name("pause", "/var/run/postgresql", 6432, "app db")
    assert name == "pgbouncer-cluster-undo-pause-_2fvar_2frun_2fpostgresql-6432-app_20db"
    assert _deadman.unit_name("pause", "/s", 6432, "a_b") != _deadman.unit_name("pause", "/s", 6432, "a-b")
    assert _deadman.unit_name("haproxy", "/run/haproxy/admin.sock", "pgbouncer", "pg-srv1").endswith("-pgbouncer-pg-srv1")


def test_arm_stops_an_earlier_timer_then_runs_systemd_run_as_the_user():
    module = Recorder()
    unit = _deadman.arm(module, "pgbouncer-cluster-undo-x", 12.5, ["/usr/bin/python3", "-c", "pass"], "why", user="postgres")
    assert unit == "pgbouncer-cluster-undo-x"
    assert ["systemctl", "stop", "pgbouncer-cluster-undo-x.timer"] in module.commands
    arm = module.commands[-1]
    assert arm[:2] == ["systemd-run", "--quiet"]
    assert "--on-active" in arm and arm[arm.index("--on-active") + 1] == "12500ms"
    assert "--property=User=postgres" in arm
    assert arm[arm.index("--") + 1:] == ["/usr/bin/python3", "-c", "pass"]


def test_a_timer_that_cannot_be_armed_fails_before_any_change():
    with pytest.raises(RuntimeError, match="could not arm the undo timer .* so nothing was changed"):
        _deadman.arm(Recorder(arm_rc=1), "pgbouncer-cluster-undo-x", 5, ["true"], "why")


def test_disarm_says_whether_a_timer_was_armed():
    assert _deadman.disarm(Recorder(active=True), "u") is True
    assert _deadman.disarm(Recorder(active=False), "u") is False


@pytest.mark.parametrize("script", [_deadman.CONSOLE_UNDO, _deadman.HAPROXY_UNDO])
def test_the_undo_scripts_compile_and_have_nothing_systemd_would_expand(script):
    compile(script, "undo", "exec")
    assert "%" not in script and "$" not in script


def test_the_haproxy_undo_script_sends_each_command(tmp_path):
    """The script as the timer runs it, against a unix socket that records what it gets."""
    import socket
    import threading

    path = str(tmp_path / "admin.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(4)
    got = []

    def serve():
        for _connection in range(2):
            conn = server.accept()[0]
            got.append(conn.recv(4096))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    argv = _deadman.haproxy_undo_argv(path, ["enable health pgbouncer/pg-srv1", "set server pgbouncer/pg-srv1 weight 100"])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout
    thread.join(5)
    assert got == [b"enable health pgbouncer/pg-srv1\n", b"set server pgbouncer/pg-srv1 weight 100\n"]
    assert "sent enable health pgbouncer/pg-srv1: done" in out


BASE = {"weight": 0, "initial_weight": 100, "admin_state": "ready", "admin_state_bits": 0, "health": "disabled",
        "operational": "up"}


def test_restore_plan_goes_back_to_the_configured_state():
    assert _haproxy.restore_plan("pgbouncer", "pg-srv1", BASE) == [
        "enable health pgbouncer/pg-srv1", "set server pgbouncer/pg-srv1 weight 100"]
    normal = dict(BASE, weight=100, health="enabled")
    assert _haproxy.restore_plan("pgbouncer", "pg-srv1", normal) == []
    # A server without a check gets none.
    assert _haproxy.restore_plan("pgbouncer", "pg-srv1", dict(normal, health="none")) == []


def run_admin(monkeypatch, recorder, **args):
    FakeConsole.sent = []
    monkeypatch.setattr(pgbouncer_admin, "Console", FakeConsole)
    monkeypatch.setattr(pgbouncer_admin.AnsibleModule, "run_command", lambda self, argv: recorder.run_command(argv))
    monkeypatch.setattr(pgbouncer_admin.AdminCommand, "wait_until_paused", lambda self, started: None)
    return module_result(pgbouncer_admin.main, args), FakeConsole.sent


def test_pause_with_a_deadline_arms_the_resume_before_pausing(monkeypatch):
    recorder = Recorder()
    order = []
    monkeypatch.setattr(FakeConsole, "run", lambda self, text, timeout=0: (order.append(("console", text)), ("PAUSE", [], [], []))[1])
    original = recorder.run_command
    recorder.run_command = lambda argv: (order.append(("systemd", argv[0])), original(argv))[1]
    result, _sent = run_admin(monkeypatch, recorder, command="PAUSE", db="appdb", resume_deadline=30, os_user="postgres")
    assert result["changed"] and result["undo_timer"] == "pgbouncer-cluster-undo-pause-_2fvar_2frun_2fpostgresql-6432-appdb"
    assert order.index(("systemd", "systemd-run")) < order.index(("console", 'PAUSE "appdb"'))
    arm = next(argv for argv in recorder.commands if argv[0] == "systemd-run")
    assert arm[-4:] == ["/var/run/postgresql", "6432", "pgbouncer", 'RESUME "appdb"']


def test_resume_disarms_the_timer(monkeypatch):
    recorder = Recorder(active=True)
    monkeypatch.setitem(sys.modules[FakeConsole.__module__].ANSWERS, "DATABASES", [{"name": "appdb", "paused": 1, "disabled": 0}])
    result, sent = run_admin(monkeypatch, recorder, command="RESUME", db="appdb", os_user="postgres")
    assert 'RESUME "appdb"' in sent and result["changed"]
    assert ["systemctl", "stop", "pgbouncer-cluster-undo-pause-_2fvar_2frun_2fpostgresql-6432-appdb.timer"] in recorder.commands
    assert result["undo_timer"] == "pgbouncer-cluster-undo-pause-_2fvar_2frun_2fpostgresql-6432-appdb"


@pytest.mark.parametrize(("args", "message"), [
    ({"command": "RESUME", "resume_deadline": 5, "os_user": "postgres"}, "resume_deadline is only for PAUSE"),
    ({"command": "PAUSE", "resume_deadline": 5, "os_user": "postgres", "login_host": "10.0.0.1", "login_password": "secret-pw"},
     "resume_deadline needs the unix socket"),
    ({"command": "PAUSE", "resume_deadline": 5}, "resume_deadline needs os_user"),
])
def test_resume_deadline_refuses_what_the_timer_could_not_repeat(monkeypatch, args, message):
    recorder = Recorder()
    result, sent = run_admin(monkeypatch, recorder, db="appdb", **args)
    assert result["failed"] and message in result["msg"]
    assert sent == [] and recorder.commands == []


def test_a_socket_directory_given_as_login_host_is_the_one_the_timer_uses(monkeypatch):
    """login_host "/run/pgb-1" logs in there, as conninfo does: the timer must resume there too."""
    recorder = Recorder()
    monkeypatch.setattr(FakeConsole, "run", lambda self, text, timeout=0: ("PAUSE", [], [], []))
    result, _sent = run_admin(monkeypatch, recorder, command="PAUSE", db="appdb", resume_deadline=30, os_user="postgres",
                              login_host="/run/pgb-1")
    arm = next(argv for argv in recorder.commands if argv[0] == "systemd-run")
    assert arm[-4:] == ["/run/pgb-1", "6432", "pgbouncer", 'RESUME "appdb"']
    assert result["undo_timer"] == "pgbouncer-cluster-undo-pause-_2frun_2fpgb-1-6432-appdb"
