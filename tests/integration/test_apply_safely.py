"""Issue 14, apply safely: a change only a restart applies goes one node at a time, and a node
that fails the role's real-login check after its restart is rolled back (its previous
pgbouncer.ini, restarted with it), the nodes after it get their previous file back without a
restart, and the play fails naming the node.

The failure is a real one, not a test hook: the restart-only change comes with a wrong
pgbouncer_check_login_password, so the first node's check after its restart fails.

Cost on the lab: about 1.5 minutes, one failing site.yml run on the three nodes (it stops in
the PgBouncer play) and one `--tags pgbouncer_config` run to put the nodes back if the test
failed half way.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from conftest import APP_DB, APP_PASSWORD, APP_USER, NODES, ansible_playbook, app_python, recorded_playbook, ssh

ROLE = "pgbouncer.cluster.pgbouncer : "
FIRST = next(iter(NODES))  # inventory order: pg-srv1 restarts first
LATER = [name for name in NODES if name != FIRST]

LOGIN = r"""
import json, sys
import psycopg
user, password, db = sys.argv[1:4]
result = {}
for host in sys.argv[4:]:
    try:
        with psycopg.connect(host=host, port=6432, user=user, password=password, dbname=db, connect_timeout=5) as conn:
            result[host] = conn.execute("SELECT 'ok'").fetchone()[0]
    except Exception as exc:
        result[host] = "error: %s" % str(exc).strip().splitlines()[0]
print(json.dumps(result))
"""


def config_sha(ip):
    return ssh(ip, "sha256sum /etc/pgbouncer/pgbouncer.ini").stdout.split()[0]


def main_pid(ip):
    return ssh(ip, "systemctl show -p MainPID --value pgbouncer").stdout.strip()


def live_socket_mode(ip):
    out = ssh(ip, "runuser -u postgres -- psql -XAt -h /var/run/postgresql -p 6432 -U pgbouncer pgbouncer -c 'SHOW CONFIG'").stdout
    return next(line.split("|")[1] for line in out.splitlines() if line.split("|")[0] == "unix_socket_mode")


@pytest.fixture
def put_back():
    yield
    recorded_playbook("playbooks/site.yml", "--tags", "pgbouncer_config")


def test_a_restart_that_fails_its_check_is_rolled_back_and_stops_the_play(put_back):
    before = {name: (config_sha(ip), main_pid(ip)) for name, ip in NODES.items()}
    # 0770 is the default: 0700 is a change only a restart applies.
    with tempfile.NamedTemporaryFile(suffix=".json") as record_file:
        result = ansible_playbook("playbooks/site.yml", "-e", json.dumps(
            {"pgbouncer_unix_socket_mode": "0700", "pgbouncer_check_login_password": "wrong-on-purpose"}), record=record_file.name)
        changed = {host: set(tasks) for host, tasks in json.loads(Path(record_file.name).read_text(encoding="utf-8"))["changed"].items()}
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    assert "%s did not pass the check after its restart" % FIRST in output, output[-4000:]
    assert "The nodes not restarted yet (%s) have their previous file back too" % ", ".join(LATER) in output, output[-4000:]

    # Only the first node restarted (then again with its previous file); the others never did
    # and got their previous file back instead.
    assert {ROLE + "Restart pgbouncer", ROLE + "Put the previous pgbouncer.ini back",
            ROLE + "Restart pgbouncer with the previous pgbouncer.ini"} <= changed[FIRST], changed[FIRST]
    for name in LATER:
        assert ROLE + "Restart pgbouncer" not in changed.get(name, set()), changed.get(name)
        assert ROLE + "Put the previous pgbouncer.ini back on the nodes not restarted yet" in changed.get(name, set()), changed.get(name)
        assert main_pid(NODES[name]) == before[name][1], "%s restarted" % name

    # The cluster is as it was: the same pgbouncer.ini everywhere, the old value live on the
    # first node (restarted with its previous file), every pooler answering a real login.
    assert {name: config_sha(ip) for name, ip in NODES.items()} == {name: sha for name, (sha, _pid) in before.items()}
    assert main_pid(NODES[FIRST]) != before[FIRST][1], "%s was not restarted" % FIRST
    assert live_socket_mode(NODES[FIRST]) not in ("0700", "700", "448")
    assert app_python(LOGIN, APP_USER, APP_PASSWORD, APP_DB, *NODES.values()) == dict.fromkeys(NODES.values(), "ok")
    # The copy rolled back to stays, the one copy per file.
    for ip in NODES.values():
        assert ssh(ip, "ls /etc/pgbouncer").stdout.split().count("pgbouncer.ini.previous") == 1
