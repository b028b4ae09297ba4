"""The exporters' ports open to the monitoring hosts only (issue 28): the rules the firewall
role hands the ufw module, evaluated on the controller from the roles' own defaults and vars for
a host of a local inventory (no ufw, no node): one ansible-playbook run with a play per case
(the case's settings as play vars, above the roles' defaults), about 4 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
CLUSTER = {"db1": "10.0.0.1", "db2": "10.0.0.2", "db3": "10.0.0.3"}
MONITORING = {"prom1": "10.0.5.9"}
APP = {"app1": "10.0.1.15"}
COMMENTS = ("pgbouncer-exporter", "haproxy-prometheus", "patroni", "pgbouncer")
ROLES = ("pgbouncer", "pgbouncer_health", "pgbouncer_exporter", "haproxy", "keepalived", "firewall")


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    """{case: {comment: {src, port}}} of db1's rules: the default, three processes, HAProxy's endpoint on."""
    tmp_path = tmp_path_factory.mktemp("firewall")
    inventory = {
        "all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
        "pgbouncer": {"hosts": {name: {"ansible_host": address} for name, address in CLUSTER.items()}},
        "haproxy": {"children": {"pgbouncer": {}}},
        "patroni": {"children": {"pgbouncer": {}}},
        "app": {"hosts": {name: {"ansible_host": address} for name, address in APP.items()}},
        "monitoring": {"hosts": {name: {"ansible_host": address} for name, address in MONITORING.items()}},
    }
    cases = (("default", {}), ("three-processes", {"pgbouncer_processes": 3}), ("haproxy-endpoint", {"haproxy_prometheus_enabled": True}))
    plays = [{
        "name": "The firewall's rules, as the role builds them: %s" % case,
        "hosts": "db1",
        "gather_facts": False,
        "vars": extra,
        "tasks": [
            *({"name": "Load the %s role's settings" % role,
               "ansible.builtin.import_role": {"name": "pgbouncer.cluster.%s" % role, "tasks_from": "defaults.yml"}}
              for role in ROLES),
            {"name": "Write the rules", "ansible.builtin.copy": {"dest": str(tmp_path / ("%s.json" % case)), "mode": "0600",
                                                                 "content": "{{ __firewall_rules | to_json }}"}},
        ],
    } for case, extra in cases]
    (tmp_path / "hosts.yml").write_text(json.dumps(inventory))
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(plays))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    result = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(tmp_path / "hosts.yml"),
                             str(tmp_path / "rules.yml")],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return {case: {rule["comment"]: rule for rule in json.loads((tmp_path / ("%s.json" % case)).read_text()) if rule["comment"] in COMMENTS}
            for case, _extra in cases}


def test_the_exporter_port_is_open_to_the_monitoring_hosts_only(rules):
    exporter = rules["default"]["pgbouncer-exporter"]
    assert (exporter["src"], str(exporter["port"]), exporter["proto"]) == (list(MONITORING.values()), "9127", "tcp")
    # PgBouncer's own port is not opened to the monitoring host.
    assert not set(MONITORING.values()) & set(rules["default"]["pgbouncer"]["src"])


def test_one_exporter_port_per_pgbouncer_process(rules):
    assert str(rules["three-processes"]["pgbouncer-exporter"]["port"]) == "9127:9129"


def test_haproxys_endpoint_is_closed_unless_the_haproxy_role_serves_it(rules):
    # Closed: its port still named, with no source, so exclusive mode removes an old rule.
    assert (rules["default"]["haproxy-prometheus"]["src"], rules["default"]["haproxy-prometheus"]["port"]) == ([], 8405)
    assert rules["haproxy-endpoint"]["haproxy-prometheus"]["src"] == list(MONITORING.values())


def test_patronis_metrics_reach_the_monitoring_hosts(rules):
    assert set(MONITORING.values()) <= set(rules["default"]["patroni"]["src"])
