"""playbooks/maintenance.yml on the lab: PAUSE everywhere, the user's task file, RESUME everywhere.

The load test runs pgbench (20 clients, transaction pooling) through pg-srv2 while the playbook
pauses appdb on every node, restarts pg-srv2's PostgreSQL only (maintenance_targets) and
resumes; pgbench must report 0 failed transactions. The failure tests use reportdb, so that a run that goes wrong leaves appdb alone.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from conftest import APP, APP_USER, NODES, SSH_CONFIG, ansible_playbook, app_python, parse_pgbench, psql, recap, ssh, transaction_in_the_way

PLAYBOOK = "playbooks/maintenance.yml"
RESTART = "tasks/restart_postgresql.yml"
LOAD_NODE = "pg-srv2"
CLIENTS = 20
# pgbench -T: a 10 s baseline, the playbook (11 s on the lab: PAUSE, restart PostgreSQL on 3
# nodes, RESUME) and a margin for a loaded machine; it stops by itself. Too short a window
# fails the coverage assertion, never passes it.
LOAD_SECONDS = 45

# A read-only two-statement transaction: needs no pgbench tables (others may use appdb's).
TRANSACTION = "BEGIN;\nSELECT count(*) FROM pg_catalog.pg_class;\nSELECT pg_sleep(0.005);\nEND;\n"

# Runs on the app node: poll SHOW DATABASES on a node and report when db was seen paused.
PAUSE_WATCHER = r"""
import json, sys, time, psycopg
host, db, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
seen, end = [], time.time() + seconds
with psycopg.connect(host=host, port=6432, dbname="pgbouncer", user="pgbouncer", autocommit=True,
                     cursor_factory=psycopg.ClientCursor) as conn:
    cur = conn.cursor()
    while time.time() < end:
        cur.execute("SHOW DATABASES")
        names = [c.name for c in cur.description]
        rows = [dict(zip(names, row)) for row in cur.fetchall()]
        if any(row["name"] == db and int(row["paused"]) for row in rows):
            seen.append(time.time())
        time.sleep(0.1)
print(json.dumps({"first": min(seen) if seen else None, "last": max(seen) if seen else None, "samples": len(seen)}))
"""

CONSOLE = r"""
import json, sys, psycopg
host, commands = sys.argv[1], sys.argv[2:]
with psycopg.connect(host=host, port=6432, dbname="pgbouncer", user="pgbouncer", autocommit=True,
                     cursor_factory=psycopg.ClientCursor) as conn:
    cur = conn.cursor()
    for sql in commands:
        try:
            cur.execute(sql)
        except psycopg.Error:
            pass  # e.g. RESUME of a database that is not paused
    names = [c.name for c in cur.description] if cur.description else []
    print(json.dumps([dict(zip(names, map(str, row))) for row in cur.fetchall()] if names else []))
"""


def warm_up(db, attempts=20):
    """A real query through every node's PgBouncer, so that each one knows db.

    Retried: other tests on the shared lab (firewall ones) may block the app node for a while.
    """
    for ip in NODES.values():
        command = "psql -XAtq 'host=%s port=6432 dbname=%s user=%s connect_timeout=5' -c 'select 1'" % (ip, db, APP_USER)
        for _attempt in range(attempts):
            if ssh(APP, "timeout 15 " + command, check=False, timeout=60).returncode == 0:
                break
            time.sleep(5)
        else:
            pytest.fail("no query through %s's PgBouncer to %s for %d attempts" % (ip, db, attempts))


def paused_anywhere(db):
    """Nodes where db is paused (WAIT_CLOSE, which changes nothing, first relists an idle auto-database)."""
    paused = []
    for name, ip in NODES.items():
        rows = app_python(CONSOLE, ip, 'WAIT_CLOSE "%s"' % db, "SHOW DATABASES")
        if any(row["name"] == db and row["paused"] == "1" for row in rows):
            paused.append(name)
    return paused


def postgres_started():
    return {name: psql(ip, "SELECT pg_postmaster_start_time()")[0][0] for name, ip in NODES.items()}


@pytest.fixture
def resumed_after(request):
    """Whatever happens, resume the test's database on every node afterwards."""
    db = request.param
    if db == "appdb":  # reportdb runs use maintenance_auto_database=true instead
        warm_up(db)
    yield db
    for ip in NODES.values():
        app_python(CONSOLE, ip, 'RESUME "%s"' % db)
    assert paused_anywhere(db) == []


def start_pgbench(script_path):
    command = (
        "timeout %d pgbench -n -h %s -p 6432 -U %s -c %d -j 4 -T %d -f %s -P 1 --progress-timestamp "
        "--max-tries=1 --failures-detailed appdb" % (LOAD_SECONDS + 60, NODES[LOAD_NODE], APP_USER, CLIENTS, LOAD_SECONDS, script_path)
    )
    return subprocess.Popen(["ssh", "-F", str(SSH_CONFIG), APP, command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def start_watcher(db, seconds):
    return subprocess.Popen(
        ["ssh", "-F", str(SSH_CONFIG), APP, "python3 - %s %s %d" % (NODES[LOAD_NODE], db, seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize("resumed_after", ["appdb"], indirect=True)
def test_restart_postgresql_under_load_fails_no_transaction(resumed_after):
    db = resumed_after
    script = ssh(APP, "mktemp /tmp/maintenance-load.XXXXXX.sql").stdout.strip()
    ssh(APP, "cat > %s" % script, input=TRANSACTION)
    started_before = postgres_started()
    pgbench = start_pgbench(script)
    watcher = start_watcher(db, LOAD_SECONDS)
    watcher.stdin.write(PAUSE_WATCHER)
    watcher.stdin.close()
    try:
        time.sleep(10)  # a baseline before the pause
        begun = time.time()
        run = ansible_playbook(PLAYBOOK, "-e", "maintenance_db=%s" % db, "-e", "maintenance_tasks=%s" % RESTART,
                               "-e", "maintenance_targets=%s" % LOAD_NODE, timeout=LOAD_SECONDS)
        finished = time.time()
        output = pgbench.communicate(timeout=LOAD_SECONDS + 120)[0]
        window = json.loads(watcher.stdout.read())
        watcher.wait(timeout=60)
    finally:
        for process in (pgbench, watcher):
            if process.poll() is None:
                process.kill()
        ssh(APP, "rm -f %s" % script, check=False)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert all(stats["failed"] == 0 and stats["unreachable"] == 0 for stats in recap(run.stdout).values())
    started_after = postgres_started()
    restarted = sorted(name for name in NODES if started_after[name] != started_before[name])
    assert restarted == [LOAD_NODE], "maintenance_targets=%s restarted PostgreSQL on %s" % (LOAD_NODE, restarted)

    assert pgbench.returncode == 0, output[-3000:]  # an aborted client makes pgbench exit 2
    result = parse_pgbench(output)
    assert result["failed"] == 0, output[-3000:]
    assert result["processed"] > 0

    # The pause was seen, and pgbench ran before, through and after it.
    assert window["first"] is not None, "appdb was never seen paused on %s" % LOAD_NODE
    progress = result["progress"]
    assert progress and progress[0][0] < window["first"] - 1 and progress[-1][0] > finished, \
        "pgbench did not cover the maintenance window (raise LOAD_SECONDS)"

    def transactions(start, end):
        return sum(tps for ts, tps in progress if start <= ts <= end)  # 1-second intervals: tps = count

    print("pgbench: %d transactions, %d failed; %s paused %.1f s, %d transactions completed in that window; the playbook took %.0f s"
          % (result["processed"], result["failed"], db, window["last"] - window["first"],
             transactions(window["first"], window["last"] + 1), finished - begun))
    assert transactions(window["first"] - 5, window["first"]) > 0, "no load just before the PAUSE"
    assert transactions(window["first"], window["last"] + 1) > 0, "no transaction completed in the PAUSE window"
    assert transactions(window["last"] + 1, progress[-1][0]) > 0, "no load after the RESUME"


@pytest.mark.parametrize("resumed_after", ["reportdb"], indirect=True)
def test_a_node_that_does_not_pause_resumes_the_others_and_runs_nothing(resumed_after):
    db = resumed_after
    started_before = postgres_started()
    # Holds a server connection on pg-srv3 until the playbook has given up (5 s pause timeout).
    with transaction_in_the_way(NODES["pg-srv3"], db) as holder:
        run = ansible_playbook(PLAYBOOK, "-e", "maintenance_db=%s" % db, "-e", "maintenance_tasks=%s" % RESTART,
                               "-e", "maintenance_pause_timeout=5", "-e", "maintenance_auto_database=true", timeout=300)

    assert run.returncode != 0
    assert "did not pause on pg-srv3" in run.stdout
    assert "Restart PostgreSQL" not in run.stdout
    assert postgres_started() == started_before
    assert paused_anywhere(db) == []
    assert holder.returncode == 0, holder.stderr.read()  # the transaction in the way finished normally


@pytest.mark.parametrize("resumed_after", ["reportdb"], indirect=True)
def test_resumes_everywhere_when_the_task_file_fails(resumed_after, tmp_path):
    db = resumed_after
    run = ansible_playbook(PLAYBOOK, "-e", "maintenance_db=%s" % db, "-e", "maintenance_tasks=%s" % (tmp_path / "missing.yml"),
                           "-e", "maintenance_auto_database=true", timeout=300)
    assert run.returncode != 0
    stats = recap(run.stdout)
    assert set(stats) == set(NODES) and all(node["failed"] == 1 for node in stats.values()), run.stdout[-3000:]
    assert re.search(r"TASK \[RESUME the databases\].*?changed: \[pg-srv1\]", run.stdout, re.DOTALL)
    assert paused_anywhere(db) == []


def test_refuses_to_run_without_inputs():
    run = ansible_playbook(PLAYBOOK, timeout=300)
    assert run.returncode != 0
    assert "set maintenance_db" in run.stdout
    assert "PAUSE the database" not in run.stdout
