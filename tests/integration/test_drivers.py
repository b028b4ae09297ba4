"""The driver lane, short (issue 26): each Python driver's workload through VIP:5000 (reads
through VIP:5001) from the app node, on the lab's PgBouncer version, in transaction pooling.

- With the settings docs/drivers.md gives for this PgBouncer version (`--settings`), every
  feature of every driver works except the few that no setting can fix in transaction pooling
  (bench/drivers/common.py EXPECTED_FAILURES: SQL-level PREPARE, connection-time settings,
  asyncpg cursors on 1.18). A driver that crashes, commits nothing, or fails anything else fails
  the test, with its errors by class.
- On PgBouncer 1.21+ the drivers that prepare statements (psycopg 3, asyncpg, both SQLAlchemy
  dialects) work with their own defaults: the role's max_prepared_statements default is what
  makes that true. On 1.18 they need the settings, which the first test covers.

Cost on the lab: the install play (playbooks/lab/drivers.yml) about 5 s when the app node has
the venv of bench/drivers/requirements.txt, about 60 s the first time (pip from PyPI); then 8
drivers x (3 s + about 2 s start) with the settings and, on 1.21+, 5 drivers x 5 s without:
about 70 s in all on a warm app node.
"""

from __future__ import annotations

import json
import shlex
import sys

import pytest

from conftest import APP, APP_DB, APP_PASSWORD, APP_USER, NODES, RO_PORT, ROOT, RW_PORT, VIP, ansible_playbook, ssh

sys.path.insert(0, str(ROOT))
from bench.drivers import common  # noqa: E402  (the lane's own definitions of "expected")

# PgBouncer 1.18 on Debian 12, 1.24 on Debian 13: what works depends on it.
pytestmark = pytest.mark.version_dependent

SECONDS = 3
LANE = "/opt/pgbouncer-drivers"
DSN = "postgresql://%s:%s@%s:%d/%s" % (APP_USER, APP_PASSWORD, VIP, RW_PORT, APP_DB)
READ_DSN = "postgresql://%s:%s@%s:%d/%s" % (APP_USER, APP_PASSWORD, VIP, RO_PORT, APP_DB)
PREPARING = ("psycopg3", "psycopg3-prepare0", "asyncpg", "sqlalchemy-psycopg", "sqlalchemy-asyncpg")


@pytest.fixture(scope="module")
def lane():
    """The lane installed on the app node (a no-op when its venv is there), and the PgBouncer version."""
    run = ansible_playbook("playbooks/lab/drivers.yml", timeout=600)
    assert run.returncode == 0, run.stdout[-3000:]
    return ssh(NODES["pg-srv1"], "pgbouncer --version").stdout.split()[1]


def run_lane(version, drivers, settings):
    argv = ["venv/bin/python", "-m", "bench.drivers.run", "--dsn", DSN, "--read-dsn", READ_DSN, "--seconds", str(SECONDS),
            "--clients", "4", "--drivers", ",".join(drivers), "--pooler-version", version] + (["--settings"] if settings else [])
    limit = len(drivers) * (SECONDS + 130)
    result = ssh(APP, "cd %s && timeout %d %s" % (LANE, limit, " ".join(map(shlex.quote, argv))), timeout=limit + 30, check=False)
    results = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["driver"] for r in results] == list(drivers), "lane printed %s (exit %d): %s" % (
        [r["driver"] for r in results], result.returncode, result.stderr[-2000:])
    return results


def describe(result):
    return "%s: %d transactions, errors %s" % (result["driver"], result.get("transactions", 0), json.dumps(result.get("errors", {}))[:1500])


def test_every_driver_works_with_the_documented_settings(lane):
    results = run_lane(lane, common.DRIVERS, settings=True)
    for result in results:
        print(describe(result))
    broken = {r["driver"]: common.unexpected_failures(r) for r in results if common.unexpected_failures(r)}
    assert not broken, "drivers broken through VIP:5000 on PgBouncer %s with the documented settings: %s\n%s" % (
        lane, broken, "\n".join(describe(r) for r in results if r["driver"] in broken))
    idle = [r["driver"] for r in results if r["transactions"] == 0]
    assert not idle, "drivers that committed nothing: %s" % idle


def test_preparing_drivers_work_with_their_defaults_on_1_21_and_later(lane):
    if common.pooler_line(lane) == "1.18":
        # Not a skip of a claim: 1.18 has no prepared statement support, and docs/drivers.md
        # says these drivers need the settings there, which the test above runs.
        results = run_lane(lane, ("psycopg3",), settings=False)
        assert results[0]["features"]["prepared"]["status"] == "error", (
            "psycopg 3 prepared statements passed through PgBouncer %s without settings: the docs say they fail: %s" % (lane, describe(results[0])))
        return
    results = run_lane(lane, PREPARING, settings=False)
    for result in results:
        print(describe(result))
    broken = {r["driver"]: r["features"]["prepared"]["error"] for r in results if r["features"]["prepared"]["status"] != "ok"}
    assert not broken, "prepared statements failed through PgBouncer %s with max_prepared_statements: %s" % (lane, broken)
