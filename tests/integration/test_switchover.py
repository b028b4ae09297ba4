"""The moment users fear: the primary moves while clients write through VIP:5000.

- playbooks/switchover.yml across 20 pgbench clients (transaction pooling, connections kept,
  one INSERT per transaction, --max-tries=1): no transaction fails, no client is cut, and the
  new primary holds exactly the rows pgbench acknowledged. The longest stall is printed.
- patronictl switchover alone under the same load: HAProxy cuts the sessions of the demoted
  primary's pooler; the test counts what clients lose and checks nothing acknowledged is lost.
- Failover (Patroni stopped on the primary) under a writer that reconnects: writes flow again
  within FAILOVER_BOUND s, every acknowledged row is on the new primary, and once the old
  primary is back as a replica 100 writes through 5000 all land on the new primary.

Cost on the lab: about 180 s on Debian 12 (load windows 45, 75, 20 and 25 s, Patroni's restarts
and rejoins); about 170 s on Debian 13, which runs every test but the bare patronictl switchover.
Every wait is bounded; traffic goes from the app node and the controller to lab addresses.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from conftest import (
    APP,
    APP_DB,
    APP_USER,
    NODES,
    ROOT,
    RW_PORT,
    SSH_CONFIG,
    VIP,
    ansible_playbook,
    app_python,
    cluster_roles,
    haproxy_stats,
    new_table,
    parse_pgbench,
    psql,
    recap,
    rows,
    ssh,
    vip_holder,
    wait_until,
)

sys.path.insert(0, str(ROOT))
from bench import writes  # noqa: E402  (shared with the bench's switchover phase)

# Version-dependent: Patroni 3.0 / etcd 3.4 / PgBouncer 1.18 on Debian 12, 4.0 / 3.5 / 1.24 on Debian 13.
# Every test but the bare patronictl switchover (the negative control for the README's comparison,
# which shows what the collection avoids, not what it does: the default scenario only).
version_dependent = pytest.mark.version_dependent

WRITERS = 20
PATRONI = "patroni@*"  # Debian's patroni@VERSION-CLUSTER unit
PATRONICTL = "patronictl -c /etc/patroni/*-main.yml"
# From stopping Patroni on the primary to the first write on the new primary, at most: Patroni's
# ttl (20 s, playbooks/lab/templates/patroni.yml.j2: how long a leader key outlives a leader that
# could not release it; a clean stop releases it at once), HAProxy's rise (2 checks, 1 s apart),
# the health agent's cache (0.1 s) and 2 s for the writer's reconnects and promotion.
FAILOVER_BOUND = 20 + 2 + 0.1 + 2
# The longest stretch without a commit that switchover.yml may cause. The node-side step
# (pgbouncer_switchover) pauses for Patroni's own switchover, 1.6-1.7 s on the lab (its demotion
# waits a fixed second for the replicas), plus 0.2-0.4 s of its own: 1.86-2.28 s measured on an
# idle machine. The goal of 2 s is not met every time; the bound leaves 0.7 s for a busy
# test machine, and the test prints the value.
STALL_BOUND = 3.0


def start_pgbench(table, seconds):
    """pgbench on the app node: WRITERS clients writing through VIP:5000 for `seconds`."""
    prefix = "/tmp/switchover-%s" % table
    ssh(APP, "cat > %s.sql" % prefix, input=writes.PGBENCH_SCRIPT.format(table=table))
    command = writes.pgbench_command(prefix, VIP, RW_PORT, APP_USER, APP_DB, WRITERS, seconds)
    process = subprocess.Popen(["ssh", "-F", str(SSH_CONFIG), APP, command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, prefix


def finish_pgbench(load, seconds):
    """(bench.writes.pgbench_result of the run, pgbench's exit code)."""
    process, prefix = load
    output = process.communicate(timeout=seconds + 120)[0]
    log_text = ssh(APP, "cat %s.[0-9]*; rm -f %s.*" % (prefix, prefix), check=False).stdout
    result = writes.pgbench_result(output, log_text, parse_pgbench)
    assert result["summary"] or result["aborted"] > 0 or process.returncode != 0, output[-3000:]
    return result, process.returncode


def start_writer(table, seconds):
    """bench.writes.WRITER on the app node: one INSERT every 20 ms through VIP:5000 for `seconds`,
    reconnecting after an error (`timeout` stops it 75 s late at most)."""
    writer = subprocess.Popen(["ssh", "-F", str(SSH_CONFIG), APP, "timeout %d python3 - %s %d %s %s %s %d 0 0.02"
                               % (seconds + 75, VIP, RW_PORT, APP_USER, APP_DB, table, seconds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer.stdin.write(writes.WRITER)
    writer.stdin.close()
    return writer


def writer_samples(writer, timeout):
    """What start_writer's writer saw, once it has finished: [[started, finished, ok, id or error, server], ...]."""
    written = writer.stdout.read()
    writer.wait(timeout=timeout)
    assert written.strip(), "the writer printed nothing (exit %s): %s" % (writer.returncode, writer.stderr.read()[-2000:])
    return json.loads(written)


def rw_status(haproxy_ip):
    """{server: (status, weight)} of the read-write backend on one HAProxy."""
    return {name: (row["status"], row["weight"]) for (backend, name), row in haproxy_stats(haproxy_ip).items()
            if backend == "pgbouncer" and name in NODES}


def roles_once_all_answer(within=90):
    """cluster_roles() once every node's PostgreSQL accepts connections (a demoted primary
    restarts as a replica)."""
    wait_until("every PostgreSQL answers", lambda: all(
        ssh(ip, "pg_isready -q", check=False).returncode == 0 for ip in NODES.values()), within)
    return cluster_roles()


def settled(primary):
    """The old primaries stream from `primary` and every HAProxy sends writes to its pooler only."""
    def check():
        streaming = psql(NODES[primary], "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
        wanted = {name: ("UP" if name == primary else "DOWN", "100") for name in NODES}
        return streaming == [[str(len(NODES) - 1)]] and all(rw_status(ip) == wanted for ip in NODES.values())
    wait_until("%s primary, two replicas streaming, HAProxy on it" % primary, check, within=90)


def vip_on(name, within=30):
    """Move the VIP to `name`: keepalived stopped elsewhere until it holds it, then started
    again (the lab's keepalived does not preempt, so the VIP stays)."""
    others = [other for other in NODES if other != name]
    try:
        for other in others:
            ssh(NODES[other], "systemctl stop keepalived")
        wait_until("VIP on %s" % name, lambda: vip_holder() == name, within)
    finally:
        for other in others:
            ssh(NODES[other], "systemctl start keepalived")
    time.sleep(2)  # the others are back as backups
    assert vip_holder() == name


@version_dependent
def test_the_switchover_playbook_fails_no_transaction_under_write_load():
    """The VIP sits on the old primary's node, the hardest case: its PostgreSQL restarts, and
    keepalived's check (a login through that PgBouncer) would move the VIP without the hold."""
    before = roles_once_all_answer()
    settled(before["primary"])
    vip_on(before["primary"])
    table = new_table(NODES[before["primary"]], "switchover_playbook")
    # The playbook's node-side step starts about 20-25 s after the playbook (the leftovers check
    # and the preflight come first); the handover then waits for pgbench's clients to leave.
    # The writer must see both primaries (asserted): the load spans the switchover.
    seconds = 45
    load = start_pgbench(table, seconds)
    # One more kept connection, one INSERT every 20 ms: when each commit came back.
    writer = start_writer(table, seconds)
    time.sleep(5)  # pgbench has its 20 connections, through the old primary's pooler
    started = time.monotonic()
    run = ansible_playbook("playbooks/switchover.yml", "-e", "switchover_databases=%s" % APP_DB, timeout=600)
    took = time.monotonic() - started
    result, returncode = finish_pgbench(load, seconds)
    samples = writer_samples(writer, seconds + 90)
    stall = writes.longest_stall(samples)
    after = cluster_roles()
    written = rows(NODES[after["primary"]], table)
    waited = re.search(r"clients waited ([0-9.]+) s", run.stdout)
    print("switchover.yml %s -> %s in %.0f s under %d writers: %d transactions, %d failed, %d clients cut, "
          "%d rows on the new primary, longest stretch without a commit %.2f s (the node-side step paused %s s)"
          % (before["primary"], after["primary"], took, WRITERS, result["processed"], result["failed"], result["aborted"], written,
             stall, waited.group(1) if waited else "?"))
    assert run.returncode == 0, run.stdout[-4000:]
    assert all(ok for _started, _finished, ok, _id, _server in samples), [s for s in samples if not s[2]][:5]
    servers = {server for _started, _finished, _ok, _id, server in samples}
    assert servers == {NODES[before["primary"]], NODES[after["primary"]]}, "the load did not span the switchover: %s" % servers
    assert stall <= STALL_BOUND, "the writer waited %.2f s for a commit" % stall
    assert after["primary"] != before["primary"]
    assert returncode == 0 and result["failed"] == 0 and result["aborted"] == 0, "\n".join(result["errors"][:20])
    assert result["processed"] > 0 and written == result["processed"] + len(samples)
    # Everything back to normal: no handover block left, HAProxy checks and weighs every pooler.
    for ip in NODES.values():
        assert "pgbouncer.cluster switchover" not in ssh(ip, "cat /etc/pgbouncer/pgbouncer*.ini").stdout
    settled(after["primary"])
    assert all(stats[(backend, name)]["check_status"] != "" for ip in NODES.values() for stats in [haproxy_stats(ip)]
               for (backend, name) in stats if name in NODES)
    assert recap(run.stdout)[before["primary"]]["failed"] == 0
    assert vip_holder() == before["primary"], "the VIP moved during the switchover"


@version_dependent
def test_clients_that_outstay_the_handover_never_reach_the_demoted_node():
    """Sessions that outlive switchover_handover_timeout (10 s) three times over: pgbench keeps its
    connections for 75 s, about 45 s past the handover's start. The hand-back pauses the old
    pooler, lets HAProxy mark it DOWN and cut what is left, and only then removes the redirect.
    No transaction fails (a read-only error would count as failed); the sessions cut between
    transactions are counted. About 85 s."""
    before = roles_once_all_answer()
    settled(before["primary"])
    table = new_table(NODES[before["primary"]], "switchover_long")
    seconds = 75
    load = start_pgbench(table, seconds)
    time.sleep(5)
    run = ansible_playbook("playbooks/switchover.yml", "-e", "switchover_databases=%s" % APP_DB,
                           "-e", "switchover_handover_timeout=10", timeout=600)
    result, _returncode = finish_pgbench(load, seconds)
    after = cluster_roles()
    written = rows(NODES[after["primary"]], table)
    # The load covered the hand-back: its clients were cut there, or it outlasted the run.
    assert result["aborted"] > 0 or result["summary"], "\n".join(result["errors"][:20])
    print("switchover.yml with a 10 s handover under %d writers kept %d s: %d transactions, %d failed, %d sessions cut "
          "between transactions, %d rows on the new primary, longest transaction %.0f ms"
          % (WRITERS, seconds, result["processed"], result["failed"], result["aborted"], written, result["longest_ms"]))
    report = re.search(r'"msg": "([^"]* is the primary;[^"]*)"', run.stdout)
    print("switchover.yml reported: %s" % (report.group(1) if report else run.stdout[-2000:]))
    assert run.returncode == 0, run.stdout[-4000:]
    assert "read-only" not in "\n".join(result["errors"]), result["errors"][:10]
    assert result["failed"] == 0, "\n".join(result["errors"][:20])
    # Nothing acknowledged is lost; a commit cut before its answer may be there too.
    assert result["processed"] > 0 and result["processed"] <= written <= result["processed"] + result["aborted"]
    settled(after["primary"])


@version_dependent
def test_check_mode_says_what_it_would_do_and_changes_nothing():
    before = cluster_roles()
    run = ansible_playbook("playbooks/switchover.yml", "-e", "switchover_databases=%s" % APP_DB, "--check")
    assert run.returncode == 0, run.stdout[-3000:]
    assert re.search(r"Would pause %s on .* switch over from %s to one of" % (APP_DB, before["primary"]), run.stdout), run.stdout[-3000:]
    assert all(host["changed"] == 0 for host in recap(run.stdout).values())
    assert cluster_roles() == before


@version_dependent
def test_an_unfit_candidate_is_refused_before_anything_changes():
    before = cluster_roles()
    run = ansible_playbook("playbooks/switchover.yml", "-e", "switchover_databases=%s" % APP_DB, "-e", "switchover_candidate=%s" % before["primary"])
    assert run.returncode != 0
    refused = r"candidate %s is not\s+fit to take over from %s: a candidate must be a replica" % (before["primary"], before["primary"])
    assert re.search(refused, run.stdout), run.stdout[-3000:]
    assert all(host["changed"] == 0 for host in recap(run.stdout).values())
    assert cluster_roles() == before


def test_a_switchover_without_the_playbook_cuts_the_old_primarys_clients():
    """The comparison for the README: the same load across patronictl switchover alone. Not
    version_dependent: a negative control (the load and its parsing see cut clients; pgbench 17's
    wording of a cut client is tests/unit/bench/test_bench_writes.py's), run on Debian 12 only.
    About 15 s on Debian 12 (a 20 s load, Patroni's switchover, the demoted primary's rejoin)."""
    before = roles_once_all_answer()
    settled(before["primary"])  # else Patroni may find no healthy candidate and refuse
    table = new_table(NODES[before["primary"]], "switchover_bare")
    seconds = 20
    load = start_pgbench(table, seconds)
    time.sleep(6)
    switched = ssh(NODES[before["primary"]], "%s switchover --force --candidate %s" % (PATRONICTL, before["replicas"][0]))
    assert "Successfully switched over" in switched.stdout, switched.stdout + switched.stderr
    result = finish_pgbench(load, seconds)[0]
    longest_ms = result["longest_ms"]
    after = roles_once_all_answer()
    settled(after["primary"])
    written = rows(NODES[after["primary"]], table)
    print("patronictl switchover %s -> %s under %d writers: %d clients cut (%s), %d transactions %s, %d failed, "
          "%d rows on the new primary, longest transaction %.0f ms"
          % (before["primary"], after["primary"], WRITERS, result["aborted"],
             "pgbench ran to the end" if result["summary"] else "then pgbench gave up", result["processed"],
             "acknowledged" if result["summary"] else "logged as acknowledged", result["failed"], written, longest_ms))
    assert after["primary"] != before["primary"]
    assert result["failed"] + result["aborted"] > 0, "a bare switchover is expected to cost clients their sessions"
    # Nothing acknowledged is lost; a transaction whose commit was cut before its answer may be there too.
    assert result["processed"] <= written
    if result["summary"]:
        assert written <= result["processed"] + WRITERS


@version_dependent
def test_failover_writes_flow_again_within_the_bound_and_nothing_acknowledged_is_lost():
    before = roles_once_all_answer()
    old = before["primary"]
    settled(old)
    vip_on(old)  # the hardest case: the VIP's node loses its PostgreSQL, the VIP moves too
    table = new_table(NODES[old], "failover")
    writer = start_writer(table, 25)
    unit = ssh(NODES[old], "systemctl list-units --plain --no-legend '%s' | cut -d' ' -f1" % PATRONI).stdout.strip()
    assert unit.startswith("patroni@"), unit
    time.sleep(5)
    stopped_at = time.time()
    ssh(NODES[old], "systemctl stop %s" % unit)
    try:
        samples = writer_samples(writer, timeout=30)
        new = cluster_roles_without(old)
        new_ip = NODES[new]
        seen = writes.write_gap(samples, stopped_at, new_ip)
        print("failover %s -> %s: first write on the new primary %s s after Patroni stopped (bound %.1f s); %d writes "
              "acknowledged, %d failed attempts: %s"
              % (old, new, seen["gap_s"], FAILOVER_BOUND, len(seen["acknowledged"]), seen["failed_attempts"], seen["errors"][:5]))
        assert seen["gap_s"] is not None and seen["gap_s"] < FAILOVER_BOUND
        found = psql(new_ip, "SELECT count(*) FROM %s WHERE id = ANY('{%s}'::bigint[])" % (table, ",".join(map(str, seen["acknowledged"]))), db=APP_DB)
        assert int(found[0][0]) == len(seen["acknowledged"]), "acknowledged writes missing on the new primary"
    finally:
        ssh(NODES[old], "systemctl start %s" % unit, check=False)
    settled(new)
    # The old primary is a replica again: 100 writes through 5000 all land on the new primary.
    landed = app_python(writes.WRITER, VIP, RW_PORT, APP_USER, APP_DB, table, 60, 100, 0, timeout=120)
    assert [server for _started, _finished, ok, _id, server in landed] == [new_ip] * 100, landed[:5]


def cluster_roles_without(old, within=FAILOVER_BOUND + 10):
    """The node that became primary while `old` is down (cluster_roles() wants all three up)."""
    def promoted():
        for name, ip in NODES.items():
            if name != old and ssh(ip, "runuser -u postgres -- psql -XAtqc 'SELECT pg_is_in_recovery()'", check=False).stdout.strip() == "f":
                return name
        return None
    return wait_until("a replica promoted", promoted, within)
