"""The lab's Patroni cluster behind the collection: one primary and two streaming replicas,
writes through VIP:5000 land on the primary, reads through VIP:5001 on the replicas (on
the primary when no replica's pooler is up), the health agent and Patroni's REST API run
side by side, and TLS clients verify the VIP against every pooler's certificate. Switchover
and failover: test_switchover.py.

Cost on the lab (Debian 12): about 60 s, most of it the 10 s write load and the waits for
HAProxy to mark poolers down and up again. Every wait is bounded; traffic goes from the
app node to lab addresses only.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from conftest import (
    APP,
    APP_DB,
    APP_PASSWORD,
    APP_USER,
    HEALTH_PORT,
    NODES,
    RO_PORT,
    RW_PORT,
    SSH_CONFIG,
    VIP,
    app_python,
    cluster_roles,
    parse_pgbench,
    psql,
    ssh,
    wait_until,
)

# Version-dependent: Patroni 3.0 with etcd 3.4 on Debian 12, 4.0 with etcd 3.5 on Debian 13.
pytestmark = pytest.mark.version_dependent

WRITERS, WRITE_SECONDS = 20, 10
UP_WITHIN = 20  # HAProxy: inter 1s, rise 2, fall 2; the agent's probe 2 s at most

# On the app node: `count` new connections through host:port, each asking where it landed.
WHERE = r"""
import json, sys
import psycopg
host, port, count, user, password, db, sslmode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:8]
result = []
for _ in range(count):
    try:
        with psycopg.connect(host=host, port=port, user=user, password=password, dbname=db, connect_timeout=5,
                             sslmode=sslmode, sslrootcert="/root/lab-ca.crt", prepare_threshold=None) as conn:
            result.append(conn.execute("SELECT host(inet_server_addr())").fetchone()[0])
    except Exception as exc:
        result.append("error: %s" % str(exc).strip().splitlines()[0])
print(json.dumps(result))
"""


def where(port, count=6, sslmode="disable", host=VIP):
    return app_python(WHERE, host, port, count, APP_USER, APP_PASSWORD, APP_DB, sslmode, timeout=120)


def test_patroni_keeps_one_primary_and_two_streaming_replicas_with_the_firewall_on():
    roles = cluster_roles()
    assert len(roles["replicas"]) == len(NODES) - 1
    assert all("Status: active" in ssh(ip, "ufw status").stdout for ip in NODES.values())
    rows = psql(NODES[roles["primary"]], "SELECT client_addr, state FROM pg_stat_replication ORDER BY 1")
    assert sorted(row[0] for row in rows if row[1] == "streaming") == sorted(NODES[name] for name in roles["replicas"]), rows
    # Lag 0 once the replicas caught up with what the primary wrote last (bounded wait).
    wait_until("replicas replay everything", lambda: psql(
        NODES[roles["primary"]], "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn = pg_current_wal_lsn()") == [[str(len(NODES) - 1)]],
        UP_WITHIN)


def test_health_agent_and_patroni_both_serve_and_tell_the_same_roles():
    roles = cluster_roles()
    for name, ip in NODES.items():
        listeners = ssh(ip, "ss -Hltnp 'sport = :8008' 'or' 'sport = :%d'" % HEALTH_PORT).stdout
        # ss shows the command name, which the kernel cuts to 15 characters.
        assert "patroni" in listeners and "pgbouncer-healt" in listeners, listeners
        for path in ("primary", "replica"):
            wanted = 200 if (path == "primary") == (name == roles["primary"]) else 503
            for port in (HEALTH_PORT, 8008):
                code = ssh(ip, "python3 -c \"import urllib.request, urllib.error\ntry:\n    print(urllib.request.urlopen("
                               "'http://%s:%d/%s', timeout=3).status)\nexcept urllib.error.HTTPError as e:\n    print(e.code)\"" % (ip, port, path)).stdout
                assert int(code) == wanted, (name, port, path, code)


def test_writes_through_5000_land_on_the_primary_and_none_fails():
    roles = cluster_roles()
    primary = NODES[roles["primary"]]
    table = "cluster_writes_%d" % int(time.time())
    psql(primary, "CREATE TABLE %s (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())" % table, db=APP_DB)
    psql(primary, "GRANT INSERT, SELECT ON %s TO %s; GRANT USAGE ON SEQUENCE %s_id_seq TO %s" % (table, APP_USER, table, APP_USER), db=APP_DB)
    script = ssh(APP, "mktemp /tmp/cluster-writes.XXXXXX.sql").stdout.strip()
    ssh(APP, "cat > %s" % script, input="INSERT INTO %s DEFAULT VALUES;\n" % table)
    command = ("timeout %d pgbench -n -h %s -p %d -U %s -c %d -j 2 -T %d -f %s --max-tries=1 --failures-detailed %s"
               % (WRITE_SECONDS + 60, VIP, RW_PORT, APP_USER, WRITERS, WRITE_SECONDS, script, APP_DB))
    try:
        run = subprocess.run(["ssh", "-F", str(SSH_CONFIG), APP, command], capture_output=True, text=True, timeout=WRITE_SECONDS + 120, check=False)
    finally:
        ssh(APP, "rm -f %s" % script, check=False)
    result = parse_pgbench(run.stdout + run.stderr)
    rows = int(psql(primary, "SELECT count(*) FROM %s" % table, db=APP_DB)[0][0])
    print("writes through VIP:%d: %d transactions, %d failed, %d rows on the primary %s"
          % (RW_PORT, result["processed"], result["failed"], rows, roles["primary"]))
    psql(primary, "DROP TABLE %s" % table, db=APP_DB)
    assert run.returncode == 0 and result["failed"] == 0 and result["aborted"] == 0, "\n".join(result["errors"][:20])
    assert result["processed"] > 0 and rows == result["processed"]


def test_reads_through_5001_go_to_the_replicas():
    replicas = {NODES[name] for name in cluster_roles()["replicas"]}
    reached = where(RO_PORT, 8)
    assert set(reached) == replicas, reached


@pytest.fixture
def replica_poolers_stopped():
    """Both replicas' PgBouncers stopped; started again afterwards (even on failure)."""
    replicas = cluster_roles()["replicas"]
    for name in replicas:
        ssh(NODES[name], "systemctl stop pgbouncer")
    yield replicas
    for name in replicas:
        ssh(NODES[name], "systemctl start pgbouncer")


def test_reads_go_to_the_primary_while_no_replica_pooler_is_up_and_back_after(replica_poolers_stopped):
    roles = cluster_roles()
    primary = NODES[roles["primary"]]

    # HAProxy marks both replica poolers down (fall 2), then sends reads to the primary's.
    def served_by_the_primary():
        got = where(RO_PORT, 4)
        return got if set(got) == {primary} else None

    reached = wait_until("reads served by the primary", served_by_the_primary, UP_WITHIN)
    assert reached == [primary] * 4
    for name in replica_poolers_stopped:
        ssh(NODES[name], "systemctl start pgbouncer")
    replicas = {NODES[name] for name in replica_poolers_stopped}
    wait_until("reads back on the replicas", lambda: set(where(RO_PORT, 6)) == replicas, UP_WITHIN)


@pytest.mark.parametrize("port", [RW_PORT, RO_PORT])
def test_tls_clients_verify_the_vip_against_every_pooler(port):
    roles = cluster_roles()
    wanted = {NODES[roles["primary"]]} if port == RW_PORT else {NODES[name] for name in roles["replicas"]}
    reached = where(port, 4, sslmode="verify-full")
    assert set(reached) <= wanted, reached  # an error (a name mismatch) is not an address
