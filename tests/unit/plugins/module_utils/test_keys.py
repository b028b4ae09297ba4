"""Per-version [pgbouncer] keys (module_utils/_keys.py) against SHOW CONFIG recorded from
Debian 12's PgBouncer 1.18.0 and Debian 13's 1.24.1, and the version checks built on them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _keys, _validate  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def recorded(version):
    text = (FIXTURES / ("show_config_%s.txt" % version)).read_text()
    return {line.split()[0] for line in text.splitlines() if line.strip()} - {"conffile"}


@pytest.mark.parametrize("version", ["1.18.0", "1.24.1"])
def test_tables_match_what_each_version_reports(version):
    known = {key for key in _keys.BASE | set(_keys.ADDED) if _keys.known(key, version)} - {"conffile"}
    assert known == recorded(version[:4])


def test_parse_version():
    assert _keys.parse_version("PgBouncer 1.18.0") == (1, 18)
    assert _keys.parse_version("1.24.1") == (1, 24)
    with pytest.raises(ValueError):
        _keys.parse_version("libevent")


def test_newer_releases_may_use_keys_the_tables_do_not_know():
    assert not _keys.known("shiny_new_setting", "1.24.1")
    assert _keys.known("shiny_new_setting", "1.25.0")


def test_version_problems_name_the_variable_and_the_release():
    settings = {"max_prepared_statements": 100, "auth_dbname": "postgres", "pool_mode": "transaction", "peer_id": None}
    found = _validate.version_problems(settings, "1.18.0", extra_settings={"max_prepared_statements": 100})
    assert found == [
        "pgbouncer_auth_dbname: PgBouncer 1.18.0 on this node does not know the setting auth_dbname; it needs PgBouncer 1.20 or later",
        "pgbouncer_extra_settings.max_prepared_statements: PgBouncer 1.18.0 on this node does not know the setting "
        "max_prepared_statements; it needs PgBouncer 1.21 or later",
    ]
    assert _validate.version_problems(settings, "1.24.1") == []
    unknown = _validate.version_problems({"bogus": 1}, "1.24.1", {"bogus": 1})
    assert unknown == ["pgbouncer_extra_settings.bogus: PgBouncer 1.24.1 on this node does not know the setting bogus"]


def test_console_users_must_be_in_the_auth_file():
    assert _validate.console_user_problems(["pgbouncer"], ["stats"], ["pgbouncer", "stats", "app"]) == []
    found = _validate.console_user_problems(["admin", "pgbouncer"], ["ghost"], ["pgbouncer"])
    assert len(found) == 2 and found[0].startswith("pgbouncer_admin_users: admin ") and found[1].startswith("pgbouncer_stats_users: ghost ")
    assert _validate.console_user_problems(["anyone"], [], None) == []
