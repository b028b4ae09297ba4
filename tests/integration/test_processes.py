"""pgbouncer_processes on pg-srv3: two PgBouncer processes sharing 6432 with so_reuseport,
each with its own unit, socket and share of the limits; clients from the app node spread
over both; systemd brings a killed process back; and back to one process leaves nothing
behind. The node is left with the plain single-process layout for the tests after this one."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from conftest import APP, APP_DB, APP_PASSWORD, APP_USER, NODES, SSH_CONFIG, ansible_playbook, recap, ssh

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


def console(socket, sql):
    out = ssh(IP, "runuser -u postgres -- psql -XAt -F '|' -h %s -p 6432 -U pgbouncer pgbouncer -c %s" % (socket, "'%s'" % sql)).stdout
    return [line.split("|") for line in out.splitlines()]


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
    """pg-srv3 with two processes; back to one at the end, whatever happened."""
    first = two()
    yield first
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
