"""pgbouncer.ini helpers (module_utils/_ini.py): values, [databases] lines, restart decisions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ini  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "1"), (False, "0"), (6432, "6432"), ("DISCARD ALL", "DISCARD ALL"), (["a", "b"], "a, b"), (None, None), ("", "")],
)
def test_format_value(value, text):
    assert _ini.format_value(value) == text


def test_database_line_orders_keys_and_quotes_values_that_need_it():
    line = _ini.database_line({"name": "appdb_ro", "port": 5432, "host": "10.129.0.22", "dbname": "appdb",
                               "application_name": "it's ro", "pool_size": 10, "user": None})
    assert line == "appdb_ro = host=10.129.0.22 port=5432 dbname=appdb pool_size=10 application_name='it''s ro'"


def test_parse_last_value_wins_comments_and_case():
    text = "; c\n[PgBouncer]\nlisten_port = 1\n# x\nLISTEN_PORT=6432\n[databases]\n* = host=a\n"
    assert _ini.parse(text) == {"pgbouncer": {"listen_port": "6432"}, "databases": {"*": "host=a"}}


def test_restart_keys_only_for_keys_pgbouncer_cannot_reload():
    old = "[pgbouncer]\nlisten_addr = 10.0.0.1\nstats_period = 60\nunix_socket_mode = 0777\n"
    assert _ini.restart_keys(old, old.replace("stats_period = 60", "stats_period = 61")) == []
    assert _ini.restart_keys(old, old.replace("10.0.0.1", "10.0.0.2")) == ["listen_addr"]
    new = old.replace("0777", "0770") + "so_reuseport = 1\n"
    assert _ini.restart_keys(old, new) == ["so_reuseport", "unix_socket_mode"]


def test_turning_auth_query_on_or_off_restarts():
    old = "[pgbouncer]\nauth_file = /etc/pgbouncer/userlist.txt\n"
    assert _ini.restart_keys(old, old + "auth_user = pgbouncer_auth\nauth_query = SELECT 1\n") == ["auth_query", "auth_user"]


def test_restart_keys_for_a_first_configuration():
    # No file yet (or the packaged sample): listening settings are new, so restart.
    assert "listen_addr" in _ini.restart_keys("", "[pgbouncer]\nlisten_addr = 10.0.0.1\n")


@pytest.mark.parametrize("version", ["1.18", "1.24"])
def test_restart_only_keys_cover_what_pgbouncer_reports_unchangeable(version):
    """Recorded `SHOW CONFIG` (Debian 12: 1.18, Debian 13: 1.24): every changeable=no key is restart-only here."""
    rows = [line.split() for line in (FIXTURES / ("show_config_%s.txt" % version)).read_text().splitlines() if line.strip()]
    unchangeable = {row[0] for row in rows if row[-1] == "no"}
    assert unchangeable, "fixture has no changeable=no rows"
    assert unchangeable <= _ini.RESTART_ONLY
