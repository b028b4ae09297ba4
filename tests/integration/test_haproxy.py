"""HAProxy in front of the poolers on the lab's Patroni cluster: port 5000 on every pg-srv
node reaches only the pooler of the primary, port 5001 the poolers of the replicas; the
health agent proves PgBouncer answers and tells the roles; a stopped replica pooler is
marked DOWN within seconds while readers still get in; playbooks/drain.yml (the
haproxy_server module) drains a server and takes it back.

Every wait is bounded. A test that stops a pooler or drains a server puts it back in a
finalizer, also when it fails.
"""

from __future__ import annotations

import time

import pytest

from conftest import (
    APP_DB,
    APP_PASSWORD,
    APP_USER,
    HEALTH_PORT,
    NODES,
    RO_PORT,
    RW_PORT,
    ansible_playbook,
    app_python,
    cluster_roles,
    haproxy_stats,
    recap,
    ssh,
)

BACKENDS = {RW_PORT: "pgbouncer", RO_PORT: "pgbouncer_ro"}
SOCKET = "/run/haproxy/admin.sock"
DOWN_WITHIN = 6  # inter 1s, fall 2: DOWN after about 2-3 s
UP_WITHIN = 15

# On a client: open N connections through host:port at once, keep them open until all have
# answered, print the server address each one reached (or the error).
HOLD = r"""
import json, sys
import psycopg
host, port, count, user, password, db = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
conns, result = [], []
for _ in range(count):
    try:
        conn = psycopg.connect(host=host, port=port, user=user, password=password, dbname=db, connect_timeout=5,
                               prepare_threshold=None)
        conns.append(conn)
        result.append(conn.execute("select host(inet_server_addr())").fetchone()[0])
    except Exception as exc:
        result.append("error: %s" % str(exc).strip().splitlines()[0])
for conn in conns:
    conn.close()
print(json.dumps(result))
"""

# On a node: GET a URL with a bounded timeout; prints [status, body] or ["error", text].
HTTP_GET = r"""
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as answer:
        print(json.dumps([answer.status, answer.read().decode()]))
except urllib.error.HTTPError as exc:
    print(json.dumps([exc.code, exc.read().decode()]))
except Exception as exc:
    print(json.dumps(["error", str(exc)]))
"""


def hold(count, host=NODES["pg-srv1"], port=RO_PORT):
    return app_python(HOLD, host, port, count, APP_USER, APP_PASSWORD, APP_DB, timeout=60)


def server_status(haproxy_ip, server, backend="pgbouncer_ro"):
    """{status, weight, scur} of a backend's server on one HAProxy, from show stat."""
    row = haproxy_stats(haproxy_ip, SOCKET).get((backend, server))
    assert row is not None, "no server %s/%s in show stat of %s" % (backend, server, haproxy_ip)
    return {"status": row["status"], "weight": int(row["weight"] or 0), "scur": int(row["scur"] or 0)}


def wait_status(server, wanted, within, backend="pgbouncer_ro"):
    """Seconds until every HAProxy shows `server` with status `wanted`; fails after `within`."""
    started = time.monotonic()
    while True:
        seen = {ip: server_status(ip, server, backend)["status"] for ip in NODES.values()}
        if all(status == wanted for status in seen.values()):
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError("%s not %s on every HAProxy within %ss: %s" % (server, wanted, within, seen))
        time.sleep(0.5)


def test_every_server_is_up_in_the_backend_of_its_role_only():
    roles = cluster_roles()
    for ip in NODES.values():
        for name in NODES:
            read_write, read_only = server_status(ip, name, "pgbouncer"), server_status(ip, name, "pgbouncer_ro")
            assert (read_write["status"], read_only["status"]) == (("UP", "DOWN") if name == roles["primary"] else ("DOWN", "UP")), (ip, name)
            assert read_write["weight"] == read_only["weight"] == 100, (ip, name)


def test_health_agent_answers_ok_to_the_haproxy_hosts_only():
    for ip in NODES.values():
        assert app_python(HTTP_GET, "http://%s:%d/health" % (ip, HEALTH_PORT), ip=NODES["pg-srv1"], timeout=30) == [200, "OK\n"]
    # Not open to the app node: the firewall lets only the HAProxy hosts reach it.
    # A DROP, not any error: the 3 s connect timeout runs out (a refusal or a reset would mean
    # the packet got through to a closed or broken port).
    status, text = app_python(HTTP_GET, "http://%s:%d/health" % (NODES["pg-srv2"], HEALTH_PORT), timeout=30)
    assert status == "error" and "timed out" in text, (status, text)


def test_health_agent_runs_unprivileged_with_a_root_only_login():
    result = ssh(NODES["pg-srv1"], "systemctl show -p User,DynamicUser,ActiveState pgbouncer-health; "
                 "stat -c '%a %U' /etc/pgbouncer-cluster/pgbouncer-health.env")
    assert "DynamicUser=yes" in result.stdout and "ActiveState=active" in result.stdout
    assert "600 root" in result.stdout


def test_clients_through_5000_reach_the_primary_and_through_5001_the_replicas():
    roles = cluster_roles()
    for front in NODES.values():
        assert hold(4, host=front, port=RW_PORT) == [NODES[roles["primary"]]] * 4, front
        reached = hold(6, host=front, port=RO_PORT)
        assert not [item for item in reached if item.startswith("error")], reached
        assert set(reached) == {NODES[name] for name in roles["replicas"]}, (front, reached)


@pytest.fixture
def pooler_stopped():
    """A replica's PgBouncer stopped; started again afterwards, and UP again on every HAProxy."""
    replica = cluster_roles()["replicas"][-1]
    ssh(NODES[replica], "systemctl stop pgbouncer")
    yield replica
    ssh(NODES[replica], "systemctl start pgbouncer")
    wait_status(replica, "UP", UP_WITHIN)


def test_a_stopped_pooler_is_marked_down_within_seconds_and_clients_still_get_in(pooler_stopped):
    took = wait_status(pooler_stopped, "DOWN", DOWN_WITHIN)
    assert took <= DOWN_WITHIN
    reached = hold(9)
    assert not [item for item in reached if item.startswith("error")], reached
    other = [name for name in cluster_roles()["replicas"] if name != pooler_stopped]
    assert set(reached) == {NODES[name] for name in other}


def test_health_agent_says_why_when_pgbouncer_is_down_in_the_journal_only(pooler_stopped):
    # The agent serves a probe result for up to pgbouncer_health_cache_ms (100 ms): poll briefly.
    deadline = time.monotonic() + 5
    while True:
        status, body = app_python(HTTP_GET, "http://%s:%d/health" % (NODES[pooler_stopped], HEALTH_PORT), ip=NODES["pg-srv1"], timeout=30)
        if status != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (status, body) == (503, "FAIL\n"), body  # libpq's message stays off the network
    journal = ssh(NODES[pooler_stopped], "journalctl -u pgbouncer-health --no-pager -n 50").stdout
    assert "unhealthy: PgBouncer at %s:6432" % NODES[pooler_stopped] in journal, journal[-2000:]


def drain(node, state, *extra):
    run = ansible_playbook("playbooks/drain.yml", "-e", "node=%s" % node, "-e", "state=%s" % state, *extra, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return recap(run.stdout)


@pytest.fixture
def replica():
    """A replica to drain; taken back afterwards."""
    name = cluster_roles()["replicas"][0]
    yield name
    drain(name, "ready")


def test_drain_playbook_sends_no_new_sessions_to_the_node_and_takes_it_back(replica):
    def weights():
        return {(ip, backend): server_status(ip, replica, backend)["weight"] for ip in NODES.values() for backend in BACKENDS.values()}

    # Check mode says it would change, and changes nothing.
    assert all(stats["changed"] == 1 for stats in drain(replica, "drain", "--check").values())
    assert set(weights().values()) == {100}

    assert all(stats["changed"] == 1 for stats in drain(replica, "drain").values())
    assert set(weights().values()) == {0}
    reached = hold(6)
    assert not [item for item in reached if item.startswith("error")], reached
    assert NODES[replica] not in reached
    # Idempotent: already drained.
    assert all(stats["changed"] == 0 for stats in drain(replica, "drain").values())

    assert all(stats["changed"] == 1 for stats in drain(replica, "ready").values())
    assert all(server_status(ip, replica) == {"status": "UP", "weight": 100, "scur": 0} for ip in NODES.values())
    assert set(weights().values()) == {100}
    assert NODES[replica] in hold(6)


def test_drain_playbook_refuses_an_unknown_node():
    run = ansible_playbook("playbooks/drain.yml", "-e", "node=pg-srv9", "-e", "state=drain", timeout=300)  # not a server
    assert run.returncode != 0
    assert "set node (one of" in run.stdout


def test_app_node_reaches_both_ports_on_every_node():
    primary = NODES[cluster_roles()["primary"]]
    for ip in NODES.values():
        assert hold(1, host=ip, port=RW_PORT) == [primary]
        assert hold(1, host=ip, port=RO_PORT)[0] in set(NODES.values()) - {primary}
