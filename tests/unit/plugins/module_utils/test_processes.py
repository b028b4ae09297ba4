"""Several PgBouncer processes per node (module_utils/_processes.py) and their pool sizing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _processes, _sizing  # noqa: E402


@pytest.mark.parametrize(
    ("value", "processes", "expected"),
    [(1000, 1, 1000), (1000, 3, 333), (25, 2, 12), (5, 2, 2), (1, 4, 1), (0, 4, 0), ("20", 2, 10), (None, 2, None)],
)
def test_share_is_floor_at_least_one_and_zero_stays_zero(value, processes, expected):
    assert _processes.share(value, processes) == expected


def test_one_process_is_the_distribution_layout():
    assert _processes.layout(1) == [{
        "index": 1, "unit": "pgbouncer.service", "config_file": "/etc/pgbouncer/pgbouncer.ini",
        "unix_socket_dir": "/var/run/postgresql", "pidfile": "/var/run/postgresql/pgbouncer.pid",
        "logfile": "/var/log/postgresql/pgbouncer.log", "port": 6432,
    }]


def test_several_processes_get_their_own_unit_socket_pid_and_log():
    second = _processes.layout(2, service_name="pgbouncer.service", listen_port="6433")[1]
    assert second == {
        "index": 2, "unit": "pgbouncer@2.service", "config_file": "/etc/pgbouncer/pgbouncer-2.ini",
        "unix_socket_dir": "/var/run/postgresql/pgbouncer-2", "pidfile": "/var/run/postgresql/pgbouncer-2.pid",
        "logfile": "/var/log/postgresql/pgbouncer-2.log", "port": 6433,
    }
    pattern = _processes.layout(2, index="%i")
    assert pattern["config_file"] == "/etc/pgbouncer/pgbouncer-%i.ini"
    assert pattern["unix_socket_dir"] == "/var/run/postgresql/pgbouncer-%i"
    assert _processes.layout(3, logfile="")[2]["logfile"] == ""


SETTINGS = {
    "listen_port": 6432, "max_client_conn": 1000, "default_pool_size": 20, "min_pool_size": 0,
    "reserve_pool_size": 5, "max_db_connections": 25, "max_user_connections": 0, "stats_period": 60,
    "logfile": "/var/log/postgresql/pgbouncer.log", "client_tls_key_file": None,
}
DATABASES = [{"name": "appdb_ro", "host": "10.0.0.2", "max_db_connections": 5, "pool_size": 7}]
USERS = [{"name": "report_user", "pool_mode": "session", "max_user_connections": 10}]


def test_one_process_keeps_everything_as_given():
    config = _processes.process_config(_processes.layout(1)[0], _processes.layout(1), SETTINGS, DATABASES, USERS, True)
    assert config == {"settings": SETTINGS, "databases": DATABASES, "users": USERS, "peers": []}


def test_several_processes_divide_the_limits_and_peer_on_1_19():
    procs = _processes.layout(3)
    config = _processes.process_config(procs[1], procs, SETTINGS, DATABASES, USERS, True)
    settings = config["settings"]
    assert (settings["max_client_conn"], settings["default_pool_size"], settings["reserve_pool_size"]) == (333, 6, 1)
    assert (settings["max_db_connections"], settings["max_user_connections"], settings["min_pool_size"]) == (8, 0, 0)
    assert settings["stats_period"] == 60 and settings["client_tls_key_file"] is None
    assert settings["so_reuseport"] == 1 and settings["peer_id"] == 2
    assert settings["unix_socket_dir"] == "/var/run/postgresql/pgbouncer-2"
    assert settings["logfile"] == "/var/log/postgresql/pgbouncer-2.log"
    assert settings["pidfile"] == "/var/run/postgresql/pgbouncer-2.pid"
    assert config["databases"] == [{"name": "appdb_ro", "host": "10.0.0.2", "max_db_connections": 1, "pool_size": 2}]
    assert config["users"] == [{"name": "report_user", "pool_mode": "session", "max_user_connections": 3}]
    assert config["peers"] == [
        {"peer_id": 1, "host": "/var/run/postgresql/pgbouncer-1", "port": 6432},
        {"peer_id": 3, "host": "/var/run/postgresql/pgbouncer-3", "port": 6432},
    ]
    assert SETTINGS["max_client_conn"] == 1000, "the node's settings are not changed in place"


def test_no_peering_before_1_19():
    procs = _processes.layout(2)
    config = _processes.process_config(procs[0], procs, SETTINGS, peering=False)
    assert "peer_id" not in config["settings"] and config["peers"] == []


def test_retired_processes_when_growing_and_shrinking():
    units = ["pgbouncer.service"]
    assert [p["unit"] for p in _processes.retired(1, units)] == []
    assert [p["unit"] for p in _processes.retired(2, units)] == ["pgbouncer.service"]
    found = ["pgbouncer@1.service", "pgbouncer@2.service", "pgbouncer@3.service", "pgbouncer-exporter.service"]
    files = ["/etc/pgbouncer/pgbouncer-4.ini", "/etc/pgbouncer/pgbouncer-old.ini"]
    assert [p["unit"] for p in _processes.retired(2, found, files)] == [
        "pgbouncer.service", "pgbouncer@3.service", "pgbouncer@4.service",
    ]
    back = _processes.retired(1, found, files)
    assert [p["unit"] for p in back] == ["pgbouncer@1.service", "pgbouncer@2.service", "pgbouncer@3.service", "pgbouncer@4.service"]
    assert back[0]["config_file"] == "/etc/pgbouncer/pgbouncer-1.ini"
    assert back[0]["unix_socket_dir"] == "/var/run/postgresql/pgbouncer-1"


def pooler(**changes):
    base = dict(
        name="pg-srv1", address="10.0.0.1", default_pool_size=20, reserve_pool_size=0, max_db_connections=25,
        max_user_connections=0, users=["app", "report"], databases=[], wildcard=True, wildcard_host="10.0.0.1",
        wildcard_databases=["appdb"],
    )
    base.update(changes)
    return base


def test_sizing_counts_every_process_with_its_share():
    # One process: 2 users x 20 = 40, capped by max_db_connections 25.
    assert _sizing.pooler_demand(pooler())["10.0.0.1"][0] == 25
    # Two processes: each min(2 x 10, 12) = 12, so 24 for the node (never above 25).
    count, parts = _sizing.pooler_demand(pooler(processes=2))["10.0.0.1"]
    assert count == 24 and parts == ["2 processes x (appdb: max_db_connections 12 = 12)"]
    # A cap smaller than the processes: each gets 1, and the check counts 4.
    assert _sizing.pooler_demand(pooler(processes=4, max_db_connections=3))["10.0.0.1"][0] == 4
    capacity = {"max_connections": 20, "superuser_reserved_connections": 3}
    found = _sizing.problems([pooler(processes=2)], {"10.0.0.1": capacity})
    assert len(found) == 1 and "pg-srv1 24 (2 processes x (appdb: max_db_connections 12 = 12))" in found[0]
