"""Unit tests of plugins/module_utils/_admin.py and the request parsing of pgbouncer_admin."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
# The checkout is the collection; `make` links it under .ansible/collections.
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _admin  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.modules import pgbouncer_admin  # noqa: E402

AdminError = _admin.AdminError


def params(**given):
    base = dict(command=None, show=None, db=None, client_id=None, shutdown_mode=None, key=None, value=None)
    base.update(given)
    return base


# --- command names ------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("SHOW POOLS", ("SHOW", "POOLS")),
    ("  show   pools ; ", ("SHOW", "POOLS")),
    ("pause", ("PAUSE", None)),
    ("Kill_Client", ("KILL_CLIENT", None)),
])
def test_normalize_command(text, expected):
    assert _admin.normalize_command(text) == expected


@pytest.mark.parametrize("text", ["SELECT 1", "DROP DATABASE appdb", "", "pause appdb", "SHOW POOLS; RESUME"])
def test_normalize_command_refuses_what_is_not_a_single_console_command(text):
    with pytest.raises(AdminError) as err:
        _admin.normalize_command(text)
    assert err.value.kind == "unknown_command"


def test_every_show_subcommand_of_the_issue_is_known():
    wanted = ["POOLS", "STATS", "STATS_TOTALS", "STATS_AVERAGES", "TOTALS", "DATABASES", "CLIENTS", "SERVERS", "USERS", "CONFIG",
              "LISTS", "MEM", "SOCKETS", "ACTIVE_SOCKETS", "DNS_HOSTS", "DNS_ZONES", "VERSION", "STATE", "PEERS", "PEER_POOLS", "FDS"]
    assert sorted(wanted) == sorted(_admin.SHOW_SUBCOMMANDS)


# --- building and quoting -------------------------------------------------------------------


@pytest.mark.parametrize("name, quoted", [
    ("appdb", '"appdb"'),
    ("App-DB", '"App-DB"'),
    ('odd"db', '"odd""db"'),
    ("x; SHUTDOWN", '"x; SHUTDOWN"'),
])
def test_quote_ident(name, quoted):
    assert _admin.quote_ident(name) == quoted


@pytest.mark.parametrize("name", ["", "a\nb", "a\x00b"])
def test_quote_ident_refuses_empty_and_control_characters(name):
    with pytest.raises(AdminError):
        _admin.quote_ident(name)


def test_quote_literal_doubles_single_quotes():
    assert _admin.quote_literal("select 'x'") == "'select ''x'''"


@pytest.mark.parametrize("verb, kwargs, text", [
    ("SHOW", dict(show="stats_totals"), "SHOW STATS_TOTALS"),
    ("PAUSE", {}, "PAUSE"),
    ("PAUSE", dict(db="appdb"), 'PAUSE "appdb"'),
    ("RESUME", dict(db='a"b'), 'RESUME "a""b"'),
    ("DISABLE", dict(db="reportdb"), 'DISABLE "reportdb"'),
    ("RECONNECT", {}, "RECONNECT"),
    ("WAIT_CLOSE", dict(db="appdb"), 'WAIT_CLOSE "appdb"'),
    ("KILL_CLIENT", dict(client_id=42), "KILL_CLIENT 42"),
    ("SHUTDOWN", {}, "SHUTDOWN"),
    ("SHUTDOWN", dict(shutdown_mode="immediate"), "SHUTDOWN"),
    ("SHUTDOWN", dict(shutdown_mode="wait_for_clients"), "SHUTDOWN WAIT_FOR_CLIENTS"),
    ("SET", dict(key="Server_Check_Query", value="select 'a'"), "SET server_check_query = 'select ''a'''"),
    ("RELOAD", {}, "RELOAD"),
    ("SUSPEND", {}, "SUSPEND"),
])
def test_build_command(verb, kwargs, text):
    assert _admin.build_command(verb, **kwargs) == text


@pytest.mark.parametrize("verb, kwargs, kind", [
    ("SHOW", dict(show="HELP"), "unknown_command"),
    ("SHOW", {}, "unknown_command"),
    ("ENABLE", {}, "missing_argument"),
    ("KILL", {}, "missing_argument"),
    ("KILL_CLIENT", {}, "missing_argument"),
    ("RELOAD", dict(db="appdb"), "invalid_argument"),
    ("PAUSE", dict(client_id=3), "invalid_argument"),
    ("SET", dict(key="max client conn", value="1"), "invalid_argument"),
    ("SET", dict(key="x'; SHUTDOWN; --", value="1"), "invalid_argument"),
    ("SHUTDOWN", dict(shutdown_mode="later"), "invalid_argument"),
])
def test_build_command_refuses(verb, kwargs, kind):
    with pytest.raises(AdminError) as err:
        _admin.build_command(verb, **kwargs)
    assert err.value.kind == kind


def test_parse_request_takes_show_from_the_command_or_the_option():
    assert pgbouncer_admin.parse_request(params(command="SHOW pools")) == ("SHOW", "POOLS", "SHOW POOLS")
    assert pgbouncer_admin.parse_request(params(command="show", show="config")) == ("SHOW", "CONFIG", "SHOW CONFIG")


def test_parse_request_turns_boolean_values_into_what_pgbouncer_prints():
    assert pgbouncer_admin.parse_request(params(command="SET", key="log_connections", value=False))[2] == \
        "SET log_connections = '0'"


@pytest.mark.parametrize("given", [
    dict(command="PAUSE", show="POOLS"),
    dict(command="RELOAD", value="1"),
    dict(command="SELECT", db="appdb"),
])
def test_parse_request_refuses_misplaced_options(given):
    with pytest.raises(AdminError):
        pgbouncer_admin.parse_request(params(**given))


# --- versions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, version", [
    ("PgBouncer 1.18.0", (1, 18, 0)),
    ("PgBouncer 1.24.1", (1, 24, 1)),
    ("PgBouncer version 1.9", (1, 9, 0)),
])
def test_parse_version(text, version):
    assert _admin.parse_version(text) == version


def test_parse_version_refuses_garbage():
    with pytest.raises(AdminError):
        _admin.parse_version("PgBouncer")


@pytest.mark.parametrize("version, verb, show, mode, refused", [
    ((1, 18, 0), "SHOW", "STATE", None, True),
    ((1, 19, 0), "SHOW", "STATE", None, False),
    ((1, 18, 0), "SHOW", "PEERS", None, True),
    ((1, 18, 0), "SHOW", "POOLS", None, False),
    ((1, 18, 0), "KILL_CLIENT", None, None, True),
    ((1, 23, 1), "KILL_CLIENT", None, None, True),
    ((1, 24, 0), "KILL_CLIENT", None, None, False),
    ((1, 18, 0), "SHUTDOWN", None, "wait_for_servers", True),
    ((1, 18, 0), "SHUTDOWN", None, "immediate", False),
    ((1, 23, 0), "SHUTDOWN", None, "wait_for_clients", False),
    ((1, 8, 1), "RECONNECT", None, None, True),
])
def test_version_problem(version, verb, show, mode, refused):
    problem = _admin.version_problem(version, verb, show, mode)
    assert (problem is not None) == refused
    if refused:
        assert "this node runs %s" % _admin.version_text(version) in problem


def test_version_message_names_the_command_and_the_version_it_needs():
    assert _admin.version_problem((1, 18, 0), "KILL_CLIENT") == \
        "KILL_CLIENT needs PgBouncer 1.24 or later; this node runs 1.18.0"


# --- results --------------------------------------------------------------------------------------


def test_rows_to_dicts_keys_by_name_whatever_the_column_order():
    # 1.18 and 1.24 order and name SHOW DATABASES' columns differently.
    old = _admin.rows_to_dicts(["name", "reserve_pool", "paused"], [[b"appdb", b"0", b"1"]], [25, 23, 23])
    new = _admin.rows_to_dicts(["paused", "name", "reserve_pool_size"], [[b"1", b"appdb", b"0"]], [23, 25, 23])
    assert old == [{"name": "appdb", "reserve_pool": 0, "paused": 1}]
    assert new[0]["paused"] == old[0]["paused"] == 1
    assert new[0]["name"] == "appdb"


def test_rows_to_dicts_converts_by_type_and_keeps_null():
    rows = _admin.rows_to_dicts(
        ["database", "total_xact_count", "avg_wait_time", "force_user", "ratio"],
        [[b"appdb", b"12345678901", b"17", None, b"0.5"]],
        [25, 1700, 20, 25, 1700],
    )
    assert rows == [{"database": "appdb", "total_xact_count": 12345678901, "avg_wait_time": 17,
                     "force_user": None, "ratio": 0.5}]


def test_rows_to_dicts_without_types_keeps_text():
    assert _admin.rows_to_dicts(["key", "value"], [["paused", "yes"]]) == [{"key": "paused", "value": "yes"}]


def test_rows_to_dicts_redacts_secrets_of_show_fds_only():
    columns = ["fd", "password", "scram_client_key"]
    raw = [[b"11", b"md5abc", b"\\xc988"], [b"8", None, b""]]
    fds = _admin.rows_to_dicts(columns, raw, [23, 25, 25], show="FDS")
    assert fds == [{"fd": 11, "password": "********", "scram_client_key": "********"},
                   {"fd": 8, "password": None, "scram_client_key": ""}]
    assert _admin.rows_to_dicts(columns, raw, [23, 25, 25], show="SOCKETS")[0]["password"] == "md5abc"


def test_show_fds_redacts_the_cancel_key():
    """Issue 23, item 7: SHOW FDS's cancel column (int8) was returned as it is; with it anyone who
    reaches the pooler can cancel that client's queries. Microseconds."""
    columns = ["fd", "task", "user", "cancel", "link"]
    raw = [[b"11", b"client", b"app", b"6093211289384512", b"12"], [b"12", b"server", b"app", b"0", None],
           [b"13", b"pooler", None, None, None]]
    fds = _admin.rows_to_dicts(columns, raw, [23, 25, 25, 20, 23], show="FDS")
    assert [row["cancel"] for row in fds] == ["********", "********", None]
    assert fds[0]["user"] == "app" and fds[0]["link"] == 12


# --- idempotence --------------------------------------------------------------------------------


def test_state_flags():
    rows = [{"key": "active", "value": "no"}, {"key": "paused", "value": "yes"}, {"key": "suspended", "value": "no"}]
    assert _admin.state_flags(rows) == {"active": False, "paused": True, "suspended": False}


@pytest.mark.parametrize("verb, row, done", [
    ("PAUSE", {"paused": 1, "disabled": 0}, True),
    ("PAUSE", {"paused": 0, "disabled": 0}, False),
    ("RESUME", {"paused": 0, "disabled": 0}, True),
    ("RESUME", {"paused": 1, "disabled": 0}, False),
    ("ENABLE", {"paused": 0, "disabled": 0}, True),
    ("ENABLE", {"paused": 0, "disabled": 1}, False),
    ("DISABLE", {"paused": 0, "disabled": 1}, True),
    ("PAUSE", None, None),  # an idle auto-database is not listed: let the server decide
    ("KILL", {"paused": 1, "disabled": 0}, False),
    ("RECONNECT", {"paused": 0, "disabled": 0}, False),
    ("WAIT_CLOSE", {"paused": 0, "disabled": 0}, False),
])
def test_already_done_for_a_database(verb, row, done):
    assert _admin.already_done(verb, "appdb", row) is done


@pytest.mark.parametrize("verb, state, done", [
    ("PAUSE", {"active": False, "paused": True, "suspended": False}, True),
    ("PAUSE", {"active": True, "paused": False, "suspended": False}, False),
    ("SUSPEND", {"active": False, "paused": False, "suspended": True}, True),
    ("RESUME", {"active": True, "paused": False, "suspended": False}, True),
    ("RESUME", {"active": False, "paused": True, "suspended": False}, False),
    ("PAUSE", None, None),  # before 1.19 there is no SHOW STATE
    ("RELOAD", None, False),
    ("SHUTDOWN", {"active": True}, False),
])
def test_already_done_for_the_pooler(verb, state, done):
    assert _admin.already_done(verb, None, None, state) is done


@pytest.mark.parametrize("verb, message, done", [
    ("PAUSE", "already suspended/paused", True),
    ("SUSPEND", "already suspended/paused", True),
    ("RESUME", "database appdb is not paused", True),
    ("RESUME", "pooler is not paused/suspended", True),
    ("PAUSE", "admin access needed", False),
    ("RESUME", "admin access needed", False),
    ("RELOAD", "already suspended/paused", False),
])
def test_means_already_done(verb, message, done):
    assert _admin.means_already_done(verb, message) is done


CONFIG = [
    {"key": "listen_port", "value": "6432", "default": "6432", "changeable": "no"},
    {"key": "log_connections", "value": "1", "default": "1", "changeable": "yes"},
    {"key": "admin_users", "value": "pgbouncer, ops", "default": "", "changeable": "yes"},
]


def test_config_entry_refuses_settings_that_cannot_change_at_runtime():
    with pytest.raises(AdminError) as err:
        _admin.config_entry(CONFIG, "listen_port")
    assert err.value.kind == "not_changeable"
    assert "changeable=no" in str(err.value)


def test_config_entry_refuses_unknown_settings():
    with pytest.raises(AdminError) as err:
        _admin.config_entry(CONFIG, "no_such_setting")
    assert err.value.kind == "unknown_setting"


def test_config_entry_of_a_changeable_setting():
    assert _admin.config_entry(CONFIG, "log_connections")["value"] == "1"


@pytest.mark.parametrize("current, wanted, same", [
    ("1", "1", True),
    ("1", "on", True),
    ("1", "true", True),
    ("0", "no", True),
    ("1", "0", False),
    ("pgbouncer, ops", "pgbouncer,ops", True),
    ("pgbouncer, ops", "ops, pgbouncer", False),
    ("30", "30.0", True),
    ("select 1", "select 1 ", True),
    ("select 1", "select 2", False),
    ("", "", True),
])
def test_same_setting(current, wanted, same):
    assert _admin.same_setting(current, wanted) is same


POOLS = [
    {"database": "appdb", "user": "app_user", "sv_active": 2, "sv_active_cancel": 0, "sv_being_canceled": 1, "sv_idle": 5},
    {"database": "appdb", "user": "report_user", "sv_active": 1, "sv_idle": 0},  # 1.18 has no sv_active_cancel
    {"database": "reportdb", "user": "app_user", "sv_active": 0, "sv_idle": 3},
    {"database": "pgbouncer", "user": "pgbouncer", "sv_active": 0},
]


@pytest.mark.parametrize("db, busy", [("appdb", 4), ("reportdb", 0), ("unknown", 0), (None, 4)])
def test_busy_server_connections_counts_what_a_pause_waits_for(db, busy):
    # Idle server connections do not hold a PAUSE back; active and cancelling ones do.
    assert _admin.busy_server_connections(POOLS, db) == busy
