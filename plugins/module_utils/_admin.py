# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PgBouncer admin console, as pure functions: which commands exist in which version,
how to spell them safely, how to read their results and whether running one would change
anything. No I/O here; plugins/modules/pgbouncer_admin.py does the talking.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import re

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _text, _version

# SHOW subcommands -> first PgBouncer version that has them.
SHOW_SUBCOMMANDS = {
    "POOLS": (1, 0),
    "STATS": (1, 0),
    "STATS_TOTALS": (1, 8),
    "STATS_AVERAGES": (1, 8),
    "TOTALS": (1, 0),
    "DATABASES": (1, 0),
    "CLIENTS": (1, 0),
    "SERVERS": (1, 0),
    "USERS": (1, 0),
    "CONFIG": (1, 0),
    "LISTS": (1, 0),
    "MEM": (1, 0),
    "SOCKETS": (1, 0),
    "ACTIVE_SOCKETS": (1, 0),
    "DNS_HOSTS": (1, 0),
    "DNS_ZONES": (1, 0),
    "VERSION": (1, 0),
    "STATE": (1, 19),
    "PEERS": (1, 19),
    "PEER_POOLS": (1, 19),
    "FDS": (1, 0),
}

# Argument kinds of the control commands.
NO_ARG, OPTIONAL_DB, REQUIRED_DB, CLIENT_ID, SHUTDOWN_MODE, KEY_VALUE = (
    "none", "optional db", "required db", "client id", "shutdown mode", "key = value")

# command -> (argument kind, first version that has it)
COMMANDS = {
    "SHOW": (NO_ARG, (1, 0)),  # its argument is the subcommand, see SHOW_SUBCOMMANDS
    "PAUSE": (OPTIONAL_DB, (1, 0)),
    "RESUME": (OPTIONAL_DB, (1, 0)),
    "DISABLE": (REQUIRED_DB, (1, 6)),
    "ENABLE": (REQUIRED_DB, (1, 6)),
    "RECONNECT": (OPTIONAL_DB, (1, 9)),
    "KILL": (REQUIRED_DB, (1, 0)),
    "KILL_CLIENT": (CLIENT_ID, (1, 24)),
    "SUSPEND": (NO_ARG, (1, 0)),
    "SHUTDOWN": (SHUTDOWN_MODE, (1, 0)),
    "RELOAD": (NO_ARG, (1, 0)),
    "WAIT_CLOSE": (OPTIONAL_DB, (1, 9)),
    "SET": (KEY_VALUE, (1, 0)),
}
# SHUTDOWN variants that wait; plain SHUTDOWN is older.
SHUTDOWN_MODES = {"WAIT_FOR_SERVERS": (1, 23), "WAIT_FOR_CLIENTS": (1, 23)}

# Commands that do not return until PgBouncer reaches a state: the module's timeout applies.
BLOCKING = frozenset(("PAUSE", "SUSPEND", "WAIT_CLOSE"))
# Commands that change nothing (WAIT_CLOSE only waits).
READ_ONLY = frozenset(("SHOW", "WAIT_CLOSE"))
# Commands that act on something we cannot observe beforehand: always "changed".
ALWAYS_CHANGES = frozenset(("RELOAD", "RECONNECT", "KILL", "KILL_CLIENT", "SHUTDOWN"))
# Commands a timeout leaves half done, which RESUME undoes.
RESUMABLE = frozenset(("PAUSE", "SUSPEND"))

# Columns of SHOW FDS that carry secrets (what an online restart hands over). The cancel key
# is one too: with it and the pooler's address, anyone can cancel that client's queries.
SECRET_COLUMNS = {"FDS": frozenset(("cancel", "password", "scram_client_key", "scram_server_key"))}
REDACTED = "********"

# Server errors that mean "already in the state you asked for" (text as of 1.18 to 1.24).
_ALREADY = {
    "PAUSE": ("already suspended/paused", "already paused"),
    "SUSPEND": ("already suspended/paused", "already suspended"),
    "RESUME": ("is not paused", "not paused/suspended"),
}

# Column types PgBouncer sends: int2/int4/int8/oid and numeric become Python numbers.
_INT_OIDS = frozenset((20, 21, 23, 26))
_NUMERIC_OID = 1700

_KEY = re.compile(r"^[a-z0-9_]+$")
_BOOL_WORDS = {"1": "1", "on": "1", "yes": "1", "true": "1", "0": "0", "off": "0", "no": "0", "false": "0"}


class AdminError(Exception):
    """A request the module refuses before sending anything; kind is machine-readable."""

    def __init__(self, kind, msg):
        super().__init__(msg)
        self.kind = kind


def version_text(version):
    return ".".join(str(part) for part in version)


def parse_version(text):
    """(major, minor, patch) from SHOW VERSION's text, e.g. 'PgBouncer 1.18.0'."""
    try:
        return _version.parse_version(text)
    except ValueError:
        raise AdminError("unknown_version", "cannot read a version from SHOW VERSION's answer %r" % text) from None


def quote_ident(name):
    """A database name as a console WORD: double-quoted, embedded quotes doubled."""
    if not name or any(ord(char) < 32 for char in name):
        raise AdminError("invalid_argument", "database name %r is empty or has control characters" % name)
    return _text.double_quoted(name)


def quote_literal(value):
    """A SET value as a console STRING: single-quoted, embedded quotes doubled."""
    if any(ord(char) < 32 for char in value):
        raise AdminError("invalid_argument", "SET value %r has control characters" % value)
    return "'%s'" % value.replace("'", "''")


def normalize_command(command):
    """('SHOW', 'POOLS') for 'show pools', ('PAUSE', None) for 'pause'; refuse anything else."""
    words = (command or "").strip().rstrip(";").split()
    verb = words[0].upper() if words else ""
    if verb not in COMMANDS:
        raise AdminError("unknown_command", "%r is not a PgBouncer console command; use one of %s"
                         % (command, ", ".join(sorted(COMMANDS))))
    if verb == "SHOW" and len(words) == 2:
        return verb, words[1].upper()
    if len(words) != 1:
        raise AdminError("unknown_command", "give the command word alone in 'command' (%r) and its argument "
                         "in db, client_id, shutdown_mode, key/value or show" % command)
    return verb, None


def build_command(verb, show=None, db=None, client_id=None, shutdown_mode=None, key=None, value=None):
    """The console text for a normalized verb and its arguments, validated and quoted."""
    if verb == "SHOW":
        return "SHOW " + _show_subcommand(show)
    kind = COMMANDS[verb][0]
    _refuse_extra_arguments(verb, kind, db=db, client_id=client_id, shutdown_mode=shutdown_mode, key=key)
    if kind == NO_ARG:
        return verb
    if kind in (OPTIONAL_DB, REQUIRED_DB):
        if db is None and kind == REQUIRED_DB:
            raise AdminError("missing_argument", "%s needs a database: set db" % verb)
        return verb if db is None else "%s %s" % (verb, quote_ident(db))
    if kind == CLIENT_ID:
        if client_id is None or client_id < 0:
            raise AdminError("missing_argument", "KILL_CLIENT needs client_id, the id column of SHOW CLIENTS")
        return "KILL_CLIENT %d" % client_id
    if kind == SHUTDOWN_MODE:
        mode = (shutdown_mode or "immediate").upper()
        if mode == "IMMEDIATE":
            return "SHUTDOWN"
        if mode not in SHUTDOWN_MODES:
            raise AdminError("invalid_argument", "shutdown_mode must be immediate, wait_for_servers or wait_for_clients")
        return "SHUTDOWN " + mode
    return "SET %s = %s" % (validate_key(key), quote_literal("" if value is None else str(value)))


def _show_subcommand(show):
    name = (show or "").strip().upper()
    if name not in SHOW_SUBCOMMANDS:
        raise AdminError("unknown_command", "SHOW %s is not a console command; use one of %s"
                         % (name or "(nothing)", ", ".join(sorted(SHOW_SUBCOMMANDS))))
    return name


def _refuse_extra_arguments(verb, kind, **given):
    # An ignored argument is a misunderstanding: say so instead of silently acting on everything.
    allowed = {
        NO_ARG: (),
        OPTIONAL_DB: ("db",),
        REQUIRED_DB: ("db",),
        CLIENT_ID: ("client_id",),
        SHUTDOWN_MODE: ("shutdown_mode",),
        KEY_VALUE: ("key",),
    }[kind]
    extra = sorted(name for name, value in given.items() if value is not None and name not in allowed)
    if extra:
        raise AdminError("invalid_argument", "%s does not take %s" % (verb, ", ".join(extra)))


def validate_key(key):
    text = (key or "").strip().lower()
    if not _KEY.match(text):
        raise AdminError("invalid_argument", "SET needs key, a setting name of letters, digits and _ (got %r)" % key)
    return text


def required_version(verb, show=None, shutdown_mode=None):
    """(first version that has the command, its name for messages)."""
    if verb == "SHOW":
        return SHOW_SUBCOMMANDS[show], "SHOW " + show
    mode = (shutdown_mode or "").upper()
    if verb == "SHUTDOWN" and mode in SHUTDOWN_MODES:
        return SHUTDOWN_MODES[mode], "SHUTDOWN " + mode
    return COMMANDS[verb][1], verb


def version_problem(version, verb, show=None, shutdown_mode=None):
    """A message if the running version lacks the command, else None."""
    needed, name = required_version(verb, show, shutdown_mode)
    if tuple(version) >= needed:
        return None
    return "%s needs PgBouncer %s or later; this node runs %s" % (name, version_text(needed), version_text(version))


def convert_value(raw, type_oid):
    """One text value from the console to a Python value, by the column's type."""
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if type_oid in _INT_OIDS:
        return int(text)
    if type_oid == _NUMERIC_OID:
        number = float(text)
        return int(number) if number.is_integer() and "." not in text else number
    return text


def rows_to_dicts(columns, rows, type_oids=None, show=None):
    """Rows as dicts keyed by column name (column order differs between versions)."""
    type_oids = type_oids or [None] * len(columns)
    secret = SECRET_COLUMNS.get(show, frozenset())
    result = []
    for row in rows:
        item = {}
        for name, raw, oid in zip(columns, row, type_oids):
            value = convert_value(raw, oid)
            # A cancel key may be 0: only no value (None, "") stays as it is.
            item[name] = REDACTED if name in secret and value not in (None, "") else value
        result.append(item)
    return result


def find_row(rows, column, value):
    for row in rows:
        if row.get(column) == value:
            return row
    return None


def state_flags(state_rows):
    """{'active': bool, 'paused': bool, 'suspended': bool} from SHOW STATE's key/value rows."""
    return {row["key"]: row["value"] == "yes" for row in state_rows}


def already_done(verb, db=None, database_row=None, state=None):
    """Whether running `verb` is pointless: True, False, or None when only the server can tell.

    database_row: the db's SHOW DATABASES row (None if not listed); state: state_flags() or None
    (SHOW STATE exists from 1.19 on).
    """
    if verb in ALWAYS_CHANGES or verb in READ_ONLY:
        return False  # READ_ONLY: WAIT_CLOSE changes nothing, but waiting is its point
    if db is not None:
        return _db_already_done(verb, database_row)
    if state is None:
        return None
    if verb == "PAUSE":
        return state.get("paused", False)
    if verb == "SUSPEND":
        return state.get("suspended", False)
    if verb == "RESUME":
        return state.get("active", False)
    return None


def _db_already_done(verb, row):
    if row is None:
        return None  # an auto-database PgBouncer has not listed: only the server knows
    flag = {"PAUSE": ("paused", 1), "RESUME": ("paused", 0), "DISABLE": ("disabled", 1), "ENABLE": ("disabled", 0)}.get(verb)
    if flag is None:
        return None
    column, wanted = flag
    return int(row.get(column) or 0) == wanted


# SHOW POOLS columns of server connections a PAUSE waits for (the last two only in some versions).
_BUSY_COLUMNS = ("sv_active", "sv_active_cancel", "sv_being_canceled")


def busy_server_connections(pool_rows, db=None):
    """Server connections a PAUSE of db (or of every database) still waits for, from SHOW POOLS."""
    return sum(
        int(row.get(column) or 0)
        for row in pool_rows
        if row.get("database") != "pgbouncer" and (db is None or row.get("database") == db)
        for column in _BUSY_COLUMNS
    )


def means_already_done(verb, message):
    """Whether a server error only says the command had nothing to do (e.g. RESUME, not paused)."""
    lowered = (message or "").lower()
    return any(needle in lowered for needle in _ALREADY.get(verb, ()))


def admin_rights(user, config_rows, unix_socket):
    """Whether `user` may run commands other than SHOW: True, False, or None if only the server can tell.

    PgBouncer makes a login an admin when the user is in admin_users, or when it is `pgbouncer`
    over the unix socket from PgBouncer's own uid (which needs no list). config_rows: SHOW CONFIG.
    """
    lists = {}
    for key in ("admin_users", "stats_users"):
        entry = find_row(config_rows, "key", key)
        lists[key] = {name.strip() for name in ((entry or {}).get("value") or "").split(",") if name.strip()}
    if user in lists["admin_users"]:
        return True
    if user == "pgbouncer" and unix_socket:
        # Logged in yet in neither list: only the own-uid path lets it in, and that path is admin.
        return None if user in lists["stats_users"] else True
    return False


def config_entry(config_rows, key):
    """The SHOW CONFIG row of key, or raise an AdminError a user can act on."""
    row = find_row(config_rows, "key", key)
    if row is None:
        raise AdminError("unknown_setting", "PgBouncer has no setting %r (see SHOW CONFIG)" % key)
    if str(row.get("changeable", "")).lower() != "yes":
        raise AdminError("not_changeable", "%s cannot change while PgBouncer runs (SHOW CONFIG changeable=no; "
                         "PgBouncer would ignore the SET): change pgbouncer.ini and restart instead" % key)
    return row


def same_setting(current, wanted):
    """Whether SET key = wanted would leave the value SHOW CONFIG reports as current."""
    left, right = _canonical(current), _canonical(wanted)
    if left == right:
        return True
    return _as_number(left) is not None and _as_number(left) == _as_number(right)


def _canonical(value):
    text = "" if value is None else str(value).strip()
    if text.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[text.lower()]
    # Lists such as admin_users: PgBouncer keeps the text, so compare item by item.
    if "," in text:
        return ",".join(item.strip() for item in text.split(","))
    return text


def _as_number(text):
    try:
        return float(text)
    except ValueError:
        return None
