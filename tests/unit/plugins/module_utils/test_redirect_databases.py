"""pgbouncer_redirect_databases: the switchover's handover points the old primary's pooler at
the new primary by appending a [databases] section to pgbouncer.ini. Cost: under a second."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ini  # noqa: E402

INI = """; managed
[databases]
appdb_ro = host=10.129.0.22 port=5432 dbname=appdb max_db_connections=5
billing = host=10.129.0.21 port=5433 dbname=billing password='it''s secret'
* = host=10.129.0.21 port=5432

[users]
report_user = pool_mode=session

[pgbouncer]
listen_addr = 10.129.0.21
"""


def test_only_the_entries_of_the_old_host_move_and_keep_their_other_settings():
    assert _ini.redirect_databases(INI, "10.129.0.21", "10.129.0.22") == (
        "[databases]\n"
        "billing = host=10.129.0.22 port=5433 dbname=billing password='it''s secret'\n"
        "* = host=10.129.0.22 port=5432\n")


def test_nothing_to_move_gives_an_empty_text():
    assert _ini.redirect_databases(INI, "10.129.0.99", "10.129.0.22") == ""
    assert _ini.redirect_databases("", "10.129.0.21", "10.129.0.22") == ""


def test_the_appended_section_wins_where_pgbouncer_reads_it_last():
    moved = INI + _ini.redirect_databases(INI, "10.129.0.21", "10.129.0.23")
    databases = _ini.parse(moved)["databases"]
    assert databases["*"] == "host=10.129.0.23 port=5432"
    assert databases["appdb_ro"].startswith("host=10.129.0.22 ")
    assert _ini.parse(moved)["pgbouncer"] == _ini.parse(INI)["pgbouncer"]


def test_host_and_keys_are_matched_as_pgbouncer_reads_them():
    text = "[DATABASES]\nquoted = dbname=x HOST='10.129.0.21'\nhostaddr_only = hostaddr=10.129.0.21\n"
    assert _ini.redirect_databases(text, "10.129.0.21", "db two") == "[databases]\nquoted = dbname=x HOST='db two'\n"


def test_kept_databases_stay_even_when_only_the_fallback_serves_them():
    block = _ini.redirect_databases(INI, ["10.129.0.21", "/var/run/postgresql"], "10.129.0.22", keep=["billing", "postgres"])
    assert block == (
        "[databases]\n"
        "* = host=10.129.0.22 port=5432\n"
        "postgres = host=10.129.0.21 port=5432\n")
    databases = _ini.parse(INI + block)["databases"]
    assert databases["billing"].startswith("host=10.129.0.21 ") and databases["postgres"] == "host=10.129.0.21 port=5432"


def test_a_kept_name_needs_no_entry_when_the_fallback_does_not_move():
    assert _ini.redirect_databases(INI, "10.129.0.22", "10.129.0.23", keep=["postgres"]) == (
        "[databases]\nappdb_ro = host=10.129.0.23 port=5432 dbname=appdb max_db_connections=5\n")


def test_any_of_several_hosts_moves():
    text = "[databases]\nlocal = host=/var/run/postgresql\nnet = host=10.129.0.21\nother = host=10.129.0.23\n"
    assert _ini.redirect_databases(text, ["10.129.0.21", "/var/run/postgresql"], "10.129.0.22") == (
        "[databases]\nlocal = host=10.129.0.22\nnet = host=10.129.0.22\n")
