"""The pgbouncer_auth_query module's logic: who may own and change the lookup function, and
what a hot standby does (waits for replication, runs no DDL). A fake connection answers the
module's catalog queries. Cost: well under a second."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.modules import pgbouncer_auth_query as aq  # noqa: E402

PARAMS = {"auth_user": "pgbouncer_auth", "schema": "pgbouncer", "function": "user_lookup", "state": "present", "standby_timeout": 1}
GOOD = (aq.BODY, True, ["search_path=pg_catalog, pg_temp"], "postgres", True, False, True, [])


class FakeConn:
    """Answers SCHEMA_STATE, FUNCTION_STATE and current_user from the rows it is given."""

    def __init__(self, schema_row=("postgres", []), function_row=GOOD, user="postgres"):
        self.rows = {aq.SCHEMA_STATE: schema_row, aq.FUNCTION_STATE: function_row, "SELECT current_user": (user,)}
        self.executed = []

    def execute(self, sql, args=None):
        self.executed.append(sql)
        row = self.rows.get(sql)

        class Result:
            def fetchone(self):
                return row

        return Result()


def test_a_current_function_owned_by_the_login_user_needs_nothing():
    assert aq.plan(FakeConn(), "appdb", PARAMS) == []


def test_a_missing_function_is_created_in_a_missing_schema():
    statements = aq.plan(FakeConn(schema_row=None, function_row=None), "appdb", PARAMS)
    assert statements[0] == 'CREATE SCHEMA IF NOT EXISTS "pgbouncer"'
    assert 'GRANT EXECUTE ON FUNCTION "pgbouncer"."user_lookup"(text) TO "pgbouncer_auth"' in statements


def test_a_schema_another_role_owns_is_refused_not_taken_over():
    with pytest.raises(aq.OwnershipError, match='schema "pgbouncer" in database appdb is owned by app_user, not postgres'):
        aq.plan(FakeConn(schema_row=("app_user", []), function_row=None), "appdb", PARAMS)


def test_a_schema_others_may_create_in_is_refused():
    with pytest.raises(aq.OwnershipError, match="lets app_user create objects in it"):
        aq.plan(FakeConn(schema_row=("postgres", ["app_user"])), "appdb", PARAMS)


def test_a_function_another_role_owns_is_refused():
    swapped = GOOD[:3] + ("app_user",) + GOOD[4:]
    with pytest.raises(aq.OwnershipError, match="is owned by app_user, not postgres"):
        aq.plan(FakeConn(function_row=swapped), "appdb", PARAMS)


def test_extra_grantees_are_not_current_and_lose_execute():
    granted = GOOD[:7] + (["app_user"],)
    statements = aq.plan(FakeConn(function_row=granted), "appdb", PARAMS)
    assert statements[-1] == 'REVOKE ALL ON FUNCTION "pgbouncer"."user_lookup"(text) FROM "app_user"'


class FakeModule:
    def __init__(self, check_mode=False):
        self.check_mode = check_mode

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs["msg"])


def test_a_standby_waits_for_the_function_and_never_runs_ddl():
    conn = FakeConn(function_row=None)
    replayed = {"after": 2}

    def execute(sql, args=None, execute=conn.execute):
        if sql == aq.FUNCTION_STATE:
            replayed["after"] -= 1
            conn.rows[sql] = GOOD if replayed["after"] < 0 else None
        return execute(sql, args)

    conn.execute = execute
    assert aq.wait_for_replica(FakeModule(), conn, "appdb", dict(PARAMS, standby_timeout=10)) is True
    assert not [sql for sql in conn.executed if sql.startswith(("CREATE", "GRANT", "REVOKE", "DROP"))]


def test_a_standby_gives_up_after_its_timeout_with_an_actionable_message():
    with pytest.raises(AssertionError, match="still lacks the auth_query function as wanted after 1s: the primary creates it"):
        aq.wait_for_replica(FakeModule(), FakeConn(function_row=None), "appdb", PARAMS)


def test_check_mode_on_a_standby_reports_the_wait_without_waiting():
    assert aq.wait_for_replica(FakeModule(check_mode=True), FakeConn(function_row=None), "appdb", PARAMS) is True
