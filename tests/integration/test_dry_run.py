"""`--check --diff` predicts the real run, and changes nothing (README: "Dry run").

- Fresh nodes: make test's dryrun step (tests/fresh, before Molecule's converge) kept what the
  dry run reported changed, and converge what it changed (.lab/dryrun-fresh-<scenario>.json,
  .lab/converge-<scenario>.json): compared here, per host, with the version it assumed.
- Converged nodes: changed=0, no diff, the nodes untouched.
- Pending changes (a setting reloaded, one restarted, a database, an app host, a new user and
  a changed password in PostgreSQL): test_role_changes compares each dry run with its real run.

Cost: the converged dry run, about 45 s (Debian 12); the fresh comparison reads two files.
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import NODES, STATE, ansible_playbook, node_state, psql, recap, recorded_playbook, ssh

SCENARIO = os.environ.get("MOLECULE_SCENARIO_NAME", "lab")

# What a dry run on fresh nodes cannot know: a directory that the real run's package or an
# earlier role creates before this task looks for it (keepalived's package brings
# /etc/keepalived; the health agent's role creates /usr/local/libexec/pgbouncer-cluster).
# Tasks that only made such a directory would be reported changed by the dry run alone; the
# keepalived role makes them in the task that writes its scripts (node_files), new on fresh
# nodes in both runs, so no task is left out of the comparison now.
MADE_EARLIER_IN_THE_REAL_RUN: set[str] = set()


@pytest.mark.version_dependent
def test_the_dry_run_on_fresh_nodes_predicted_what_converge_changed():
    dry_run, converge = STATE / ("dryrun-fresh-%s.json" % SCENARIO), STATE / ("converge-%s.json" % SCENARIO)
    if not (dry_run.exists() and converge.exists()):
        pytest.skip("needs the records of make test's dryrun and converge steps (scripts/molecule-scenario %s dryrun converge)" % SCENARIO)
    predicted = json.loads(dry_run.read_text(encoding="utf-8"))
    if predicted["machine_ids"] != {name: ssh(ip, "cat /etc/machine-id").stdout.strip() for name, ip in NODES.items()}:
        pytest.skip("the records in %s are from an earlier lab (other machine ids)" % STATE)
    changed = json.loads(converge.read_text(encoding="utf-8"))["changed"]
    for name, ip in NODES.items():
        would = set(predicted["changed"].get(name, ())) - MADE_EARLIER_IN_THE_REAL_RUN
        did = set(changed.get(name, ())) - MADE_EARLIER_IN_THE_REAL_RUN
        assert would == did, "%s: the dry run alone: %s; converge alone: %s" % (
            name, sorted(would - did), sorted(did - would))
        installed = ssh(ip, "pgbouncer --version").stdout.split()[1]
        assert installed == predicted["assumed_version"][name], "%s: dry run assumed %s, apt installed %s" % (
            name, predicted["assumed_version"][name], installed)


def test_the_dry_run_on_converged_nodes_reports_nothing_and_changes_nothing():
    before = {name: node_state(ip) for name, ip in NODES.items()}
    out, changed = recorded_playbook("playbooks/site.yml", "--check", "--diff")
    assert changed == {}, changed
    assert "--- before" not in out and "+++ after" not in out, out[-3000:]
    assert {name: node_state(ip) for name, ip in NODES.items()} == before


def test_the_maintenance_and_rolling_restart_dry_runs_say_what_they_would_do_and_change_nothing():
    """(drain.yml and switchover.yml: test_haproxy and test_switchover.) Cost: about 30 s."""
    def postmasters():
        return {name: psql(ip, "SELECT pg_postmaster_start_time()")[0][0] for name, ip in NODES.items()}

    before, started = {name: node_state(ip) for name, ip in NODES.items()}, postmasters()
    maintenance = ansible_playbook("playbooks/maintenance.yml", "--check", "-e", "maintenance_db=appdb",
                                   "-e", "maintenance_tasks=tasks/restart_postgresql.yml", "-e", "maintenance_targets=pg-srv2")
    rolling = ansible_playbook("playbooks/rolling_restart.yml", "--check")
    for run in (maintenance, rolling):
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert {name: node_state(ip) for name, ip in NODES.items()} == before, "a dry run restarted or changed something"
    assert postmasters() == started, "the maintenance dry run restarted PostgreSQL"
    assert "PAUSE" in maintenance.stdout and "Restart PostgreSQL" in maintenance.stdout, maintenance.stdout[-3000:]
    assert all(recap(rolling.stdout)[name]["changed"] > 0 for name in NODES), rolling.stdout[-3000:]
