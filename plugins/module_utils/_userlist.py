# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PgBouncer auth_file (userlist.txt) format: pure functions, no I/O.

Each line is `"name" "secret"`; a double quote inside either field is written twice.
Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from ansible_collections.pgbouncer.cluster.plugins.module_utils._ini import MAX_USER_NAME, secret_length_problem
from ansible_collections.pgbouncer.cluster.plugins.module_utils._text import (
    CONTROL_MESSAGE,
    double_quoted,
    has_control_char,
    lines,
)

# One field: a double-quoted string where "" stands for a literal quote.
_FIELD = r'"((?:[^"]|"")*)"'
_LINE = re.compile(r"^\s*" + _FIELD + r"\s+" + _FIELD + r"\s*$")


# A field of the auth_file: in double quotes, a quote inside doubled.
quote = double_quoted


def entry_problem(name, secret):
    """Why PgBouncer could not read (name, secret) as one line of the auth_file, or None.
    The secret is never part of the answer."""
    if has_control_char(name):
        return "user %r: a name with %s cannot be written to the auth_file" % (name, CONTROL_MESSAGE)
    if has_control_char(secret):
        return "user %s: a password with %s cannot be written to the auth_file" % (name, CONTROL_MESSAGE)
    if len(name.encode("utf-8")) > MAX_USER_NAME:
        return "user %s: PgBouncer takes user names of at most %d bytes" % (name, MAX_USER_NAME)
    if secret_length_problem(secret):
        return "user %s: the password is %s" % (name, secret_length_problem(secret))
    return None


def render(entries):
    """Text of an auth_file for [(name, secret), ...], in the given order. Raises ValueError
    for an entry that would not stay one line (entry_problem)."""
    for name, secret in entries:
        problem = entry_problem(name, secret)
        if problem:
            raise ValueError(problem)
    return "".join("%s %s\n" % (quote(name), quote(secret)) for name, secret in entries)


def parse(text):
    """[(name, secret), ...] from auth_file text; comments (;) and blank lines skipped.

    Raises ValueError naming the line number for a line PgBouncer would not read.
    """
    entries = []
    for number, line in enumerate(lines(text), start=1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ValueError("line %d is not of the form \"name\" \"secret\"" % number)
        entries.append((match.group(1).replace('""', '"'), match.group(2).replace('""', '"')))
    return entries


def _flags(row):
    """(name, secret, superuser, expired) of a pg_shadow row; (name, secret) rows are neither."""
    name, secret = row[0], row[1]
    return name, secret, bool(row[2]) if len(row) > 2 else False, bool(row[3]) if len(row) > 3 else False


def left_out(rows, include_superusers=False):
    """{name: reason} of roles with a password that select() leaves out whatever users says.

    Expired roles (VALID UNTIL passed) could still log in to the pooler with the copied secret;
    superusers do not belong in a file every pooler reload reads (the auth_query path skips
    both too), so they are written only when asked for.
    """
    reasons = {}
    for name, secret, superuser, expired in map(_flags, rows):
        if not secret:
            continue
        if has_control_char(name):
            # CREATE ROLE takes any name; the auth_file holds one user per line.
            reasons[name] = "a name with %s, which the auth_file cannot hold" % CONTROL_MESSAGE
        elif expired:
            reasons[name] = "expired (VALID UNTIL has passed)"
        elif superuser and not include_superusers:
            reasons[name] = "a superuser (set include_superusers to write it)"
    return reasons


def select(rows, users=None, exclude=None, include_superusers=False):
    """Filter pg_shadow rows to sorted (name, secret): only `users` when given, never `exclude`,
    never what left_out() names.

    Rows are (name, secret[, superuser, expired]). Rows without a secret are dropped: such a role
    cannot log in through the pooler.
    """
    wanted = set(users or [])
    unwanted = set(exclude or []) | set(left_out(rows, include_superusers))
    return sorted(
        (name, secret)
        for name, secret, _superuser, _expired in map(_flags, rows)
        if secret and (not wanted or name in wanted) and name not in unwanted
    )


def secret_kind(secret):
    if secret.startswith("SCRAM-SHA-256$"):
        return "scram-sha-256"
    if secret.startswith("md5") and len(secret) == 35:
        return "md5"
    return "plain"


def mask(entries, key):
    """auth_file text safe for a diff: each secret becomes its kind and a fingerprint keyed
    with `key` (random per run), so a changed secret shows as a changed line, yet nothing
    shown can be checked offline against a guessed password."""
    return "".join(
        "%s <%s secret %s>\n"
        % (quote(name), secret_kind(secret), hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()[:8])
        for name, secret in entries
    )


def md5_under_scram(entries, auth_type):
    """(names, message) of the users whose secret is md5 when clients log in with SCRAM.

    PgBouncer's auth_type scram-sha-256 needs a SCRAM secret (or a plain password) in the
    auth_file: a user whose PostgreSQL password is stored as md5 is refused ("SASL
    authentication failed") however right the password. Such users are written anyway and
    warned about on every run, not refused: they lose nothing by it (they cannot log in
    through the pooler either way, and keep 5432 meanwhile), and a refusal would stop the role
    for every other user, password rotations included, until each md5 user's owner re-set a
    password. names is sorted; message is None when there is nothing to say.
    """
    if auth_type != "scram-sha-256":
        return [], None
    names = sorted(name for name, secret in entries if secret and secret_kind(secret) == "md5")
    if not names:
        return [], None
    return names, (
        "users whose PostgreSQL password is stored as md5 cannot log in through PgBouncer with auth_type "
        "scram-sha-256: %s. Either set each one's password again under password_encryption = scram-sha-256 "
        "(SET password_encryption = 'scram-sha-256'; ALTER ROLE name PASSWORD '...', or \\password in psql) and run "
        "the role again, or use auth_type md5 (pgbouncer_auth_type: md5), with which PgBouncer still uses SCRAM "
        "for every user whose secret is SCRAM." % ", ".join(names)
    )
