"""No secret of pgbouncer.ini in Ansible's output: a [databases] entry with a password, a
full run with -vvv --diff, then one in check mode that changes the password, and the password
never in the output. Cost on the lab: about 65 s (two site.yml runs with -vvv, one to restore)."""

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
    return ansible_playbook("playbooks/site.yml", "-vvv", "--diff", "--limit", NODE, *extra,
                            "-e", json.dumps({"pgbouncer_databases": [*LAB_DATABASES, entry]}), timeout=1200)


@pytest.fixture
def restore_node():
    yield
    result = ansible_playbook("playbooks/site.yml", "--limit", NODE)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "secret_db" not in ssh(IP, "cat /etc/pgbouncer/pgbouncer.ini").stdout


# The file in base64 (a slurp result) would hide a password from a plain search: these are
# "Leak-Probe-" in base64 at each of the three alignments it can have in a longer text.
PROBE = b"Leak-Probe-"
BASE64_PROBES = [base64.b64encode(b"\0" * shift + PROBE)[4:-4].decode() for shift in range(3)]


def leaks(output):
    return [line for line in output.splitlines() if "Leak-Probe" in line or any(probe in line for probe in BASE64_PROBES)]


def test_a_password_in_databases_is_never_printed(restore_node):
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
