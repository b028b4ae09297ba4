"""HTTP health agent for HAProxy: does the local PgBouncer answer a real login and query,
and is the PostgreSQL behind it the primary or a streaming replica?

Usage: pgbouncer-health   (settings from the environment, see settings_from_env)

A GET / or GET /health runs one query through PgBouncer's TCP listener, as
application_name "pgbouncer-health": SELECT 1 for a pooled database (through a server
connection), SHOW VERSION for the admin console database "pgbouncer". The connection is kept
between probes and replaced by a NEW login at least every PGBOUNCER_HEALTH_LOGIN_INTERVAL
seconds, and at once when it fails (see Prober).
GET /primary and GET /replica go through PgBouncer to PGBOUNCER_HEALTH_ROLE_DB (the
node's "postgres" database by default: a pool of its own, which a busy application pool
cannot hold up) and ask PostgreSQL its role: /primary passes only when it is not in
recovery, /replica only when it is in recovery with a WAL receiver running, and replaying
within PGBOUNCER_HEALTH_REPLICA_MAX_LAG bytes of what it received (0: any lag).
The whole probe, login included, is bounded by PGBOUNCER_HEALTH_TIMEOUT seconds.
Answers 200 "OK" when it worked, 503 "FAIL" otherwise; HAProxy's httpchk reads the status.
The reason goes to the journal only: the port is open to the network, libpq's messages are not.
A port that accepts TCP is not enough: a paused, stuck or misconfigured pooler fails here.

Bounds, so that nobody on the network can make it log in to PgBouncer in a loop or pile up
threads: one probe at a time, whose result serves every request of that path for
PGBOUNCER_HEALTH_CACHE_MS milliseconds; at most PGBOUNCER_HEALTH_MAX_CLIENTS connections at once, and at most
PGBOUNCER_HEALTH_MAX_CLIENTS_PER_SOURCE from one source address; over either bound the oldest connection that
has not sent its whole request yet is closed to make room (of the same source first), and only when every slot
holds a complete request being answered does a new one get 503 "BUSY". So clients that trickle bytes never keep
out a check that sends its request at once, as HAProxy's do, even from the same address.
PGBOUNCER_HEALTH_SOCKET_TIMEOUT seconds in all for a client to send its request, however it trickles in.
Installed by the pgbouncer.cluster pgbouncer_health role.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

APPLICATION_NAME = "pgbouncer-health"
CONSOLE_DB = "pgbouncer"
# Path -> what is checked.
PATHS = {"/": "health", "/health": "health", "/primary": "primary", "/replica": "replica"}
# In recovery; a WAL receiver runs (its pid is visible without pg_read_all_stats); bytes
# received but not yet replayed.
ROLE_QUERY = (
    "SELECT pg_is_in_recovery(), EXISTS (SELECT FROM pg_stat_wal_receiver), "
    "COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::bigint"
)
# A request head (request line and headers) longer than this is not a health check.
HEAD_LIMIT = 8192
# Written without a handler thread to a client over the limit, then the connection is closed.
BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nBUSY\n"


def settings_from_env(env):
    """The agent's settings from environment variables (the unit's EnvironmentFile)."""
    return {
        "listen_addr": env.get("PGBOUNCER_HEALTH_LISTEN_ADDR", "0.0.0.0"),
        "listen_port": int(env.get("PGBOUNCER_HEALTH_PORT", "6480")),
        "host": env.get("PGBOUNCER_HEALTH_PGBOUNCER_HOST", "127.0.0.1"),
        "port": int(env.get("PGBOUNCER_HEALTH_PGBOUNCER_PORT", "6432")),
        "user": env.get("PGBOUNCER_HEALTH_USER", ""),
        "password": env.get("PGBOUNCER_HEALTH_PASSWORD", ""),
        "dbname": env.get("PGBOUNCER_HEALTH_DB", CONSOLE_DB),
        "role_dbname": env.get("PGBOUNCER_HEALTH_ROLE_DB", "postgres"),
        "replica_max_lag": int(env.get("PGBOUNCER_HEALTH_REPLICA_MAX_LAG", "0")),
        "timeout": float(env.get("PGBOUNCER_HEALTH_TIMEOUT", "2")),
        "login_interval": float(env.get("PGBOUNCER_HEALTH_LOGIN_INTERVAL", "10")),
        "cache": int(env.get("PGBOUNCER_HEALTH_CACHE_MS", "300")) / 1000,
        "max_clients": max(1, int(env.get("PGBOUNCER_HEALTH_MAX_CLIENTS", "16"))),
        "max_clients_per_source": max(1, int(env.get("PGBOUNCER_HEALTH_MAX_CLIENTS_PER_SOURCE", "4"))),
        "socket_timeout": float(env.get("PGBOUNCER_HEALTH_SOCKET_TIMEOUT", "5")),
    }


def conninfo(settings, dbname=None):
    """psycopg.connect() keyword arguments: TCP only, no ~/.pgpass, libpq's own bound too."""
    kwargs = {
        "host": settings["host"],
        "port": settings["port"],
        "user": settings["user"],
        "dbname": dbname or settings["dbname"],
        "application_name": APPLICATION_NAME,
        # libpq takes whole seconds and treats 1 as 2; the probe's own deadline is exact.
        "connect_timeout": max(2, int(settings["timeout"] + 0.999)),
        "passfile": os.devnull,
    }
    if settings["password"]:
        kwargs["password"] = settings["password"]
    return kwargs


def query_for(dbname):
    """The console speaks only SHOW and control commands; a pooled database gets SELECT 1."""
    return "SHOW VERSION" if dbname == CONSOLE_DB else "SELECT 1"


def reason(exc, settings):
    """One line saying why the probe failed (never the password: libpq does not echo it)."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "no answer from PgBouncer at %s:%s within %ss" % (settings["host"], settings["port"], settings["timeout"])
    text = " ".join(str(exc).split()) or type(exc).__name__
    return "PgBouncer at %s:%s: %s" % (settings["host"], settings["port"], text)


def role_verdict(kind, row, settings):
    """(ok, reason) of a /primary or /replica check from ROLE_QUERY's row."""
    in_recovery, receiving, lag = row
    if kind == "primary":
        return (False, "PostgreSQL is in recovery, not the primary") if in_recovery else (True, "")
    if not in_recovery:
        return False, "PostgreSQL is the primary, not a replica"
    if not receiving:
        return False, "PostgreSQL is in recovery but receives no WAL stream"
    if settings["replica_max_lag"] and lag > settings["replica_max_lag"]:
        return False, "replay lags %d bytes behind what was received (limit %d)" % (lag, settings["replica_max_lag"])
    return True, ""


def response(ok, why=""):
    """(HTTP status, body) for a probe result. Never the reason: it goes to the journal."""
    return (200, "OK\n") if ok else (503, "FAIL\n")


async def _close(conn):
    with contextlib.suppress(Exception):  # a connection being dropped may fail to say goodbye
        await conn.close()


class Prober:
    """prober(kind) -> (ok, reason) of one query (kind: health, primary or replica) within
    settings['timeout'] seconds in total, login included.

    One connection per database is kept between probes, on one event loop, instead of a TLS
    login for every probe (issue 23, item 3: that was most of the agent's CPU). What a kept
    connection proves is still proved: every probe is a query answered now, under the same
    deadline, so a paused or stuck pooler fails as before. A connection that fails, or times
    out, is closed and never used again; one that fails with an error (PgBouncer restarted,
    the client killed) is replaced at once by a fresh login within the same deadline, and only
    that fresh login's answer counts. What only a NEW login proves (free client slots under
    max_client_conn, auth, TLS certificate, hba) is proved again every
    settings['login_interval'] seconds: the kept connection is then replaced by a fresh login,
    made while the old one is still held so that it needs a slot of its own, and every probe
    fails until one succeeds (0: a login for every probe, as before)."""

    def __init__(self, settings, psycopg):
        self.settings, self.psycopg = settings, psycopg
        self._runner = asyncio.Runner()  # one loop: a connection belongs to the loop it was made in
        self._kept = {}  # dbname -> (connection, time.monotonic() of its login)

    def __call__(self, kind="health"):
        try:
            rows = self._runner.run(asyncio.wait_for(self._probe(kind), self.settings["timeout"]))
        except Exception as exc:  # psycopg.Error, OSError, timeout: all mean "not healthy"
            return False, reason(exc, self.settings)
        return (True, "") if kind == "health" else role_verdict(kind, rows[0], self.settings)

    async def _probe(self, kind):
        dbname = self.settings["dbname"] if kind == "health" else self.settings["role_dbname"]
        query = query_for(dbname) if kind == "health" else ROLE_QUERY
        # Taken out: only a connection that has just answered is kept again.
        conn, since = self._kept.pop(dbname, (None, None))
        if conn is not None and time.monotonic() - since < self.settings["login_interval"]:
            try:
                rows = await self._query(conn, query)  # closes it when it fails
            except Exception:  # noqa: BLE001 (broken: a fresh login below tells the truth)
                conn = None
            else:
                self._kept[dbname] = (conn, since)
                return rows
        try:
            rows = await self._login_and_query(dbname, query)
        except BaseException:
            if conn is not None:
                # Due for a new login, which failed: held, unused, until one works, so that the next
                # one needs a slot of its own too (else a full pooler would pass every other time).
                self._kept[dbname] = (conn, since)
            raise
        if conn is not None:
            await _close(conn)
        return rows

    async def _login_and_query(self, dbname, query):
        psycopg = self.psycopg
        conn = await psycopg.AsyncConnection.connect(
            autocommit=True, prepare_threshold=None, cursor_factory=psycopg.AsyncClientCursor,
            **conninfo(self.settings, dbname))
        rows = await self._query(conn, query)
        self._kept[dbname] = (conn, time.monotonic())
        return rows

    @staticmethod
    async def _query(conn, query):
        """The rows of `query` on `conn`; on any failure, timeout included, `conn` is closed
        (a query cut off midway leaves the protocol in an unknown state)."""
        try:
            cursor = await conn.execute(query)
            return await cursor.fetchall()
        except BaseException:
            await _close(conn)
            raise


def read_head(sock, deadline, limit=HEAD_LIMIT):
    """The request head (through its blank line) read from `sock` by `deadline` (a
    time.monotonic() value). One deadline for the whole head, not a timeout per recv: a client
    that sends a byte every few seconds would otherwise hold its slot for ever. TimeoutError
    when the head is not complete by then."""
    head = b""
    while b"\n\r\n" not in head and b"\n\n" not in head and len(head) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete request within the deadline")
        sock.settimeout(left)
        chunk = sock.recv(limit - len(head))
        if not chunk:
            break  # the client stopped sending: http.server answers what came, or 400
        head += chunk
    return head


class Handler(BaseHTTPRequestHandler):
    """GET/HEAD of a path in PATHS runs that check; anything else is 404."""

    server_version = "pgbouncer-health"
    protocol_version = "HTTP/1.0"

    def version_string(self):
        # The Server header without http.server's "Python/3.x": nothing for a scanner to match.
        return self.server_version

    def setup(self):
        # A client holds a slot for socket_timeout at most, however slowly it sends, and less
        # when a newer connection needs the slot (HealthServer.admit); then http.server parses
        # what was read, from memory.
        head = read_head(self.request, time.monotonic() + self.server.socket_timeout)
        if not self.server.head_read(self.request):
            raise ConnectionAbortedError("pushed out by a newer connection before its request was complete")
        self.timeout = self.server.socket_timeout  # for writing the answer
        super().setup()
        self.rfile.close()
        self.rfile = io.BytesIO(head)

    def _answer(self, with_body):
        kind = PATHS.get(self.path.split("?", 1)[0])
        if kind is None:
            status, body = 404, "not found: GET /health, /primary or /replica\n"
        else:
            status, body = response(*self.server.check(kind))
        payload = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(payload)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._answer(True)

    def do_HEAD(self):  # noqa: N802
        self._answer(False)

    def do_OPTIONS(self):  # noqa: N802 (HAProxy's httpchk default method)
        self._answer(True)

    def log_message(self, format, *args):  # noqa: A002
        pass  # every check would be a line; changes of the result are logged instead


class HealthServer(HTTPServer):
    """HTTP server with at most max_clients handler threads, max_clients_per_source of them for
    one source address (a newer connection pushes out the oldest one still sending its
    request), and a check(kind) that probes at most once per `cache` seconds for each kind (one
    probe at a time) and logs when a result changes."""

    def __init__(self, settings, check_once):
        super().__init__((settings["listen_addr"], settings["listen_port"]), Handler)
        self._check_once = check_once
        self.socket_timeout = settings["socket_timeout"]
        self._cache = settings["cache"]
        self._max_clients = settings["max_clients"]
        # Threads kept for the next request: a new thread for each of HAProxy's checks was a
        # sixth of the agent's CPU at idle. Never more tasks than threads: slots bound both.
        self._workers = concurrent.futures.ThreadPoolExecutor(settings["max_clients"], thread_name_prefix="request")
        self._max_per_source = settings["max_clients_per_source"]
        self._slots_lock = threading.Lock()
        # Connections being served, oldest first: socket -> (source address, still reading its request).
        self._conns = {}
        self._probe_lock = threading.Lock()
        self._results = {}  # kind -> (when, (ok, why))
        self._last = {}

    def admit(self, request, source):
        """Whether a new connection from `source` may be served now (then counted until _free_slot).

        Over max_clients_per_source for its source, or max_clients in all, the oldest
        connection that has not sent its whole request yet (of the same source first) is closed
        to make room: a check that sends its request at once, as HAProxy's and keepalived's do,
        is never kept out by clients that trickle bytes, even from its own address. Only when
        every slot holds a complete request being answered is the new one refused (BUSY)."""
        with self._slots_lock:
            same = [conn for conn, (from_source, _reading) in self._conns.items() if from_source == source]
            if len(same) >= self._max_per_source:
                victims = [conn for conn in same if self._conns[conn][1]]
            elif len(self._conns) >= self._max_clients:
                victims = [conn for conn, (_source, reading) in self._conns.items() if reading]
            else:
                victims = None
            if victims == []:
                return False
            if victims:
                victim = victims[0]  # dicts keep insertion order: the oldest
                del self._conns[victim]
                with contextlib.suppress(OSError):
                    victim.shutdown(socket.SHUT_RDWR)  # its worker's recv returns at once
            self._conns[request] = (source, True)
            return True

    def head_read(self, request):
        """The connection's request is complete; False when it was pushed out meanwhile."""
        with self._slots_lock:
            if request not in self._conns:
                return False
            self._conns[request] = (self._conns[request][0], False)
            return True

    def _free_slot(self, request):
        with self._slots_lock:
            self._conns.pop(request, None)

    def process_request(self, request, client_address):
        if not self.admit(request, client_address[0]):
            try:
                request.settimeout(0)  # never wait on this client in the accepting thread
                request.send(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        self._workers.submit(self._serve, request, client_address)

    def _serve(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 (one client's trouble must not stop the agent)
            self.handle_error(request, client_address)
        finally:
            # Free the slot before the client sees the close: a client that reconnects at once
            # (HAProxy's next check) must not find it still taken.
            self._free_slot(request)
            self.shutdown_request(request)

    def server_close(self):
        super().server_close()
        self._workers.shutdown(wait=False)

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        # HAProxy's httpchk closes (or resets) the connection once it has read the status line:
        # every check would log a line.
        # A client that sent no complete request in time was silent before too (http.server's
        # own timeout); one line each would let slow senders flood the journal.
        # A connection pushed out for a newer one (HealthServer.admit) is not news either.
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        print("request from %s failed: %s" % (client_address[0], error), file=sys.stderr, flush=True)

    def check(self, kind="health"):
        with self._probe_lock:  # requests during a probe wait for its result
            at, result = self._results.get(kind, (None, None))
            if at is None or time.monotonic() - at >= self._cache:
                result = self._check_once(kind)
                self._results[kind] = (time.monotonic(), result)
            ok, why = result
            if (ok, why) != self._last.get(kind):
                # /health keeps the wording of the agent's journal before role checks existed.
                health_line = "healthy" if ok else "unhealthy: %s" % why
                print(health_line if kind == "health" else "%s: %s" % (kind, "yes" if ok else "no: %s" % why), file=sys.stderr, flush=True)
                self._last[kind] = (ok, why)
        return ok, why


def main():
    import psycopg  # python3-psycopg on the node; imported here so the tests need no psycopg

    settings = settings_from_env(os.environ)
    if not settings["user"]:
        sys.exit("PGBOUNCER_HEALTH_USER is not set: name a PgBouncer stats user (the pgbouncer_health role writes it)")
    server = HealthServer(settings, Prober(settings, psycopg))
    print("listening on %s:%s, checking %s:%s database %s as %s" % (
        settings["listen_addr"], settings["listen_port"], settings["host"], settings["port"],
        settings["dbname"], settings["user"]), file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
