"""Config changes on a live node: reload keeps the process, restart-only keys restart it.
(Bad input refused before any change: test_config_surface, every case in one run.)"""

from __future__ import annotations

import json

import pytest

from conftest import NODES, ansible_playbook, ssh

NODE = "pg-srv2"
IP = NODES[NODE]


def main_pid():
    return ssh(IP, "systemctl show -p MainPID --value pgbouncer").stdout.strip()


def live_setting(key):
    out = ssh(IP, "runuser -u postgres -- psql -XAt -h /var/run/postgresql -p 6432 -U pgbouncer pgbouncer -c 'SHOW CONFIG'").stdout
    for line in out.splitlines():
        fields = line.split("|")
        if fields[0] == key:
            return fields[1]
    raise AssertionError("%s not in SHOW CONFIG" % key)


def converge(*extra):
    result = ansible_playbook("playbooks/site.yml", "--limit", NODE, *extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return result.stdout


@pytest.fixture
def restore_defaults():
    yield
    converge()


def test_reload_for_reloadable_keys_restart_for_restart_only_keys(restore_defaults):
    before = main_pid()
    out = converge("-e", json.dumps({"pgbouncer_stats_period": 61}))
    assert "RUNNING HANDLER [pgbouncer.cluster.pgbouncer : Reload pgbouncer]" in out
    assert main_pid() == before, "a reloadable change must not restart PgBouncer"
    assert live_setting("stats_period") == "61"

    # 0770 is the default: 0700 is a change (and not world-writable, which would need pgbouncer_allow_insecure).
    out = converge("-e", json.dumps({"pgbouncer_stats_period": 61, "pgbouncer_unix_socket_mode": "0700"}))
    assert main_pid() != before, "unix_socket_mode is applied only by a restart"
    assert live_setting("unix_socket_mode") in ("0700", "700", "448")
