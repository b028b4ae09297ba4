"""Config changes on a live node: reload keeps the process, restart-only keys restart it,
and bad input is refused before anything on a node changes."""

from __future__ import annotations

import json

import pytest

from conftest import NODES, ansible_playbook, recap, ssh

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

    out = converge("-e", json.dumps({"pgbouncer_stats_period": 61, "pgbouncer_unix_socket_mode": "0770"}))
    assert main_pid() != before, "unix_socket_mode is applied only by a restart"
    assert live_setting("unix_socket_mode") in ("0770", "770", "504")


def ini_checksum():
    return ssh(IP, "sha256sum /etc/pgbouncer/pgbouncer.ini /etc/pgbouncer/userlist.txt").stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"pgbouncer_pool_mode": "transactoin"}, "pgbouncer_pool_mode"),
        ({"pgbouncer_default_pool_size": -5}, "pgbouncer_default_pool_size must be at least 0"),
        ({"pgbouncer_listen_addr": "10.129.0.999"}, "pgbouncer_listen_addr must be"),
        ({"pgbouncer_listen_addr": "not an address"}, "pgbouncer_listen_addr must be"),
    ],
    ids=["misspelled-pool-mode", "negative-pool-size", "bad-ipv4", "not-an-address"],
)
def test_bad_input_is_refused_before_any_change(extra, message):
    before, pid = ini_checksum(), main_pid()
    result = ansible_playbook("playbooks/site.yml", "--limit", NODE, "-e", json.dumps(extra))
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert recap(result.stdout)[NODE]["changed"] == 0
    assert ini_checksum() == before and main_pid() == pid
