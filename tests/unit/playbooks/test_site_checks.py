"""site.yml checks every role's input before the first play that changes a node (issue 23,
items 8 and 10), proved on the controller alone: no lab, no node.

The plays of site.yml before its first play with roles are its checks. The tests run exactly
those (the first, which gathers facts and reads the installed packages, is replaced by a plain
fact gathering: package_facts needs python3-apt, and the checks read no package) against an
inventory of three hosts with `ansible_connection: local` and become off. Nothing they run
changes this host: asserts, and the health agent's port check (systemctl show, ss), for which
stubs answer "no agent, nothing listening" (this machine may run without systemd, and may run
something on the agent's port). Cost: about 8 s
per ansible-playbook run (its start, the fact gathering, the checks); five runs, about 40-50 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
SITE = ROOT / "playbooks" / "site.yml"
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "tasks" / "validate.yml").exists())

# A three-node cluster as the README's production inventory has it: the poolers on the
# Patroni/etcd members, HAProxy and keepalived on the same hosts, one application host.
GOOD_HOSTS = {"db1": "127.0.0.1", "db2": "127.0.0.2", "db3": "127.0.0.3"}
GOOD_VARS = {
    "keepalived_vip": "127.0.0.100",
    "keepalived_auth_pass": "secret1",
    "pgbouncer_stats_users": ["stats_user"],
    "pgbouncer_health_login_password": "stats-pass",
    "pgbouncer_exporter_login_password": "stats-pass",
}


# The firewall's lists drawn from the cluster's groups (group app keeps its address here).
FIREWALL_GROUP_LISTS = ("firewall_postgres_allowed_sources", "firewall_patroni_allowed_sources", "firewall_etcd_client_allowed_sources",
                        "firewall_etcd_peer_allowed_sources", "firewall_haproxy_hosts_sources", "firewall_vrrp_allowed_sources")


def inventory(addresses=None, app=True):
    """The inventory as a dict; addresses None: names only (no host has ansible_host)."""
    hosts = {name: ({"ansible_host": address} if addresses else {}) for name, address in (addresses or dict.fromkeys(GOOD_HOSTS)).items()}
    return {
        "all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False, **GOOD_VARS}},
        "pgbouncer": {"hosts": hosts},
        "postgres": {"children": {"pgbouncer": {}}},
        "patroni": {"children": {"postgres": {}}},
        "etcd": {"children": {"postgres": {}}},
        "haproxy": {"children": {"pgbouncer": {}}},
        "keepalived": {"children": {"haproxy": {}}},
        "app": {"hosts": {"app1": {"ansible_host": "127.0.0.31"}} if app else {}},
        # Prometheus on the application host: the exporters' plays and checks run.
        "monitoring": {"hosts": {"app1": {}} if app else {}},
    }


def check_plays():
    """site.yml's plays before its first play with roles: what runs before any node changes."""
    plays = yaml.safe_load(SITE.read_text())
    first_change = next(index for index, play in enumerate(plays) if "roles" in play)
    # leftovers.yml (imported) reads what an interrupted runbook left on the nodes' PgBouncer and
    # HAProxy, which only the lab has: tests/integration/test_runbook_interrupted.py runs it.
    return [play for play in plays[:first_change] if "ansible.builtin.import_playbook" not in play]


def run_checks(tmp_path, inventory_data, extra=None):
    """site.yml's check plays on the local inventory: (return code, output)."""
    facts, *checks = check_plays()
    assert facts["gather_facts"] and all("ansible.builtin.package_facts" in task for task in facts["tasks"]), (
        "site.yml's first play is no longer only the fact gathering: run it here too")
    playbook = [{"name": "Gather facts as site.yml's first play", "hosts": facts["hosts"], "gather_facts": True,
                 "gather_subset": facts["gather_subset"]}, *checks]
    # In a playbooks/ directory next to the roles, as site.yml is: its checks read
    # playbook_dir/../roles/<role>/meta/argument_specs.yml.
    (tmp_path / "playbooks").mkdir(exist_ok=True)
    if not (tmp_path / "roles").exists():
        (tmp_path / "roles").symlink_to(ROOT / "roles")
    (tmp_path / "playbooks" / "checks.yml").write_text(json.dumps(playbook))
    (tmp_path / "hosts.yml").write_text(json.dumps(inventory_data))
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    # The health agent's port check reads this machine: stubs make it see no agent (systemctl)
    # and nothing listening (ss), whatever runs here (another test's agent on 6480).
    for name, script in (("systemctl", "#!/bin/sh\necho 0\n"), ("ss", "#!/bin/sh\nexit 0\n")):
        (stub / name).write_text(script)
        (stub / name).chmod(0o755)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               PATH="%s:%s:%s" % (stub, Path(sys.executable).parent, os.environ.get("PATH", "")))
    command = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "playbooks" / "checks.yml")]
    if extra:
        command += ["-e", json.dumps(extra)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    return result.returncode, result.stdout + result.stderr


def test_the_check_plays_change_nothing_and_check_every_role():
    """Structure, no run: no check play has roles or a task other than loading a role's defaults,
    including a role's validate.yml and checking a role's argument_specs, and every role's
    validate.yml and argument_specs are checked."""
    facts, *checks = check_plays()
    assert checks, "site.yml has no check play before its first play with roles"
    included, specs = set(), set()
    for play in checks:
        assert "roles" not in play and "pre_tasks" not in play and "post_tasks" not in play and "handlers" not in play
        for task in play["tasks"]:
            if "ansible.builtin.import_role" in task:
                assert task["ansible.builtin.import_role"]["tasks_from"] == "defaults.yml", task
            elif "ansible.builtin.validate_argument_spec" in task:
                specs.update(role for role in ROLES if "/roles/%s/meta/argument_specs.yml" % role in
                             task["ansible.builtin.validate_argument_spec"]["argument_spec"])
            else:
                assert task["ansible.builtin.include_role"]["tasks_from"] == "validate.yml", task
                included.add(task["ansible.builtin.include_role"]["name"].rsplit(".", 1)[1])
    assert included == set(ROLES)
    assert specs == set(ROLES)


def test_a_good_inventory_passes_the_checks(tmp_path):
    """Guards the refusals below against a check play that refuses everything."""
    returncode, output = run_checks(tmp_path, inventory(GOOD_HOSTS))
    assert returncode == 0, output[-4000:]


# (case, variables, message): each case on a host of its own, all in one run.
BAD_INPUTS = [
    ("vip-null", {"keepalived_vip": None}, "keepalived_vip is required"),
    ("vip-empty", {"keepalived_vip": ""}, "keepalived_vip is required"),
    ("auth-pass-empty", {"keepalived_auth_pass": ""}, "keepalived_auth_pass is required"),
    ("health-password-empty", {"pgbouncer_health_login_password": ""}, "pgbouncer_health_login_password is required"),
    ("health-user-empty", {"pgbouncer_stats_users": []}, "pgbouncer_health_login_user is required"),
    ("exporter-password-empty", {"pgbouncer_exporter_login_password": ""}, "pgbouncer_exporter_login_password is required"),
    ("exporter-port-on-pgbouncer", {"pgbouncer_exporter_port": 6432}, "none of them PgBouncer's port 6432"),
    ("exporter-extra-float-digits", {"pgbouncer_ignore_startup_parameters": ["options"]}, "lacks extra_float_digits"),
    ("haproxy-unknown-backend", {"haproxy_backend_hosts": ["nosuchhost"]}, "haproxy_backend_hosts must name inventory hosts"),
    ("keepalived-vrid", {"keepalived_virtual_router_id": 300}, "keepalived_virtual_router_id must be between 1 and 255"),
    # Types and choices, from the roles' argument_specs, which only the roles' own plays checked.
    ("haproxy-weight-type", {"haproxy_server_weight": "heavy"}, "argument 'haproxy_server_weight' is of type str"),
    ("haproxy-check-source-choice", {"haproxy_check_source": "consul"}, "haproxy_check_source must be one of"),
    # The firewall's older name for its PgBouncer sources (issue 29): refused, naming the new one.
    ("old-allowed-sources-name", {"pgbouncer_allowed_sources": ["127.0.0.31"]},
     "pgbouncer_allowed_sources is no longer read: rename it firewall_pgbouncer_allowed_sources"),
    # Not set at all (the other hosts have it as a host variable).
    ("vip-missing", {"keepalived_vip": "__unset__"}, "keepalived_vip is required"),
]


def test_haproxy_keepalived_and_agent_input_is_refused_before_any_node_changes(tmp_path):
    """Issue 23 item 10: a missing keepalived_vip failed in site.yml's last play, after PgBouncer,
    the agent, the firewall and HAProxy had changed. Now the check plays refuse it, naming the
    variable (and, for a missing one, saying that it is required). One run: each case is the
    host vars of one host, which fails alone with its own message."""
    addresses = {name: "127.0.0.%d" % (10 + index) for index, (name, _extra, _message) in enumerate(BAD_INPUTS)}
    data = inventory(addresses)
    vip = data["all"]["vars"].pop("keepalived_vip")
    for name, extra, _message in BAD_INPUTS:
        data["pgbouncer"]["hosts"][name].update({"keepalived_vip": vip, **extra})
        if extra.get("keepalived_vip") == "__unset__":
            del data["pgbouncer"]["hosts"][name]["keepalived_vip"]
    returncode, output = run_checks(tmp_path, data)
    assert returncode != 0, output[-4000:]
    fatal = {line.split("]", 1)[0].removeprefix("fatal: ["): line for line in output.splitlines() if line.startswith("fatal: [")}
    wrong = {name: fatal.get(name, "NOT REFUSED") for name, _extra, message in BAD_INPUTS if message not in fatal.get(name, "")}
    assert wrong == {}, output[-4000:]


def test_a_names_only_inventory_is_refused_naming_each_cluster_list(tmp_path):
    """Issue 23 item 8: hosts without ansible_host made the firewall's PostgreSQL, Patroni and etcd
    source lists empty, the checks passed, and ufw would have denied 5432, 8008, 2379 and 2380
    between the members. Now the firewall check refuses, naming each variable and the hosts."""
    returncode, output = run_checks(tmp_path, inventory(None))
    assert returncode != 0, output[-4000:]
    for variable, port in [("firewall_postgres_allowed_sources", 5432), ("firewall_patroni_allowed_sources", 8008),
                           ("firewall_etcd_client_allowed_sources", 2379), ("firewall_etcd_peer_allowed_sources", 2380)]:
        assert "%s is required for port %s: db2, db3 have no ansible_host" % (variable, port) in output, output[-4000:]


def test_a_names_only_inventory_is_refused_naming_keepalived_peers(tmp_path):
    """The firewall lists set, keepalived's peers not: keepalived's default (the other hosts'
    ansible_host) cannot be built, and the check says which variable to set instead of a
    template error ("no attribute 'ansible_host'")."""
    data = inventory(None)
    data["all"]["vars"].update(dict.fromkeys(FIREWALL_GROUP_LISTS, ["127.0.0.0/8"]))
    returncode, output = run_checks(tmp_path, data)
    assert returncode != 0, output[-4000:]
    assert "keepalived_unicast_peers is required" in output and "no attribute" not in output, output[-4000:]


def test_a_names_only_inventory_passes_with_the_lists_set(tmp_path):
    """The refusal's second way out: the lists set (here a CIDR) instead of ansible_host."""
    lists = dict.fromkeys(FIREWALL_GROUP_LISTS, ["127.0.0.0/8"])
    data = inventory(None)
    # keepalived needs its own addresses (it has no firewall-style list to fall back on).
    data["all"]["vars"].update(lists, keepalived_unicast_src_ip="127.0.0.1", keepalived_unicast_peers=["127.0.0.2", "127.0.0.3"])
    returncode, output = run_checks(tmp_path, data)
    assert returncode == 0, output[-4000:]
