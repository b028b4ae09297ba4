"""Changes on the lab's Patroni cluster that site.yml must carry to every node: a password
changed on the primary reaches every auth_file in one run (the second one only the
pgbouncer_userlist tag), and HAProxy can check Patroni's REST API instead of the health agent.

Cost on the lab (Debian 12): about 1 minute, one full site.yml run, two `--tags
pgbouncer_userlist` runs and two `--tags haproxy` runs (seconds each). Every wait is bounded.
"""

from __future__ import annotations

import json
import time

import pytest

from conftest import NODES, RO_PORT, RW_PORT, VIP, ansible_playbook, app_python, cluster_roles, haproxy_stats, psql, recap, ssh

ROTATED_USER = "rotated_user"

LOGIN = r"""
import json, sys
import psycopg
host, user, password, db = sys.argv[1:5]
result = {}
for port in sys.argv[5:]:
    try:
        with psycopg.connect(host=host, port=int(port), user=user, password=password, dbname=db, connect_timeout=5) as conn:
            result[port] = conn.execute("SELECT 'ok'").fetchone()[0]
    except Exception as exc:
        result[port] = "error: %s" % str(exc).strip().splitlines()[0]
print(json.dumps(result))
"""


def converge(*extra):
    result = ansible_playbook("playbooks/site.yml", *extra)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def set_password(password):
    """On the primary only: Patroni's replicas get it by replication."""
    primary = NODES[cluster_roles()["primary"]]
    psql(primary, "SET password_encryption = 'scram-sha-256';\n"
                  "SELECT format('CREATE ROLE %%I LOGIN', '%s') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') \\gexec\n"
                  "ALTER ROLE %s PASSWORD '%s'" % (ROTATED_USER, ROTATED_USER, ROTATED_USER, password))


def logins(password):
    return app_python(LOGIN, VIP, ROTATED_USER, password, "appdb", RW_PORT, RO_PORT)


def test_a_password_changed_on_the_primary_reaches_every_auth_file_in_one_run():
    set_password("first-pass-1")
    full = recap(converge())
    assert logins("first-pass-1") == {str(RW_PORT): "ok", str(RO_PORT): "ok"}

    # What README.md's "Tags" section tells a user who only rotated a password to run: the
    # auth_file (and its reload) on every node, without the rest of site.yml.
    set_password("second-pass-2")
    tagged = recap(converge("--tags", "pgbouncer_userlist"))
    for name in NODES:
        assert tagged[name]["changed"] >= 1 and tagged[name]["ok"] < 25 and tagged[name]["ok"] * 2 < full[name]["ok"], (tagged, full)
    for ip in NODES.values():
        line = [entry for entry in ssh(ip, "cat /etc/pgbouncer/userlist.txt").stdout.splitlines() if entry.startswith('"%s"' % ROTATED_USER)]
        primary_secret = psql(NODES[cluster_roles()["primary"]], "SELECT passwd FROM pg_shadow WHERE usename = '%s'" % ROTATED_USER)[0][0]
        assert line == ['"%s" "%s"' % (ROTATED_USER, primary_secret)], ip
    assert logins("second-pass-2") == {str(RW_PORT): "ok", str(RO_PORT): "ok"}
    assert all(outcome.startswith("error") for outcome in logins("first-pass-1").values())


def test_md5_users_are_named_on_every_run_they_cannot_log_in():
    """Issue 23, item 13: the lab's report_user is stored as md5 and cannot log in through
    PgBouncer with auth_type scram-sha-256; a run that changes nothing still names it, with
    the fix, and names no SCRAM user. Cost: one `--tags pgbouncer_userlist` run on one node,
    about 10 s."""
    result = ansible_playbook("playbooks/site.yml", "--tags", "pgbouncer_userlist", "--limit", "pg-srv3")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    output = " ".join((result.stdout + result.stderr).split())
    assert "cannot log in through PgBouncer with auth_type scram-sha-256: " in output, output[-4000:]
    named = output.split("cannot log in through PgBouncer with auth_type scram-sha-256: ", 1)[1].split(". ", 1)[0].split(", ")
    assert "report_user" in named and "app_user" not in named, named
    assert "password_encryption = scram-sha-256" in output and "pgbouncer_auth_type: md5" in output


@pytest.fixture
def patroni_checks():
    """HAProxy checking Patroni's REST API; the agent's checks back afterwards. Only HAProxy
    reads haproxy_check_source: `--tags haproxy` runs that role alone, as a user would."""
    yield converge("--tags", "haproxy", "-e", json.dumps({"haproxy_check_source": "patroni"}))
    converge("--tags", "haproxy")


def test_haproxy_can_check_patronis_rest_api_instead(patroni_checks):
    config = ssh(NODES["pg-srv1"], "cat /etc/haproxy/haproxy.cfg").stdout
    assert config.count("check port 8008") == 2, config
    roles = cluster_roles()
    deadline = time.monotonic() + 20
    while True:
        stats = {ip: haproxy_stats(ip) for ip in NODES.values()}
        wanted = {name: ("UP", "DOWN") if name == roles["primary"] else ("DOWN", "UP") for name in NODES}
        seen = {(ip, name): (stat[("pgbouncer", name)]["status"], stat[("pgbouncer_ro", name)]["status"])
                for ip, stat in stats.items() for name in NODES}
        # After the reload the states carried over from the agent's checks can match before
        # Patroni's REST API answered any check: wait for its answers (L7) on every server.
        checked = all(stat[(backend, name)]["check_status"].lstrip("* ").startswith("L7")
                      for stat in stats.values() for name in NODES for backend in ("pgbouncer", "pgbouncer_ro"))
        if checked and all(seen[(ip, name)] == wanted[name] for ip, name in seen):
            break
        assert time.monotonic() < deadline, seen
        time.sleep(0.5)
    assert all(stat[("pgbouncer", name)]["check_status"].lstrip("* ").startswith("L7") for stat in stats.values() for name in NODES)
