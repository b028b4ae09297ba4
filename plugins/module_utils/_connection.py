# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connect to PgBouncer or PostgreSQL with psycopg 3; turn failures into actionable messages.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import contextlib
import os
import pwd

try:
    import psycopg

    PSYCOPG_IMPORT_ERROR = None
except ImportError as exc:  # reported by the modules with missing_required_lib
    psycopg = None
    PSYCOPG_IMPORT_ERROR = exc

APPLICATION_NAME = "ansible-pgbouncer.cluster"


def connection_argument_spec(default_port, default_user):
    """argument_spec entries of doc_fragments/connection.py, plus login_port."""
    return dict(
        login_host=dict(type="str", default=""),
        login_unix_socket=dict(type="str", default="/var/run/postgresql"),
        login_port=dict(type="int", default=default_port),
        login_user=dict(type="str", default=default_user),
        login_password=dict(type="str", default="", no_log=True),
        connect_timeout=dict(type="int", default=10),
        os_user=dict(type="str"),
    )


def conninfo(params, dbname):
    """psycopg.connect() keyword arguments for the module parameters."""
    kwargs = dict(
        host=params["login_host"] or params["login_unix_socket"],
        port=params["login_port"],
        user=params["login_user"],
        dbname=dbname,
        connect_timeout=params["connect_timeout"],
        application_name=APPLICATION_NAME,
        # ~/.pgpass of whoever runs the module must not decide what we log in with.
        passfile=os.devnull,
    )
    if params["login_password"]:
        kwargs["password"] = params["login_password"]
    return kwargs


def endpoint(params):
    if params["login_host"]:
        return "%s:%s" % (params["login_host"], params["login_port"])
    return "unix socket %s/.s.PGSQL.%s" % (params["login_unix_socket"], params["login_port"])


# (substring of the server or libpq message, kind, hint). First match wins.
_ERRORS = (
    ("connection refused", "connection_refused",
     "nothing accepts connections at {endpoint}: is the service running, and are listen_addr/listen_port right?"),
    ("no such file or directory", "connection_refused",
     "nothing listens on {endpoint}: is the service running, and is unix_socket_dir right?"),
    ("timeout expired", "timeout",
     "no answer from {endpoint} within connect_timeout: check the address and the firewall"),
    ("password authentication failed", "authentication_failed",
     "authentication failed for user {user}: check login_password and that the user's secret in the auth_file matches PostgreSQL"),
    ("sasl authentication failed", "authentication_failed",
     "authentication failed for user {user}: check login_password and that the user's secret in the auth_file matches PostgreSQL"),
    ("no password supplied", "authentication_failed",
     "user {user} needs a password: set login_password, or connect over the unix socket with os_user"),
    ("peer authentication failed", "authentication_failed",
     "peer authentication failed for user {user}: set os_user to the OS user that maps to it"),
    ("admin access needed", "admin_access_needed",
     "user {user} may only run SHOW commands: add it to admin_users to run this command"),
    ("not allowed", "not_allowed",
     "user {user} may not use the admin console: add it to admin_users or stats_users"),
    ("no such database", "unknown_database",
     "{endpoint} does not know that database: check the [databases] section"),
    ("invalid command", "unknown_command", "PgBouncer does not know that command"),
    ("unknown command", "unknown_command", "PgBouncer does not know that command"),
)


def classify_error(message, params):
    """Return (kind, message a user can act on) for a psycopg error message."""
    first_line = (message.strip().splitlines() or [""])[0]
    lowered = message.lower()
    for needle, kind, hint in _ERRORS:
        if needle in lowered:
            return kind, "%s (%s)" % (hint.format(endpoint=endpoint(params), user=params.get("login_user")), first_line)
    return "error", first_line


@contextlib.contextmanager
def os_identity(user):
    """Take OS user `user`'s effective uid/gid for the duration (root only; else a no-op)."""
    if not user or os.geteuid() != 0:
        yield
        return
    entry = pwd.getpwnam(user)
    os.setegid(entry.pw_gid)
    os.seteuid(entry.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def connect(module, dbname, autocommit=True, params=None):
    """Open a psycopg connection or fail_json with a classified message (params: the module's by default)."""
    if psycopg is None:
        from ansible.module_utils.basic import missing_required_lib

        module.fail_json(msg=missing_required_lib("psycopg (python3-psycopg)"), exception=str(PSYCOPG_IMPORT_ERROR))
    params = params or module.params
    use_identity = params.get("os_user") if not params["login_host"] else None
    try:
        with os_identity(use_identity):
            # ClientCursor: simple query protocol, the only one the admin console speaks.
            return psycopg.connect(autocommit=autocommit, cursor_factory=psycopg.ClientCursor, **conninfo(params, dbname))
    except KeyError:
        module.fail_json(msg="os_user %s does not exist on this node" % params.get("os_user"))
    except psycopg.Error as exc:
        kind, msg = classify_error(str(exc), params)
        module.fail_json(msg="cannot connect to %s: %s" % (endpoint(params), msg), error_kind=kind)
