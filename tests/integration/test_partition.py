"""A partition of the primary under write load (issue 25): the primary's node is cut off from
the other two members while clients write through VIP:5000, then reconnected.

- WRITERS kept connections (bench.writes.WRITER, the switchover test's writer: one INSERT per
  transaction, the id recorded on acknowledgement, reconnecting after an error) write through
  VIP:5000 for WRITE_SECONDS; the VIP is put on the primary's node first, the case the issue
  measured, where keepalived has to move it too.
- CUT_AFTER s in, iptables on the primary's node drops every packet to and from the other two
  members' addresses, both ways: a chain of its own (CHAIN) at position 1 of INPUT and OUTPUT,
  ahead of ufw's chains and their ESTABLISHED accept. The app node still reaches every node
  and the VIP. Before the cut a transient systemd timer on that node is armed to remove the
  chain after UNDO_AFTER s, so the partition ends even if the test process dies; the test
  removes it itself after PARTITION_SECONDS, and the partition fixture removes it from every
  node whatever happened.

Asserted: another member is promoted within PROMOTION_BOUND s of the cut; every acknowledged
write missing on the new primary (asynchronous replication: counted and printed, not required
to be 0) was acknowledged by the old primary after the cut (or IN_FLIGHT s before it, WAL not
yet sent), so their number is at most those writes; the writers commit on the new primary
after the partition; within REJOIN_BOUND s of its end the old primary is a replica again
(`pg_is_in_recovery()` on it, `streaming` in the new leader's pg_stat_replication), with no
manual step; then 20 fresh writes through 5000 all land on the new primary.
Printed: who was promoted and when, the first write on the new primary, how long the isolated
primary kept acknowledging writes, where the VIP was over time, the longest stretch without a
commit, the missing count, and how long the rejoin took.

Version-dependent: Patroni 3.0.2 with PostgreSQL 15 (Debian 12) and 4.0.7 with 17 (Debian 13)
demote an isolated leader and rewind it differently.

Cost on the lab: about 130 s (the VIP moved to the primary's node and the cluster settled,
about 10 s; a WRITE_SECONDS = 100 s load window, which covers the cut at 15 s, the 40 s
partition and normally the rejoin; then the row check, 20 fresh writes and the teardown's
checks, about 15 s). A rejoin that fails costs up to REJOIN_BOUND more and the teardown's
reinit. Every wait is bounded, every command has a timeout; the test's traffic goes from the
app node and the controller to lab addresses.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import warnings

import pytest
from test_switchover import cluster_roles_without, roles_once_all_answer, settled, vip_on

from conftest import (
    APP,
    APP_DB,
    APP_USER,
    NODES,
    ROOT,
    RW_PORT,
    SSH_CONFIG,
    VIP,
    app_python,
    new_table,
    psql,
    ssh,
    vip_holder,
    wait_until,
)

sys.path.insert(0, str(ROOT))
from bench import writes  # noqa: E402  (the switchover test's writer and measures)

pytestmark = pytest.mark.version_dependent

WRITERS = 20
EVERY = 0.02  # each writer: one INSERT every 20 ms at most, about 1000 a second in all
WRITE_SECONDS = 100
CUT_AFTER = 15
PARTITION_SECONDS = 40
# The node's own undo: the transient timer removes the chain this long after it was armed
# (just before the cut), if nothing removed it before.
UNDO_AFTER = 60
# From the cut to a replica that answers as primary, at most: the leader key's ttl (20 s,
# playbooks/lab/templates/patroni.yml.j2; the old leader last refreshed it up to a loop before
# the cut), loop_wait (2 s) before a replica's next look, and 8 s for the candidates' checks of
# the other members (the cut-off one answers only by timing out), the promotion and this test's
# 1 s looks. The partition lasts 10 s longer.
PROMOTION_BOUND = 20 + 2 + 8
# From the end of the partition to the old primary streaming from the new leader, at most:
# the ttl (20 s) and loop_wait (2 s) again, as the old member's Patroni may act on a view of
# the cluster that old when etcd answers it again, retry_timeout (3 s) for a request that was
# hanging, then the local timeline check, pg_rewind from the new leader and the start as a
# replica (seconds on the lab's small cluster); the rest, to 90 s, is margin for a busy machine.
REJOIN_BOUND = 90
# A commit acknowledged up to this long before the cut may not have been sent to the replicas
# yet (asynchronous replication; the lab's replicas are milliseconds behind under this load).
IN_FLIGHT = 1.0
# The teardown: how long it waits for one leader and two streaming replicas, before and after
# a reinit of a member that did not rejoin; the reinit's own bound.
HEALTHY_WITHIN, REINIT_TIMEOUT, AFTER_REINIT = 60, 240, 120

CHAIN = "pgb-test-partition"  # iptables chain names: 28 characters at most
TIMER = "pgb-test-partition-undo"  # a transient unit: .timer and .service
UNDO = (f"while iptables -w 5 -D INPUT -j {CHAIN} 2>/dev/null; do :; done; "
        f"while iptables -w 5 -D OUTPUT -j {CHAIN} 2>/dev/null; do :; done; "
        f"iptables -w 5 -F {CHAIN} 2>/dev/null; iptables -w 5 -X {CHAIN} 2>/dev/null; true")
DISARM = f"systemctl stop {TIMER}.timer 2>/dev/null; systemctl reset-failed {TIMER}.timer {TIMER}.service 2>/dev/null; true"
# Exit 0 when neither the chain nor a jump to it is left (iptables itself must answer).
GONE = "iptables -w 5 -S INPUT > /dev/null && ! iptables -w 5 -S %s > /dev/null 2>&1 && ! iptables -w 5 -S | grep -qF -- %s" % (CHAIN, CHAIN)
# One look at a node: "vip" when it holds the VIP, then "t|f|addr=state,...": whether its
# PostgreSQL is in recovery and who streams from it (psql as postgres over the socket).
LOOK = ("ip -o -4 addr show | grep -qF ' %s/' && echo vip; "
        "timeout 3 runuser -u postgres -- psql -XAtq -F '|' -c \"SELECT pg_is_in_recovery(), "
        "(SELECT string_agg(host(client_addr) || '=' || state, ',') FROM pg_stat_replication)\" 2>/dev/null; true" % VIP)


def cut(name):
    """Arm the node's undo timer, then drop everything between `name` and the other members."""
    peers = [ip for other, ip in NODES.items() if other != name]
    rules = " && ".join("iptables -w 5 -A %s -s %s -j DROP && iptables -w 5 -A %s -d %s -j DROP" % (CHAIN, ip, CHAIN, ip) for ip in peers)
    arm = ("systemd-run --quiet --unit=%s --description='partition test: remove iptables chain %s' --on-active=%ds "
           "--timer-property=AccuracySec=100ms --property=Type=oneshot -- /bin/sh -c %s" % (TIMER, CHAIN, UNDO_AFTER, shlex.quote(UNDO)))
    ssh(NODES[name], "%s; %s; %s && iptables -w 5 -N %s && %s && iptables -w 5 -I INPUT 1 -j %s && iptables -w 5 -I OUTPUT 1 -j %s"
        % (DISARM, UNDO, arm, CHAIN, rules, CHAIN, CHAIN), timeout=30)


def heal(ip):
    """Remove the chain and the undo timer from a node; whether nothing is left (never raises)."""
    try:
        return ssh(ip, "%s; %s; %s" % (UNDO, DISARM, GONE), timeout=30, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def reachable(source, target, port):
    """Whether `source` opens a TCP connection to target:port within 2 s."""
    return ssh(source, "timeout 2 bash -c 'exec 3<>/dev/tcp/%s/%d'" % (target, port), timeout=30, check=False).returncode == 0


def look():
    """{name: {"vip": bool, "recovery": "t", "f" or None, "streaming": {address: state}}} now."""
    seen = {}
    for name, ip in NODES.items():
        try:
            lines = ssh(ip, LOOK, timeout=10, check=False).stdout.splitlines()
        except subprocess.TimeoutExpired:
            lines = []
        fields = next((line.split("|") for line in lines if "|" in line), [None, ""])
        seen[name] = {"vip": "vip" in lines, "recovery": fields[0],
                      "streaming": dict(pair.split("=", 1) for pair in fields[1].split(",") if "=" in pair)}
    return seen


def holders(seen):
    return sorted(name for name, state in seen.items() if state["vip"])


def primaries(seen):
    return sorted(name for name, state in seen.items() if state["recovery"] == "f")


def rejoined(seen, old, new):
    """The old primary is in recovery and streams from the new leader."""
    return seen[old]["recovery"] == "t" and seen[new]["streaming"].get(NODES[old]) == "streaming"


def healthy(seen):
    """One leader, every other member streaming from it, one VIP holder: (bool, what is wrong)."""
    leaders = primaries(seen)
    if len(leaders) != 1:
        return False, "primaries %s" % leaders
    lagging = [name for name in NODES if name != leaders[0]
               and (seen[name]["recovery"] != "t" or seen[leaders[0]]["streaming"].get(NODES[name]) != "streaming")]
    if lagging:
        return False, "not streaming from %s: %s" % (leaders[0], lagging)
    if len(holders(seen)) != 1:
        return False, "VIP held by %s" % holders(seen)
    return True, ""


def watch(timeline, until, stop=None):
    """Look at the cluster about once a second until `until` (time.time()) or until stop(look)
    is true; every look goes into `timeline` as (time, look). The look that stopped it, or None."""
    while time.time() < until:
        started = time.time()
        seen = look()
        timeline.append((started, seen))
        if stop is not None and stop(seen):
            return started
        time.sleep(max(0.0, min(1.0 - (time.time() - started), until - time.time())))
    return None


def changes(timeline, origin, what):
    """[(seconds after origin, what(look))] at each change of what(look)."""
    found, last = [], object()
    for at, seen in timeline:
        value = what(seen)
        if value != last:
            found.append((round(at - origin, 1), value))
            last = value
    return found


def start_writers(table, seconds):
    """WRITERS copies of bench.writes.WRITER on the app node, one kept connection each through
    VIP:5000, from one ssh session (sshd allows 10 sessions on a shared connection); `timeout`
    stops each 75 s late at most. The Popen and the files' prefix on the app node."""
    prefix = "/tmp/partition-%s" % table
    ssh(APP, "cat > %s.py" % prefix, input=writes.WRITER)
    one = "timeout %d python3 %s.py %s %d %s %s %s %d 0 %s" % (seconds + 75, prefix, VIP, RW_PORT, APP_USER, APP_DB, table, seconds, EVERY)
    command = ("for i in $(seq %d); do %s > %s.$i.json 2> %s.$i.err & echo $! >> %s.pids; done; wait; "
               "for i in $(seq %d); do if [ -s %s.$i.json ]; then cat %s.$i.json; else echo \"writer $i printed nothing: $(tail -c 300 %s.$i.err)\"; fi; done; "
               "rm -f %s.*" % (WRITERS, one, prefix, prefix, prefix, WRITERS, prefix, prefix, prefix, prefix))
    process = subprocess.Popen(["ssh", "-F", str(SSH_CONFIG), APP, command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, prefix


def finish_writers(writers, seconds):
    """Every writer's samples, merged: [[started, finished, ok, id or error, server], ...]."""
    process, _prefix = writers
    output, errors = process.communicate(timeout=seconds + 120)
    lines = output.splitlines()
    failed = [line for line in lines if not line.startswith("[")]
    assert len(lines) == WRITERS and not failed, "writers: %s %s" % (failed[:5], errors[-2000:])
    return [sample for line in lines for sample in json.loads(line)]


def stop_writers(writers):
    """Writers still running (the test failed first): their `timeout` processes, by the pids
    their shell recorded (each passes the TERM on to its writer), and the local ssh."""
    process, prefix = writers
    if process.poll() is None:
        ssh(APP, "kill $(cat %s.pids) 2>/dev/null; sleep 1; rm -f %s.*" % (prefix, prefix), check=False, timeout=30)
        process.kill()
        process.communicate(timeout=30)


def reinit(name):
    """patronictl reinit of one member (its data directory cloned again from the leader), bounded."""
    command = ("f=$(ls /etc/patroni/*-main.yml) && timeout %d patronictl -c \"$f\" reinit \"$(basename \"$f\" .yml)\" %s --force --wait"
               % (REINIT_TIMEOUT, name))
    try:
        result = ssh(NODES[name], command, timeout=REINIT_TIMEOUT + 30, check=False)
        return "exit %d: %s%s" % (result.returncode, result.stdout[-1500:], result.stderr[-1000:])
    except subprocess.TimeoutExpired:
        return "no answer within %d s" % (REINIT_TIMEOUT + 30)


def wait_healthy(within):
    """(healthy, the last look, what is wrong) after waiting up to `within` s."""
    deadline = time.time() + within
    while True:
        seen = look()
        ok, wrong = healthy(seen)
        if ok or time.time() > deadline:
            return ok, seen, wrong
        time.sleep(1)


def loud(message):
    text = "\n" + "!" * 100 + "\nPARTITION TEARDOWN: " + message + "\n" + "!" * 100
    print(text)
    print(text, file=sys.__stderr__)
    warnings.warn(message, stacklevel=2)


@pytest.fixture
def partition():
    """Always, after the test: no partition chain or undo timer left on any node, and a healthy
    cluster (one leader, two streaming replicas, one VIP holder), waited for within bounds. A
    member that did not rejoin is said loudly and reinitialised with patronictl reinit; the
    test asserts that rejoin itself, so it has failed already when this is needed."""
    state = {"old": None}
    yield state
    left = [name for name, ip in NODES.items() if not heal(ip)]
    ok, seen, wrong = wait_healthy(HEALTHY_WITHIN)
    if not ok:
        leaders = primaries(seen)
        stranded = [name for name in NODES if len(leaders) == 1 and name != leaders[0]
                    and seen[leaders[0]]["streaming"].get(NODES[name]) != "streaming"]
        loud("the cluster is not healthy %d s after the test (%s; old primary %s); stranded members %s: "
             "patronictl reinit of each, so the tests after this one get a healthy cluster"
             % (HEALTHY_WITHIN, wrong, state["old"], stranded))
        for name in stranded:
            print("patronictl reinit %s: %s" % (name, reinit(name)))
        if stranded:
            ok, seen, wrong = wait_healthy(AFTER_REINIT)
            if not ok:
                loud("still not healthy %d s after the reinit: %s" % (AFTER_REINIT, wrong))
    assert not left, "the partition chain %s or its timer is still on %s" % (CHAIN, left)
    assert ok, "the cluster is not healthy after the partition test: %s" % wrong


def test_a_partitioned_primary_fails_over_loses_only_its_isolated_writes_and_rejoins(partition):
    before = roles_once_all_answer()
    old = before["primary"]
    old_ip = NODES[old]
    peers = [name for name in NODES if name != old]
    settled(old)
    vip_on(old)
    partition["old"] = old
    table = new_table(old_ip, "partition")
    # Which server committed each row, beside its id: an isolated primary's unreplicated
    # sequence values may be handed out again by the new primary.
    psql(old_ip, "ALTER TABLE %s ADD COLUMN origin text DEFAULT host(inet_server_addr())" % table, db=APP_DB)
    writers = start_writers(table, WRITE_SECONDS)
    timeline, cut_at, healed_at, rejoined_at, promoted = [], None, None, None, None
    try:
        time.sleep(CUT_AFTER)
        cut_at = time.time()
        cut(old)
        cut_done = time.time()
        watch(timeline, cut_at + PARTITION_SECONDS - 3)
        # The partition is what the test means, and it held: a member still cannot reach the
        # old primary's PostgreSQL (the replicas stream from its 5432), the app node reaches its pooler.
        isolated = not reachable(NODES[peers[0]], old_ip, 5432)
        app_reaches = reachable(APP, old_ip, 6432)
        watch(timeline, cut_at + PARTITION_SECONDS)
        heal_started = time.time()
        healed = heal(old_ip)
        healed_at = time.time()
        promotions = [(at, name) for at, seen in timeline for name in primaries(seen) if name != old]
        if promotions:
            promoted = promotions[0][1]
            rejoined_at = watch(timeline, healed_at + REJOIN_BOUND, lambda seen: rejoined(seen, old, promoted))
        samples = finish_writers(writers, WRITE_SECONDS)
    finally:
        stop_writers(writers)
        if cut_at is not None and healed_at is None:
            heal(old_ip)

    promoted_after = round(promotions[0][0] - cut_at, 1) if promotions else None
    new = cluster_roles_without(old, within=30)
    new_ip = NODES[new]
    acknowledged = [(row_id, server or "", finished) for _started, finished, ok, row_id, server in samples if ok]
    on_old_after = {row_id for row_id, server, finished in acknowledged if server == old_ip and finished >= cut_at - IN_FLIGHT}
    strictly_after = [finished for row_id, server, finished in acknowledged if server == old_ip and finished >= cut_at]
    found = {(int(row[0]), row[1]) for row in psql(new_ip, "SELECT id, coalesce(origin, '') FROM %s" % table, db=APP_DB)}
    missing = [(row_id, server) for row_id, server, _finished in acknowledged if (row_id, server) not in found]
    gap = writes.write_gap(samples, cut_at, new_ip)
    after_heal_on_new = [finished for row_id, server, finished in acknowledged if server == new_ip and finished > healed_at]

    print("partition of %s (VIP on it) from %s for %.0f s (cut took %.2f s; a member reaches its 5432: %s; the app node its "
          "pooler: %s; removed: %s) under %d writers through VIP:%d"
          % (old, peers, heal_started - cut_at, cut_done - cut_at, not isolated, app_reaches, healed, WRITERS, RW_PORT))
    print("promoted: %s, seen as primary %s s after the cut (bound %d s); first write on it %s s after the cut"
          % (promoted, promoted_after, PROMOTION_BOUND, gap["gap_s"]))
    print("the isolated %s acknowledged %d writes after the cut, the last %s s after it"
          % (old, len(strictly_after), round(max(strictly_after) - cut_at, 2) if strictly_after else "-"))
    print("primaries over time (s after the cut): %s" % changes(timeline, cut_at, primaries))
    print("VIP holders over time (s after the cut): %s" % changes(timeline, cut_at, holders))
    print("longest stretch without a commit: %.2f s; %d writes acknowledged, %d failed attempts; errors: %s"
          % (writes.longest_stall(samples), len(acknowledged), gap["failed_attempts"], gap["errors"][:5]))
    print("acknowledged but missing on the new primary %s: %d of %d (asynchronous replication); the old primary "
          "acknowledged %d after the cut (%d from %.1f s before it)"
          % (new, len(missing), len(acknowledged), len(strictly_after), len(on_old_after), IN_FLIGHT))
    print("rejoin of %s as a replica streaming from %s: %s after the partition ended (bound %d s)"
          % (old, new, "%.1f s" % (rejoined_at - healed_at) if rejoined_at else "NOT within the bound", REJOIN_BOUND))

    assert isolated and app_reaches, "the partition did not take: a member reaches %s:5432: %s, the app node 6432: %s" % (
        old, not isolated, app_reaches)
    assert healed, "the partition chain is still on %s" % old
    # The load covered the operation: writes on the old primary before the cut, on the new one after the partition.
    assert any(server == old_ip and finished < cut_at for _id, server, finished in acknowledged), "no write before the cut"
    assert after_heal_on_new, "no write committed on the new primary %s after the partition" % new
    assert promoted_after is not None and promoted_after <= PROMOTION_BOUND, "no member promoted within %d s of the cut" % PROMOTION_BOUND
    assert new == promoted != old, "promoted %s, primary now %s" % (promoted, new)
    stray = [(row_id, server) for row_id, server in missing if server != old_ip or row_id not in on_old_after]
    assert not stray, "acknowledged writes lost that the old primary did not take while cut off: %s" % stray[:10]
    assert len(missing) <= len(on_old_after)
    assert rejoined_at is not None, "%s did not stream from %s within %d s of the partition's end" % (old, new, REJOIN_BOUND)
    assert rejoined_at - healed_at <= REJOIN_BOUND
    # Writes through 5000 work again: fresh ones all land on the new primary.
    settled(new)
    wait_until("one VIP holder", lambda: len(holders(look())) == 1, 30)
    print("VIP after the test: %s" % vip_holder())
    fresh = app_python(writes.WRITER, VIP, RW_PORT, APP_USER, APP_DB, table, 30, 20, 0, timeout=90)
    assert [(ok, server) for _started, _finished, ok, _id, server in fresh] == [(True, new_ip)] * 20, fresh[:5]
