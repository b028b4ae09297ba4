# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgbouncer.ini: value formatting, parsing, [databases] lines, restart-only keys.

Pure functions, shared by the role's filters and the modules. Private to this collection.
"""

from __future__ import annotations

import difflib
import re

from ansible_collections.pgbouncer.cluster.plugins.module_utils._text import CONTROL_MESSAGE, has_control_char, lines

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


# How PgBouncer reads the file (the same in 1.18 and 1.24; pgbouncer src/loader.c and
# libusual usual/cfparser.c):
# - A line is `key = value`; the value runs to the end of the line and loses trailing
#   whitespace. Nothing can escape a line break, so a CR, LF (or NUL) in a value would start
#   a line of its own choosing: refused here, with every other control character and line
#   separator that a reader of the file in Python would split at (_text.has_control_char).
# - An unquoted key (a database, user or peer name) is letters, digits and _ . - * only.
#   (Quoted keys came to libusual in 2025, after the versions the role supports.)
# - A [databases], [users] or [peers] value is then read as a connection string of its own:
#   pairs separated by spaces, a key running to `=`, a value either bare (to the next
#   space) or in single quotes, where '' stands for one quote. A backslash is an ordinary
#   character (unlike libpq), and an empty value is an error.
NAME_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
# A [pgbouncer] key: PgBouncer's setting names are letters, digits and _ (it matches them
# without regard to case). Anything else written as a key could carry a line of its own.
SETTING_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# PgBouncer's own limits (include/bouncer.h, MAX_DBNAME and MAX_USERNAME, with the NUL).
MAX_DATABASE_NAME = 63
MAX_USER_NAME = 127
# And MAX_PASSWORD, 2048 with the NUL, for a password or secret of the auth_file or a
# [databases] entry ("some cloud services use very long generated passwords"). Read in
# PgBouncer's current source; the 1.18 and 1.24 of Debian 12 and 13 were not checked.
MAX_PASSWORD = 2047
# The admin console's database name (PgBouncer 1.24 refuses it in [databases]).
RESERVED_DATABASE = "pgbouncer"


# listen_addr entries that already take connections on 127.0.0.1. A wildcard must not get
# 127.0.0.1 added: binding 127.0.0.1 next to 0.0.0.0 (or a dual-stack ::) on the same port
# fails with "Address already in use", and PgBouncer would not start.
LOCALHOST_COVERED = frozenset(("*", "0.0.0.0", "::", "127.0.0.1", "localhost"))


def listen_addresses(listen_addr, localhost=True):
    """listen_addr with 127.0.0.1 appended when `localhost` is true and no entry already
    takes connections there ("*", 0.0.0.0, ::, 127.0.0.1, localhost). Entries are kept as
    given, in their order, so the first stays the node's address (the check and the health
    agent connect to the first)."""
    entries = [entry.strip() for entry in str(listen_addr).split(",") if entry.strip()]
    if localhost and not any(entry.lower() in LOCALHOST_COVERED for entry in entries):
        entries.append("127.0.0.1")
    return ",".join(entries)


def name_problem(name, kind="database"):
    """Why PgBouncer cannot take `name` as a [databases] or [users] key, or None."""
    text = str(name)
    if not NAME_CHARS.fullmatch(text):
        return "PgBouncer takes only letters, digits, _ . and - in a %s name" % kind
    limit = MAX_DATABASE_NAME if kind == "database" else MAX_USER_NAME
    if len(text.encode("utf-8")) > limit:
        return "PgBouncer takes %s names of at most %d bytes" % (kind, limit)
    if kind == "database" and text == RESERVED_DATABASE:
        return "pgbouncer is the admin console's database"
    return None


def secret_length_problem(secret):
    """Why PgBouncer could not keep `secret` whole, or None. The secret is not shown."""
    if len(str(secret).encode("utf-8")) > MAX_PASSWORD:
        return "longer than the %d bytes PgBouncer keeps of a password (MAX_PASSWORD)" % MAX_PASSWORD
    return None


def setting_name_problem(key):
    """Why `key` cannot be a [pgbouncer] key, or None. The key is shown: it is no secret."""
    if not isinstance(key, str) or not SETTING_NAME.fullmatch(key):
        return "%r is not a PgBouncer setting name (a letter, then letters, digits and _)" % (key,)
    return None


def format_value(value, where="a pgbouncer.ini value"):
    """The text PgBouncer expects for a setting; None means: leave the key out. `where`
    names the setting in the error."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    text = ", ".join(str(item) for item in value) if isinstance(value, (list, tuple)) else str(value)
    if has_control_char(text):
        # The value itself stays out of the message: it may be a secret.
        raise ValueError("%s cannot hold %s" % (where, CONTROL_MESSAGE))
    return text


def quote_connstr(value, where="a pgbouncer.ini value"):
    """One value of a [databases]/[users]/[peers] connection string, quoted as PgBouncer
    reads it: bare when it has no whitespace, quote or backslash, else in single quotes
    with each ' doubled. (Quoting on a backslash is not needed by PgBouncer; it keeps
    the lines that never had one unchanged.)"""
    text = format_value(value, where)
    if text and not any(ch.isspace() or ch in "'\\" for ch in text):
        return text
    return "'" + text.replace("'", "''") + "'"


def _line(name, entry, keys, kind):
    if name != "*":
        problem = name_problem(name, kind)
        if problem:
            raise ValueError("%s name %r: %s" % (kind, name, problem))
    for key in keys:
        if looks_secret(key) and entry.get(key) not in (None, "") and secret_length_problem(entry[key]):
            raise ValueError("%s %s: %s is %s" % (kind, name, key, secret_length_problem(entry[key])))
    parts = ["%s=%s" % (key, quote_connstr(entry[key], "%s %s: %s" % (kind, name, key)))
             for key in keys if entry.get(key) not in (None, "")]
    return "%s = %s" % (name, " ".join(parts))


def database_line(entry):
    """`name = key=value ...` for one [databases] entry (a dict with `name`; `*` is the wildcard)."""
    return _line(str(entry["name"]), entry, DATABASE_KEYS, "database")


USER_KEYS = ("pool_mode", "max_user_connections", "pool_size", "reserve_pool_size", "max_user_client_connections")


def user_line(entry):
    """`name = key=value ...` for one [users] entry (a dict with `name`)."""
    return _line(str(entry["name"]), entry, USER_KEYS, "user")


PEER_KEYS = ("host", "port", "pool_size")


def peer_line(entry):
    """`peer_id = host=... port=...` for one [peers] entry (a dict with `peer_id`)."""
    peer_id = int(entry["peer_id"])
    if not 1 <= peer_id <= 65535:
        raise ValueError("peer_id must be between 1 and 65535, not %d" % peer_id)
    parts = ["%s=%s" % (key, quote_connstr(entry[key], "peer %d: %s" % (peer_id, key)))
             for key in PEER_KEYS if entry.get(key) not in (None, "")]
    return "%d = %s" % (peer_id, " ".join(parts))


def parse(text):
    """{section: {key: value}} of ini text; comment lines (; or #) skipped, last value wins."""
    sections = {}
    current = None
    for raw in lines(text):
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


def changed_keys(old_text, new_text):
    """Sorted [pgbouncer] keys set, removed or given another value between the two files."""
    old = parse(old_text).get("pgbouncer", {})
    new = parse(new_text).get("pgbouncer", {})
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


def restart_keys(old_text, new_text, restart_only=RESTART_ONLY | RESTART_FOR_AUTH):
    """Sorted [pgbouncer] keys whose change needs a restart between the two files."""
    return [key for key in changed_keys(old_text, new_text) if key in restart_only]


# --diff of pgbouncer.ini without its secrets. A key with "passw" in its name (password= of
# a [databases] entry, ldapbindpasswd= in auth_ldap_options, ...) has its value masked.
MASK = "********"
_SECRET = re.compile(r"passw", re.IGNORECASE)


def _connstr_spans(text):
    """[(key, start, end)] of each value in a connection string, read as PgBouncer reads it
    (see above); None when PgBouncer would not read it."""
    spans = []
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos] == " ":
            pos += 1
        if pos >= end:
            return spans
        equals = text.find("=", pos)
        key = text[pos:equals].rstrip(" ") if equals > pos else ""
        if not key or " " in key:
            return None
        pos = equals + 1
        while pos < end and text[pos] == " ":
            pos += 1
        start = pos
        if pos < end and text[pos] == "'":
            pos += 1
            while True:
                if pos >= end:
                    return None
                if text[pos] == "'":
                    if text[pos + 1:pos + 2] != "'":
                        break
                    pos += 1
                pos += 1
            pos += 1
        else:
            while pos < end and text[pos] != " ":
                pos += 1
        spans.append((key, start, pos))


def redirect_databases(text, from_host, to_host, keep=()):
    """The [databases] entries of pgbouncer.ini text whose host= is from_host (a host or a list
    of them), with to_host instead, as a "[databases]" section to append to the file ("" when
    none is). PgBouncer reads a section that comes again as more of it, and a name given twice
    takes the later line, so appending this sends those databases, "*" included, to to_host at
    the next RELOAD; removing it sends them back. Databases named in keep stay where they are:
    their own entry is left out, and one that only "*" serves gets an entry of its own with
    "*"'s settings, so that moving "*" does not take it along."""
    from_hosts = [from_host] if isinstance(from_host, str) else list(from_host)
    out, named, fallback, section = [], set(), None, None
    for raw in lines(text):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        if section != "databases" or "=" not in line:
            continue
        name, _equals, connstr = line.partition("=")
        name, connstr = name.strip(), connstr.strip()
        named.add(name)
        spans = _connstr_spans(connstr) or []
        host = [(start, end) for key, start, end in spans if key.lower() == "host"]
        if not host or connstr[host[-1][0]:host[-1][1]].strip("'") not in from_hosts or name in keep:
            continue
        if name == "*":
            fallback = connstr
        start, end = host[-1]
        out.append("%s = %s" % (name, connstr[:start] + quote_connstr(to_host) + connstr[end:]))
    if fallback is not None:
        out.extend("%s = %s" % (name, fallback) for name in keep if name not in named)
    return "[databases]\n%s\n" % "\n".join(out) if out else ""


def looks_secret(text):
    """Whether a key, or a value holding keys of its own (auth_ldap_options), names a secret."""
    return bool(_SECRET.search(str(text)))


def _mask_line(line):
    found = _SECRET.search(line)
    if not found:
        return line
    key, equals, value = line.partition("=")
    if not equals or line.lstrip()[:1] in (";", "#", "["):
        # A comment, a section line (PgBouncer reads a key after "]" on the same line) or
        # something else: hidden from the first secret-like word on.
        return line[: found.start()] + MASK
    if _SECRET.search(key):
        return "%s= %s" % (key, MASK)
    spans = _connstr_spans(value)
    if spans is None:
        # Not a connection string PgBouncer reads (a file written by older code): hide
        # everything from the first secret key on.
        return key + equals + value[: _SECRET.search(value).start()] + MASK
    for name, start, end in reversed(spans):
        if not _SECRET.search(name):
            continue
        # A backslash may be the escaping of earlier versions of this role: then where the
        # value really ends is unsure, and everything after its start is hidden.
        value = value[:start] + MASK + ("" if "\\" in value[start:end] else value[end:])
    return key + equals + value


def mask_secrets(text):
    """pgbouncer.ini text with the value of every password-like key replaced by ********."""
    return "\n".join(_mask_line(line) for line in (text or "").split("\n"))


def masked_diff(old_text, new_text, path="pgbouncer.ini"):
    """Unified diff lines between two pgbouncer.ini texts, secrets masked; [] when equal.
    The diff is taken on the real lines, so a changed secret shows as a masked line
    removed and added."""
    old_text, new_text = old_text or "", new_text or ""
    if old_text == new_text:
        return []
    # Split as PgBouncer reads: a VT or U+2028 in a line must not cut a password in two, the
    # tail of which would no longer follow its key and be shown.
    diff = difflib.unified_diff(lines(old_text), lines(new_text), "before: %s" % path, "after: %s" % path, lineterm="", n=1)
    shown = [line if line[:3] in ("---", "+++", "@@ ") else line[:1] + _mask_line(line[1:]) for line in diff]
    return shown or ["%s: only the line endings change" % path]
