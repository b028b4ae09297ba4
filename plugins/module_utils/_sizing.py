# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pool sizing across poolers: can the PgBouncers pointing at one PostgreSQL together open
more server connections than it accepts? Pure functions.

A pooler is a dict (the pgbouncer role builds it per host):
  name, default_pool_size, reserve_pool_size, max_db_connections, max_user_connections,
  users: names that can log in, databases: [databases] entries (dicts with name, host,
  optional user, pool_size, reserve_pool, max_db_connections),
  wildcard: bool, wildcard_host, wildcard_databases: names the "*" entry serves,
  address: the node's own address (a host that is a socket directory counts against it),
  processes: PgBouncer processes on the node (optional, default 1). The limits are the
  node's; each process gets its share (_processes.share), and the node can open
  processes x what one process can.
A capacity is {host: {"max_connections": n, "superuser_reserved_connections": n,
  "reserved_connections": n}} for each PostgreSQL whose limits are known.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _processes
from ansible_collections.pgbouncer.cluster.plugins.module_utils._text import as_int


def database_demand(pooler, entry):
    """(server connections one [databases] entry can open, the arithmetic as text)."""
    pool = as_int(entry.get("pool_size")) or as_int(pooler["default_pool_size"])
    reserve = as_int(entry.get("reserve_pool", entry.get("reserve_pool_size"))) or as_int(pooler["reserve_pool_size"])
    pairs = 1 if entry.get("user") else len(pooler["users"])
    total = pairs * (pool + reserve)
    text = "%d user%s x (%d + %d)" % (pairs, "" if pairs == 1 else "s", pool, reserve)
    cap = as_int(entry.get("max_db_connections")) or as_int(pooler["max_db_connections"])
    if cap and cap < total:
        return cap, "max_db_connections %d" % cap
    return total, text


def pooler_demand(pooler):
    """{postgres host: (connections, [per-database arithmetic])} for one pooler (all its processes)."""
    processes = as_int(pooler.get("processes")) or 1
    if processes == 1:
        return _process_demand(pooler)
    one = dict(pooler, processes=1)
    for key in ("default_pool_size", "reserve_pool_size", "max_db_connections", "max_user_connections"):
        one[key] = _processes.share(pooler.get(key), processes)
    one["databases"] = [_processes.divided_database(entry, processes) for entry in pooler.get("databases") or []]
    return {
        host: (processes * count, ["%d processes x (%s)" % (processes, "; ".join(parts))])
        for host, (count, parts) in _process_demand(one).items()
    }


def _process_demand(pooler):
    entries = list(pooler.get("databases") or [])
    if pooler.get("wildcard"):
        named = {entry["name"] for entry in entries}
        entries += [
            {"name": name, "host": pooler["wildcard_host"]}
            for name in pooler.get("wildcard_databases") or []
            if name not in named
        ]
    demand = {}
    for entry in entries:
        count, text = database_demand(pooler, entry)
        # A socket directory (host=/var/run/postgresql) is the node's own PostgreSQL.
        host = str(entry["host"])
        if host.startswith("/") and pooler.get("address"):
            host = str(pooler["address"])
        total, parts = demand.get(host, (0, []))
        demand[host] = (total + count, parts + ["%s: %s = %d" % (entry["name"], text, count)])
    per_user = as_int(pooler.get("max_user_connections"))
    users = len(pooler["users"])
    for host, (total, _parts) in demand.items():
        if per_user and users * per_user < total:
            demand[host] = (users * per_user, ["max_user_connections %d x %d users" % (per_user, users)])
    return demand


def problems(poolers, capacities):
    """Messages, one per PostgreSQL that the poolers together could overrun, with the arithmetic."""
    totals = {}
    for pooler in poolers:
        for host, (count, parts) in pooler_demand(pooler).items():
            total, lines = totals.get(host, (0, []))
            totals[host] = (total + count, lines + ["%s %d (%s)" % (pooler["name"], count, "; ".join(parts))])
    found = []
    for host in sorted(totals):
        if host not in capacities:
            continue
        limits = capacities[host]
        budget = (
            as_int(limits["max_connections"])
            - as_int(limits.get("superuser_reserved_connections"))
            - as_int(limits.get("reserved_connections"))
        )
        total, lines = totals[host]
        if total > budget:
            found.append(
                "pool sizing: the poolers can open %d server connections to PostgreSQL %s, which accepts %d "
                "(max_connections %d - superuser_reserved_connections %d - reserved_connections %d): %s = %d. "
                "Lower pgbouncer_default_pool_size / pgbouncer_reserve_pool_size, or cap with "
                "pgbouncer_max_db_connections / pgbouncer_max_user_connections."
                % (
                    total, host, budget, as_int(limits["max_connections"]),
                    as_int(limits.get("superuser_reserved_connections")), as_int(limits.get("reserved_connections")),
                    " + ".join(lines), total,
                )
            )
    return found
