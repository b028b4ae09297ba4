"""What every driver workload shares: the feature list, the outcome bookkeeping, the loop that
keeps W clients busy for a number of seconds and reconnects them after an error, and the
per-driver settings for transaction pooling. Pure Python, no driver imported here."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

# The features each workload exercises, in the order one round runs them. A workload leaves
# out those its driver has no form of (psycopg2 never prepares on its own: it runs SQL PREPARE).
FEATURES = {
    "write": "single-statement INSERTs",
    "transaction": "explicit transaction: INSERT, UPDATE, a savepoint rolled back, COMMIT",
    "prepared": "one parameterised SELECT repeated 12 times per round (drivers prepare it server-side)",
    "sql_prepare": "SQL-level PREPARE / EXECUTE / DEALLOCATE in separate statements",
    "server_cursor": "server-side (named) cursor fetched in batches inside a transaction",
    "server_cursor_autocommit": "server-side cursor outside a transaction (Django .iterator(): WITH HOLD)",
    "copy": "COPY FROM STDIN of 50 rows and COPY TO STDOUT",
    "session_set": "SET app.tenant (a custom setting) at session level, read back in a later transaction",
    "session_set_tracked": "SET TimeZone at session level (a parameter PgBouncer tracks), read back later",
    "startup_options": "options='-c statement_timeout=4321' in the connection string, read back",
    "read_dsn": "SELECT through the second (read-only) DSN",
}

# What each driver needs to work through PgBouncer in transaction pooling, by PgBouncer line:
# "1.18" (no prepared statement support) and "1.21" (max_prepared_statements > 0).
# The workload applies them with --settings; docs/drivers.md prints them.
SETTINGS = {
    "psycopg3": {
        "1.18": "prepare_threshold=None (no server-side prepare); SET LOCAL / set_config(..., true) instead of session SET",
        "1.21": "none for prepared statements (max_prepared_statements > 0); SET LOCAL instead of session SET",
    },
    "psycopg3-prepare0": {
        "1.18": "prepare_threshold=None (no server-side prepare); SET LOCAL instead of session SET",
        "1.21": "none for prepared statements (max_prepared_statements > 0); SET LOCAL instead of session SET",
    },
    "psycopg2": {
        "1.18": "no SQL PREPARE (not tracked by any PgBouncer); SET LOCAL instead of session SET",
        "1.21": "no SQL PREPARE (not tracked by any PgBouncer); SET LOCAL instead of session SET",
    },
    "asyncpg": {
        "1.18": "statement_cache_size=0; no Connection.cursor() (asyncpg prepares a cursor's query as a named statement "
                "even without a cache): fetch() or keyset pages instead; SET LOCAL instead of session SET",
        "1.21": "none for prepared statements (max_prepared_statements > 0); SET LOCAL instead of session SET",
    },
    "asyncpg-nocache": {
        "1.18": "statement_cache_size=0 (as run); no Connection.cursor() (a named statement even without a cache); "
                "SET LOCAL instead of session SET",
        "1.21": "statement_cache_size=0 (as run); SET LOCAL instead of session SET",
    },
    "sqlalchemy-psycopg": {
        "1.18": "connect_args={'prepare_threshold': None}; SET LOCAL instead of session SET",
        "1.21": "none for prepared statements; SET LOCAL instead of session SET",
    },
    "sqlalchemy-asyncpg": {
        "1.18": "URL prepared_statement_cache_size=0, connect_args statement_cache_size=0 and a unique "
                "prepared_statement_name_func; SET LOCAL instead of session SET",
        "1.21": "none for prepared statements; SET LOCAL instead of session SET",
    },
    "django": {
        "1.18": "DISABLE_SERVER_SIDE_CURSORS=True (iterator() outside atomic() uses WITH HOLD cursors); SET LOCAL instead of session SET",
        "1.21": "DISABLE_SERVER_SIDE_CURSORS=True (iterator() outside atomic() uses WITH HOLD cursors); SET LOCAL instead of session SET",
    },
}
DRIVERS = tuple(SETTINGS)

# Features that fail through PgBouncer in transaction pooling even with the settings above (docs/drivers.md
# says why): the lane passes when nothing else fails. By PgBouncer line, for every driver that has the feature.
EXPECTED_FAILURES = {
    "1.18": {"startup_options", "sql_prepare"},
    "1.21": {"startup_options", "sql_prepare"},
}
EXPECTED_FAILURES_BY_DRIVER = {
    ("asyncpg", "1.18"): {"server_cursor"},  # asyncpg prepares a cursor's query as a named statement
    ("asyncpg-nocache", "1.18"): {"server_cursor"},
}


def unexpected_failures(result):
    """Features of one result (bench.drivers.run's JSON) that failed but should not have: all of
    them direct, and those outside EXPECTED_FAILURES through the pooler with --settings. A run
    without --settings through the pooler is not judged here (its failures are the findings)."""
    if result.get("crashed"):
        return ["crashed: %s" % result["crashed"][:300]]
    failing = sorted(name for name, f in result.get("features", {}).items() if f.get("status") == "error")
    if not result.get("pooler_version"):
        return failing
    line = pooler_line(result["pooler_version"])
    allowed = EXPECTED_FAILURES[line] | EXPECTED_FAILURES_BY_DRIVER.get((result["driver"], line), set())
    return [name for name in failing if name not in allowed]


TABLE = "drivers_lane"
CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS %s (id bigserial PRIMARY KEY, driver text NOT NULL, worker int NOT NULL, "
    "n int NOT NULL DEFAULT 0, payload text, created timestamptz NOT NULL DEFAULT now())" % TABLE
)
PREPARED_REPEATS = 12  # above psycopg's prepare_threshold (5) and asyncpg's first use
COPY_ROWS = 50
STARTUP_TIMEOUT_MS = "4321"
ZONES = ("UTC", "Europe/Paris", "Asia/Tokyo", "America/New_York")  # session SET TimeZone values


def pooler_line(version):
    """'1.18' or '1.21' (the settings key) for a PgBouncer version string; '1.21' when unknown."""
    match = re.search(r"(\d+)\.(\d+)", version or "")
    if match and (int(match.group(1)), int(match.group(2))) < (1, 21):
        return "1.18"
    return "1.21"


def dsn_parts(dsn):
    """host, port, user, password, dbname of a postgresql:// URL (what asyncpg and Django want)."""
    url = urlsplit(dsn)
    query = dict(parse_qsl(url.query))
    return {
        "host": url.hostname or query.get("host", "localhost"),
        "port": int(url.port or query.get("port", 5432)),
        "user": url.username or query.get("user", ""),
        "password": url.password or query.get("password", ""),
        "dbname": url.path.lstrip("/") or query.get("dbname", ""),
    }


_NUMBERS = re.compile(r"\d+")


def error_key(error):
    """'Class: first line of the message', numbers folded to N so that one cause is one key."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
    return "%s: %s" % (type(error).__name__, _NUMBERS.sub("N", text)[:200])


class Mismatch(Exception):
    """A feature ran without an error but gave the wrong answer (a session setting lost)."""


@dataclass
class Outcome:
    ok: int = 0
    errors: dict = field(default_factory=dict)

    def fail(self, error):
        key = error_key(error)
        self.errors[key] = self.errors.get(key, 0) + 1


class Stats:
    """Counts shared by the clients of one run (threads or asyncio tasks)."""

    def __init__(self, features):
        self.lock = threading.Lock()
        self.features = {name: Outcome() for name in features}
        self.transactions = 0
        self.rounds = 0
        self.reconnects = 0
        self.errors = {}

    def ok(self, feature, transactions=1):
        with self.lock:
            self.features[feature].ok += 1
            self.transactions += transactions

    def fail(self, feature, error):
        with self.lock:
            self.features[feature].fail(error)
            key = error_key(error)
            self.errors[key] = self.errors.get(key, 0) + 1

    def summary(self):
        features = {}
        for name, outcome in self.features.items():
            if outcome.errors:
                first = max(outcome.errors, key=outcome.errors.get)
                status = "error"
            else:
                first, status = "", ("ok" if outcome.ok else "not-run")
            features[name] = {"status": status, "ok": outcome.ok, "failed": sum(outcome.errors.values()),
                              "error": first, "errors": outcome.errors}
        return {"transactions": self.transactions, "rounds": self.rounds, "reconnects": self.reconnects,
                "errors": dict(sorted(self.errors.items(), key=lambda item: -item[1])), "features": features}


def run_threads(client_factory, features, clients, seconds):
    """Run `clients` threads for `seconds`: each makes a client (client_factory(worker)), then
    runs every feature of `features` in turn, round after round. A feature that raises is
    counted as failed and its client is closed and made again, as an application would."""
    stats = Stats(features)
    deadline = time.monotonic() + seconds

    def loop(worker):
        client = None
        while time.monotonic() < deadline:
            for name in features:
                if time.monotonic() >= deadline:
                    break
                try:
                    if client is None:
                        client = client_factory(worker)
                    stats.ok(name, getattr(client, name)())
                except Exception as error:  # noqa: BLE001  (every failure is counted, by class)
                    stats.fail(name, error)
                    if client is not None and not isinstance(error, Mismatch):
                        _close(client)
                        client = None
                        with stats.lock:
                            stats.reconnects += 1
                        time.sleep(0.05)
            with stats.lock:
                stats.rounds += 1
        if client is not None:
            _close(client)

    threads = [threading.Thread(target=loop, args=(worker,), daemon=True) for worker in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    return stats


async def run_tasks(client_factory, features, clients, seconds):
    """run_threads for asyncio: client_factory(worker) and each feature are coroutines."""
    stats = Stats(features)
    deadline = time.monotonic() + seconds

    async def loop(worker):
        client = None
        while time.monotonic() < deadline:
            for name in features:
                if time.monotonic() >= deadline:
                    break
                try:
                    if client is None:
                        client = await client_factory(worker)
                    stats.ok(name, await asyncio.wait_for(getattr(client, name)(), 60))
                except Exception as error:  # noqa: BLE001
                    stats.fail(name, error)
                    if client is not None and not isinstance(error, Mismatch):
                        await _aclose(client)
                        client = None
                        stats.reconnects += 1
                        await asyncio.sleep(0.05)
            stats.rounds += 1
        if client is not None:
            await _aclose(client)

    await asyncio.gather(*(loop(worker) for worker in range(clients)))
    return stats


def _close(client):
    try:
        client.close()
    except Exception:  # noqa: BLE001, S110  (a broken connection may fail to close)
        traceback.format_exc()


async def _aclose(client):
    try:
        await asyncio.wait_for(client.close(), 5)
    except Exception:  # noqa: BLE001
        traceback.format_exc()


def check(expected, got, what):
    """Raise Mismatch unless a value read back is the one the session set."""
    if str(got) != str(expected):
        raise Mismatch("%s: set %r, read back %r" % (what, expected, got))


def check_session(expected, got, what, others=None):
    """Raise Mismatch when a session setting read back in a later transaction is not the one
    this client set: "lost" (read back the default) or "another client's value" (leaked).
    `others` are the values other clients set (empty: any non-empty value is another's)."""
    if str(got) != str(expected):
        leaked = bool(got) and (others is None or got in others)
        raise Mismatch("%s: %s" % (what, "another client's value read back" if leaked else "lost (read back the default)"))
