# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgbouncer.ini: value formatting, parsing, [databases] lines, restart-only keys.

Pure functions, shared by the role's filters and the modules. Private to this collection.
"""

from __future__ import annotations

# [pgbouncer] keys a RELOAD does not apply: SHOW CONFIG reports them changeable=no
# (PgBouncer 1.18 and 1.24; tests/integration checks this list against the running version).
RESTART_ONLY = frozenset(
    (
        "disable_pqexec",
        "job_name",
        "listen_addr",
        "listen_backlog",
        "listen_port",
        "peer_id",
        "pidfile",
        "pkt_buf",
        "resolv_conf",
        "service_name",
        "so_reuseport",
        "track_extra_parameters",
        "unix_socket_dir",
        "unix_socket_group",
        "unix_socket_mode",
        "user",
    )
)

# Reloadable, yet applied by a restart: when the auth_file stops listing users (as it does
# when auth_query is turned on), a RELOAD leaves them in PgBouncer's memory with an empty
# secret, so their logins fail instead of going to auth_query (seen with 1.18).
RESTART_FOR_AUTH = frozenset(("auth_user", "auth_query", "auth_dbname"))

# Connection-string keys of a [databases] entry, in the order they are written.
DATABASE_KEYS = (
    "host",
    "port",
    "dbname",
    "user",
    "password",
    "auth_user",
    "auth_query",
    "auth_dbname",
    "pool_size",
    "min_pool_size",
    "reserve_pool",
    "reserve_pool_size",
    "connect_query",
    "pool_mode",
    "max_db_connections",
    "server_lifetime",
    "client_encoding",
    "datestyle",
    "timezone",
    "application_name",
)


def format_value(value):
    """The text PgBouncer expects for a setting; None means: leave the key out."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return str(value)


def quote_connstr(value):
    """Quote a [databases] connection-string value when it needs it (libpq rules)."""
    text = format_value(value)
    if text and not any(ch in text for ch in " '\\"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def database_line(entry):
    """`name = key=value ...` for one [databases] entry (a dict with `name`)."""
    parts = [
        "%s=%s" % (key, quote_connstr(entry[key]))
        for key in DATABASE_KEYS
        if entry.get(key) not in (None, "")
    ]
    return "%s = %s" % (entry["name"], " ".join(parts))


USER_KEYS = ("pool_mode", "max_user_connections", "pool_size", "reserve_pool_size", "max_user_client_connections")


def user_line(entry):
    """`name = key=value ...` for one [users] entry (a dict with `name`)."""
    parts = ["%s=%s" % (key, quote_connstr(entry[key])) for key in USER_KEYS if entry.get(key) not in (None, "")]
    return "%s = %s" % (entry["name"], " ".join(parts))


def parse(text):
    """{section: {key: value}} of ini text; comment lines (; or #) skipped, last value wins."""
    sections = {}
    current = None
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip().lower(), {})
            continue
        if current is None or "=" not in line:
            continue
        key, value = line.split("=", 1)
        current[key.strip().lower()] = value.strip()
    return sections


def restart_keys(old_text, new_text):
    """Sorted [pgbouncer] keys whose change needs a restart between the two files."""
    old = parse(old_text).get("pgbouncer", {})
    new = parse(new_text).get("pgbouncer", {})
    return sorted(key for key in RESTART_ONLY | RESTART_FOR_AUTH if old.get(key) != new.get(key))
