"""A switchover whose controller dies (issue 24): ansible-playbook gets SIGKILL (its whole process
group: a killed controller) or SIGINT (Ctrl-C, to the whole foreground group) at a point of the
run, under a writer that reconnects through VIP:5000. The nodes heal by themselves at
switchover_deadline (the dead man's switches: transient systemd timers armed before each change;
the node-side step, pgbouncer_switchover, finishes by itself when its controller is gone):
writes flow again within the deadline, no database stays paused, every HAProxy checks the old
primary's pooler again, and every acknowledged write is on the primary. The next site.yml then
either runs (nothing left) or stops, having changed nothing, naming what was left and
repair.yml; after repair.yml, site.yml ends with a healthy cluster and nothing left.

Kill points (KILL_POINTS): before the node-side step (HAProxy's check off), inside it (the old
primary's pooler paused, Patroni switching), during the handover (weight 0, the redirect
block), during the hand-back (the old pooler paused again, waiting for HAProxy). make test runs
one per suite (another point and signal in each); PGB_KILL_POINTS=all runs every point with both.

Cost on the lab: about 150-250 s a point (a 45 s load window, the heal, which may wait for the
handover's own deadline, the leftovers check, repair.yml and site.yml)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from test_switchover import roles_once_all_answer, settled, start_writer, writer_samples

from conftest import (
    APP_DB,
    INVENTORY,
    NODES,
    ROOT,
    ansible_playbook,
    haproxy_stats,
    new_table,
    psql,
    ssh,
    wait_until,
)

pytestmark = pytest.mark.version_dependent

DEADLINE = 15
HANDOVER = 10  # switchover_handover_timeout: the hand-back comes while the writer still writes
# After the kill: HAProxy's undo fires at DEADLINE from its arming (before the kill), the PAUSE's
# 5 s later (switchover.yml: HAProxy marks a demoted pooler DOWN first), then the writer reconnects.
BOUND = DEADLINE + 5 + 5
CONSOLE = "runuser -u postgres -- psql -XAt -F '|' -h /var/run/postgresql -p 6432 -U pgbouncer pgbouncer -c 'SHOW DATABASES'"


def paused(ip):
    """The databases paused on a node's pooler."""
    rows = [line.split("|") for line in ssh(ip, CONSOLE).stdout.splitlines()]
    return {row[0] for row in rows if len(row) > 10 and row[-2] == "1"}


def armed_pause_timers(ip):
    """The PAUSE undo timers armed on a node (HAProxy's weight 0 and the VIP hold last the handover)."""
    return ssh(ip, "systemctl list-units --plain --no-legend 'pgbouncer-cluster-undo-pause-*'").stdout.strip()


# point -> (the task whose start in the output triggers the kill, seconds after it)
KILL_POINTS = {
    "health-off": ("Switch over with the old primary's pooler paused", 0.0),
    "inside-the-step": ("Switch over with the old primary's pooler paused", 1.2),
    "handover": ("Wait until the old primary's pooler has no clients left", 1.0),
    "hand-back": ("Wait until every HAProxy marks the old primary's pooler DOWN", 0.2),
}
# make test's share (budget): one point per suite, a different point and signal in each (the
# suites differ by PgBouncer version); PGB_KILL_POINTS=all runs the 8.
PER_SUITE = {"1.18": [("inside-the-step", "SIGKILL")], "other": [("hand-back", "SIGINT")]}
# Every (point, signal) with PGB_KILL_POINTS=all; else this suite's two, chosen once the lab's
# PgBouncer version is known (share 0 and 1).
CASES = ([(point, signame) for point in KILL_POINTS for signame in ("SIGKILL", "SIGINT")]
         if os.environ.get("PGB_KILL_POINTS") == "all" else [("share", 0)])


def resolve(point, signame):
    """(point, signal name) of a case: a share of make test's is this suite's entry in PER_SUITE."""
    if point != "share":
        return point, signame
    version = ssh(NODES["pg-srv1"], "pgbouncer --version").stdout.split()[1]
    return PER_SUITE["1.18" if version.startswith("1.18") else "other"][signame]


def kill_when(run, task, delay, signame, within=120):
    """Send signame to the run's process group `delay` s after "TASK [task]" shows in its output.
    Returns (when, the output read so far)."""
    seen, deadline = [], time.monotonic() + within
    while time.monotonic() < deadline:
        line = run.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("TASK [%s]" % task):
            time.sleep(delay)
            os.killpg(run.pid, getattr(signal, signame))
            return time.time(), "".join(seen)
    os.killpg(run.pid, signal.SIGKILL)
    raise AssertionError("the run never reached %r:\n%s" % (task, "".join(seen)[-3000:]))


@pytest.mark.parametrize(("point", "signame"), CASES)
def test_a_switchover_interrupted_heals_by_itself_and_repair_yml_ends_it(point, signame):
    point, signame = resolve(point, signame)
    before = roles_once_all_answer()
    old = before["primary"]
    settled(old)
    table = new_table(NODES[old], "interrupted")
    writer = start_writer(table, 45)
    time.sleep(3)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    run = subprocess.Popen(["ansible-playbook", "-i", str(INVENTORY), "playbooks/switchover.yml", "-e", "switchover_databases=%s" % APP_DB,
                            "-e", "switchover_deadline=%d" % DEADLINE,
                            # The hand-back comes while the writer (45 s) still writes.
                            "-e", "switchover_handover_timeout=%d" % HANDOVER], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    task, delay = KILL_POINTS[point]
    killed_at, output = kill_when(run, task, delay, signame)
    try:
        output += run.communicate(timeout=60)[0]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    samples = writer_samples(writer, timeout=150)
    after = roles_once_all_answer()
    new_ip = NODES[after["primary"]]
    after_kill = [finished for _started, finished, ok, _id, server in samples if ok and server == new_ip and finished > killed_at]
    failed = [error for _started, finished, ok, error, _server in samples if not ok and finished > killed_at]
    stalls = [b[0] - a[1] for a, b in zip(samples, samples[1:]) if b[0] > killed_at]
    print("switchover.yml %s at %s with %s primary: writes on %s again %.1f s after the kill (bound %d s); %d failed attempts "
          "after it: %s" % (signame, point, old, after["primary"], (min(after_kill) - killed_at) if after_kill else -1, BOUND, len(failed),
                            sorted(set(failed))[:3]))
    # What the writer saw from 2 s before the kill: (seconds after the kill, ok, server or error), changes only.
    timeline, last = [], None
    for started, finished, ok, value, server in samples:
        if finished > killed_at - 2 and (ok, server if ok else value) != last:
            last = (ok, server if ok else value)
            timeline.append((round(started - killed_at, 1), round(finished - killed_at, 1), ok, last[1]))
    print("writer around the kill: %s" % timeline[:30])
    assert after_kill, "no write reached the primary after the kill:\n" + output[-3000:]
    assert max(stalls, default=0) < BOUND and min(after_kill) - killed_at < BOUND
    # Healed without a step of ours: nothing paused, no timer left, HAProxy back to its configured state.
    wait_until("every PAUSE undo timer has run", lambda: all(not armed_pause_timers(ip) for ip in NODES.values()), within=BOUND)
    assert {name: paused(ip) for name, ip in NODES.items()} == {name: set() for name in NODES}
    # The old pooler's check is on again: at DEADLINE, or during the handover at its own end
    # (the weight 0 step re-arms the undo for HANDOVER + DEADLINE; its clients are served by the new primary till then).
    wait_until("every HAProxy checks %s again" % old, lambda: all(
        haproxy_stats(ip)[("pgbouncer", old)]["check_status"] != "" for ip in NODES.values()), within=HANDOVER + DEADLINE + 10)
    # Every acknowledged write is on the primary.
    acknowledged = [row_id for _started, _finished, ok, row_id, _server in samples if ok]
    found = psql(new_ip, "SELECT count(*) FROM %s WHERE id = ANY('{%s}'::bigint[])" % (table, ",".join(map(str, acknowledged))), db=APP_DB)
    assert int(found[0][0]) == len(acknowledged)
    # site.yml's first step (leftovers.yml) passes, or stops having changed nothing and names
    # repair.yml; after repair.yml, site.yml runs.
    found = ansible_playbook("playbooks/leftovers.yml", timeout=300)
    if found.returncode != 0:
        assert "An interrupted runbook left" in found.stdout and "pgbouncer.cluster.repair" in found.stdout, found.stdout[-4000:]
        repair = ansible_playbook("playbooks/repair.yml", timeout=300)
        assert repair.returncode == 0, repair.stdout[-4000:]
    nxt = ansible_playbook("playbooks/site.yml", timeout=600)
    assert nxt.returncode == 0, nxt.stdout[-4000:]
    final = roles_once_all_answer()
    settled(final["primary"])
    for ip in NODES.values():
        assert "pgbouncer.cluster switchover" not in ssh(ip, "cat /etc/pgbouncer/pgbouncer*.ini").stdout
        assert not ssh(ip, "systemctl list-units --plain --no-legend 'pgbouncer-cluster-undo-*'").stdout.strip()
        assert not ssh(ip, "test -e /run/pgbouncer-cluster/keepalived-hold && echo held", check=False).stdout.strip()
        assert haproxy_stats(ip)[("pgbouncer", old)]["weight"] == "100"
