"""pgbouncer_admin in check mode sends nothing but SHOW and tells whether the command would
fail for lack of admin rights (issue 15, item 9). The console is a fake that records commands."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _admin  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.modules import pgbouncer_admin  # noqa: E402

from conftest import module_result  # noqa: E402

CONFIG = [
    {"key": "admin_users", "value": "ops_admin, ops2", "default": "", "changeable": "yes"},
    {"key": "stats_users", "value": "stats_user", "default": "", "changeable": "yes"},
]
# Answers of a PgBouncer 1.24 where idledb is an idle auto-database: in SHOW STATS, not in SHOW DATABASES.
ANSWERS = {
    "VERSION": [{"version": "PgBouncer 1.24.1"}],
    "DATABASES": [{"name": "appdb", "paused": 0, "disabled": 0}],
    "STATS": [{"database": "appdb"}, {"database": "idledb"}],
    "STATE": [{"key": "active", "value": "yes"}, {"key": "paused", "value": "no"}, {"key": "suspended", "value": "no"}],
    "CONFIG": CONFIG,
}


class FakeConsole:
    sent = []

    def __init__(self, module):
        self.module = module

    def close(self):
        pass

    def run(self, text, timeout=0):
        self.sent.append(text)
        return "", [], [], []

    def show(self, name):
        self.sent.append("SHOW " + name)
        return ANSWERS[name]


def run_module(monkeypatch, **args):
    FakeConsole.sent = []
    monkeypatch.setattr(pgbouncer_admin, "Console", FakeConsole)
    return module_result(pgbouncer_admin.main, args, check_mode=True), FakeConsole.sent


@pytest.mark.parametrize("command", ["PAUSE", "RESUME", "DISABLE", "ENABLE"])
def test_check_mode_sends_no_wait_close_for_an_idle_auto_database(monkeypatch, command):
    result, sent = run_module(monkeypatch, command=command, db="idledb", login_user="ops_admin",
                              login_host="10.129.0.21", login_password="x")
    assert not result.get("failed"), result
    assert result["changed"] is True and result["executed"] is False
    assert [text for text in sent if not text.startswith("SHOW ")] == []


@pytest.mark.parametrize("command", ["RELOAD", "PAUSE", "WAIT_CLOSE", "SET"])
def test_check_mode_reports_that_a_stats_user_would_be_refused(monkeypatch, command):
    extra = dict(key="server_check_query", value="select 2") if command == "SET" else {}
    CONFIG_WITH_KEY = CONFIG + [{"key": "server_check_query", "value": "select 1", "default": "select 1",
                                 "changeable": "yes"}]
    monkeypatch.setitem(ANSWERS, "CONFIG", CONFIG_WITH_KEY)
    result, sent = run_module(monkeypatch, command=command, login_user="stats_user", login_host="10.129.0.21",
                              login_password="x", **extra)
    assert result["failed"] and result["error_kind"] == "admin_access_needed"
    assert "would fail: user stats_user is not in admin_users" in result["msg"]
    assert "would run" not in result["msg"]
    assert [text for text in sent if not text.startswith("SHOW ")] == []


@pytest.mark.parametrize("user, host", [("ops_admin", "10.129.0.21"), ("pgbouncer", "")])
def test_check_mode_reports_what_an_admin_would_run(monkeypatch, user, host):
    result, sent = run_module(monkeypatch, command="RELOAD", login_user=user, login_host=host, login_password="x")
    assert not result.get("failed"), result
    assert result["changed"] is True and result["msg"] == "check mode: would run RELOAD"
    assert [text for text in sent if not text.startswith("SHOW ")] == []


@pytest.mark.parametrize("user, unix_socket, rights", [
    ("ops_admin", False, True),
    ("stats_user", False, False),
    ("stats_user", True, False),
    ("pgbouncer", True, True),        # the own-uid login over the unix socket is an admin
    ("pgbouncer", False, False),      # over TCP pgbouncer is just a name, here in no list
    ("ops2", False, True),
    ("someone", True, False),
])
def test_admin_rights(user, unix_socket, rights):
    assert _admin.admin_rights(user, CONFIG, unix_socket) is rights


def test_admin_rights_of_pgbouncer_in_stats_users_over_the_socket_only_the_server_knows():
    config = [{"key": "admin_users", "value": ""}, {"key": "stats_users", "value": "pgbouncer"}]
    assert _admin.admin_rights("pgbouncer", config, True) is None
