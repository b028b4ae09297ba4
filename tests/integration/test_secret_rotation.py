"""Rotating the secrets in the order README.md's "Rotate every secret" gives, without a failed
check or login (issue 29).

- The health agent's login: in place, the auth_file reload (pgbouncer play) and the agent's
  new password (pgbouncer_health play) come seconds apart and every agent's next login fails,
  so HAProxy marks every pooler DOWN and keepalived fails everywhere. The README switches the
  agent to a second stats user instead, in one run whose play order does it right. Measured
  here with HAProxy's own counters: `chkfail` (checks failed while the server was UP) and
  `chkdown` (UP to DOWN transitions) of every server of both backends on every HAProxy do not
  move, keepalived logs no failed check and no FAULT, and the VIP stays; the agents then log
  in as the new user. Then the same procedure back to the lab's user, measured the same way.
- The auth_query user: in place, ALTER ROLE on the primary, then at once `--tags
  pgbouncer_userlist` with the new password. A user known only through auth_query (app_user,
  left out of the auth_file for the test) logs in to every pooler, a new connection every
  100 ms, from before the ALTER ROLE until after a RECONNECT on every pooler that makes
  PgBouncer log in as the auth user anew with the new password: no login may fail.

Cost on the lab (estimated from the runs of test_cluster_changes.py, not measured yet):
health login about 35-45 s (three `--tags` runs of site.yml that reload, no restart); auth
user about 50-60 s (two runs that restart PgBouncer one node at a time, to turn auth_query on
and off again, and one `--tags pgbouncer_userlist` run). Every wait is bounded; each test puts
the lab back as the inventory has it, also when it fails.
"""

from __future__ import annotations

import json
import subprocess
import time

from conftest import (
    APP,
    APP_DB,
    APP_PASSWORD,
    APP_USER,
    NODES,
    SSH_CONFIG,
    STATS_PASSWORD,
    STATS_USER,
    ansible_playbook,
    cluster_roles,
    haproxy_stats,
    psql,
    ssh,
    vip_holder,
)

SECOND_STATS_USER, SECOND_STATS_PASSWORD = "stats_rotated", "stats-pass-2"
AUTH_USER, AUTH_PASSWORD, NEW_AUTH_PASSWORD = "pgbouncer_auth", "auth-pass-1", "auth-pass-2"
BACKENDS = ("pgbouncer", "pgbouncer_ro")


def run(*args):
    result = ansible_playbook("playbooks/site.yml", *args)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def primary_ip():
    return NODES[cluster_roles()["primary"]]


def check_counters():
    """{(haproxy node, backend, server): (chkfail, chkdown)} of every pooler server."""
    counters = {}
    for name, ip in NODES.items():
        for (backend, server), row in haproxy_stats(ip).items():
            if backend in BACKENDS and server in NODES:
                counters[(name, backend, server)] = (row["chkfail"], row["chkdown"])
    return counters


def keepalived_trouble(since):
    """keepalived's journal lines since `since` (epoch seconds) on every node that tell of a
    failed check or a FAULT state."""
    lines = {}
    for name, ip in NODES.items():
        out = ssh(ip, "journalctl -u keepalived --since @%d -o cat --no-pager | grep -E 'FAULT|now returning [1-9]|failed' || true" % since).stdout
        if out.strip():
            lines[name] = out.strip().splitlines()
    return lines


def health_clients(ip):
    """The users the health agent is logged in to the local PgBouncer as (SHOW CLIENTS)."""
    out = ssh(ip, "runuser -u postgres -- psql -XAt -F ' ' -h /var/run/postgresql -p 6432 -U pgbouncer pgbouncer -c 'SHOW CLIENTS'").stdout
    # Columns: type user database state addr port local_addr local_port connect_time ... application_name ...
    return {line.split()[1] for line in out.splitlines() if "pgbouncer-health" in line}


def health_vars(user, password):
    return json.dumps({"pgbouncer_stats_users": [STATS_USER, SECOND_STATS_USER], "pgbouncer_health_login_user": user,
                       "pgbouncer_health_login_password": password})


def rotate_health_login(user, password):
    """One README step-3 run, measured: no check of any HAProxy or keepalived failed, the VIP
    stayed, and every agent logs in as `user` afterwards."""
    holder, before, since = vip_holder(), check_counters(), int(time.time())
    out = run("--tags", "pgbouncer_userlist,pgbouncer_config,pgbouncer_health", "-e", health_vars(user, password))
    assert "Restart pgbouncer-health" in out, out[-4000:]
    time.sleep(3)  # two check intervals after the last agent restart, for a failure to count
    assert check_counters() == before
    assert keepalived_trouble(since) == {}
    assert vip_holder() == holder
    for ip in NODES.values():
        # The agent logs in anew at least every pgbouncer_health_login_interval (10 s).
        deadline = time.monotonic() + 15
        while health_clients(ip) != {user}:
            assert time.monotonic() < deadline, "the health agent on %s still logs in as %s" % (ip, health_clients(ip))
            time.sleep(0.5)


def test_the_health_login_rotates_without_a_failed_check():
    """README, "The health agent's login": to a second stats user and back, in one run each."""
    psql(primary_ip(), "DROP ROLE IF EXISTS %s; SET password_encryption = 'scram-sha-256'; CREATE ROLE %s LOGIN PASSWORD '%s'" % (
        SECOND_STATS_USER, SECOND_STATS_USER, SECOND_STATS_PASSWORD))
    back = False
    try:
        rotate_health_login(SECOND_STATS_USER, SECOND_STATS_PASSWORD)
        rotate_health_login(STATS_USER, STATS_PASSWORD)
        back = True
    finally:
        if not back:
            run("--tags", "pgbouncer_userlist,pgbouncer_config,pgbouncer_health", "-e", health_vars(STATS_USER, STATS_PASSWORD))
        # The agent is on the lab's user again: the second one can go (README step 4).
        psql(primary_ip(), "DROP ROLE IF EXISTS %s" % SECOND_STATS_USER)
        run("--tags", "pgbouncer_userlist,pgbouncer_config")


# On the app node: log in as the user to each pooler in turn, a new connection every 100 ms,
# until the stop file exists (or 150 s); print the attempts and the failures as JSON.
LOGIN_LOOP = r"""
import json, os, sys, time
import psycopg
user, password, db, stop, *hosts = sys.argv[1:]
attempts, failures, first, deadline = 0, [], time.time(), time.time() + 150
while not os.path.exists(stop) and time.time() < deadline:
    host = hosts[attempts % len(hosts)]
    attempts += 1
    try:
        with psycopg.connect(host=host, port=6432, dbname=db, user=user, password=password, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        failures.append([round(time.time(), 2), host, str(exc).strip()[:200]])
    time.sleep(0.1)
print(json.dumps({"attempts": attempts, "failures": failures, "first": first, "last": time.time()}))
"""


def test_the_auth_query_user_rotates_without_a_failed_login():
    """README, "The auth_query user": ALTER ROLE on the primary, then `--tags
    pgbouncer_userlist` with the new password, under logins that need auth_query."""
    auth_query = {"pgbouncer_auth_query_enabled": True, "pgbouncer_userlist_exclude_users": [APP_USER]}
    stop, loop = "/tmp/test-secret-rotation.stop", None
    try:
        # auth_query on, app_user known only through it (auth_user is read at start: restarts).
        run("--tags", "pgbouncer_config,pgbouncer_userlist", "-e", json.dumps(dict(auth_query, pgbouncer_auth_user_password=AUTH_PASSWORD)))
        ssh(APP, "rm -f %s" % stop)
        loop = subprocess.Popen(["ssh", "-F", str(SSH_CONFIG), APP, "python3 - %s %s %s %s %s" % (
            APP_USER, APP_PASSWORD, APP_DB, stop, " ".join(NODES.values()))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        loop.stdin.write(LOGIN_LOOP)
        loop.stdin.close()
        time.sleep(3)  # logins before the change: each pooler has its auth_user server connection
        altered = time.time()
        psql(primary_ip(), "SET password_encryption = 'scram-sha-256'; ALTER ROLE %s PASSWORD '%s'" % (AUTH_USER, NEW_AUTH_PASSWORD))
        run("--tags", "pgbouncer_userlist", "-e", json.dumps(dict(auth_query, pgbouncer_auth_user_password=NEW_AUTH_PASSWORD)))
        # Every pooler logs in as the auth user anew, with what the auth_file now holds.
        for ip in NODES.values():
            ssh(ip, "runuser -u postgres -- psql -XAtq -h /var/run/postgresql -p 6432 -U pgbouncer pgbouncer -c RECONNECT")
        time.sleep(3)
        done = time.time()
        ssh(APP, "touch %s" % stop)
        out, err = loop.communicate(timeout=60)
        result = json.loads(out or "{}") if loop.returncode == 0 else {"error": err}
        assert result.get("failures") == [], result
        # The load covered the change: logins before the ALTER ROLE and after the RECONNECT.
        assert result["first"] < altered and result["last"] > done and result["attempts"] >= 50, result
    finally:
        ssh(APP, "touch %s" % stop, check=False)
        if loop is not None and loop.poll() is None:
            loop.communicate(timeout=60)
        psql(primary_ip(), "SET password_encryption = 'scram-sha-256'; ALTER ROLE %s PASSWORD '%s'" % (AUTH_USER, AUTH_PASSWORD))
        run("--tags", "pgbouncer_config,pgbouncer_userlist")
