"""High availability on the lab: clients connect to the keepalived VIP's HAProxy.

- playbooks/rolling_restart.yml restarts every node's PgBouncer, the primary's last, while
  pgbench runs through the VIP with a new connection per transaction: 50 readers on 5001 (the
  replicas' poolers) and 10 writers on 5000 (the primary's pooler; while it restarts, a
  replica's pooler pointed at the primary takes the writes). 0 failures on either port, every
  row pgbench acknowledged on the primary, and the VIP stays where it was (moving it would cut
  the sessions through its HAProxy).
- kill -9 of the VIP holder's PgBouncer: new connections through the VIP work within 5 s.
All waits are bounded; all traffic goes from the app node to lab addresses.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import (
    APP,
    APP_DB,
    APP_USER,
    NODES,
    RO_PORT,
    RW_PORT,
    SSH_CONFIG,
    VIP,
    ansible_playbook,
    cluster_roles,
    haproxy_stats,
    new_table,
    parse_pgbench,
    recap,
    rows,
    ssh,
    vip_holder,
)

# Version-dependent: the rolling restart uses SHUTDOWN WAIT_FOR_CLIENTS from PgBouncer 1.23, PAUSE before; HAProxy 2.6 vs 3.0 runtime API.
pytestmark = pytest.mark.version_dependent

HOLD_FILE = "/run/pgbouncer-cluster/keepalived-hold"  # the keepalived role's default
FRONT_PORT = RO_PORT
READERS, WRITERS = 50, 10
# pgbench -T: a 10 s baseline, the rolling restart (48-55 s on the Debian 12 and 13 Patroni
# labs with the leftovers check and the dead man's timers, the handover to a replica's pooler
# included, over 60 s on a busy CI machine; the playbook may take LOAD_SECONDS - 20 s at most)
# and a margin; it stops by itself. Too short a window fails the coverage assertion, never
# passes it.
LOAD_SECONDS = 110
TRANSACTION = "SELECT 1;\n"

# Runs on the app node: one new connection + query through the VIP every 0.2 s for `seconds`;
# prints [[time, ok, error], ...].
PROBE = r"""
import json, sys, time, psycopg
host, port, user, db, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
samples, end = [], time.time() + seconds
while time.time() < end:
    started = time.time()
    try:
        with psycopg.connect(host=host, port=port, user=user, dbname=db, connect_timeout=2,
                             prepare_threshold=None) as conn:
            conn.execute("SELECT 1").fetchone()
        samples.append([started, True, ""])
    except psycopg.Error as error:
        samples.append([started, False, str(error).strip()[:200]])
    time.sleep(max(0.0, 0.2 - (time.time() - started)))
print(json.dumps(samples))
"""


def pgbouncer_started(ip):
    """When systemd last started the node's PgBouncer unit(s)."""
    units = "systemctl list-units --plain --no-legend --type=service 'pgbouncer.service' 'pgbouncer@*.service'"
    return ssh(ip, "for unit in $(%s | cut -d' ' -f1); do systemctl show -p ActiveEnterTimestampMonotonic --value $unit; done"
               % units).stdout


def wait_healthy(seconds=60):
    """Until every node's PgBouncer runs and answers through the VIP again."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        active = all(ssh(ip, "systemctl is-active --quiet pgbouncer", check=False).returncode == 0 for ip in NODES.values())
        if active and ssh(APP, "psql -XAtq 'host=%s port=%d dbname=%s user=%s connect_timeout=3' -c 'select 1'"
                          % (VIP, FRONT_PORT, APP_DB, APP_USER), check=False).returncode == 0:
            return
        time.sleep(1)
    pytest.fail("the cluster did not get healthy again within %d s" % seconds)


def start_pgbench(port, clients, script_text, seconds):
    """pgbench on the app node through VIP:port, a new connection per transaction (-C: clients
    whose pool recycles connections, so a drained node sees them leave), --max-tries=1 (a
    failure is counted, not retried); stops by itself. (process, script path)."""
    script = ssh(APP, "mktemp /tmp/ha-load.XXXXXX.sql").stdout.strip()
    ssh(APP, "cat > %s" % script, input=script_text)
    command = ("timeout %d pgbench -n -C -h %s -p %d -U %s -c %d -j 2 -T %d -f %s -P 1 --progress-timestamp "
               "--max-tries=1 --failures-detailed %s" % (seconds + 60, VIP, port, APP_USER, clients, seconds, script, APP_DB))
    return subprocess.Popen(["ssh", "-F", str(SSH_CONFIG), APP, command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), script


def rw_sessions_served(name):
    """Sessions the read-write backend has sent to `name`'s pooler, over every HAProxy."""
    return sum(int(haproxy_stats(ip)[("pgbouncer", name)]["stot"]) for ip in NODES.values())


def test_rolling_restart_under_load_fails_no_transaction():
    """Cost on the lab: about 120 s (a LOAD_SECONDS = 110 s load window, which the test waits out
    whatever the rolling restart took, plus the checks after it)."""
    wait_healthy()
    holder = vip_holder()
    roles = cluster_roles()
    primary = roles["primary"]
    table = new_table(NODES[primary], "rolling_restart")
    sessions_before = {name: rw_sessions_served(name) for name in roles["replicas"]}
    started_before = {name: pgbouncer_started(ip) for name, ip in NODES.items()}
    loads = {"reads": start_pgbench(RO_PORT, READERS, TRANSACTION, LOAD_SECONDS),
             "writes": start_pgbench(RW_PORT, WRITERS, "INSERT INTO %s DEFAULT VALUES;\n" % table, LOAD_SECONDS)}
    outputs = {}
    try:
        time.sleep(10)  # load before the first node is drained
        begun = time.time()
        run = ansible_playbook("playbooks/rolling_restart.yml", timeout=LOAD_SECONDS - 20)
        finished = time.time()
        for kind, (process, _script) in loads.items():
            outputs[kind] = process.communicate(timeout=LOAD_SECONDS + 120)[0]
    finally:
        for process, script in list(loads.values()):
            if process.poll() is None:
                process.kill()
            ssh(APP, "rm -f %s" % script, check=False)

    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert all(stats["failed"] == 0 and stats["unreachable"] == 0 for stats in recap(run.stdout).values())
    started_after = {name: pgbouncer_started(ip) for name, ip in NODES.items()}
    assert all(started_after[name] != started_before[name] for name in NODES), "not every PgBouncer was restarted"
    # The primary's pooler last (the kernel's monotonic clock, the same in every container).
    order = sorted(NODES, key=lambda name: int(started_after[name].split()[0]))
    assert order[-1] == primary, "restart order %s: the primary %s was not last" % (order, primary)
    assert vip_holder() == holder, "the VIP moved during the rolling restart"
    held = [name for name, ip in NODES.items() if ssh(ip, "test -e %s" % HOLD_FILE, check=False).returncode == 0]
    assert held == [], "keepalived holds left behind on %s" % held
    # The handover is over: no redirect block left; HAProxy checks every pooler again and sends
    # writes to the primary's alone.
    for name, ip in NODES.items():
        assert "pgbouncer.cluster rolling restart" not in ssh(ip, "cat /etc/pgbouncer/pgbouncer*.ini").stdout, name
    for ip in NODES.values():
        servers = {name: row for (backend, name), row in haproxy_stats(ip).items() if backend == "pgbouncer" and name in NODES}
        assert {name: (row["status"], row["weight"]) for name, row in servers.items()} == {
            name: ("UP" if name == primary else "DOWN", "100") for name in NODES}, servers
        # HAProxy shows "* L7OK" while a check is running: the last result, marked.
        checks = {name: row["check_status"] for name, row in servers.items()}
        assert all(status.lstrip("* ").startswith("L7") for status in checks.values()), checks
    helpers = [name for name in roles["replicas"] if rw_sessions_served(name) > sessions_before[name]]

    results = {kind: parse_pgbench(output) for kind, output in outputs.items()}
    written = rows(NODES[primary], table)
    for kind, result in results.items():
        print("%s through VIP:%d: %d transactions, %d failed, %d clients aborted"
              % (kind, RW_PORT if kind == "writes" else RO_PORT, result["processed"], result["failed"], result["aborted"]))
    print("rolling restart took %.0f s; writes handed to %s's pooler; %d rows on the primary"
          % (finished - begun, helpers, written))
    for kind, result in results.items():
        output = outputs[kind]
        assert result["aborted"] == 0 and loads[kind][0].returncode == 0, kind + "\n" + "\n".join(result["errors"][:40]) + output[-2000:]
        assert result["failed"] == 0, kind + "\n" + "\n".join(result["errors"][:40]) + output[-2000:]
        progress = result["progress"]
        assert progress and progress[0][0] < begun and progress[-1][0] > finished, \
            "%s: pgbench did not cover the rolling restart (raise LOAD_SECONDS)" % kind
        during = sum(tps for ts, tps in progress if begun <= ts <= finished)
        assert during > 0, "%s: no transaction completed during the rolling restart" % kind
    # Every acknowledged write is on the primary, and some went through a replica's pooler.
    assert written == results["writes"]["processed"] > 0
    assert len(helpers) == 1, "no replica's pooler (or more than one) took writes: %s" % helpers


def test_kill_9_of_the_vip_holders_pgbouncer_new_connections_within_5s():
    wait_healthy()
    holder = vip_holder()
    probe = subprocess.Popen(
        ["ssh", "-F", str(SSH_CONFIG), APP, "python3 - %s %d %s %s 20" % (VIP, FRONT_PORT, APP_USER, APP_DB)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    probe.stdin.write(PROBE)
    probe.stdin.close()
    try:
        time.sleep(4)  # a baseline through the VIP first
        killed_at = time.time()
        ssh(NODES[holder], "systemctl kill -s KILL pgbouncer.service")
        samples = json.loads(probe.stdout.read())
        probe.wait(timeout=60)
    finally:
        if probe.poll() is None:
            probe.kill()
    before = [ok for ts, ok, _error in samples if ts < killed_at]
    after = [(ts - killed_at, ok, error) for ts, ok, error in samples if ts >= killed_at]
    assert before and all(before), "the VIP did not answer before the kill: %s" % samples[:10]
    first_ok = next((delay for delay, ok, _error in after if ok), None)
    assert first_ok is not None and first_ok <= 5, "no new connection through the VIP within 5 s: %s" % after[:30]
    late_failures = [(round(delay, 1), error) for delay, ok, error in after if not ok and delay > 5]
    assert late_failures == [], "connections through the VIP still failing after 5 s: %s" % late_failures
    print("after kill -9 on %s: first new connection after %.2f s; %d of %d probes in the first 5 s failed"
          % (holder, first_ok, sum(1 for _delay, ok, _error in after if not ok), len(after)))
    wait_healthy()  # systemd brings the killed PgBouncer back
