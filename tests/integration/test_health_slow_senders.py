"""Issue 23, item 2, on the lab: slow senders against the health agents. A local user on one
node (here: the `nobody` user of a replica that does not hold the VIP) opens 8 connections to
every node's agent and sends one byte every 2 s for 16 s. Before the per-request deadline and
the per-source bound this held every slot of every agent: each answered 503 BUSY, every
HAProxy marked every pooler DOWN and keepalived went FAULT everywhere. Now the other nodes'
HAProxy (the VIP holder's among them) keep every pooler where it was, and the VIP stays.
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
while time.time() < end:
    for conn in list(conns):
        try:
            conn.send(b"G")
        except OSError:
            conns.remove(conn)
    time.sleep(2)
print(len(conns))
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


def test_slow_senders_on_one_node_do_not_move_the_other_nodes_view_or_the_vip():
    holder = vip_holder()
    attacker = next(name for name in sorted(NODES) if name != holder)
    watchers = [name for name in NODES if name != attacker]
    before = settled_view(watchers)
    attack = subprocess.Popen(["ssh", "-F", str(SSH_CONFIG), NODES[attacker], "timeout 30 runuser -u nobody -- python3 - %s"
                               % " ".join(NODES.values())], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    attack.stdin.write(SLOW)
    attack.stdin.close()
    seen = []
    while attack.poll() is None:
        seen.append({name: states(NODES[name]) for name in watchers})
        time.sleep(1)
    held = attack.stdout.read().strip()
    assert len(seen) >= 10, "the attack ended too soon to cover several checks (%d samples)" % len(seen)
    changed = [sample for sample in seen if sample != before]
    assert changed == [], "HAProxy on %s changed its view while %s's slow senders (%s connections) ran: %s" % (
        ", ".join(watchers), attacker, held, changed[:2])
    assert vip_holder() == holder
