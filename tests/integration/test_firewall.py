"""The firewall role and ufw module on the lab: 6432 only from the app node, 5432 from the
cluster (and, in the lab, the app node), SSH kept, idempotent, and a host taken out of the
allowed list loses its access on the next run.

Every wait is bounded: TCP connects and logins time out after 3 s. Tests that change a node
(pg-srv2 only; the admin console tests use pg-srv3) put it back with site.yml and its
defaults even when they fail (restore_node: the firewall role alone after a test that changed
only its input; nothing more when the test's own last run was already the defaults), and
restore_node then checks every ufw rule of the node, so the app node keeps 6432 on every node.

Cost on the lab: about 3 minutes (five site.yml runs on one node, four with --tags firewall,
the probes from three hosts).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from conftest import APP, APP_DB, APP_PASSWORD, APP_USER, NODES, OUTSIDER, ROOT, SSH_CONFIG, ansible_playbook, app_python, ssh

sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ufw  # noqa: E402

NODE = "pg-srv2"
IP = NODES[NODE]
TAG = "pgbouncer.cluster"
CONNECT_TIMEOUT = 3
# The lab's group haproxy is the pg-srv nodes: they reach 6432 and the health agent (6480).
HAPROXY = sorted(NODES.values())

# Run on a client node: TCP connect to each (host, port), then for 6432/5432 a real query
# as the lab's app user. Prints {"host:port": "ok" | "refused" | "timeout" | "error: ..."}.
PROBE = r"""
import json, socket, sys
import psycopg
timeout, user, password, db = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
result = {}
for target in sys.argv[5:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except socket.timeout:
        result[target] = "timeout"
        continue
    except ConnectionRefusedError:
        result[target] = "refused"
        continue
    except OSError as exc:
        result[target] = "error: %s" % exc
        continue
    if port in ("6432", "5432"):
        try:
            with psycopg.connect(host=host, port=int(port), user=user, password=password, dbname=db,
                                 connect_timeout=timeout) as conn:
                conn.execute("select 1").fetchone()
        except Exception as exc:
            result[target] = "connects, query fails: %s" % str(exc).strip()
            continue
    result[target] = "ok"
print(json.dumps(result))
"""


def probe(client, *targets, attempts=3):
    """{target: outcome} of connecting from `client` to each "host:port". A target whose TCP
    connect worked but whose login failed is tried again (at most `attempts` times, 2 s
    apart): other tests change the lab's passwords and userlist.txt for a moment. A TCP
    outcome (timeout, refused) is final at once."""
    result = {}
    pending = list(targets)
    for attempt in range(attempts):
        if attempt:
            time.sleep(2)
        result.update(app_python(PROBE, CONNECT_TIMEOUT, APP_USER, APP_PASSWORD, APP_DB, *pending, ip=client, timeout=60))
        pending = [target for target in pending if result[target].startswith("connects, query fails")]
        if not pending:
            break
    return result


def node_state(ip):
    tuples = _ufw.parse_rules_file(ssh(ip, "cat /etc/ufw/user.rules").stdout, 4)
    tuples += _ufw.parse_rules_file(ssh(ip, "cat /etc/ufw/user6.rules").stdout, 6)
    return tuples


def allowed_sources(ip, port):
    return sorted(item.src for item in node_state(ip) if item.dport == str(port) and item.action == "allow")


def converge(*extra, limit=NODE):
    args = ["playbooks/site.yml"] + (["--limit", limit] if limit else []) + list(extra)
    result = ansible_playbook(*args)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


class Restore:
    """What restore_node runs after the test: `args` of site.yml on pg-srv2 (the defaults, the
    whole of site.yml unless a test narrows it), or None once the test's own last run was already
    site.yml with the defaults (the test sets it right after that run, so a failure before it
    still gets the full restore)."""

    def __init__(self):
        self.args = ()


@pytest.fixture
def restore_node():
    """Whatever the test did to pg-srv2's firewall, site.yml with the defaults undoes it (unless
    the test's own last run did, see Restore); then pg-srv2 has exactly the rules of the lab's
    defaults and the app node reaches its 6432."""
    restore = Restore()
    yield restore
    if restore.args is not None:
        converge(*restore.args)
    assert rules(IP) == expected_rules(IP)
    assert probe(APP, "%s:6432" % IP) == {"%s:6432" % IP: "ok"}, "app lost 6432 on %s" % NODE


# --- enabling keeps the controller in ---------------------------------------------------------


def test_enabling_from_scratch_keeps_ssh_and_an_open_session(restore_node):
    """ufw reset (inactive, no rules) on pg-srv2, then site.yml enables it again: an ssh
    session opened before enabling still answers afterwards, and new connections get in."""
    ssh(IP, "ufw --force reset >/dev/null && ufw status")
    assert ssh(IP, "ufw status").stdout.splitlines()[0] == "Status: inactive"
    assert node_state(IP) == []
    session = subprocess.Popen(
        ["ssh", "-F", str(SSH_CONFIG), "-o", "ControlMaster=no", "-o", "ControlPath=none", IP,
         "read line; echo still here: $line"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out = converge("--diff")
        restore_node.args = None  # site.yml with the defaults just ran on pg-srv2
        assert "+# status: active" in out
        assert "+ufw allow in proto tcp from any to any port 22 comment 'pgbouncer.cluster: ssh'" in out
        assert "Check that the controller still gets in over a new connection" in out
        stdout = session.communicate("ping\n", timeout=20)[0]
        assert stdout.strip() == "still here: ping"
    finally:
        if session.poll() is None:
            session.kill()
    fresh = subprocess.run(["ssh", "-F", str(SSH_CONFIG), "-o", "ControlMaster=no", "-o", "ControlPath=none", IP, "echo in"],
                           capture_output=True, text=True, timeout=30, check=False)
    assert fresh.stdout.strip() == "in", fresh.stderr
    assert ssh(IP, "ufw status").stdout.splitlines()[0] == "Status: active"


# --- what runs on every node ------------------------------------------------------------------


def rules(ip):
    """The node's ufw rules as `ufw` command lines, sorted."""
    return sorted(_ufw.show_line(item) for item in node_state(ip))


def expected_rules(ip):
    """The rules the lab's defaults give the node at `ip`, sorted."""
    cluster = sorted([*NODES.values(), APP])
    return sorted(
        ["ufw allow in proto tcp from any to any port 22 comment 'pgbouncer.cluster: ssh'",
         "ufw allow in proto tcp from any to any port 22 comment 'pgbouncer.cluster: ssh' (v6)",
         "ufw allow in proto tcp from %s to any port 5000 comment 'pgbouncer.cluster: haproxy'" % APP,
         "ufw allow in proto tcp from %s to any port 5001 comment 'pgbouncer.cluster: haproxy-ro'" % APP]
        + ["ufw allow in proto tcp from %s to any port 6432 comment 'pgbouncer.cluster: pgbouncer'" % src for src in [APP, *HAPROXY]]
        + ["ufw allow in proto tcp from %s to any port 5432 comment 'pgbouncer.cluster: postgres'" % src for src in cluster]
        + ["ufw allow in proto tcp from %s to any port 6480 comment 'pgbouncer.cluster: pgbouncer-health'" % src for src in HAPROXY]
        # The lab's group monitoring is the app node (Prometheus): the exporter, HAProxy's
        # Prometheus endpoint and Patroni's /metrics, to it only.
        + ["ufw allow in proto tcp from %s to any port 9127 comment 'pgbouncer.cluster: pgbouncer-exporter'" % APP,
           "ufw allow in proto tcp from %s to any port 8405 comment 'pgbouncer.cluster: haproxy-prometheus'" % APP,
           "ufw allow in proto tcp from %s to any port 8008 comment 'pgbouncer.cluster: patroni'" % APP]
        # The lab's groups patroni and etcd are the pg-srv nodes: Patroni's REST API and etcd's
        # client and peer ports from the other members only (and HAProxy, the same nodes).
        + ["ufw allow in proto tcp from %s to any port %d comment 'pgbouncer.cluster: %s'" % (peer, port, comment)
           for peer in sorted(NODES.values()) if peer != ip
           for port, comment in ((8008, "patroni"), (2379, "etcd"), (2380, "etcd-peer"))]
        # The lab's group keepalived is the pgbouncer nodes: VRRP from each peer.
        + ["ufw allow in proto vrrp from %s to any comment 'pgbouncer.cluster: vrrp'" % peer
           for peer in sorted(NODES.values()) if peer != ip]
    )


@pytest.mark.parametrize("name", sorted(NODES))
def test_ufw_is_active_with_deny_and_only_tagged_rules(name):
    ip = NODES[name]
    assert ssh(ip, "ufw status").stdout.splitlines()[0] == "Status: active"
    assert _ufw.incoming_policy(_ufw.parse_defaults(ssh(ip, "cat /etc/default/ufw").stdout)) == "deny"
    assert "ENABLED=yes" in ssh(ip, "cat /etc/ufw/ufw.conf").stdout
    assert rules(ip) == expected_rules(ip)


def test_app_node_reaches_pgbouncer_and_postgres_on_every_node():
    targets = ["%s:%d" % (ip, port) for ip in NODES.values() for port in (6432, 5432)]
    assert probe(APP, *targets) == dict.fromkeys(targets, "ok")


def test_outsider_is_kept_out_of_pgbouncer_and_postgres_but_the_network_works():
    closed = ["%s:%d" % (ip, port) for ip in NODES.values() for port in (6432, 5432)]
    ssh_ports = ["%s:22" % ip for ip in NODES.values()]
    outcome = probe(OUTSIDER, *closed, *ssh_ports)
    assert {target: outcome[target] for target in ssh_ports} == dict.fromkeys(ssh_ports, "ok")
    assert {target: outcome[target] for target in closed} == dict.fromkeys(closed, "timeout")  # deny drops


def test_cluster_nodes_reach_each_others_postgres():
    ips = sorted(NODES.values())
    source, targets = ips[0], ["%s:5432" % ip for ip in ips[1:]]
    assert probe(source, *targets) == dict.fromkeys(targets, "ok")


# --- check mode, removing a host (a second run changes nothing: Molecule's idempotence step) --------------------------------------------------


def test_check_mode_reports_and_changes_nothing():
    before = ssh(IP, "cat /etc/ufw/user.rules /etc/ufw/user6.rules").stdout
    out = converge("--check", "--diff", "-e", json.dumps({"firewall_pgbouncer_allowed_sources": [OUTSIDER]}))
    assert "-ufw allow in proto tcp from %s to any port 6432 comment 'pgbouncer.cluster: pgbouncer'" % APP in out
    assert "+ufw allow in proto tcp from %s to any port 6432 comment 'pgbouncer.cluster: pgbouncer'" % OUTSIDER in out
    assert ssh(IP, "cat /etc/ufw/user.rules /etc/ufw/user6.rules").stdout == before
    assert probe(OUTSIDER, "%s:6432" % IP) == {"%s:6432" % IP: "timeout"}


def test_a_port_moved_and_back_leaves_no_rule_on_the_other_port(restore_node):
    """Issue 15, item 6: pgbouncer_listen_port 6433 on pg-srv2, then the defaults again. The
    first run opens 6433 and closes 6432 (same comment, another port), the second the
    reverse: no rule for 6433 is left. Cost: two site.yml runs on one node, about 45 s (the
    second is site.yml with the defaults: restore_node runs nothing more)."""
    converge("-e", "pgbouncer_listen_port=6433")
    assert allowed_sources(IP, 6433) == sorted([APP, *HAPROXY])
    assert allowed_sources(IP, 6432) == []

    converge()
    restore_node.args = None  # site.yml with the defaults just ran on pg-srv2
    assert allowed_sources(IP, 6433) == []
    assert [item for item in node_state(IP) if item.dport == "6433"] == []
    assert allowed_sources(IP, 6432) == sorted([APP, *HAPROXY])


def test_hosts_still_on_5432_are_the_migration_list(restore_node):
    """Issue 23, item 9: firewall_postgres_migration_sources is who keeps 5432 besides the
    cluster (the lab lists the app node there). The outsider instead of the app node: the next
    run opens 5432 to the outsider and closes it to the app node; restore_node swaps them back
    with the defaults and `--tags firewall` as well (only the firewall role reads the list; its
    check of every rule afterwards proves that enough). Cost: two site.yml --tags firewall runs
    on one node, about 25 s."""
    restore_node.args = ("--tags", "firewall")
    converge("--tags", "firewall", "-e", json.dumps({"firewall_postgres_migration_sources": [OUTSIDER]}))
    assert allowed_sources(IP, 5432) == sorted([*NODES.values(), OUTSIDER])
    assert probe(OUTSIDER, "%s:5432" % IP) == {"%s:5432" % IP: "ok"}
    assert probe(APP, "%s:5432" % IP, "%s:6432" % IP) == {"%s:5432" % IP: "timeout", "%s:6432" % IP: "ok"}


def test_taking_the_app_host_out_closes_6432_to_it(restore_node):
    """firewall_pgbouncer_allowed_sources without the app node (and with the outsider instead): the
    next run closes 6432 on pg-srv2 to the app node and opens it to the outsider; the
    defaults (restore_node) swap them back. Only the firewall role reads the sources:
    `--tags firewall` runs it alone, as a user who moved an app host would, and with the
    defaults swaps them back (restore_node then runs nothing more, and checks every rule).
    Cost: two site.yml --tags firewall runs on one node, about 30 s."""
    converge("--tags", "firewall", "-e", json.dumps({"firewall_pgbouncer_allowed_sources": [OUTSIDER]}))
    assert allowed_sources(IP, 6432) == sorted([OUTSIDER, *HAPROXY])
    assert probe(APP, "%s:6432" % IP, "%s:5432" % IP) == {"%s:6432" % IP: "timeout", "%s:5432" % IP: "ok"}
    assert probe(OUTSIDER, "%s:6432" % IP) == {"%s:6432" % IP: "ok"}
    # Only pg-srv2 changed.
    other = next(ip for name, ip in sorted(NODES.items()) if name != NODE)
    assert probe(APP, "%s:6432" % other) == {"%s:6432" % other: "ok"}

    converge("--tags", "firewall")
    restore_node.args = None  # the firewall role with the defaults just ran on pg-srv2
    assert allowed_sources(IP, 6432) == sorted([APP, *HAPROXY])
    assert probe(OUTSIDER, "%s:6432" % IP) == {"%s:6432" % IP: "timeout"}
