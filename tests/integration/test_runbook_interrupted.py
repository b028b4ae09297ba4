"""A switchover whose controller dies (issue 24): ansible-playbook gets SIGKILL, with its whole
process group, inside the paused section, under a writer that reconnects through VIP:5000. The
nodes heal by themselves at switchover_deadline (the dead man's switches of pgbouncer_admin and
haproxy_server: transient systemd timers armed before each change): writes flow again within
the deadline, no database stays paused, every HAProxy checks and weighs the old primary's
pooler again, no timer is left, and the next run (switchover.yml, or site.yml where a redirect
block was left) ends with a healthy cluster.

Cost on the lab: about 70 s (a 45 s load window, the next run)."""

from __future__ import annotations

import json
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
# After the kill: HAProxy's undo fires at DEADLINE from its arming (before the kill), the PAUSE's
# 5 s later (switchover.yml: HAProxy marks a demoted pooler DOWN first), then the writer reconnects.
BOUND = DEADLINE + 5 + 5
CONSOLE = "runuser -u postgres -- psql -XAt -F '|' -h /var/run/postgresql -p 6432 -U pgbouncer pgbouncer -c 'SHOW DATABASES'"


def paused(ip):
    """The databases paused on a node's pooler."""
    rows = [line.split("|") for line in ssh(ip, CONSOLE).stdout.splitlines()]
    return {row[0] for row in rows if len(row) > 10 and row[-2] == "1"}


def leader():
    """Patroni's running leader, from any node's REST API (None while there is none)."""
    for ip in NODES.values():
        answer = ssh(ip, "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://%s:8008/cluster', timeout=2).read().decode())\"" % ip,
                     check=False)
        if answer.returncode == 0:
            members = json.loads(answer.stdout)["members"]
            return next((m["name"] for m in members if m["role"] == "leader" and m["state"] == "running"), None)
    return None


def armed_timers(ip):
    """The PAUSE and HAProxy undo timers armed on a node (the VIP hold's lasts the whole run's bound)."""
    return ssh(ip, "systemctl list-units --plain --no-legend 'pgbouncer-cluster-undo-pause-*' "
                   "'pgbouncer-cluster-undo-haproxy-*'").stdout.strip()


def kill_point():
    """Where the run is killed: inside the PAUSE before Patroni acts on Debian 12 (PgBouncer
    1.18), right after Patroni switched on Debian 13 (1.24). One point per suite keeps make
    test's budget; both points are covered on every run of it."""
    version = ssh(NODES["pg-srv1"], "pgbouncer --version").stdout.split()[1]
    return "paused" if version.startswith("1.18") else "switched"


def test_a_switchover_killed_inside_the_pause_heals_by_itself():
    point = kill_point()
    before = roles_once_all_answer()
    old = before["primary"]
    settled(old)
    table = new_table(NODES[old], "interrupted")
    writer = start_writer(table, 45)
    time.sleep(3)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    run = subprocess.Popen(["ansible-playbook", "-i", str(INVENTORY), "playbooks/switchover.yml", "-e", "switchover_databases=%s" % APP_DB,
                            "-e", "switchover_deadline=%d" % DEADLINE], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        if point == "paused":
            wait_until("appdb paused on %s" % old, lambda: APP_DB in paused(NODES[old]), within=60)
        else:
            wait_until("Patroni switched over", lambda: leader() not in (None, old), within=90)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        killed_at = time.time()
        output = run.communicate(timeout=30)[0]
    samples = writer_samples(writer, timeout=150)
    after = roles_once_all_answer()
    new_ip = NODES[after["primary"]]
    after_kill = [finished for _started, finished, ok, _id, server in samples if ok and server == new_ip and finished > killed_at]
    failed = [error for _started, finished, ok, error, _server in samples if not ok and finished > killed_at]
    stalls = [b[0] - a[1] for a, b in zip(samples, samples[1:]) if b[0] > killed_at]
    print("switchover.yml killed (%s) with %s primary: writes on %s again %.1f s after the kill (bound %d s); %d failed attempts "
          "after it: %s" % (point, old, after["primary"], (min(after_kill) - killed_at) if after_kill else -1, BOUND, len(failed),
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
    assert {name: paused(ip) for name, ip in NODES.items()} == {name: set() for name in NODES}
    wait_until("every undo timer has run", lambda: all(not armed_timers(ip) for ip in NODES.values()), within=BOUND)
    for ip in NODES.values():
        server = haproxy_stats(ip)[("pgbouncer", old)]
        assert server["weight"] == "100" and server["check_status"] != "", server
    # Every acknowledged write is on the primary.
    acknowledged = [row_id for _started, _finished, ok, row_id, _server in samples if ok]
    found = psql(new_ip, "SELECT count(*) FROM %s WHERE id = ANY('{%s}'::bigint[])" % (table, ",".join(map(str, acknowledged))), db=APP_DB)
    assert int(found[0][0]) == len(acknowledged)
    # The next run ends with a healthy cluster: site.yml where the redirect block was left behind.
    nxt = ansible_playbook("playbooks/site.yml" if after["primary"] != old else "playbooks/switchover.yml",
                           "-e", "switchover_databases=%s" % APP_DB, timeout=600)
    assert nxt.returncode == 0, nxt.stdout[-4000:]
    final = roles_once_all_answer()
    settled(final["primary"])
    for ip in NODES.values():
        assert "pgbouncer.cluster switchover" not in ssh(ip, "cat /etc/pgbouncer/pgbouncer*.ini").stdout
