"""The dry run a careful DBA starts with, on nodes where nothing is deployed yet.

Runs between Molecule's prepare and converge (scripts/molecule-scenario SCENARIO dryrun, which
`make test` calls): `site.yml --check --diff` on the fresh nodes must run to the end, say
which PgBouncer version it assumes, and leave every node as it was. What it reported
changed is kept in .lab/dryrun-fresh-<scenario>.json; test_dry_run.py in the verify step
compares it with what converge then changed (.lab/converge-<scenario>.json).

Cost: one check run of site.yml on 3 fresh nodes, about 40 s.
"""

from __future__ import annotations

import json
import os
import re

from conftest import lab

NODES, STATE = lab.NODES, lab.STATE
SCENARIO = os.environ.get("MOLECULE_SCENARIO_NAME", "lab")


def test_the_dry_run_on_fresh_nodes_runs_to_the_end_and_changes_nothing():
    before = {name: lab.node_state(ip) for name, ip in NODES.items()}
    assert all("pgbouncer install ok installed" not in state for state in before.values()), \
        "these nodes already have PgBouncer: this test needs the fresh nodes of Molecule's prepare step"

    out, changed = lab.recorded_playbook("playbooks/site.yml", "--check", "--diff")

    assumed = dict(re.findall(r"^ok: \[(\S+)\] => \{\n\s+\"msg\": \"PgBouncer is not installed yet: check mode assumes (\S+),", out, re.MULTILINE))
    assert sorted(assumed) == sorted(NODES), out[-3000:]
    after = {name: lab.node_state(ip) for name, ip in NODES.items()}
    for name in NODES:
        assert after[name] == before[name], "the dry run changed %s" % name
    for name in NODES:
        assert "pgbouncer.cluster.pgbouncer : Install PgBouncer and psycopg" in changed.get(name, ()), changed
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / ("dryrun-fresh-%s.json" % SCENARIO)).write_text(
        json.dumps({"machine_ids": {name: lab.ssh(ip, "cat /etc/machine-id").stdout.strip() for name, ip in NODES.items()},
                    "assumed_version": assumed, "changed": {host: sorted(tasks) for host, tasks in changed.items()}}, indent=1),
        encoding="utf-8")
