"""pg_hba.conf decision for PgBouncer's logins over the unix socket (module_utils/_hba.py), the
pgbouncer_socket_hba_check filter, and the pgbouncer_postgres_info module's reading of pg_hba_file_rules."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.filter.pgbouncer import FilterModule  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _hba  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.modules import pgbouncer_postgres_info  # noqa: E402

SOCKET = "/var/run/postgresql"
WILDCARD = {"name": "*", "host": SOCKET, "port": "5432"}
USERS = ("app", "report")


def rule(line, database, user, method, options=None, error=None):
    return {"line_number": line, "file_name": None, "database": database, "user_name": user,
            "auth_method": method, "options": options, "error": error}


# Debian's default pg_hba.conf (PostgreSQL 17), its local lines.
DEBIAN = [
    rule(118, ["all"], ["postgres"], "peer"),
    rule(123, ["all"], ["all"], "peer"),
    rule(132, ["replication"], ["all"], "peer"),
]
# playbooks/lab/templates/patroni.yml.j2
LAB = [
    rule(1, ["all"], ["postgres"], "peer"),
    rule(2, ["all"], ["all"], "md5"),
    rule(6, ["replication"], ["all"], "peer"),
]


def backend(rules, databases=("appdb", "postgres"), error=""):
    return {"databases": list(databases), "hba_local_rules": rules, "hba_read_error": error}


def check(rules, entries=(WILDCARD,), users=USERS, **kwargs):
    return _hba.socket_check(backend(rules, **kwargs.pop("backend", {})), list(entries), users, "postgres", 5432,
                             **kwargs)


def test_peer_before_scram_is_refused_with_the_line_and_the_fix():
    rules = [rule(118, ["all"], ["postgres"], "peer"), rule(123, ["all"], ["all"], "peer"),
             rule(124, ["all"], ["all"], "scram-sha-256")]
    result = check(rules)
    assert result["warnings"] == []
    assert result["problems"] == [
        "the * entry (pgbouncer_database_wildcard_host /var/run/postgresql): PostgreSQL would refuse PgBouncer's "
        "logins over the unix socket as users app, report on databases appdb, postgres: pg_hba.conf line 123 "
        "(local all all peer) matches them first, with method peer, and peer lets PgBouncer's OS user postgres "
        "in as the role postgres only. Fix: add `local all all scram-sha-256` (md5 if some roles still have md5 "
        "secrets) to pg_hba.conf before line 123, keeping a `local all postgres peer` line above it for the "
        "role's own pg_shadow read, and reload PostgreSQL; or point the entry at TCP (the node's address, the "
        "default)"
    ]


def test_debian_default_is_refused():
    assert "pg_hba.conf line 123 (local all all peer)" in check(DEBIAN)["problems"][0]


def test_scram_first_is_accepted():
    assert check([rule(1, ["all"], ["all"], "scram-sha-256")] + DEBIAN) == {"problems": [], "warnings": []}


def test_lab_pg_hba_is_accepted():
    assert check(LAB) == {"problems": [], "warnings": []}


@pytest.mark.parametrize("method", ["md5", "scram-sha-256", "password"])
def test_password_methods_accept(method):
    assert _hba.decide([rule(1, ["all"], ["all"], method)], "appdb", "app", "postgres")[0] == "accept"


@pytest.mark.parametrize("method", ["reject", "cert", "gss", "pam", "ldap"])
def test_other_methods_refuse(method):
    assert _hba.decide([rule(1, ["all"], ["all"], method)], "appdb", "app", "postgres")[0] == "refuse"


def test_peer_accepts_pgbouncers_own_os_user_only():
    # A superuser in the auth_file (pgbouncer_userlist_include_superusers) named like the OS user.
    assert _hba.decide(DEBIAN, "appdb", "postgres", "postgres") == ("accept", DEBIAN[0])
    assert _hba.decide(DEBIAN, "appdb", "app", "postgres") == ("refuse", DEBIAN[1])
    assert check(DEBIAN, users=["postgres"]) == {"problems": [], "warnings": []}


def test_ident_on_a_local_line_is_peer_and_a_map_is_unknown():
    assert _hba.decide([rule(1, ["all"], ["all"], "ident")], "appdb", "app", "postgres")[0] == "refuse"
    mapped = rule(1, ["all"], ["all"], "peer", options=["map=pooler"])
    assert _hba.decide([mapped], "appdb", "app", "postgres") == ("unknown", mapped)


def test_sameuser_matches_only_the_database_named_like_the_user():
    rules = [rule(1, ["sameuser"], ["all"], "md5"), rule(2, ["all"], ["all"], "peer")]
    assert _hba.decide(rules, "app", "app", "postgres") == ("accept", rules[0])
    assert _hba.decide(rules, "appdb", "app", "postgres") == ("refuse", rules[1])
    result = check(rules, backend={"databases": ["app", "report"]})
    # app on report and report on app fall through to the peer line.
    assert len(result["problems"]) == 1
    assert "pg_hba.conf line 2 (local all all peer)" in result["problems"][0]


def test_a_specific_database_line_before_all_decides_for_that_database():
    rules = [rule(1, ["appdb"], ["all"], "scram-sha-256"), rule(2, ["all"], ["all"], "peer")]
    assert check(rules, entries=[{"name": "app", "host": SOCKET, "dbname": "appdb"}]) == {"problems": [], "warnings": []}
    problems = check(rules)["problems"]
    assert len(problems) == 1
    assert "as users app, report on databases postgres: pg_hba.conf line 2" in problems[0]


def test_a_specific_database_reject_before_all_refuses():
    rules = [rule(1, ["postgres"], ["all"], "reject"), rule(2, ["all"], ["all"], "md5")]
    problems = check(rules)["problems"]
    assert len(problems) == 1
    assert "pg_hba.conf line 1 (local postgres all reject) matches them first, with method reject" in problems[0]


def test_trust_accepts_with_a_warning_unless_allow_insecure():
    rules = [rule(1, ["all"], ["all"], "trust")]
    result = check(rules)
    assert result["problems"] == []
    assert len(result["warnings"]) == 1
    assert "without a password" in result["warnings"][0]
    assert check(rules, allow_insecure=True) == {"problems": [], "warnings": []}


def test_a_role_line_is_unknown_and_never_refuses():
    rules = [rule(1, ["all"], ["+admins"], "peer"), rule(2, ["all"], ["all"], "peer")]
    result = check(rules)
    assert result["problems"] == []
    assert len(result["warnings"]) == 1
    assert "pg_hba.conf line 1 (local all +admins peer) may match" in result["warnings"][0]
    # +role names the role itself as well.
    assert _hba.decide([rule(1, ["all"], ["+app"], "md5")], "appdb", "app", "postgres")[0] == "accept"


@pytest.mark.parametrize("database, user", [(["samerole"], ["all"]), (["/^app"], ["all"]), (["all"], ["/^app"])])
def test_regular_expressions_and_samerole_are_unknown(database, user):
    assert _hba.decide([rule(1, database, user, "md5")], "appdb", "app", "postgres")[0] == "unknown"


def test_a_user_line_that_does_not_match_is_skipped_before_an_unknown_database():
    rules = [rule(1, ["samerole"], ["other"], "peer"), rule(2, ["all"], ["all"], "md5")]
    assert _hba.decide(rules, "appdb", "app", "postgres") == ("accept", rules[1])


def test_replication_only_lines_are_ignored():
    rules = [rule(1, ["replication"], ["all"], "peer"), rule(2, ["all"], ["all"], "scram-sha-256")]
    assert check(rules) == {"problems": [], "warnings": []}


def test_no_matching_line_is_refused():
    problems = check([rule(1, ["all"], ["postgres"], "peer"), rule(2, ["replication"], ["all"], "peer")])["problems"]
    assert len(problems) == 1
    assert "no `local` line of pg_hba.conf matches them. Fix: add `local all all scram-sha-256`" in problems[0]


def test_tcp_entries_and_other_ports_are_not_checked():
    entries = [{"name": "*", "host": "10.129.0.21", "port": 5432}, {"name": "other", "host": SOCKET, "port": 5433}]
    assert check(DEBIAN, entries=entries) == {"problems": [], "warnings": []}


def test_a_named_entry_checks_its_fixed_user_and_auth_user():
    rules = [rule(1, ["all"], ["app"], "md5"), rule(2, ["all"], ["all"], "peer")]
    entry = {"name": "reports", "host": SOCKET, "dbname": "appdb", "user": "app"}
    assert check(rules, entries=[entry], users=["report"]) == {"problems": [], "warnings": []}
    problems = check(rules, entries=[dict(entry, auth_user="lookup")], users=[])["problems"]
    assert problems[0].startswith("pgbouncer_databases entry reports (host /var/run/postgresql): PostgreSQL would "
                                  "refuse PgBouncer's logins over the unix socket as users lookup on databases appdb")


def test_long_lists_are_shortened():
    users = ["u%d" % index for index in range(8)]
    assert "users u0, u1, u2, u3, u4 and 3 more on" in check(DEBIAN, users=users)["problems"][0]


def test_unreadable_pg_hba_warns_and_does_not_fail():
    result = check([], backend={"error": "permission denied for function pg_hba_file_rules"})
    assert result["problems"] == []
    assert result["warnings"] == ["pg_hba.conf could not be read (permission denied for function pg_hba_file_rules): "
                                  "the check that PostgreSQL accepts PgBouncer's logins over the unix socket is skipped"]


def test_pg_hba_with_errors_warns_and_does_not_fail():
    broken = [rule(5, None, None, None, error="invalid authentication method \"sram\"")] + DEBIAN
    result = check(broken)
    assert result["problems"] == []
    assert result["warnings"][0].startswith('pg_hba.conf line 5: invalid authentication method "sram"')


def test_the_filter_is_registered():
    assert FilterModule().filters()["pgbouncer_socket_hba_check"] is _hba.socket_check


def test_module_keeps_local_lines_and_errors_in_order():
    rows = [
        {"rule_number": 1, "file_name": "/etc/postgresql/17/main/pg_hba.conf", "line_number": 118, "type": "local",
         "database": ["all"], "user_name": ["postgres"], "address": None, "netmask": None, "auth_method": "peer",
         "options": None, "error": None},
        {"rule_number": 2, "file_name": "/etc/postgresql/17/main/pg_hba.conf", "line_number": 121, "type": "host",
         "database": ["all"], "user_name": ["all"], "address": "127.0.0.1", "netmask": "255.255.255.255",
         "auth_method": "scram-sha-256", "options": None, "error": None},
        # PostgreSQL 15: no rule_number nor file_name.
        {"line_number": 130, "type": None, "database": None, "user_name": None, "auth_method": None,
         "options": None, "error": "invalid connection type \"lokal\""},
    ]
    assert pgbouncer_postgres_info.local_rules(rows) == [
        {"line_number": 118, "file_name": "/etc/postgresql/17/main/pg_hba.conf", "database": ["all"],
         "user_name": ["postgres"], "auth_method": "peer", "options": None, "error": None},
        {"line_number": 130, "file_name": None, "database": None, "user_name": None, "auth_method": None,
         "options": None, "error": "invalid connection type \"lokal\""},
    ]
    assert _hba.where(pgbouncer_postgres_info.local_rules(rows)[0]) == "/etc/postgresql/17/main/pg_hba.conf line 118"


class _Failing:
    def execute(self, query):
        raise RuntimeError("permission denied for view pg_hba_file_rules\nDETAIL: more")


def test_module_reports_an_unreadable_view_without_failing():
    assert pgbouncer_postgres_info.read_hba(_Failing()) == ([], "permission denied for view pg_hba_file_rules")
