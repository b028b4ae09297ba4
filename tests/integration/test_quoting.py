"""pgbouncer.ini quoting on the lab: a [databases] entry whose password needs quoting logs in
through the pooler, and a value cannot add options to its entry. (Line breaks and bad names
refused before any node changes: BAD_INPUTS of test_config_surface.py.)

Cost on the lab: about 60 s, three site.yml runs on pg-srv3 (each test's converge with its
entry, and one run of the pgbouncer role back to the lab's entries once both have run: each
test writes the whole [databases] section, so the second needs nothing undone from the first)."""

from __future__ import annotations

import json

import pytest

from conftest import APP_DB, APP_PASSWORD, APP_USER, NODES, ansible_playbook, app_python, cluster_roles, psql, ssh

NODE = "pg-srv3"
IP = NODES[NODE]
ROLE = "quote_user"
# Every character the earlier backslash escaping got wrong, and those that end a bare value.
PASSWORD = "q'u\\o\"te d=1 ''"
# The lab's own entry (inventories/lab/group_vars/pgbouncer.yml), kept while the test adds one.
LAB_DATABASES = [{"name": "appdb_ro", "host": "10.129.0.22", "port": 5432, "dbname": "appdb", "max_db_connections": 5}]

WHO = r"""
import json, sys
import psycopg
host, db, user, password = sys.argv[1:5]
try:
    with psycopg.connect(host=host, port=6432, dbname=db, user=user, password=password, connect_timeout=10) as conn:
        print(json.dumps({"ok": True, "user": conn.execute("SELECT current_user").fetchone()[0]}))
except Exception as exc:
    print(json.dumps({"ok": False, "error": str(exc)}))
"""


def converge(*extra):
    result = ansible_playbook("playbooks/site.yml", "--limit", NODE, *extra)
    assert result.returncode == 0, result.stdout[-4000:]
    return result


@pytest.fixture(scope="module")
def quote_role():
    """A PostgreSQL role with the password, on the node's PostgreSQL; gone after the module's
    tests, and the node's pgbouncer.ini back to the lab's (checked)."""
    literal = PASSWORD.replace("'", "''")
    # An md5 verifier: PostgreSQL then asks for MD5, which PgBouncer can answer only from the
    # entry's password. (With SCRAM, PgBouncer 1.18 would reuse the client's SCRAM keys for the
    # forced user, and the entry's password would not be what logs in.) appdb's CONNECT is
    # PUBLIC's: the role needs no grant, so nothing keeps it from being dropped.
    # On the primary: the role reaches pg-srv3 by replication, whatever its role.
    primary = NODES[cluster_roles()["primary"]]
    psql(primary, "SET password_encryption = 'md5'; DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN PASSWORD '%s'" % (ROLE, ROLE, literal))
    yield
    # The role goes first, so that the converge also takes it out of the auth_file. Only the
    # pgbouncer role reads pgbouncer_databases: `--tags pgbouncer` runs it alone.
    psql(primary, "DROP ROLE IF EXISTS %s" % ROLE)
    converge("--tags", "pgbouncer")
    assert "quoted_db" not in ssh(IP, "cat /etc/pgbouncer/pgbouncer.ini").stdout
    assert '"%s"' % ROLE not in ssh(IP, "cat /etc/pgbouncer/userlist.txt").stdout


def test_a_password_that_needs_quoting_logs_in_through_the_pooler(quote_role):
    entry = {"name": "quoted_db", "host": IP, "port": 5432, "dbname": APP_DB, "user": ROLE, "password": PASSWORD,
             "max_db_connections": 2}
    converge("-e", json.dumps({"pgbouncer_databases": [*LAB_DATABASES, entry]}))
    ini = ssh(IP, "cat /etc/pgbouncer/pgbouncer.ini").stdout
    assert "password='q''u\\o\"te d=1 '''''" in ini, ini
    # The client logs in as a user of the auth_file; PgBouncer logs in to PostgreSQL as the
    # entry's user with the entry's password, read back from the quoted value.
    result = app_python(WHO, IP, "quoted_db", APP_USER, APP_PASSWORD)
    assert result == {"ok": True, "user": ROLE}, result


def test_a_value_cannot_add_options_to_an_entry(quote_role):
    # Before the fix this wrote password='x\' host=10.129.0.21 ...', which PgBouncer refused.
    entry = {"name": "quoted_db", "host": IP, "dbname": APP_DB, "user": ROLE, "password": "x' host=10.129.0.21 port='5432"}
    converge("-e", json.dumps({"pgbouncer_databases": [*LAB_DATABASES, entry]}))
    ini = ssh(IP, "cat /etc/pgbouncer/pgbouncer.ini").stdout
    assert "quoted_db = host=%s dbname=%s user=%s password='x'' host=10.129.0.21 port=''5432'" % (IP, APP_DB, ROLE) in ini, ini
