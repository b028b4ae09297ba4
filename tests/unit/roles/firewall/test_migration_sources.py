"""The migration period made explicit (issue 23, item 9): the first run closed 5432 to every
application while the README moves them from 5432 to 6432 one at a time. The rules the role
hands the ufw module, evaluated on the controller from the role's own defaults and vars for a
host of a local inventory (no ufw, no node): two ansible-playbook runs, about 4 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "firewall"
CLUSTER = {"db1": "10.0.0.1", "db2": "10.0.0.2", "db3": "10.0.0.3"}
STILL_ON_5432 = ["10.0.1.15", "10.0.2.0/24"]


@pytest.fixture(scope="module")
def postgres_rule_sources(tmp_path_factory):
    """{case: sources of the postgres rule on db1}: the default, and a migration list."""
    tmp_path = tmp_path_factory.mktemp("firewall")
    inventory = {
        "all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
        "pgbouncer": {"hosts": {name: {"ansible_host": address} for name, address in CLUSTER.items()}},
        "postgres": {"children": {"pgbouncer": {}}},
    }
    out = tmp_path / "rules.json"
    plays = [{
        "name": "The firewall's rules, as the role builds them",
        "hosts": "db1",
        "gather_facts": False,
        "tasks": [
            *({"name": "Load the %s role's settings" % role,
               "ansible.builtin.import_role": {"name": "pgbouncer.cluster.%s" % role, "tasks_from": "defaults.yml"}}
              for role in ("pgbouncer", "pgbouncer_health", "haproxy", "keepalived", "firewall")),
            {"name": "Write the sources of the postgres rule", "ansible.builtin.copy": {
                "dest": str(out), "mode": "0600",
                "content": "{{ __firewall_rules | selectattr('comment', 'equalto', 'postgres') | map(attribute='src') | first | to_json }}"}},
        ],
    }]
    (tmp_path / "hosts.yml").write_text(json.dumps(inventory))
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(plays))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    found = {}
    for case, extra in (("default", {}), ("migration", {"firewall_postgres_migration_sources": STILL_ON_5432})):
        result = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(tmp_path / "hosts.yml"),
                                 str(tmp_path / "rules.yml"), "-e", json.dumps(extra)],
                                capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        found[case] = json.loads(out.read_text())
    return found


def test_by_default_5432_is_open_to_the_cluster_nodes_only(postgres_rule_sources):
    assert sorted(postgres_rule_sources["default"]) == sorted(CLUSTER.values())


def test_hosts_still_on_5432_keep_it_while_they_move(postgres_rule_sources):
    assert sorted(postgres_rule_sources["migration"]) == sorted([*CLUSTER.values(), *STILL_ON_5432])


def test_the_variable_is_documented_with_an_empty_default():
    defaults = (ROLE / "defaults" / "main.yml").read_text()
    assert yaml.safe_load(defaults)["firewall_postgres_migration_sources"] == []
    comment = defaults.split("\nfirewall_postgres_migration_sources:")[0].splitlines()[-1]
    assert comment.startswith("# ") and "5432" in comment
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert spec["firewall_postgres_migration_sources"]["type"] == "list"
    assert spec["firewall_postgres_migration_sources"]["default"] == []
    readme = (ROLE / "README.md").read_text()
    assert "## What the first run closes" in readme[: readme.index("<!-- BEGIN VARIABLES")]
