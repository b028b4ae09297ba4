"""The keepalived role on the lab: exactly one pg-srv node holds the VIP 10.129.0.20, the app
node reaches it, and the VIP moves within seconds when the holder's keepalived stops or its
check fails (HAProxy frontend or health agent gone); the VRRP secret shows up nowhere.

The check probes HAProxy's frontend (5000) and the PgBouncer health agent (6480) of each
node: on the converged lab both must answer, or every test here fails (no stand-ins). Every
wait is bounded; each test puts back what it stopped, even when it fails.
"""

from __future__ import annotations

import time

import pytest
import yaml

from conftest import APP, APP_DB, APP_PASSWORD, APP_USER, INVENTORY, NODES, ansible_playbook, app_python, ssh, wait_until

VIP = "10.129.0.20"
SETTINGS = yaml.safe_load((INVENTORY / "group_vars" / "keepalived.yml").read_text())
SECRET = SETTINGS["keepalived_auth_pass"]
CHECK = "/usr/local/libexec/pgbouncer-cluster/keepalived-check"
FRONTEND_PORT, HEALTH_PORT = 5000, 6480
# From the app node (no ping there): a TCP connection to the VIP's HAProxy within 3 s.
REACH = "timeout 3 bash -c '</dev/tcp/%s/5000'"
# keepalived stopping: the peers hear priority 0 and take over at once. A failing check:
# fall 2 runs 1 s apart, then the election. Both well inside this.
FAILOVER_SECONDS = 10
# What serves each probed port on a converged node.
UNITS = {FRONTEND_PORT: "haproxy", HEALTH_PORT: "pgbouncer-health"}
# On the app node: one query through host:port, bounded by a 5 s connect timeout.
QUERY = r"""
import json, sys
import psycopg
host, port, user, password, db = sys.argv[1:6]
with psycopg.connect(host=host, port=int(port), user=user, password=password, dbname=db, connect_timeout=5) as conn:
    print(json.dumps(list(conn.execute("select 1").fetchone())))
"""


def holders():
    """Names of the nodes that have the VIP on an interface."""
    return sorted(name for name, ip in NODES.items() if " %s/" % VIP in " " + ssh(ip, "ip -br -4 addr").stdout.replace("\n", " "))


def one_holder():
    found = holders()
    return found[0] if len(found) == 1 else None


def listening(ip, port):
    return bool(ssh(ip, "ss -Hltn 'sport = :%d'" % port).stdout.strip())


@pytest.fixture(scope="module", autouse=True)
def check_targets():
    """HAProxy and the health agent answer on every node (the converged lab), then exactly one holder."""
    for ip in NODES.values():
        missing = [UNITS[port] for port in UNITS if not listening(ip, port)]
        assert missing == [], "%s: %s not listening: converge the lab (site.yml) first" % (ip, missing)
        probes = "%s --haproxy 127.0.0.1:5000 --health %s:6480" % (CHECK, ip)
        wait_until("%s answers both probes" % ip, lambda ip=ip, probes=probes: ssh(ip, probes, check=False).returncode == 0, 15)
    wait_until("exactly one node holds %s" % VIP, one_holder, 30)


@pytest.fixture
def restore():
    """After the test: keepalived and both check targets running on every node again, and
    exactly one holder."""
    yield
    for ip in NODES.values():
        for port, unit in UNITS.items():
            if not listening(ip, port):
                ssh(ip, "systemctl start %s" % unit)
        ssh(ip, "systemctl start keepalived")
    wait_until("exactly one node holds %s" % VIP, one_holder, 30)


def vrrp_state(ip, since):
    """The last VRRP state keepalived logged on the node since `since` (a journalctl time)."""
    log = ssh(ip, "journalctl -u keepalived --since '%s' -o cat --no-pager" % since).stdout
    states = [line.split("Entering ")[1].split()[0] for line in log.splitlines() if "Entering " in line and " STATE" in line]
    return states[-1] if states else None


def node_time(ip):
    return ssh(ip, "date '+%Y-%m-%d %H:%M:%S'").stdout.strip()


# --- steady state --------------------------------------------------------------------------


def test_exactly_one_node_holds_the_vip():
    addresses = {name: ssh(ip, "ip -br -4 addr").stdout for name, ip in NODES.items()}
    assert [name for name, text in addresses.items() if VIP in text] == [one_holder()], addresses


def test_every_node_runs_keepalived_with_a_root_only_config():
    for ip in NODES.values():
        assert ssh(ip, "systemctl is-active keepalived; systemctl is-enabled keepalived").stdout.split() == ["active", "enabled"]
        assert ssh(ip, "stat -c '%U %G %a' /etc/keepalived/keepalived.conf").stdout.split() == ["root", "root", "600"]
        assert ssh(ip, "stat -c '%U %G %a' " + CHECK).stdout.split() == ["root", "root", "755"]


def test_the_app_node_reaches_the_vip_on_the_holder():
    holder = one_holder()
    ssh(APP, REACH % VIP)
    holder_mac = ssh(NODES[holder], "cat /sys/class/net/$(ip -o -4 addr | awk '$4 ~ /^%s\\// {print $2}')/address" % VIP).stdout.strip()
    neighbour = ssh(APP, "ip neigh show %s" % VIP).stdout
    assert holder_mac and holder_mac in neighbour, (holder, holder_mac, neighbour)
    # A real query through the VIP, HAProxy and a pooler.
    assert app_python(QUERY, VIP, FRONTEND_PORT, APP_USER, APP_PASSWORD, APP_DB, timeout=30) == [1]


def test_the_check_runs_unprivileged_and_keepalived_accepts_it():
    for ip in NODES.values():
        assert ssh(ip, "runuser -u keepalived_script -- %s --haproxy 127.0.0.1:5000 --health %s:6480" % (CHECK, ip), check=False).returncode == 0
        log = ssh(ip, "journalctl -u keepalived -b -o cat --no-pager").stdout
        assert "SECURITY VIOLATION" not in log and "insecure" not in log.lower(), log[-2000:]


def test_the_secret_is_in_no_log_and_no_output():
    result = ansible_playbook("playbooks/site.yml", "--check", "--diff", "--limit", "pg-srv3",
                              "-e", "keepalived_check_fall=3")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # The change is reported, with no diff body under it (no_log hides the diff too).
    task = result.stdout.split("Write keepalived.conf", 1)[1].split("TASK [", 1)[0]
    assert "changed: [pg-srv3]" in task and "auth_pass" not in task and "+++" not in task, task
    assert SECRET not in result.stdout + result.stderr
    for ip in NODES.values():
        assert SECRET not in ssh(ip, "journalctl -b --no-pager -o cat").stdout


# --- failover -------------------------------------------------------------------------------


def moved_from(old):
    new = one_holder()
    return new if new and new != old else None


def test_stopping_keepalived_on_the_holder_moves_the_vip(restore):
    old = one_holder()
    started = time.monotonic()
    ssh(NODES[old], "systemctl stop keepalived")
    new = wait_until("the VIP leaves %s" % old, lambda: moved_from(old), FAILOVER_SECONDS)
    print("VIP moved from %s to %s in %.1f s" % (old, new, time.monotonic() - started))
    # Clients reconnect: a new login and query through the VIP, now on the new holder.
    assert app_python(QUERY, VIP, FRONTEND_PORT, APP_USER, APP_PASSWORD, APP_DB, timeout=30) == [1]
    # nopreempt: the old holder comes back as BACKUP and leaves the VIP where it is.
    since = node_time(NODES[old])
    ssh(NODES[old], "systemctl start keepalived")
    wait_until("%s back as BACKUP" % old, lambda: vrrp_state(NODES[old], since) == "BACKUP", 15)
    time.sleep(3)
    assert holders() == [new]


@pytest.mark.parametrize("port", [FRONTEND_PORT, HEALTH_PORT], ids=["haproxy-frontend", "health-agent"])
def test_a_failing_check_on_the_holder_moves_the_vip(port, restore):
    old = one_holder()
    ip = NODES[old]
    unit = UNITS[port]
    since = node_time(ip)
    started = time.monotonic()
    ssh(ip, "systemctl stop %s" % unit)
    new = wait_until("the VIP leaves %s" % old, lambda: moved_from(old), FAILOVER_SECONDS)
    print("check on port %d failed: VIP moved from %s to %s in %.1f s" % (port, old, new, time.monotonic() - started))
    assert vrrp_state(ip, since) == "FAULT"
    ssh(APP, REACH % VIP)
    # Back to health: BACKUP again, and the VIP stays on the new holder (nopreempt).
    since = node_time(ip)
    ssh(ip, "systemctl start %s" % unit)
    wait_until("%s back as BACKUP" % old, lambda: vrrp_state(ip, since) == "BACKUP", 15)
    time.sleep(3)
    assert holders() == [new]
