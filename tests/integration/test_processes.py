"""pgbouncer_processes on pg-srv3: two PgBouncer processes sharing 6432 with so_reuseport,
each with its own unit, socket and share of the limits; clients from the app node spread
over both; systemd brings a killed process back; switchover.yml pauses and hands over both
under write load; and back to one process leaves nothing behind. The node is left with the plain single-process layout for the tests after this one."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
from test_switchover import PATRONICTL, finish_pgbench, roles_once_all_answer, settled, start_pgbench

from conftest import APP, APP_DB, APP_PASSWORD, APP_USER, NODES, SSH_CONFIG, ansible_playbook, cluster_roles, new_table, recap, rows, ssh, wait_until

# Version-dependent: so_reuseport processes and their consoles on PgBouncer 1.18 and 1.24.
pytestmark = pytest.mark.version_dependent

NODE = "pg-srv3"
IP = NODES[NODE]
UNITS = ("pgbouncer@1.service", "pgbouncer@2.service")
SOCKETS = ("/var/run/postgresql/pgbouncer-1", "/var/run/postgresql/pgbouncer-2")
CLIENTS = 24

# Runs on the app node: open CLIENTS logins through the node's 6432, say so, hold them a while.
HOLD = r"""
import sys, time, psycopg
host, user, password, db, count, seconds = sys.argv[1:7]
conns = [psycopg.connect(host=host, port=6432, user=user, password=password, dbname=db, connect_timeout=10,
                         autocommit=True)
         for _ in range(int(count))]
for conn in conns:
    conn.execute("SELECT 1")
print("ready", flush=True)
time.sleep(float(seconds))
"""


def converge(*extra):
    result = ansible_playbook("playbooks/site.yml", "--limit", NODE, *extra)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return recap(result.stdout)[NODE]


def two(*extra):
    return converge("-e", json.dumps({"pgbouncer_processes": 2}), *extra)


def console(socket, sql, header=False):
    """Rows of the admin console's answer, the column names first with header."""
    out = ssh(IP, "runuser -u postgres -- psql -XA%s -F '|' -h %s -p 6432 -U pgbouncer pgbouncer -c %s"
              % ("" if header else "t", socket, "'%s'" % sql)).stdout
    lines = out.splitlines()[:-1] if header else out.splitlines()  # without the "(n rows)" line
    return [line.split("|") for line in lines]


def task_items(output, host, task):
    """The item labels a task of ansible-playbook's output reported for host (run on it or
    delegated to it), over every time it ran."""
    items = []
    for part in output.split("TASK [")[1:]:
        if part.split("]", 1)[0].endswith(task):
            # "ok: [pg-srv3] => (item=...)", or "[pg-srv1 -> pg-srv3(10.129.0.23)]" when delegated.
            items += re.findall(r"^\w+: \[(?:[\w.-]+ -> )?%s(?:\([\d.]+\))?\] => \(item=(.*)\)$" % re.escape(host), part, re.MULTILINE)
    return items


def show_config(socket):
    return {row[0]: row[1] for row in console(socket, "SHOW CONFIG")}


def main_pid(unit):
    return ssh(IP, "systemctl show -p MainPID --value %s" % unit).stdout.strip()


def wait_restarted(unit, old_pid, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = ssh(IP, "systemctl is-active %s" % unit, check=False).stdout.strip()
        pid = main_pid(unit)
        if state == "active" and pid not in ("0", old_pid):
            return pid
        time.sleep(1)
    pytest.fail("%s did not come back within %d s after kill -9" % (unit, seconds))


def leftovers():
    units = ssh(IP, "systemctl list-units --all --plain --no-legend 'pgbouncer@*'").stdout.strip()
    files = ssh(IP, "ls -d /etc/pgbouncer/pgbouncer-*.ini /etc/systemd/system/pgbouncer@.service "
                    "/var/run/postgresql/pgbouncer-* 2>/dev/null || true").stdout.strip()
    return units, files


@pytest.fixture(scope="module")
def two_processes():
    """pg-srv3 with two processes; back to one at the end, whatever happened (a converge,
    unless test_back_to_one_process_leaves_nothing_behind left it so)."""
    first = two()
    yield first
    if leftovers() != ("", "") or ssh(IP, "systemctl is-active pgbouncer.service", check=False).stdout.strip() != "active":
        converge()


def test_two_units_share_the_port(two_processes):
    assert two_processes["failed"] == 0
    for unit in UNITS:
        assert ssh(IP, "systemctl is-active %s" % unit).stdout.strip() == "active"
        assert ssh(IP, "systemctl is-enabled %s" % unit).stdout.strip() == "enabled"
    assert ssh(IP, "systemctl is-active pgbouncer.service", check=False).stdout.strip() == "inactive"
    assert ssh(IP, "systemctl is-enabled pgbouncer.service", check=False).stdout.strip() == "disabled"
    listeners = ssh(IP, "ss -Hltnp 'sport = :6432'").stdout
    pids = set(re.findall(r"pgbouncer\",pid=(\d+)", listeners))
    assert pids == {main_pid(unit) for unit in UNITS}, listeners


def test_each_console_answers_on_its_own_socket_with_its_share(two_processes):
    version = ssh(IP, "pgbouncer --version").stdout
    peering = tuple(map(int, re.search(r"(\d+)\.(\d+)", version).groups())) >= (1, 19)
    for index, socket in enumerate(SOCKETS, start=1):
        config = show_config(socket)
        # The lab's node limits: max_client_conn 1000, default_pool_size 20, max_db_connections 25.
        assert (config["max_client_conn"], config["default_pool_size"], config["max_db_connections"]) == ("500", "10", "12")
        assert config["so_reuseport"] == "1"
        assert config["unix_socket_dir"] == socket
        assert config["logfile"] == "/var/log/postgresql/pgbouncer-%d.log" % index
        if peering:
            assert config["peer_id"] == str(index)
            peers = [row[0] for row in console(socket, "SHOW PEERS")]
            assert peers == [str(3 - index)], peers
        databases = {row[0]: row for row in console(socket, "SHOW DATABASES")}
        assert "appdb_ro" in databases


def test_clients_from_the_app_node_spread_over_both(two_processes):
    command = "python3 - %s %s %s %s %d 20" % (IP, APP_USER, APP_PASSWORD, APP_DB, CLIENTS)
    holder = subprocess.Popen(["ssh", "-F", str(SSH_CONFIG), APP, command], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder.stdin.write(HOLD)
    holder.stdin.close()
    try:
        assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
        counts = [sum(1 for row in console(socket, "SHOW CLIENTS") if row[1] == APP_USER) for socket in SOCKETS]
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert sum(counts) == CLIENTS and min(counts) > 0, counts


def test_a_killed_process_comes_back(two_processes):
    old = main_pid(UNITS[0])
    other = main_pid(UNITS[1])
    ssh(IP, "kill -9 %s" % old)
    wait_restarted(UNITS[0], old)
    assert main_pid(UNITS[1]) == other, "the other process is not touched"
    assert show_config(SOCKETS[0])["max_client_conn"] == "500"


def test_a_switchover_pauses_and_hands_over_every_process(two_processes, tmp_path):
    """Cost on the lab: about 60 s (a 40 s write load through VIP:5000 with the switchover
    inside it, then the cluster settling), 20 s more when pg-srv3 must become the primary first."""
    before = roles_once_all_answer()
    if before["primary"] != NODE:
        # pg-srv3 primary first: as the old primary it hands its clients over from both
        # processes (a block in each file).
        ssh(NODES[before["primary"]], "%s switchover --candidate %s --force" % (PATRONICTL, NODE))
        wait_until("%s primary" % NODE, lambda: roles_once_all_answer()["primary"] == NODE, 60)
    settled(NODE)
    # As users would give it: pg-srv3's process count as a host variable, the others' default.
    host_vars = tmp_path / "processes.yml"
    host_vars.write_text(json.dumps({"all": {"hosts": {NODE: {"pgbouncer_processes": 2}}}}))
    table = new_table(NODES[NODE], "switchover_processes")
    seconds = 40  # the node-side step comes about 20 s into the playbook (leftovers check, preflight)
    load = start_pgbench(table, seconds)
    time.sleep(3)  # pgbench has its connections
    run = ansible_playbook("-i", host_vars, "playbooks/switchover.yml", "-e", "switchover_databases=%s" % APP_DB, timeout=300)
    result, returncode = finish_pgbench(load, seconds)
    after = cluster_roles()
    written = rows(NODES[after["primary"]], table)
    print("switchover.yml %s -> %s with two processes on %s: %d transactions, %d failed, %d clients cut, %d rows, longest %.0f ms"
          % (NODE, after["primary"], NODE, result["processed"], result["failed"], result["aborted"], written,
             result["longest_ms"]))
    assert run.returncode == 0, run.stdout[-4000:]
    assert after["primary"] != NODE
    # The node-side step (pgbouncer_switchover) paused both processes and wrote the handover
    # block into each file (the playbook's report names them); the hand-back paused, reloaded
    # without the block and resumed each of them.
    report = re.search(r"in (\d+) PgBouncer process\(es\), paused and handed over: (.+?\.ini)\.", run.stdout)
    assert report and report.group(1) == "2", run.stdout[-3000:]
    assert sorted(report.group(2).split(", ")) == ["/etc/pgbouncer/pgbouncer-1.ini", "/etc/pgbouncer/pgbouncer-2.ini"]
    assert sorted(task_items(run.stdout, NODE, "Hold the old primary's remaining clients between transactions")) == [
        "pgbouncer@1.service %s" % APP_DB, "pgbouncer@2.service %s" % APP_DB]
    assert sorted(task_items(run.stdout, NODE, "RELOAD the node's pooler")) == ["pgbouncer@1.service", "pgbouncer@2.service"]
    assert returncode == 0 and result["failed"] == 0 and result["aborted"] == 0, "\n".join(result["errors"][:20])
    assert result["processed"] > 0 and written == result["processed"]
    for socket in SOCKETS:
        header, *databases = console(socket, "SHOW DATABASES", header=True)
        # An auto-database ("*") may be gone after the handback's RELOAD; none may stay paused.
        stuck = [row for row in (dict(zip(header, row)) for row in databases) if (row["paused"], row["disabled"]) != ("0", "0")]
        assert stuck == [], (socket, stuck)
    assert "pgbouncer.cluster switchover" not in ssh(IP, "cat /etc/pgbouncer/pgbouncer-*.ini").stdout
    settled(after["primary"])


def test_second_run_changes_nothing(two_processes):
    assert two()["changed"] == 0


def test_back_to_one_process_leaves_nothing_behind(two_processes):
    stats = converge()
    assert stats["failed"] == 0
    assert leftovers() == ("", "")
    assert ssh(IP, "systemctl is-active pgbouncer.service").stdout.strip() == "active"
    assert ssh(IP, "systemctl is-enabled pgbouncer.service").stdout.strip() == "enabled"
    config = show_config("/var/run/postgresql")
    assert (config["max_client_conn"], config["so_reuseport"]) == ("1000", "0")
    assert converge()["changed"] == 0
    # The single process comes back by itself too (the restart.conf drop-in).
    old = main_pid("pgbouncer.service")
    ssh(IP, "kill -9 %s" % old)
    wait_restarted("pgbouncer.service", old)
