# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of the pgbouncer role's variables that argument_specs cannot express (ranges,
addresses, cross-field rules). Each problem names the variable. Pure functions.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ini
from ansible_collections.pgbouncer.cluster.plugins.module_utils._files import mode_bits
from ansible_collections.pgbouncer.cluster.plugins.module_utils._text import CONTROL_MESSAGE, as_int, flag, has_control_char

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
    "pgbouncer_processes": (1, 64),
}

POOL_MODES = ("session", "transaction", "statement")
TLS_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Keys that have their own role variable: setting them through extra_settings as well
# would make two sources for one value.
DEDICATED = {
    "listen_addr", "listen_port", "pool_mode", "default_pool_size", "min_pool_size", "reserve_pool_size",
    "max_client_conn", "max_db_connections", "max_user_connections", "auth_type", "auth_file", "admin_users",
    "stats_users", "auth_user", "auth_query", "auth_dbname", "client_tls_sslmode", "server_tls_sslmode",
    "logfile", "pidfile", "unix_socket_dir",
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


def _on(variables, name, default=False):
    """Boolean variable `name` (absent: `default`) as the roles read it (_text.flag). A value
    that is no boolean counts as `default` here: boolean_problems() refuses it."""
    try:
        return flag(variables.get(name, default), name)
    except ValueError:
        return default


def boolean_problems(variables, booleans):
    """A message for each variable named in `booleans` whose value is no boolean."""
    found = []
    for name in booleans:
        if name in variables:
            try:
                flag(variables[name], name)
            except ValueError as exc:
                found.append(str(exc))
    return found


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
    # A path is the local PostgreSQL's unix socket directory, as for the named entries.
    if _on(variables, "pgbouncer_database_wildcard", True) and host is not None and not is_address(str(host)) \
            and not str(host).startswith("/"):
        yield "pgbouncer_database_wildcard_host must be an IP address, host name or socket directory, not %r" % host


def _pool_mode(where, entry):
    """[databases] and [users] entries share the pool_mode choices of the global setting."""
    if entry.get("pool_mode") and entry["pool_mode"] not in POOL_MODES:
        yield "%s: pool_mode must be one of %s, not %r" % (where, ", ".join(POOL_MODES), entry["pool_mode"])


def _nonnegative(where, entry, keys):
    for key in keys:
        value = entry.get(key)
        if value in (None, ""):
            continue
        try:
            if isinstance(value, bool) or int(str(value), 10) < 0:
                raise ValueError
        except ValueError:
            yield "%s: %s must be a whole number >= 0, not %r" % (where, key, value)


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
        elif _ini.name_problem(name, "database"):
            yield "%s: %s" % (where, _ini.name_problem(name, "database"))
        if name in seen:
            yield "%s: duplicate database name %s" % (where, name)
        seen.add(name)
        if not entry.get("host"):
            yield "%s needs a host" % where
        elif not is_address(str(entry["host"])) and not str(entry["host"]).startswith("/"):
            yield "%s: host must be an IP address, host name or socket directory, not %r" % (where, entry["host"])
        yield from _pool_mode(where, entry)
        if entry.get("port") not in (None, "") and not 1 <= as_int(entry["port"], 0) <= 65535:
            yield "%s: port must be between 1 and 65535, not %r" % (where, entry["port"])
        yield from _nonnegative(where, entry, ("pool_size", "min_pool_size", "reserve_pool", "max_db_connections"))


def _user_problems(variables):
    seen = set()
    for index, entry in enumerate(variables.get("pgbouncer_users") or []):
        where = "pgbouncer_users[%d]" % index
        if not isinstance(entry, dict) or not entry.get("name"):
            yield "%s needs a name" % where
            continue
        where = "pgbouncer_users[%d] (%s)" % (index, entry["name"])
        if entry["name"] in seen:
            yield "%s: duplicate user name %s" % (where, entry["name"])
        seen.add(entry["name"])
        if _ini.name_problem(entry["name"], "user"):
            yield "%s: %s" % (where, _ini.name_problem(entry["name"], "user"))
        yield from _pool_mode(where, entry)
        yield from _nonnegative(where, entry, ("max_user_connections", "pool_size"))


def _tls_problems(variables):
    for side in ("client", "server"):
        mode = variables.get("pgbouncer_%s_tls_sslmode" % side, "disable")
        key = variables.get("pgbouncer_%s_tls_key_file" % side)
        cert = variables.get("pgbouncer_%s_tls_cert_file" % side)
        ca = variables.get("pgbouncer_%s_tls_ca_file" % side)
        if bool(key) != bool(cert):
            yield "pgbouncer_%s_tls_key_file and pgbouncer_%s_tls_cert_file go together: set both or neither" % (side, side)
        # PgBouncer needs its own key pair to offer TLS to clients at all.
        if side == "client" and mode != "disable" and not (key and cert):
            yield "pgbouncer_client_tls_sslmode %s needs pgbouncer_client_tls_key_file and pgbouncer_client_tls_cert_file" % mode
        if mode in ("verify-ca", "verify-full") and not ca:
            yield "pgbouncer_%s_tls_sslmode %s needs pgbouncer_%s_tls_ca_file" % (side, mode, side)


def _auth_problems(variables):
    if _on(variables, "pgbouncer_auth_query_enabled"):
        if not variables.get("pgbouncer_auth_user"):
            yield "pgbouncer_auth_user must name the PostgreSQL role that runs pgbouncer_auth_query"
        if not variables.get("pgbouncer_auth_user_password"):
            yield "pgbouncer_auth_user_password is needed with auth_query: PgBouncer logs in as pgbouncer_auth_user itself"
        if "$1" not in str(variables.get("pgbouncer_auth_query", "")):
            yield "pgbouncer_auth_query must take the user name as $1"
    low = as_int(variables.get("pgbouncer_min_pool_size", 0), 0)
    high = as_int(variables.get("pgbouncer_default_pool_size", 0), 0)
    if low > high:
        yield "pgbouncer_min_pool_size %d is larger than pgbouncer_default_pool_size %d" % (low, high)
    clients = as_int(variables.get("pgbouncer_max_client_conn", 0), 0)
    files = as_int(variables.get("pgbouncer_limit_nofile", 0), 0)
    if files and clients and files <= clients:
        yield "pgbouncer_limit_nofile %d leaves no file descriptors for server connections beyond pgbouncer_max_client_conn %d" % (files, clients)


def _process_problems(variables):
    processes = as_int(variables.get("pgbouncer_processes", 1), 1)
    if processes > 1 and not variables.get("pgbouncer_unix_socket_dir"):
        yield "pgbouncer_processes %d needs pgbouncer_unix_socket_dir: each process's admin console is reached on its own socket" % processes


def _extra_problems(variables):
    for key in variables.get("pgbouncer_extra_settings") or {}:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", str(key)):
            yield "pgbouncer_extra_settings: %r is not a PgBouncer setting name" % key
        elif key in DEDICATED:
            yield "pgbouncer_extra_settings.%s: set it with pgbouncer_%s instead" % (key, key)


def _strings(where, value):
    """(place, text) of every string in a variable's value, dict keys included."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield "%s.%s" % (where, key), key
            yield from _strings("%s.%s" % (where, key), item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            name = item.get("name") if isinstance(item, dict) else None
            label = "%s[%d] (%s)" % (where, index, name) if name is not None else "%s[%d]" % (where, index)
            yield from _strings(label, item)
    elif isinstance(value, str):
        yield where, value


def control_char_problems(variables):
    """A message for each string, in any variable of `variables`, that holds a control character
    or line separator (_text.has_control_char): the roles write their variables into files read
    line by line (pgbouncer.ini, the auth_file, haproxy.cfg, keepalived.conf, the agent's
    environment file, systemd units), where nothing escapes a line break. The value is not
    shown: it may be a secret."""
    return ["%s: %s cannot be written to a configuration file" % (where, CONTROL_MESSAGE)
            for name in sorted(variables) for where, text in _strings(name, variables[name]) if has_control_char(text)]


def secret_length_problems(variables):
    """A message for each password-like value (a variable or key with "passw" in its name) that
    PgBouncer could not keep whole: it logs in with it, or checks logins against it."""
    return ["%s is %s" % (where, _ini.secret_length_problem(text))
            for name in sorted(variables) for where, text in _strings(name, variables[name])
            if _ini.looks_secret(where.rsplit(".", 1)[-1]) and _ini.secret_length_problem(text)]


def input_problems(variables, booleans=()):
    """What every role checks of its own variables: the named booleans, no control characters,
    no password longer than PgBouncer keeps."""
    return boolean_problems(variables, booleans) + control_char_problems(variables) + secret_length_problems(variables)


# auth_type values that let a client in without proving a password over the network:
# trust and any ask nothing, plain sends the password in clear.
WEAK_AUTH = ("trust", "any", "plain")
OPT_IN = "set pgbouncer_allow_insecure: true to accept this"


MODE_FORMS = "octal such as 0640, or symbolic such as u=rw,g=r,o="


def is_network_listen(listen):
    """Whether listen_addr takes connections from other hosts: any entry but loopback."""
    for item in str(listen or "").split(","):
        item = item.strip()
        if not item or item == "localhost":
            continue
        try:
            if ipaddress.ip_address(item).is_loopback:
                continue
        except ValueError:
            pass  # "*" or a host name: reachable from the network
        return True
    return False


def _insecure_problems(variables):
    """Choices that expose the pooler or its secrets, refused unless pgbouncer_allow_insecure."""
    if _on(variables, "pgbouncer_allow_insecure"):
        return
    auth = variables.get("pgbouncer_auth_type")
    listen = variables.get("pgbouncer_listen_addr")
    if auth in WEAK_AUTH and is_network_listen(listen):
        yield ("pgbouncer_auth_type %s with pgbouncer_listen_addr %s lets clients from the network in %s: use "
               "scram-sha-256, or listen on 127.0.0.1 only; or %s" % (
                   auth, listen, "in clear text" if auth == "plain" else "without a password", OPT_IN))
    # Every spelling of a mode is read as the file module reads it (_files.mode_bits), so that
    # "u=rw,g=r,o=r", "a+r", "0o644" or "00644" is the 0644 it gives.
    socket_mode = _mode_bits("pgbouncer_unix_socket_mode", variables.get("pgbouncer_unix_socket_mode", "0770"))
    if variables.get("pgbouncer_unix_socket_dir", "x") and socket_mode is not None and socket_mode & 0o002:
        yield ("pgbouncer_unix_socket_mode %s lets every local user connect to the unix socket: use 0770 "
               "(owner and group); or %s" % (_mode_text(variables["pgbouncer_unix_socket_mode"], socket_mode), OPT_IN))
    for name, what in (("pgbouncer_config_mode", "pgbouncer.ini"), ("pgbouncer_userlist_mode", "the auth_file")):
        bits = _mode_bits(name, variables.get(name, "0640"))
        if bits is not None and bits & 0o007:
            yield ("%s %s gives other users access to %s, which holds secrets (a symbolic mode without o= leaves "
                   "them what the file has): use 0640 or 0600; or %s" % (name, _mode_text(variables[name], bits), what, OPT_IN))


def _mode_bits(name, value):
    """_files.mode_bits of a mode variable; None for one that is no mode (_mode_problems says so)."""
    try:
        return mode_bits(value)
    except ValueError:
        return None


def _mode_text(value, bits):
    """A mode as given, with the bits it gives when it is spelled otherwise ("a+r (0777)")."""
    return str(value) if str(value) == "%04o" % bits else "%s (%04o)" % (value, bits)


def _mode_problems(variables):
    for name in ("pgbouncer_unix_socket_mode", "pgbouncer_config_mode", "pgbouncer_userlist_mode"):
        if name in variables and _mode_bits(name, variables[name]) is None:
            yield "%s must be a file mode (%s), not %r" % (name, MODE_FORMS, variables[name])


def problems(variables, booleans=()):
    """Every problem found in `variables` (role variable name -> value), as messages.
    `booleans` names the role's boolean variables (its vars/main.yml __pgbouncer_booleans)."""
    checks = (
        _int_problems, _address_problems, _database_problems, _user_problems, _tls_problems, _auth_problems,
        _process_problems, _extra_problems, _mode_problems, _insecure_problems,
    )
    # pgbouncer_health_* belong to another role, which checks them itself.
    own = {name: value for name, value in variables.items()
           if name.startswith("pgbouncer_") and not name.startswith("pgbouncer_health_")}
    return input_problems(own, booleans) + [problem for check in checks for problem in check(variables)]


def version_problems(settings, version, extra_settings=None):
    """Keys of `settings` ([pgbouncer] section) that PgBouncer `version` does not know.

    Messages name the variable that sets the key. Keys with value None are not written.
    """
    from ansible_collections.pgbouncer.cluster.plugins.module_utils import _keys  # noqa: PLC0415

    extra = extra_settings or {}
    found = []
    for key in sorted(settings):
        if settings[key] is None or _keys.known(key, version):
            continue
        variable = "pgbouncer_extra_settings.%s" % key if key in extra else "pgbouncer_%s" % key
        added = _keys.ADDED.get(key)
        since = "; it needs PgBouncer %s or later" % ".".join(map(str, added)) if added else ""
        found.append("%s: PgBouncer %s on this node does not know the setting %s%s" % (variable, version, key, since))
    return found


def console_user_problems(admin_users, stats_users, auth_file_users):
    """Console users that will not be in the auth_file (None: the role does not write it)."""
    if auth_file_users is None:
        return []
    have = set(auth_file_users)
    found = []
    for variable, users in (("pgbouncer_admin_users", admin_users), ("pgbouncer_stats_users", stats_users)):
        missing = [user for user in users or [] if user not in have]
        if missing:
            found.append(
                "%s: %s will not be in the auth_file (no PostgreSQL role with a password, excluded, expired, or a "
                "superuser without pgbouncer_userlist_include_superusers), so they "
                "could not log in to the console with a password" % (variable, ", ".join(missing))
            )
    return found


def pool_sizing_problems(poolers):
    """pool sizing messages for the per-host pooler descriptions the role builds."""
    from ansible_collections.pgbouncer.cluster.plugins.module_utils import _sizing  # noqa: PLC0415

    capacities = {str(pooler["address"]): pooler["capacity"] for pooler in poolers if pooler.get("capacity")}
    return _sizing.problems(poolers, capacities)


def source_problems(sources, variable=None):
    """Messages for entries of a firewall source list that are not `any`, an IP or a CIDR.

    Without `variable`, `sources` maps variable names to their lists: the messages of all, in order.
    """
    if variable is None and isinstance(sources, dict):
        return [message for name, value in sources.items() for message in source_problems(value, name)]
    if isinstance(sources, (str, bytes)) or not isinstance(sources, (list, tuple)):
        return ["%s must be a list of IP addresses or CIDRs, not %r" % (variable, sources)]
    found = []
    for source in sources:
        text = str(source).strip()
        if text == "any":
            continue
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            found.append("%s: %r is not an IP address or CIDR" % (variable, source))
    return found
