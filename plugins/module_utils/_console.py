# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One connection to PgBouncer's admin console, for the modules that send it commands.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import select
import time

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _admin
from ansible_collections.pgbouncer.cluster.plugins.module_utils._connection import (
    classify_error,
    connect,
    conninfo,
    endpoint,
    os_identity,
    psycopg,
)

CONSOLE_DB = "pgbouncer"


class ConsoleError(Exception):
    """PgBouncer answered with an error."""


class ConsoleTimeout(Exception):
    """The command did not finish in time."""


class ConnectionLost(Exception):
    """PgBouncer closed the connection (expected after SHUTDOWN)."""


class Console:
    """One admin console connection. Commands go through libpq's non-blocking calls so that a
    PAUSE that waits for busy server connections can be given up after `timeout` seconds."""

    def __init__(self, module, params=None, raise_errors=False):
        """Log in with params (the module's by default). A login that fails fails the module, or with
        raise_errors raises ConnectionLost, for callers that must undo something first."""
        self.module = module
        self.params = params or module.params
        if not raise_errors:
            self.conn = connect(module, CONSOLE_DB, params=self.params)
            return
        identity = self.params.get("os_user") if not self.params["login_host"] else None
        try:
            with os_identity(identity):
                self.conn = psycopg.connect(autocommit=True, cursor_factory=psycopg.ClientCursor,
                                            **conninfo(self.params, CONSOLE_DB))
        except (KeyError, psycopg.Error) as exc:
            raise ConnectionLost("cannot connect to %s: %s" % (endpoint(self.params), classify_error(str(exc), self.params)[1])) from exc

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def run(self, text, timeout=0):
        """(command tag, column names, column type oids, raw rows) of one command.

        Raises ConsoleError, ConsoleTimeout or ConnectionLost.
        """
        results = self._exchange(text, timeout)
        if not results:
            return "", [], [], []
        for res in results:
            if res.status == psycopg.pq.ExecStatus.FATAL_ERROR:
                raise ConsoleError(_error_text(res))
        last = results[-1]
        columns = [last.fname(i).decode() for i in range(last.nfields)]
        types = [last.ftype(i) for i in range(last.nfields)]
        raw_rows = [[last.get_value(r, c) for c in range(last.nfields)] for r in range(last.ntuples)]
        status = (last.command_status or b"").decode()
        return status, columns, types, raw_rows

    def show(self, name):
        _status, columns, types, raw_rows = self.run("SHOW " + name, self.params["connect_timeout"])
        return _admin.rows_to_dicts(columns, raw_rows, types, name)

    def _exchange(self, text, timeout):
        pgconn = self.conn.pgconn
        deadline = time.monotonic() + timeout if timeout else None
        try:
            pgconn.send_query(text.encode("utf-8"))
            results = []
            while True:
                pgconn.consume_input()
                while not pgconn.is_busy():
                    res = pgconn.get_result()
                    if res is None:
                        return results
                    results.append(res)
                self._wait_readable(pgconn.socket, deadline)
        except psycopg.OperationalError as exc:
            raise ConnectionLost(str(exc)) from exc

    @staticmethod
    def _wait_readable(sock, deadline):
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise ConsoleTimeout()
        select.select([sock], [], [], remaining)


def _error_text(res):
    primary = res.error_field(psycopg.pq.DiagnosticField.MESSAGE_PRIMARY)
    return (primary or res.error_message or b"unknown error").decode("utf-8", "replace")


def process_login(process, login_user, connect_timeout, os_user):
    """Console login parameters (as connection_argument_spec names them) for one process of the
    pgbouncer_processes filter's list: its unix socket, as os_user, without a password."""
    return dict(login_host="", login_unix_socket=process["unix_socket_dir"], login_port=int(process["port"]),
                login_user=login_user, login_password="", connect_timeout=connect_timeout, os_user=os_user)
