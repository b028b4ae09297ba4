"""Config changes on a live node: reload keeps the process, restart-only keys restart it, and
the dry run (`--check --diff`) first predicts exactly the tasks each real run then changes.
(Bad input refused before any change: test_config_surface, every case in one run.)

Cost on the lab: about 2 minutes, five runs of site.yml limited to one node (two of them
dry runs, the last one the restore, of the pgbouncer role alone when the test got that far).
"""

from __future__ import annotations

import json

import pytest

from conftest import NODES, cluster_roles, node_state, psql, recorded_playbook, ssh

NODE = "pg-srv2"
IP = NODES[NODE]
USER = "dry_run_user"
# Pending changes of every kind the dry run must foresee, besides the settings below.
DATABASE_ADDED = [
    {"name": "appdb_ro", "host": "10.129.0.22", "port": 5432, "dbname": "appdb", "max_db_connections": 5},
    {"name": "appdb_extra", "host": "10.129.0.22", "port": 5432, "dbname": "appdb", "max_db_connections": 2},
]
APP_HOST_ADDED = ["10.129.0.31", "10.129.0.32"]


def main_pid():
    return ssh(IP, "systemctl show -p MainPID --value pgbouncer").stdout.strip()


def live_setting(key):
    out = ssh(IP, "runuser -u postgres -- psql -XAt -h /var/run/postgresql -p 6432 -U pgbouncer pgbouncer -c 'SHOW CONFIG'").stdout
    for line in out.splitlines():
        fields = line.split("|")
        if fields[0] == key:
            return fields[1]
    raise AssertionError("%s not in SHOW CONFIG" % key)


def on_primary(sql):
    psql(NODES[cluster_roles()["primary"]], sql)


def dry_run_then_converge(*extra):
    """The dry run, then the real run, with the same arguments; the tasks the real run changed."""
    args = ("playbooks/site.yml", "--limit", NODE, *extra)
    before = node_state(IP)
    predicted = recorded_playbook(*args, "--check", "--diff")[1]
    assert node_state(IP) == before, "the dry run changed %s" % NODE
    changed = recorded_playbook(*args)[1]
    assert predicted == changed, "dry run alone: %s; real run alone: %s" % (
        sorted(predicted.get(NODE, set()) - changed.get(NODE, set())), sorted(changed.get(NODE, set()) - predicted.get(NODE, set())))
    return changed.get(NODE, set())


@pytest.fixture
def restore_defaults():
    """The test's user dropped and pg-srv2 back to the lab's settings: the whole of site.yml, or
    only the pgbouncer role (`--tags pgbouncer`) once the test's last converge has run, which
    took the other changes back itself (the firewall sources, the [databases] entry); then the
    settings the test changed are the lab's again, live."""
    args = {"tags": ()}
    yield args
    on_primary("DROP ROLE IF EXISTS %s" % USER)
    recorded_playbook("playbooks/site.yml", "--limit", NODE, *args["tags"])
    assert live_setting("stats_period") != "61"
    assert live_setting("unix_socket_mode") not in ("0700", "700", "448")
    assert ('"%s"' % USER) not in ssh(IP, "cat /etc/pgbouncer/userlist.txt").stdout


def test_reload_for_reloadable_keys_restart_for_restart_only_keys(restore_defaults):
    before = main_pid()
    on_primary("SET password_encryption = 'scram-sha-256'; CREATE ROLE %s LOGIN PASSWORD 'first-1'" % USER)
    changed = dry_run_then_converge("-e", json.dumps({
        "pgbouncer_stats_period": 61, "pgbouncer_databases": DATABASE_ADDED, "firewall_pgbouncer_allowed_sources": APP_HOST_ADDED}))
    assert {"pgbouncer.cluster.pgbouncer : Reload pgbouncer", "pgbouncer.cluster.pgbouncer : Write the auth_file from pg_shadow",
            "pgbouncer.cluster.firewall : Allow SSH, open PgBouncer and PostgreSQL to their sources only, enable ufw"} <= changed, changed
    assert "pgbouncer.cluster.pgbouncer : Restart pgbouncer" not in changed
    assert main_pid() == before, "a reloadable change must not restart PgBouncer"
    assert live_setting("stats_period") == "61"
    assert ('"%s"' % USER) in ssh(IP, "cat /etc/pgbouncer/userlist.txt").stdout

    # 0770 is the default: 0700 is a change (and not world-writable, which would need pgbouncer_allow_insecure).
    on_primary("SET password_encryption = 'scram-sha-256'; ALTER ROLE %s PASSWORD 'second-2'" % USER)
    changed = dry_run_then_converge("-e", json.dumps({"pgbouncer_stats_period": 61, "pgbouncer_unix_socket_mode": "0700"}))
    # That run had the lab's firewall sources and [databases] again: only the pgbouncer role's
    # settings are left to restore.
    restore_defaults["tags"] = ("--tags", "pgbouncer")
    assert {"pgbouncer.cluster.pgbouncer : Restart pgbouncer", "pgbouncer.cluster.pgbouncer : Write the auth_file from pg_shadow"} <= changed, changed
    assert main_pid() != before, "unix_socket_mode is applied only by a restart"
    assert live_setting("unix_socket_mode") in ("0700", "700", "448")
