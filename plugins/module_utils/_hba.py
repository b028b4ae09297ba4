# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Would PostgreSQL's pg_hba.conf let PgBouncer log in over the unix socket? Pure functions.

PgBouncer, pointed at a socket directory, logs in as its OS user (pgbouncer_config_owner)
under the client's role name, with the secret it has from the auth_file. pg_hba.conf is
first-match: for a (database, user) pair the first `local` line whose database and user
lists match decides, and no match means refused. The pgbouncer_postgres_info module reads
the lines (pg_hba_file_rules); socket_check() decides from them.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

# Methods with which PostgreSQL asks for a password PgBouncer can answer from the auth_file.
PASSWORD_METHODS = ("md5", "scram-sha-256", "password")
# Shown with a refusal: the line to add, where, and the alternative.
FIX = ("add `local all all scram-sha-256` (md5 if some roles still have md5 secrets) to pg_hba.conf%s, keeping a "
       "`local all postgres peer` line above it for the role's own pg_shadow read, and reload PostgreSQL; or point "
       "the entry at TCP (the node's address, the default)")
SHOWN = 5


def _names(names):
    names = sorted(names)
    if len(names) <= SHOWN:
        return ", ".join(names)
    return "%s and %d more" % (", ".join(names[:SHOWN]), len(names) - SHOWN)


def rule_text(rule):
    """The line as pg_hba.conf would hold it (from the view's columns)."""
    parts = ["local", ",".join(rule.get("database") or []), ",".join(rule.get("user_name") or []),
             str(rule.get("auth_method") or "")]
    parts += list(rule.get("options") or [])
    return " ".join(part for part in parts if part)


def where(rule):
    """`pg_hba.conf line 12` (PostgreSQL 16+ also says which file)."""
    return "%s line %s" % (rule.get("file_name") or "pg_hba.conf", rule.get("line_number"))


def _database_match(keyword, database, user):
    """True, False, or None (cannot tell: role membership, a regular expression, an @file)."""
    if keyword == "all":
        return True
    if keyword == "sameuser":
        return database == user
    if keyword == "replication":
        return False  # only replication connections, never PgBouncer's
    if keyword in ("samerole", "samegroup") or keyword.startswith(("/", "@")):
        return None
    return keyword == database


def _user_match(keyword, user):
    if keyword == "all":
        return True
    if keyword.startswith("+"):
        # +role: members of role, the role itself included; other members are catalog knowledge.
        return True if keyword[1:] == user else None
    if keyword.startswith(("/", "@")):
        return None
    return keyword == user


def _any(results):
    """A list matches when one entry does; None when none does for sure but one may."""
    results = list(results)
    if True in results:
        return True
    return None if None in results else False


def _matches(rule, database, user):
    db = _any(_database_match(keyword, database, user) for keyword in rule.get("database") or [])
    if db is False:
        return False
    role = _any(_user_match(keyword, user) for keyword in rule.get("user_name") or [])
    if role is False:
        return False
    return True if db and role else None


def _verdict(rule, user, os_user):
    """accept, trust, refuse or unknown for a line that matches."""
    method = rule.get("auth_method")
    if method in PASSWORD_METHODS:
        return "accept"
    if method == "trust":
        return "trust"
    if method in ("peer", "ident"):  # ident on a local line is peer
        if any(str(option).startswith("map=") for option in rule.get("options") or []):
            return "unknown"  # the user name map may allow it
        # Without a map, peer lets the OS user in as the role of the same name only.
        return "accept" if user == os_user else "refuse"
    return "refuse"


def decide(rules, database, user, os_user):
    """(verdict, rule or None) for one pair: accept, trust, refuse, or unknown (a line that
    may match, which this check cannot evaluate, comes first)."""
    for rule in rules:
        match = _matches(rule, database, user)
        if match is False:
            continue
        if match is None:
            return "unknown", rule
        return _verdict(rule, user, os_user), rule
    return "refuse", None


def _is_local_socket(entry, port):
    host = str(entry.get("host") or "")
    entry_port = entry.get("port")
    return host.startswith("/") and int(entry_port if entry_port not in (None, "") else 5432) == int(port)


def socket_check(backend, entries, users, os_user, port, allow_insecure=False):
    """Decide whether PostgreSQL accepts PgBouncer's socket logins, before the role writes them.

    backend: the pgbouncer_postgres_info result (databases, hba_local_rules, hba_read_error).
    entries: the [databases] entries the role writes, each {name, host, port, dbname, user,
      auth_user}; name "*" is the wildcard, which serves every database of `backend`.
    users: the roles PgBouncer logs in as for entries without a fixed user.
    os_user: the OS user PgBouncer runs as. port: the port of the PostgreSQL `backend` is.
    Entries on a socket of another port are another server: not checked here.

    Returns {problems: [...], warnings: [...]}; problems mean PostgreSQL would refuse logins.
    """
    problems, warnings = [], []
    socket_entries = [entry for entry in entries or [] if _is_local_socket(entry, port)]
    if not socket_entries:
        return {"problems": problems, "warnings": warnings}
    if backend.get("hba_read_error"):
        warnings.append("pg_hba.conf could not be read (%s): the check that PostgreSQL accepts PgBouncer's logins "
                        "over the unix socket is skipped" % backend["hba_read_error"])
        return {"problems": problems, "warnings": warnings}
    rules = backend.get("hba_local_rules") or []
    broken = [rule for rule in rules if rule.get("error")]
    if broken:
        warnings.append("%s: %s; PostgreSQL keeps the rules it loaded before, so the check that it accepts "
                        "PgBouncer's logins over the unix socket is skipped" % (where(broken[0]), broken[0]["error"]))
        return {"problems": problems, "warnings": warnings}
    for entry in socket_entries:
        label = ("the * entry (pgbouncer_database_wildcard_host %s)" % entry["host"] if entry.get("name") == "*"
                 else "pgbouncer_databases entry %s (host %s)" % (entry.get("name"), entry["host"]))
        databases = (backend.get("databases") or [] if entry.get("name") == "*"
                     else [entry.get("dbname") or entry.get("name")])
        logins = [entry["user"]] if entry.get("user") else list(users or [])
        if entry.get("auth_user"):
            logins.append(entry["auth_user"])
        # (verdict, position of the deciding line or None) -> (line, users, databases)
        outcomes = {}
        for user in sorted(set(logins)):
            for database in databases:
                verdict, rule = decide(rules, database, user, os_user)
                key = (verdict, rules.index(rule) if rule else None)
                found = outcomes.setdefault(key, (rule, set(), set()))
                found[1].add(user)
                found[2].add(database)
        for key in sorted(outcomes, key=lambda key: (key[1] is None, key[1] or 0, key[0])):
            verdict = key[0]
            rule, found_users, found_databases = outcomes[key]
            pairs = "users %s on databases %s" % (_names(found_users), _names(found_databases))
            if verdict == "refuse" and rule is None:
                problems.append(
                    "%s: PostgreSQL would refuse PgBouncer's logins over the unix socket as %s: no `local` line of "
                    "pg_hba.conf matches them. Fix: %s" % (label, pairs, FIX % ""))
            elif verdict == "refuse":
                why = ("%s lets PgBouncer's OS user %s in as the role %s only" % (rule["auth_method"], os_user, os_user)
                       if rule.get("auth_method") in ("peer", "ident") else
                       "%s takes no password PgBouncer can give" % rule.get("auth_method"))
                problems.append(
                    "%s: PostgreSQL would refuse PgBouncer's logins over the unix socket as %s: %s (%s) matches "
                    "them first, with method %s, and %s. Fix: %s" % (
                        label, pairs, where(rule), rule_text(rule), rule.get("auth_method"), why,
                        FIX % (" before line %s" % rule.get("line_number"))))
            elif verdict == "unknown":
                warnings.append(
                    "%s: %s (%s) may match PgBouncer's logins over the unix socket as %s (role membership, a "
                    "regular expression, a user name map or an @file: this check cannot evaluate it), so whether "
                    "PostgreSQL accepts them with a password is not checked" % (label, where(rule), rule_text(rule), pairs))
            elif verdict == "trust" and not allow_insecure:
                warnings.append(
                    "%s: %s (%s) lets PgBouncer in over the unix socket as %s without a password, and every local "
                    "OS user too; accepted (pg_hba.conf is PostgreSQL's choice). Set pgbouncer_allow_insecure: true "
                    "to silence this" % (label, where(rule), rule_text(rule), pairs))
    return {"problems": problems, "warnings": warnings}
