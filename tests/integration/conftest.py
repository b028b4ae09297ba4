"""Integration tests run against the podman lab (`make lab`, or Molecule's create step).

Nothing here sends a packet to 10.129.0.x before `lab/lab.sh check` has confirmed that the
lab network exists and routes that address; without the lab every test fails loudly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import testinfra

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "lab" / "lab.sh"
STATE = Path(os.environ.get("LAB_STATE", ROOT / ".lab"))
SSH_CONFIG = STATE / "ssh" / "config"
INVENTORY = ROOT / "inventories" / "lab"
CALLBACKS = ROOT / "tests" / "callback_plugins"
NODE_COUNT = int(os.environ.get("LAB_NODES", "3"))
NODES = {"pg-srv%d" % i: "10.129.0.%d" % (20 + i) for i in range(1, NODE_COUNT + 1)}
APP = "10.129.0.31"
OUTSIDER = "10.129.0.41"
# The keepalived VIP and HAProxy's read-write and read-only ports on it; the health agent's port.
VIP, RW_PORT, RO_PORT, HEALTH_PORT = "10.129.0.20", 5000, 5001, 6480
# Lab accounts, as in inventories/lab/group_vars/all.yml.
APP_USER, APP_PASSWORD, APP_DB = "app_user", "app-pass-1", "appdb"
ADMIN_USER, ADMIN_PASSWORD = "pgbouncer", "bouncer-admin-1"
STATS_USER, STATS_PASSWORD = "stats_user", "stats-pass-1"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "version_dependent: the outcome depends on the Debian release's PgBouncer, PostgreSQL, HAProxy or keepalived "
        "(console columns, commands, keys, packaging); the Debian 13 scenario runs only these",
    )


@pytest.fixture(scope="session", autouse=True)
def lab_is_up():
    """Fail (never skip) every test unless each lab address is routed to the lab bridge."""
    for ip in [*NODES.values(), APP, OUTSIDER]:
        check = subprocess.run([str(LAB), "check", ip], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            pytest.fail("lab is not up (%s): run `make lab` first" % check.stderr.strip(), pytrace=False)


def ssh(ip, command, input=None, timeout=120, check=True):
    """Run a shell command on a lab host; returns CompletedProcess (text)."""
    result = subprocess.run(
        ["ssh", "-F", str(SSH_CONFIG), ip, command],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError("ssh %s %r failed (%d): %s%s" % (ip, command, result.returncode, result.stdout, result.stderr))
    return result


def app_python(script, *args, timeout=120, ip=APP):
    """Run a Python script on the app node (python3-psycopg is there); return its JSON output."""
    quoted = " ".join("'%s'" % str(arg).replace("'", "'\\''") for arg in args)
    result = ssh(ip, "python3 - %s" % quoted, input=script, timeout=timeout)
    return json.loads(result.stdout)


def psql(ip, sql, user="postgres", db="postgres"):
    """Run SQL on a node's PostgreSQL as a local superuser; rows as lists of strings."""
    result = ssh(ip, "runuser -u %s -- psql -XAt -F '\t' -v ON_ERROR_STOP=1 -d %s" % (user, db), input=sql)
    return [line.split("\t") for line in result.stdout.splitlines()]


# transaction_in_the_way: the advisory lock its transaction waits on, and the name of the
# direct session that holds that lock.
LOCK_KEY, LOCK_HOLDER = 4242, "pgbouncer-test-lock"


@contextmanager
def transaction_in_the_way(ip, db, user=APP_USER, attempts=5, limit=300):
    """A transaction open on db through ip's PgBouncer (from the app node) while the block runs,
    holding a server connection: it waits on an advisory lock that a direct session on the node's
    PostgreSQL holds. Leaving the block ends that session, so the transaction then finishes
    normally at once. Yields the client process; its exit status is set once the block is left.
    Every wait is bounded (`limit` seconds at most)."""
    locker = subprocess.Popen(
        ["ssh", "-F", str(SSH_CONFIG), ip, "PGAPPNAME=%s timeout %d runuser -u postgres -- psql -XAtq -d %s "
         "-c 'SELECT pg_advisory_lock(%d)' -c 'SELECT pg_sleep(%d)'" % (LOCK_HOLDER, limit + 30, db, LOCK_KEY, limit)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %d AND %%s granted" % LOCK_KEY
    client = None
    try:
        deadline = time.monotonic() + 20
        while psql(ip, waiting % "", db=db) != [["1"]]:
            assert time.monotonic() < deadline, "the lock session did not take its lock on %s" % ip
            time.sleep(0.2)
        # Retried: other tests change passwords and firewall rules for a while.
        command = "timeout %d psql -XAtq 'host=%s port=6432 dbname=%s user=%s' -c 'SELECT pg_advisory_xact_lock_shared(%d)'" % (
            limit + 30, ip, db, user, LOCK_KEY)
        for _attempt in range(attempts):
            client = subprocess.Popen(["ssh", "-F", str(SSH_CONFIG), APP, command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 20
            while client.poll() is None and psql(ip, waiting % "NOT", db=db) != [["1"]] and time.monotonic() < deadline:
                time.sleep(0.2)
            if client.poll() is None and psql(ip, waiting % "NOT", db=db) == [["1"]]:
                break
            client.kill()
            client.communicate()
        else:
            raise AssertionError("no transaction through %s's PgBouncer reached PostgreSQL in %d attempts" % (ip, attempts))
        yield client
    finally:
        psql(ip, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '%s'" % LOCK_HOLDER)
        locker.wait(timeout=60)
        if client is not None:
            client.wait(timeout=60)


# On a HAProxy node: `show stat` from the runtime API socket, as a list of rows keyed by column.
HAPROXY_STATS = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
out = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    out += chunk
header, *lines = out.decode().lstrip("# ").splitlines()
print(json.dumps([dict(zip(header.split(","), line.split(","))) for line in lines if line]))
"""


def haproxy_stats(haproxy_ip, socket_path="/run/haproxy/admin.sock"):
    """{(backend or frontend, server): show stat row} of one HAProxy."""
    rows = app_python(HAPROXY_STATS, socket_path, ip=haproxy_ip, timeout=30)
    return {(row["pxname"], row["svname"]): row for row in rows}


def wait_until(what, predicate, within):
    """Poll `predicate` every 0.5 s for at most `within` seconds; its first true value, else fail
    naming `what`."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "%s: not within %d s" % (what, within)
        time.sleep(0.5)


def vip_holder():
    """The pg-srv node that has the VIP on an interface (exactly one must)."""
    holders = [name for name, ip in NODES.items() if VIP in ssh(ip, "ip -o -4 addr show").stdout]
    assert len(holders) == 1, "VIP %s held by %s" % (VIP, holders or "nobody")
    return holders[0]


def cluster_roles():
    """{"primary": name, "replicas": [names]}: what each node's PostgreSQL says of itself
    (Patroni decides the roles, and a switchover or failover moves them)."""
    in_recovery = {name: psql(ip, "SELECT pg_is_in_recovery()")[0][0] for name, ip in NODES.items()}
    primaries = [name for name, flag in in_recovery.items() if flag == "f"]
    assert len(primaries) == 1, "not exactly one primary: %s" % in_recovery
    return {"primary": primaries[0], "replicas": sorted(name for name, flag in in_recovery.items() if flag == "t")}


def ansible_playbook(*args, timeout=900, record=None):
    """ansible-playbook against the lab inventory; CompletedProcess with stdout+stderr.

    With `record` (a path), tests/callback_plugins/run_record.py writes there what the run
    changed per host (see recorded_playbook)."""
    # Only the checkout's ansible.cfg: Molecule's verify step exports ANSIBLE_* settings of its
    # own (forced colour, its collections path) that would change the output these tests read.
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    if record is not None:
        env.update(ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS), ANSIBLE_CALLBACKS_ENABLED="run_record", RUN_RECORD=str(record))
    return subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def recorded_playbook(*args, timeout=900):
    """ansible_playbook that must succeed; (stdout, {host: [changed task, ...]}) where a task
    reads "role : name" and handlers count (tests/callback_plugins/run_record.py)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as handle:
        result = ansible_playbook(*args, timeout=timeout, record=handle.name)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        record = json.loads(Path(handle.name).read_text(encoding="utf-8"))
    return result.stdout, {host: set(tasks) for host, tasks in record["changed"].items()}


# What a run may change on a node: the collection's files, the units and their processes,
# the firewall and the packages. A dry run must leave all of it as it was.
NODE_STATE = r"""
for path in /etc/pgbouncer /etc/haproxy /etc/keepalived /etc/pgbouncer-cluster /etc/ufw \
            /usr/local/libexec/pgbouncer-cluster /usr/local/sbin /etc/systemd/system; do
  [ -e "$path" ] && find "$path" -xdev \( -type f -o -type l \) -printf '%p %m %u:%g ' -exec sha256sum {} \; | sort
  [ -e "$path" ] && find "$path" -xdev -type d -printf 'dir %p %m %u:%g\n' | sort
done
for unit in pgbouncer pgbouncer-health haproxy keepalived ufw $(systemctl list-units --plain --no-legend 'pgbouncer@*' | cut -d' ' -f1); do
  echo "$unit $(systemctl show -p ActiveState,MainPID,UnitFileState --value "$unit" | tr '\n' ' ')"
done
dpkg-query -W -f '${Package} ${Status} ${Version}\n' pgbouncer haproxy keepalived ufw python3-psycopg 2>&1
command -v ufw > /dev/null && ufw status verbose
id keepalived_script 2>&1 || true
"""


def node_state(ip):
    """Everything NODE_STATE reads on one node, as text (compared before and after a dry run)."""
    return ssh(ip, NODE_STATE).stdout


def recap(output):
    """{host: {ok: n, changed: n, failed: n, ...}} from an ansible-playbook PLAY RECAP."""
    stats = {}
    for host, fields in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        stats[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", fields)}
    return stats


def new_table(primary_ip, prefix):
    """A new table in APP_DB that APP_USER may insert into: id bigserial, at timestamptz."""
    table = "%s_%d" % (prefix, int(time.time() * 1000))
    psql(primary_ip, "CREATE TABLE %s (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())" % table, db=APP_DB)
    psql(primary_ip, "GRANT INSERT, SELECT ON %s TO %s; GRANT USAGE ON SEQUENCE %s_id_seq TO %s" % (table, APP_USER, table, APP_USER), db=APP_DB)
    return table


def rows(ip, table):
    return int(psql(ip, "SELECT count(*) FROM %s" % table, db=APP_DB)[0][0])


def parse_pgbench(output):
    """Counts and per-second progress of a pgbench run (PostgreSQL 15 and 17 wording)."""
    def number(pattern):
        match = re.search(pattern, output, re.MULTILINE)
        assert match, "pgbench output lacks %r:\n%s" % (pattern, output[-3000:])
        return int(match.group(1))

    progress = [(float(ts), float(tps)) for ts, tps in re.findall(r"^progress: ([\d.]+) s, ([\d.]+) tps", output, re.MULTILINE)]
    return {
        "processed": number(r"^number of transactions actually processed: (\d+)"),
        "failed": number(r"^number of failed transactions: (\d+)"),
        # PostgreSQL 15: "client 3 aborted in command 0"; 17: "client 3 script 0 aborted in command 0".
        "aborted": len(re.findall(r"client \d+ (?:script \d+ )?aborted", output)),
        "progress": progress,
        # What pgbench said went wrong (aborts, connection errors), for assertion messages.
        "errors": re.findall(r"^pgbench: error: .*$|^.*(?:aborted|FATAL|ERROR).*$", output, re.MULTILINE),
    }


@pytest.fixture(scope="session")
def hosts():
    """testinfra hosts for the pg-srv nodes, over the lab's ssh_config."""
    return {
        name: testinfra.get_host("ssh://%s" % ip, ssh_config=str(SSH_CONFIG))
        for name, ip in NODES.items()
    }
