# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of the pgbouncer role's variables that argument_specs cannot express (ranges,
addresses, cross-field rules). Each problem names the variable. Pure functions.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import ipaddress
import re

# variable -> (minimum, maximum or None)
INT_RANGES = {
    "pgbouncer_listen_port": (1, 65535),
    "pgbouncer_default_pool_size": (0, None),
    "pgbouncer_min_pool_size": (0, None),
    "pgbouncer_reserve_pool_size": (0, None),
    "pgbouncer_reserve_pool_timeout": (0, None),
    "pgbouncer_max_client_conn": (1, None),
    "pgbouncer_max_db_connections": (0, None),
    "pgbouncer_max_user_connections": (0, None),
    "pgbouncer_server_check_delay": (0, None),
    "pgbouncer_server_idle_timeout": (0, None),
    "pgbouncer_server_lifetime": (0, None),
    "pgbouncer_query_wait_timeout": (0, None),
    "pgbouncer_client_idle_timeout": (0, None),
    "pgbouncer_stats_period": (1, None),
    "pgbouncer_database_wildcard_port": (1, 65535),
    "pgbouncer_limit_nofile": (64, None),
}

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def is_address(text, allow_star=False):
    """An IPv4/IPv6 address or a host name (what PgBouncer resolves)."""
    text = text.strip()
    if allow_star and text == "*":
        return True
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        pass
    # All digits and dots is meant as IPv4 and failed above; so is anything not a name.
    if re.fullmatch(r"[0-9.]+", text):
        return False
    return bool(_HOSTNAME.match(text))


def _int_problems(variables):
    for name, (low, high) in INT_RANGES.items():
        if name not in variables:
            continue
        value = variables[name]
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                value = int(str(value), 10)
            except ValueError:
                yield "%s must be a whole number, not %r" % (name, variables[name])
                continue
        if value < low or (high is not None and value > high):
            bounds = "at least %d" % low if high is None else "between %d and %d" % (low, high)
            yield "%s must be %s, not %d" % (name, bounds, value)


def _address_problems(variables):
    listen = variables.get("pgbouncer_listen_addr")
    if listen is not None:
        items = str(listen).split(",")
        bad = [item.strip() for item in items if not is_address(item, allow_star=True)]
        if bad or not str(listen).strip():
            yield "pgbouncer_listen_addr must be a comma-separated list of IP addresses, host names or *, not %r" % listen
    host = variables.get("pgbouncer_database_wildcard_host")
    if variables.get("pgbouncer_database_wildcard", True) and host is not None and not is_address(str(host)):
        yield "pgbouncer_database_wildcard_host must be an IP address or host name, not %r" % host


def _database_problems(variables):
    seen = set()
    for index, entry in enumerate(variables.get("pgbouncer_databases") or []):
        where = "pgbouncer_databases[%d]" % index
        if not isinstance(entry, dict) or not entry.get("name"):
            yield "%s needs a name" % where
            continue
        name = entry["name"]
        where = "pgbouncer_databases[%d] (%s)" % (index, name)
        if name == "*":
            yield "%s: use pgbouncer_database_wildcard for the * entry" % where
        if name in seen:
            yield "%s: duplicate database name %s" % (where, name)
        seen.add(name)
        if not entry.get("host"):
            yield "%s needs a host" % where
        elif not is_address(str(entry["host"])) and not str(entry["host"]).startswith("/"):
            yield "%s: host must be an IP address, host name or socket directory, not %r" % (where, entry["host"])


def problems(variables):
    """Every problem found in `variables` (role variable name -> value), as messages."""
    return list(_int_problems(variables)) + list(_address_problems(variables)) + list(_database_problems(variables))
