"""Pool sizing across poolers (module_utils/_sizing.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _sizing  # noqa: E402

CAPACITY = {"max_connections": 100, "superuser_reserved_connections": 3, "reserved_connections": 0}


def pooler(name, address, **changes):
    base = dict(
        name=name, address=address, default_pool_size=20, reserve_pool_size=0, max_db_connections=0,
        max_user_connections=0, users=["app", "report", "pgbouncer", "stats", "odd"], databases=[],
        wildcard=True, wildcard_host=address, wildcard_databases=["appdb", "postgres", "reportdb"], capacity=CAPACITY,
    )
    base.update(changes)
    return base


def test_defaults_overcommit_and_the_message_shows_the_arithmetic():
    found = _sizing.problems([pooler("pg-srv1", "10.0.0.1")], {"10.0.0.1": CAPACITY})
    assert len(found) == 1
    message = found[0]
    assert "open 300 server connections to PostgreSQL 10.0.0.1, which accepts 97" in message
    assert "max_connections 100 - superuser_reserved_connections 3 - reserved_connections 0" in message
    assert "pg-srv1 300 (appdb: 5 users x (20 + 0) = 100; postgres: 5 users x (20 + 0) = 100; reportdb: 5 users x (20 + 0) = 100)" in message


def test_max_db_connections_caps_each_database():
    lab = [pooler("pg-srv%d" % i, "10.0.0.%d" % i, max_db_connections=25,
                  databases=[{"name": "appdb_ro", "host": "10.0.0.2", "dbname": "appdb", "max_db_connections": 5}])
           for i in (1, 2, 3)]
    capacities = {"10.0.0.%d" % i: CAPACITY for i in (1, 2, 3)}
    assert _sizing.problems(lab, capacities) == []
    demand = _sizing.pooler_demand(lab[0])
    assert demand["10.0.0.1"][0] == 75 and demand["10.0.0.2"][0] == 5


def test_all_poolers_pointing_at_one_server_add_up():
    # Three poolers whose wildcard all points at one primary: 3 x 3 x 25 = 225 > 97.
    poolers = [pooler("pg-srv%d" % i, "10.0.0.%d" % i, wildcard_host="10.0.0.1", max_db_connections=25) for i in (1, 2, 3)]
    found = _sizing.problems(poolers, {"10.0.0.1": CAPACITY})
    assert len(found) == 1 and "open 225 server connections" in found[0]
    assert found[0].count("max_db_connections 25") == 9


def test_forced_user_reserve_and_max_user_connections():
    entry = {"name": "batch", "host": "10.0.0.9", "user": "batch", "pool_size": 10, "reserve_pool": 5}
    assert _sizing.database_demand(pooler("p", "10.0.0.1"), entry) == (15, "1 user x (10 + 5)")
    capped = pooler("p", "10.0.0.1", max_user_connections=4)
    assert _sizing.pooler_demand(capped)["10.0.0.1"][0] == 20  # 5 users x 4


def test_unknown_servers_are_not_judged():
    assert _sizing.problems([pooler("p", "10.0.0.1", wildcard_host="db.example.com")], {"10.0.0.1": CAPACITY}) == []


def test_an_alias_to_a_replica_counts_against_that_replicas_max_connections():
    # Each pooler: its own node's 3 databases capped at 20 (60), and appdb_ro pointing at the
    # replica 10.0.0.2, capped at 20 too. The replica gets 60 + 3 x 20 = 120 > 97; the primary
    # 10.0.0.1 only its own 60.
    alias = {"name": "appdb_ro", "host": "10.0.0.2", "dbname": "appdb"}
    poolers = [pooler("pg-srv%d" % i, "10.0.0.%d" % i, max_db_connections=20, databases=[alias]) for i in (1, 2, 3)]
    found = _sizing.problems(poolers, {"10.0.0.%d" % i: CAPACITY for i in (1, 2, 3)})
    assert len(found) == 1 and "open 120 server connections to PostgreSQL 10.0.0.2" in found[0], found


def test_a_socket_directory_counts_against_the_nodes_own_postgresql():
    # pgbouncer_database_wildcard_host: /var/run/postgresql, and a named entry on the socket:
    # both are the node's PostgreSQL (10.0.0.1), not an unknown server left unjudged.
    socket = pooler("pg-srv1", "10.0.0.1", wildcard_host="/var/run/postgresql", max_db_connections=25,
                    databases=[{"name": "appdb_sock", "host": "/var/run/postgresql", "dbname": "appdb"}])
    assert _sizing.pooler_demand(socket) == {"10.0.0.1": (100, [
        "appdb_sock: max_db_connections 25 = 25", "appdb: max_db_connections 25 = 25",
        "postgres: max_db_connections 25 = 25", "reportdb: max_db_connections 25 = 25"])}
    found = _sizing.problems([socket], {"10.0.0.1": CAPACITY})
    assert len(found) == 1 and "open 100 server connections to PostgreSQL 10.0.0.1" in found[0]
