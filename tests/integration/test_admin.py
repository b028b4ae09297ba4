"""pgbouncer.cluster.pgbouncer_admin against the lab's PgBouncer.

State-changing commands act on reportdb on pg-srv3 only (app tests use appdb), and every test
that changes something restores it (RESUME, ENABLE, the old SET value) in a fixture that runs
even when the test fails.

Cost on the lab: about 45 s, mostly one ansible-playbook run per test (2-4 s each); the calls
that change nothing on the pooler (READ_ONLY) share one run for the tests that read them.
"""

from __future__ import annotations

import json
import time

import pytest

from conftest import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    APP,
    APP_PASSWORD,
    APP_USER,
    NODES,
    STATS_PASSWORD,
    STATS_USER,
    ansible_playbook,
    app_python,
    ssh,
    transaction_in_the_way,
)

# Version-dependent: console columns and the commands each PgBouncer version has.
pytestmark = pytest.mark.version_dependent

HOST = "pg-srv3"
IP = NODES[HOST]
DB = "reportdb"
# report_user has an md5 secret, which scram-sha-256 auth cannot use: app_user connects to reportdb.
DB_USER = APP_USER

ADMIN = dict(login_host=IP, login_user=ADMIN_USER, login_password=ADMIN_PASSWORD)
STATS = dict(login_host=IP, login_user=STATS_USER, login_password=STATS_PASSWORD)
NEITHER = dict(login_host=IP, login_user=APP_USER, login_password=APP_PASSWORD)
SOCKET = dict(os_user="postgres")

# Runs on the app node: console commands in one session over the simple protocol; the last
# one's rows as dicts, or the first error.
CONSOLE = r"""
import json, sys, psycopg
host, commands = sys.argv[1], sys.argv[2:]
with psycopg.connect(host=host, port=6432, dbname="pgbouncer", user="pgbouncer", autocommit=True,
                     cursor_factory=psycopg.ClientCursor) as conn:
    cur = conn.cursor()
    try:
        for sql in commands:
            cur.execute(sql)
    except psycopg.Error as exc:
        print(json.dumps({"error": str(exc).strip()}))
        sys.exit(0)
    names = [c.name for c in cur.description] if cur.description else []
    print(json.dumps({"rows": [dict(zip(names, map(str, row))) for row in cur.fetchall()] if names else []}))
"""


def console(*sql, ip=IP):
    """Run console commands as pgbouncer from the app node (independent of the module)."""
    return app_python(CONSOLE, ip, *sql)


def database_row(name=DB, ip=IP):
    """The SHOW DATABASES row of name. WAIT_CLOSE (which changes nothing) first brings an idle
    auto-database back into the list that SHOW DATABASES reads."""
    rows = console('WAIT_CLOSE "%s"' % name, "SHOW DATABASES", ip=ip)["rows"]
    return next((row for row in rows if row["name"] == name), None)


def warm_up(ip=IP, attempts=20):
    """A real query through PgBouncer so that it lists reportdb in SHOW DATABASES.

    Retried: other tests on the shared lab change passwords and firewall rules for a while.
    """
    command = "timeout 15 psql -XAtq 'host=%s port=6432 dbname=%s user=%s connect_timeout=5' -c 'select 1'" % (ip, DB, DB_USER)
    for _attempt in range(attempts):
        if ssh(APP, command, check=False, timeout=60).returncode == 0:
            return
        time.sleep(5)
    pytest.fail("no query through %s's PgBouncer to %s in %d attempts" % (ip, DB, attempts))


def run_admin(tmp_path, *calls, host=HOST):
    """Run pgbouncer_admin once per call (module args; '_check': True for check mode) in one play.

    Returns the registered results in order; failures are results with failed=true.
    """
    out = tmp_path / "results.json"
    tasks = []
    for index, call in enumerate(calls):
        args = dict(call)
        check = args.pop("_check", False)
        tasks.append({
            "name": "call %d" % index,
            "pgbouncer.cluster.pgbouncer_admin": args,
            "check_mode": check,
            "ignore_errors": True,
            "register": "r%d" % index,
        })
    names = ", ".join("r%d" % index for index in range(len(calls)))
    tasks.append({
        "name": "save the results",
        "ansible.builtin.copy": {"content": "{{ [%s] | to_json }}" % names, "dest": str(out), "mode": "0600"},
        "delegate_to": "localhost",
        "become": False,
    })
    play = tmp_path / "play.yml"
    play.write_text(json.dumps([{"name": "pgbouncer_admin", "hosts": host, "gather_facts": False, "tasks": tasks}]))
    result = ansible_playbook(play, timeout=600)
    assert out.exists(), result.stdout + result.stderr
    return json.loads(out.read_text())


@pytest.fixture
def reportdb(tmp_path):
    """reportdb listed by PgBouncer on pg-srv3 before the test; resumed and enabled after it."""
    warm_up()
    yield
    console('RESUME "%s"' % DB)  # an error ("not paused") is fine
    console('ENABLE "%s"' % DB)
    row = database_row()
    assert row is None or (row["paused"], row["disabled"]) == ("0", "0"), row


# --- who may do what -------------------------------------------------------------------------------


# SHOW commands that answer no rows on an idle pooler: no server connection, no DNS lookup yet.
MAY_BE_EMPTY = {"SERVERS", "DNS_HOSTS", "DNS_ZONES"}
SHOWS = ["POOLS", "STATS", "STATS_TOTALS", "STATS_AVERAGES", "TOTALS", "DATABASES", "CLIENTS", "SERVERS", "USERS",
         "CONFIG", "LISTS", "MEM", "SOCKETS", "ACTIVE_SOCKETS", "DNS_HOSTS", "DNS_ZONES", "VERSION"]
# The calls of the tests below that change nothing on the pooler (SHOWs, refusals before anything is
# sent, errors, a SHUTDOWN in check mode), per test, in the order each test made them. They run
# in one ansible-playbook run (read_only), each test reading its own results.
READ_ONLY = {
    "shows": [dict(ADMIN, command="SHOW", show=name) for name in SHOWS],
    "versions": [
        dict(ADMIN, command="SHOW STATE"),
        dict(ADMIN, command="KILL_CLIENT", client_id=1),
        # Check mode: on 1.23+ a real SHUTDOWN would stop this node's pooler for the tests after.
        dict(ADMIN, command="SHUTDOWN", shutdown_mode="wait_for_servers", _check=True),
    ],
    "neither": [dict(NEITHER, command="SHOW POOLS")],
    "errors": [
        dict(ADMIN, command="SHOW POOLS", login_port=6499, connect_timeout=5),
        dict(ADMIN, command="SHOW POOLS", login_password="not-the-password"),
        dict(ADMIN, command="SELECT"),
        dict(ADMIN, command="SHOW HELP"),
        dict(ADMIN, command="PAUSE", db="no_such_db_zz"),
    ],
    "socket": [dict(SOCKET, command="show", show="lists")],
}


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """{test's key in READ_ONLY: its results, in order}, from one run of every READ_ONLY call."""
    results = run_admin(tmp_path_factory.mktemp("admin"), *(call for calls in READ_ONLY.values() for call in calls))
    found, start = {}, 0
    for key, calls in READ_ONLY.items():
        found[key] = results[start:start + len(calls)]
        start += len(calls)
    assert start == len(results)
    return found


def test_admin_user_reads_every_show_as_rows_keyed_by_column(read_only):
    shows = SHOWS
    results = read_only["shows"]
    for name, result in zip(shows, results):
        assert not result.get("failed"), (name, result.get("msg"))
        assert result["changed"] is False and result["command"] == "SHOW " + name
        assert result["columns"], name
        # Rows keyed by column, and rows there at all where a live pooler always has some (the
        # console's own client and socket, the pgbouncer database, its settings...).
        assert result["rows"] or name in MAY_BE_EMPTY, name
        assert all(set(row) == set(result["columns"]) for row in result["rows"]), name
    by_name = dict(zip(shows, results))
    assert by_name["VERSION"]["rows"][0]["version"].startswith("PgBouncer " + by_name["VERSION"]["version"])
    databases = {row["name"]: row for row in by_name["DATABASES"]["rows"]}
    assert databases["pgbouncer"]["paused"] == 0 and isinstance(databases["pgbouncer"]["pool_size"], int)
    config = {row["key"]: row for row in by_name["CONFIG"]["rows"]}
    assert config["listen_port"]["value"] == "6432" and config["listen_port"]["changeable"] == "no"


def test_versions_gate_commands(read_only):
    state, kill_client, shutdown = read_only["versions"]
    version = tuple(int(part) for part in state["version"].split("."))
    if version < (1, 19):
        assert state["failed"] and state["error_kind"] == "unsupported_version"
        assert "SHOW STATE needs PgBouncer 1.19" in state["msg"]
    else:
        assert {row["key"] for row in state["rows"]} == {"active", "paused", "suspended"}
    if version < (1, 24):
        assert kill_client["failed"] and kill_client["error_kind"] == "unsupported_version"
        assert "KILL_CLIENT needs PgBouncer 1.24" in kill_client["msg"]
    else:  # client 1 is not connected (ids count up from the start): PgBouncer's own error
        assert kill_client["failed"] and kill_client["error_kind"] != "unsupported_version"
    if version < (1, 23):
        assert shutdown["failed"] and shutdown["error_kind"] == "unsupported_version"
    else:
        assert not shutdown.get("failed"), shutdown.get("msg")
        assert shutdown["command"] == "SHUTDOWN WAIT_FOR_SERVERS"
    assert shutdown["executed"] is False


def test_stats_user_may_show_but_not_pause(tmp_path, reportdb):
    show, pause = run_admin(tmp_path, dict(STATS, command="SHOW STATS"), dict(STATS, command="PAUSE", db=DB, timeout=10))
    assert not show.get("failed") and any(row["database"] == DB for row in show["rows"])
    assert pause["failed"] and pause["error_kind"] == "admin_access_needed"
    assert "admin_users" in pause["msg"]
    assert database_row()["paused"] == "0"


def test_user_in_neither_list_is_not_let_in(read_only):
    (result,) = read_only["neither"]
    assert result["failed"] and result["error_kind"] == "not_allowed"
    assert "admin_users or stats_users" in result["msg"]


def test_distinct_errors(read_only):
    refused, wrong_password, unknown_command, unknown_show, unknown_db = read_only["errors"]
    kinds = [r["error_kind"] for r in (refused, wrong_password, unknown_command, unknown_show, unknown_db)]
    assert kinds == ["connection_refused", "authentication_failed", "unknown_command", "unknown_command", "unknown_database"]
    assert len({r["msg"] for r in (refused, wrong_password, unknown_command, unknown_db)}) == 4
    assert "auto_database" in unknown_db["msg"]
    # Refused before anything was sent (PgBouncer's '*' entry would have created and paused it): RESUME finds nothing.
    assert "error" in console('RESUME "no_such_db_zz"')


def test_unix_socket_as_the_service_user(read_only):
    (result,) = read_only["socket"]
    assert not result.get("failed"), result.get("msg")
    assert {row["list"] for row in result["rows"]} >= {"databases", "pools", "used_clients"}


# --- check mode and idempotence ----------------------------------------------------------------------


def test_check_mode_reports_and_changes_nothing(tmp_path, reportdb):
    pause, disable, reload, shutdown = run_admin(
        tmp_path,
        dict(ADMIN, command="PAUSE", db=DB, _check=True),
        dict(ADMIN, command="DISABLE", db=DB, _check=True),
        dict(ADMIN, command="RELOAD", _check=True),
        dict(ADMIN, command="SHUTDOWN", _check=True),
    )
    for result, command in ((pause, 'PAUSE "reportdb"'), (disable, 'DISABLE "reportdb"'), (reload, "RELOAD"), (shutdown, "SHUTDOWN")):
        assert not result.get("failed"), result.get("msg")
        assert result["changed"] is True and result["executed"] is False and result["command"] == command
    row = database_row()
    assert (row["paused"], row["disabled"]) == ("0", "0")


def test_pause_and_resume_are_idempotent(tmp_path, reportdb):
    pause1, pause2, resume1, resume2, check_resume = run_admin(
        tmp_path,
        dict(ADMIN, command="PAUSE", db=DB, timeout=20),
        dict(ADMIN, command="PAUSE", db=DB, timeout=20),
        dict(ADMIN, command="RESUME", db=DB),
        dict(ADMIN, command="RESUME", db=DB),
        dict(ADMIN, command="RESUME", db=DB, _check=True),
    )
    assert (pause1["changed"], pause1["executed"], pause1["status"]) == (True, True, "PAUSE")
    assert (pause2["changed"], pause2["executed"]) == (False, False)
    assert (resume1["changed"], resume2["changed"]) == (True, False)
    # Check mode sends nothing but SHOW: an idle auto-database (reportdb, without clients) is
    # not listed, so it says it cannot tell rather than claim there is nothing to do.
    if check_resume.get("state_known") is False:
        assert check_resume["changed"] is True and any("cannot read whether" in text for text in check_resume["warnings"])
    else:
        assert check_resume["changed"] is False
    assert database_row()["paused"] == "0"


def test_disable_and_enable_are_idempotent(tmp_path, reportdb):
    results = run_admin(
        tmp_path,
        dict(ADMIN, command="DISABLE", db=DB),
        dict(ADMIN, command="DISABLE", db=DB),
        dict(ADMIN, command="ENABLE", db=DB),
        dict(ADMIN, command="ENABLE", db=DB),
    )
    assert [r["changed"] for r in results] == [True, False, True, False]
    assert database_row()["disabled"] == "0"


@pytest.fixture
def server_check_query():
    """Restore server_check_query on pg-srv3 after the test."""
    config = {row["key"]: row["value"] for row in console("SHOW CONFIG")["rows"]}
    before = config["server_check_query"]
    yield before
    console("SET server_check_query = '%s'" % before.replace("'", "''"))


def test_set_is_idempotent_and_refuses_keys_fixed_at_start(tmp_path, server_check_query):
    same, check, other, again, fixed = run_admin(
        tmp_path,
        dict(ADMIN, command="SET", key="server_check_query", value=server_check_query),
        dict(ADMIN, command="SET", key="server_check_query", value="select 2", _check=True),
        dict(ADMIN, command="SET", key="server_check_query", value="select 2"),
        dict(ADMIN, command="SET", key="server_check_query", value="select 2"),
        dict(ADMIN, command="SET", key="listen_port", value=6433),
    )
    assert (same["changed"], same["executed"]) == (False, False)
    assert (check["changed"], check["executed"], check["after"]) == (True, False, server_check_query)
    assert (other["changed"], other["before"], other["after"]) == (True, server_check_query, "select 2")
    assert again["changed"] is False
    assert fixed["failed"] and fixed["error_kind"] == "not_changeable" and "changeable=no" in fixed["msg"]


def test_reload_reconnect_always_change_wait_close_never(tmp_path, reportdb):
    reload, reconnect, wait_close = run_admin(
        tmp_path,
        dict(SOCKET, command="RELOAD"),
        dict(SOCKET, command="RECONNECT", db=DB),
        dict(SOCKET, command="WAIT_CLOSE", db=DB, timeout=30),
    )
    assert (reload["changed"], reload["status"]) == (True, "RELOAD")
    assert (reconnect["changed"], reconnect["status"]) == (True, "RECONNECT")
    assert (wait_close["changed"], wait_close["executed"], wait_close["status"]) == (False, True, "WAIT_CLOSE")


# --- blocking commands -----------------------------------------------------------------------------


@pytest.mark.parametrize("resume", [True, False])
def test_pause_timeout_is_reported_and_resumed_on_request(tmp_path, reportdb, resume):
    with transaction_in_the_way(IP, DB, DB_USER) as holder:
        started = time.monotonic()
        (result,) = run_admin(tmp_path, dict(ADMIN, command="PAUSE", db=DB, timeout=3, resume_on_timeout=resume))
        assert result["failed"] and result["timed_out"] is True and result["resumed"] is resume
        assert result["error_kind"] == "timeout" and "did not finish within timeout=3" in result["msg"]
        # Left paused on request (the fixture resumes it), else resumed by the module.
        assert database_row()["paused"] == ("0" if resume else "1")
        if not resume:
            assert "send RESUME yourself" in result["msg"]
        assert time.monotonic() - started < 45, "the module waited for the transaction instead of timing out"
    assert holder.returncode == 0, holder.stderr.read()  # the client in the way saw no error
