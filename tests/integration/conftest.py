"""Integration tests run against the podman lab (`make lab`, or Molecule's create step).

Nothing here sends a packet to 10.129.0.x before `lab/lab.sh check` has confirmed that the
lab network exists and routes that address; without the lab every test fails loudly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import testinfra

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "lab" / "lab.sh"
STATE = Path(os.environ.get("LAB_STATE", ROOT / ".lab"))
SSH_CONFIG = STATE / "ssh" / "config"
INVENTORY = ROOT / "inventories" / "lab"
NODE_COUNT = int(os.environ.get("LAB_NODES", "3"))
NODES = {"pg-srv%d" % i: "10.129.0.%d" % (20 + i) for i in range(1, NODE_COUNT + 1)}
APP = "10.129.0.31"
OUTSIDER = "10.129.0.41"
# Lab accounts, as in inventories/lab/group_vars/all.yml.
APP_USER, APP_PASSWORD, APP_DB = "app_user", "app-pass-1", "appdb"
ADMIN_USER, ADMIN_PASSWORD = "pgbouncer", "bouncer-admin-1"
STATS_USER, STATS_PASSWORD = "stats_user", "stats-pass-1"


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


def ansible_playbook(*args, timeout=900):
    """ansible-playbook against the lab inventory; CompletedProcess with stdout+stderr."""
    # Only the checkout's ansible.cfg: Molecule's verify step exports ANSIBLE_* settings of its
    # own (forced colour, its collections path) that would change the output these tests read.
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def recap(output):
    """{host: {ok: n, changed: n, failed: n, ...}} from an ansible-playbook PLAY RECAP."""
    stats = {}
    for host, fields in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        stats[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", fields)}
    return stats


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
        "aborted": len(re.findall(r"client \d+ aborted", output)),
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
