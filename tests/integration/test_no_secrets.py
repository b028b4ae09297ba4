"""No secret of pgbouncer.ini in Ansible's output: a [databases] entry with a password, a
full run with -vvv --diff, then one in check mode that changes the password, and the password
never in the output; then every runbook at -vvv with such an entry on every node.

Cost on the lab: about 3 minutes on Debian 12 (two site.yml runs with -vvv on one node; the
pgbouncer role with the entry on every node and five runbooks at -vvv; one run of the pgbouncer
role that takes the entry out again, once for the module); about 60 s on Debian 13, which runs
the first test only."""

from __future__ import annotations

import base64
import json

import pytest

from conftest import APP_DB, NODES, ansible_playbook, ssh

NODE = "pg-srv3"
IP = NODES[NODE]
LAB_DATABASES = [{"name": "appdb_ro", "host": "10.129.0.22", "port": 5432, "dbname": "appdb", "max_db_connections": 5}]
# Distinct per run, so a hit names the run; no role logs in with them (the entry is never used).
SECRETS = {"apply": "Leak-Probe-1 'x'", "check": "Leak-Probe-2"}


def run(password, *extra):
    entry = {"name": "secret_db", "host": IP, "port": 5432, "dbname": APP_DB, "user": "app_user", "password": password,
             "max_db_connections": 2}
    # A forced user with a password is known issue pgbouncer-1612 (app_user's secret is SCRAM),
    # which the role refuses unless accepted: accepted here, since no client ever uses the entry.
    variables = {"pgbouncer_databases": [*LAB_DATABASES, entry], "pgbouncer_known_issues_accepted": ["pgbouncer-1612"]}
    return ansible_playbook("playbooks/site.yml", "-vvv", "--diff", "--limit", NODE, *extra,
                            "-e", json.dumps(variables), timeout=1200)


@pytest.fixture(scope="module")
def restore():
    """The nodes the module's tests gave the secret_db entry (each test adds them before its first
    run); once all of them have run, the pgbouncer role with the lab's settings takes it out there
    again, and no pgbouncer.ini of theirs has it. `--tags pgbouncer`: only that role reads
    pgbouncer_databases and pgbouncer_known_issues_accepted. Once for the module: the second test
    writes the entry on every node anyway, the same on pg-srv3 as the first test's."""
    touched = set()
    yield touched
    if touched:
        result = ansible_playbook("playbooks/site.yml", "--tags", "pgbouncer", "--limit", ",".join(sorted(touched)))
        assert result.returncode == 0, result.stdout[-4000:]
        for name in sorted(touched):
            assert "secret_db" not in ssh(NODES[name], "cat /etc/pgbouncer/pgbouncer.ini").stdout, name


# The file in base64 (a slurp result) would hide a password from a plain search: these are
# "Leak-Probe-" in base64 at each of the three alignments it can have in a longer text.
PROBE = b"Leak-Probe-"
BASE64_PROBES = [base64.b64encode(b"\0" * shift + PROBE)[4:-4].decode() for shift in range(3)]


def leaks(output):
    return [line for line in output.splitlines() if "Leak-Probe" in line or any(probe in line for probe in BASE64_PROBES)]


@pytest.mark.version_dependent
def test_a_password_in_databases_is_never_printed(restore):
    restore.add(NODE)
    first = run(SECRETS["apply"])
    assert first.returncode == 0, first.stdout[-4000:]
    assert leaks(first.stdout + first.stderr) == []
    # The entry reached the file, and --diff showed it masked.
    assert "password='Leak-Probe-1 ''x'''" in ssh(IP, "cat /etc/pgbouncer/pgbouncer.ini").stdout
    assert "+secret_db = host=%s port=5432 dbname=%s user=app_user password=********" % (IP, APP_DB) in first.stdout

    # Check mode with a changed password: the diff has the old and the new line, both masked,
    # and the file stays as it is.
    before = ssh(IP, "sha256sum /etc/pgbouncer/pgbouncer.ini").stdout
    second = run(SECRETS["check"], "--check")
    assert second.returncode == 0, second.stdout[-4000:]
    assert leaks(second.stdout + second.stderr) == []
    for sign in "-+":
        assert "%ssecret_db = host=%s port=5432 dbname=%s user=app_user password=********" % (sign, IP, APP_DB) in second.stdout
    assert ssh(IP, "sha256sum /etc/pgbouncer/pgbouncer.ini").stdout == before


def lab_passwords():
    """Every password the lab inventory holds (group_vars), by walking its values."""
    import yaml  # noqa: PLC0415

    from conftest import INVENTORY  # noqa: PLC0415

    found = set()

    def walk(value, key=""):
        if isinstance(value, dict):
            for name, item in value.items():
                walk(item, str(name))
        elif isinstance(value, list):
            for item in value:
                walk(item, key)
        elif isinstance(value, str) and ("pass" in key.lower() or key in ("superuser", "replication", "rewind")):
            found.add(value)

    for path in (INVENTORY / "group_vars").glob("*.yml"):
        walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return sorted(found)


def test_no_lab_password_in_any_runbook_at_vvv(tmp_path, restore):
    """Issue 24: every runbook at -vvv, with a [databases] entry holding a password on each node's
    own PostgreSQL (so the switchover's and the rolling restart's redirect blocks carry it): no
    lab password, no probe, in the output (with the RELOAD loop of main at 7c0630c, switchover.yml
    -v printed the probe twice). About 2 min: the pgbouncer role with the entry on every node
    (`--tags pgbouncer`: only that role reads it; its output is not what this test reads),
    switchover.yml, rolling_restart.yml, maintenance.yml with a task file that does nothing,
    drain.yml twice; then the module's restore."""
    restore.update(NODES)
    entry = {"name": "secret_db", "host": "{{ pgbouncer_host_address }}", "port": 5432, "dbname": APP_DB, "user": "app_user",
             "password": SECRETS["apply"], "max_db_connections": 2}
    # A forced user with a password is known issue pgbouncer-1612, which the role refuses unless
    # accepted: accepted here, since no client ever uses the entry.
    extra = {"pgbouncer_databases": [*LAB_DATABASES, entry], "pgbouncer_known_issues_accepted": ["pgbouncer-1612"]}
    converge = ansible_playbook("playbooks/site.yml", "--tags", "pgbouncer", "-e", json.dumps(extra), timeout=1200)
    assert converge.returncode == 0, converge.stdout[-4000:]
    noop = tmp_path / "noop.yml"
    noop.write_text('- name: Nothing to do\n  ansible.builtin.debug:\n    msg: maintenance window\n')
    runs = {
        "switchover": ("playbooks/switchover.yml", "-e", "switchover_databases=%s" % APP_DB),
        "rolling_restart": ("playbooks/rolling_restart.yml",),
        "maintenance": ("playbooks/maintenance.yml", "-e", "maintenance_db=%s" % APP_DB, "-e", "maintenance_tasks=%s" % noop,
                        "-e", "maintenance_auto_database=true"),
        "drain": ("playbooks/drain.yml", "-e", "node=%s" % NODE, "-e", "state=drain"),
        "ready": ("playbooks/drain.yml", "-e", "node=%s" % NODE, "-e", "state=ready"),
    }
    passwords = lab_passwords()
    assert "app-pass-1" in passwords and len(passwords) >= 8, passwords
    for name, args in runs.items():
        result = ansible_playbook(*args, "-vvv", timeout=1200)
        assert result.returncode == 0, "%s: %s" % (name, result.stdout[-4000:])
        output = result.stdout + result.stderr
        assert leaks(output) == [], name
        assert [password for password in passwords if password in output] == [], name
