"""Issue 23, item 2, on the lab: slow senders against the health agents. A local user on one
node (here: the `nobody` user of the node that holds the VIP, the hardest case: its HAProxy is
the one clients use, and its checks come from the same address as the attack) opens 8
connections to every node's agent and sends one byte every 2 s for 16 s. Before, this held
every slot of every agent: each answered 503 BUSY, every HAProxy marked every pooler DOWN and
keepalived went FAULT everywhere. Now a new connection pushes out the oldest one still
trickling, so every HAProxy, the attacker's own included, keeps every pooler where it was, and
the VIP stays.
About 25 s (30 s when an earlier test left HAProxy's view changing)."""

from __future__ import annotations

import subprocess
import time

import pytest

from conftest import HEALTH_PORT, NODES, SSH_CONFIG, haproxy_stats, vip_holder, wait_until

pytestmark = pytest.mark.version_dependent

# Runs on the attacking node as nobody: 8 slow connections to each agent, bounded to 16 s.
SLOW = r"""
import socket, sys, time
targets, end, conns = sys.argv[1:], time.time() + 16, []
for host in targets:
    for _ in range(8):
        try:
            conns.append(socket.create_connection((host, %d), timeout=2))
        except OSError:
            pass
opened = len(conns)
while time.time() < end:
    for conn in list(conns):
        try:
            conn.send(b"G")
        except OSError:
            conns.remove(conn)
    time.sleep(2)
print(opened, len(conns))
""" % HEALTH_PORT


def states(ip):
    return {key: row["status"] for key, row in haproxy_stats(ip).items() if key[1] in NODES}


def settled_view(watchers):
    """Every watcher's view once no server is between UP and DOWN ("UP 1/2") and it holds for 3 s:
    an earlier test may have restarted a pooler."""
    def stable():
        first = {name: states(NODES[name]) for name in watchers}
        time.sleep(3)
        second = {name: states(NODES[name]) for name in watchers}
        steady = all(status in ("UP", "DOWN") for view in second.values() for status in view.values())
        return second if first == second and steady else None
    return wait_until("HAProxy's view settled", stable, within=60)


def test_slow_senders_on_the_vip_holder_move_no_haproxy_view_and_not_the_vip():
    holder = vip_holder()
    attacker = holder
    watchers = sorted(NODES)
    before = settled_view(watchers)
    attack = subprocess.Popen(["ssh", "-F", str(SSH_CONFIG), NODES[attacker], "timeout 30 runuser -u nobody -- python3 - %s"
                               % " ".join(NODES.values())], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    attack.stdin.write(SLOW)
    attack.stdin.close()
    seen = []
    while attack.poll() is None:
        seen.append({name: states(NODES[name]) for name in watchers})
        time.sleep(1)
    opened, alive = map(int, attack.stdout.read().split())
    assert len(seen) >= 10, "the attack ended too soon to cover several checks (%d samples)" % len(seen)
    changed = [sample for sample in seen if sample != before]
    assert changed == [], "HAProxy on %s changed its view while %s's slow senders (%d connections, %d left at the end) ran: %s" % (
        ", ".join(watchers), attacker, opened, alive, changed[:2])
    # 8 to each agent: twice what one source may hold, so pushing out was needed to stay UP.
    assert opened == 8 * len(NODES), "the attack opened %d connections, not %d" % (opened, 8 * len(NODES))
    assert vip_holder() == holder
