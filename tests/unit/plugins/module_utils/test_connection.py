"""Connection helper (module_utils/_connection.py): conninfo and actionable error messages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _connection  # noqa: E402

PARAMS = dict(login_host="10.129.0.21", login_unix_socket="/var/run/postgresql", login_port=6432,
              login_user="pgbouncer", login_password="", connect_timeout=5, os_user=None)


def test_conninfo_tcp_without_password_and_socket():
    kwargs = _connection.conninfo(PARAMS, "pgbouncer")
    assert kwargs["host"] == "10.129.0.21" and kwargs["dbname"] == "pgbouncer"
    assert "password" not in kwargs
    socket = _connection.conninfo(dict(PARAMS, login_host="", login_password="pw"), "x")
    assert socket["host"] == "/var/run/postgresql" and socket["password"] == "pw"


@pytest.mark.parametrize(
    ("message", "kind", "hint"),
    [
        ('connection to server at "10.129.0.21", port 6432 failed: Connection refused', "connection_refused", "10.129.0.21:6432"),
        ("connection failed: FATAL:  password authentication failed", "authentication_failed", "login_password"),
        ("FATAL:  SASL authentication failed", "authentication_failed", "login_password"),
        ("ERROR:  admin access needed", "admin_access_needed", "admin_users"),
        ("FATAL:  not allowed", "not_allowed", "stats_users"),
        ('FATAL:  no such database: nope', "unknown_database", "[databases]"),
        ("connection timeout expired", "timeout", "firewall"),
        ("ERROR:  invalid command 'FROB'", "unknown_command", "does not know"),
    ],
)
def test_errors_are_classified_with_a_hint(message, kind, hint):
    found_kind, text = _connection.classify_error(message, PARAMS)
    assert found_kind == kind
    assert hint in text
    assert message.splitlines()[0] in text


def test_unknown_errors_pass_through():
    assert _connection.classify_error("something odd\nmore", PARAMS) == ("error", "something odd")
