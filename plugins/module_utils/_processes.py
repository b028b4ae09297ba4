# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Several PgBouncer processes on one node (pgbouncer_processes > 1, so_reuseport): where
each one's unit, config, socket, pid file and log are, and its share of the node's limits.
Pure functions.

Each limit is divided by the number of processes, rounded down, at least 1 (0 stays 0: it
means "no limit" or "none"), so the node's processes together never open more than the
user set, except where a limit is smaller than the number of processes.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import posixpath

from ansible_collections.pgbouncer.cluster.plugins.module_utils._text import unit_base

# [pgbouncer] limits that are per process, divided among the processes.
DIVIDED_SETTINGS = (
    "max_client_conn",
    "default_pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "max_db_connections",
    "max_user_connections",
    "max_db_client_connections",
    "max_user_client_connections",
)
# The same for [databases] and [users] entries.
DIVIDED_DATABASE_KEYS = ("pool_size", "min_pool_size", "reserve_pool", "reserve_pool_size", "max_db_connections")
DIVIDED_USER_KEYS = ("pool_size", "reserve_pool_size", "max_user_connections", "max_user_client_connections")


def share(value, processes):
    """One process's part of a node limit: floor(value / processes), at least 1; 0 stays 0."""
    if value in (None, ""):
        return value
    total = int(str(value), 10)
    if total <= 0 or int(processes) <= 1:
        return total
    return max(1, total // int(processes))


def _suffixed(path, index):
    """/var/run/postgresql/pgbouncer.pid -> /var/run/postgresql/pgbouncer-2.pid ('' stays '')."""
    if not path:
        return path
    root, ext = posixpath.splitext(path)
    return "%s-%s%s" % (root, index, ext)


def process(index, processes=1, service_name="pgbouncer", config_dir="/etc/pgbouncer",
            unix_socket_dir="/var/run/postgresql", pidfile="/var/run/postgresql/pgbouncer.pid",
            logfile="/var/log/postgresql/pgbouncer.log", listen_port=6432):
    """Where process `index` (1-based; "%i" for a systemd template unit) lives."""
    name = unit_base(service_name)
    if int(processes) <= 1:
        return {
            "index": 1, "unit": name + ".service", "config_file": posixpath.join(config_dir, "pgbouncer.ini"),
            "unix_socket_dir": unix_socket_dir, "pidfile": pidfile, "logfile": logfile, "port": int(listen_port),
        }
    return {
        "index": int(index) if str(index).isdigit() else index,
        "unit": "%s@%s.service" % (name, index),
        "config_file": posixpath.join(config_dir, "pgbouncer-%s.ini" % index),
        "unix_socket_dir": posixpath.join(unix_socket_dir, "%s-%s" % (name, index)) if unix_socket_dir else "",
        "pidfile": _suffixed(pidfile, index),
        "logfile": _suffixed(logfile, index),
        "port": int(listen_port),
    }


def layout(processes=1, index=None, **paths):
    """Every process of the node, in order (or only process `index`, e.g. "%i")."""
    if index is not None:
        return process(index, processes, **paths)
    return [process(index, processes, **paths) for index in range(1, max(1, int(processes)) + 1)]


def _divided(entry, keys, processes):
    return {key: share(value, processes) if key in keys else value for key, value in entry.items()}


def divided_database(entry, processes):
    """A [databases] entry with its pool sizes and caps divided among `processes`."""
    return _divided(entry, DIVIDED_DATABASE_KEYS, processes)


def process_config(proc, all_processes, settings, databases=(), users=(), peering=False):
    """{settings, databases, users, peers} for the ini file of `proc`, one of `all_processes`
    (the layout() list).

    One process: everything as given (the plain layout). Several: limits divided, the
    process's own socket/pid/log, so_reuseport, and with `peering` (PgBouncer 1.19+) its
    peer_id and the other processes as [peers], so a cancel request reaches its owner.
    """
    processes = len(all_processes)
    if processes <= 1:
        return {"settings": dict(settings), "databases": list(databases), "users": list(users), "peers": []}
    own = _divided(settings, DIVIDED_SETTINGS, processes)
    own.update(logfile=proc["logfile"] or None, pidfile=proc["pidfile"] or None,
               unix_socket_dir=proc["unix_socket_dir"], so_reuseport=1)
    peers = []
    if peering:
        own["peer_id"] = proc["index"]
        peers = [
            {"peer_id": other["index"], "host": other["unix_socket_dir"], "port": other["port"]}
            for other in all_processes
            if other["index"] != proc["index"]
        ]
    return {
        "settings": own,
        "databases": [_divided(entry, DIVIDED_DATABASE_KEYS, processes) for entry in databases],
        "users": [_divided(entry, DIVIDED_USER_KEYS, processes) for entry in users],
        "peers": peers,
    }


def retired(processes, units=(), config_files=(), **paths):
    """Processes found on the node (systemd unit names, config file paths) that the layout
    for `processes` no longer has, to stop, disable and remove. With several processes the
    distribution's single unit is always among them (its port is taken by the others)."""
    name = unit_base(paths.get("service_name", "pgbouncer"))
    wanted = {proc["unit"] for proc in layout(processes, **paths)}
    found = {}
    single = process(1, 1, **paths)
    if int(processes) > 1:
        found[single["unit"]] = single
    for unit in units:
        if unit == single["unit"]:
            found[unit] = single
        elif unit.startswith(name + "@") and unit.endswith(".service"):
            index = unit[len(name) + 1: -len(".service")]
            if index.isdigit():
                found[unit] = process(index, 2, **paths)
    for path in config_files:
        base = posixpath.basename(path)
        index = base[len("pgbouncer-"): -len(".ini")] if base.startswith("pgbouncer-") and base.endswith(".ini") else ""
        if index.isdigit():
            proc = process(index, 2, **paths)
            found[proc["unit"]] = proc
    return sorted((proc for unit, proc in found.items() if unit not in wanted), key=lambda proc: (proc["unit"].count("@"), proc["index"]))
