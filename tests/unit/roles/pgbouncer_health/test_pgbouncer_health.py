"""Unit tests of the pgbouncer_health agent (roles/pgbouncer_health/files/pgbouncer_health.py):
settings, conninfo, query, responses, and the HTTP server with a fake probe."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("pgbouncer_health", ROOT / "roles/pgbouncer_health/files/pgbouncer_health.py")
agent = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(agent)

ENV = {
    "PGBOUNCER_HEALTH_LISTEN_ADDR": "10.129.0.21",
    "PGBOUNCER_HEALTH_PORT": "8008",  # any port: the agent takes what it is told
    "PGBOUNCER_HEALTH_PGBOUNCER_HOST": "10.129.0.21",
    "PGBOUNCER_HEALTH_PGBOUNCER_PORT": "6432",
    "PGBOUNCER_HEALTH_USER": "app_user",
    "PGBOUNCER_HEALTH_PASSWORD": "app-pass-1",
    "PGBOUNCER_HEALTH_DB": "appdb",
    "PGBOUNCER_HEALTH_TIMEOUT": "2",
}


def test_settings_from_the_environment_file():
    settings = agent.settings_from_env(ENV)
    assert settings == {
        "listen_addr": "10.129.0.21", "listen_port": 8008, "host": "10.129.0.21", "port": 6432,
        "user": "app_user", "password": "app-pass-1", "dbname": "appdb", "role_dbname": "postgres",
        "replica_max_lag": 0, "timeout": 2.0, "login_interval": 10.0, "cache": 0.3, "max_clients": 16, "max_clients_per_source": 4,
        "socket_timeout": 5.0,
    }


def test_settings_defaults():
    settings = agent.settings_from_env({})
    assert (settings["listen_port"], settings["host"], settings["port"], settings["dbname"], settings["timeout"]) == (
        6480, "127.0.0.1", 6432, "pgbouncer", 2.0)


def test_conninfo_is_tcp_with_the_application_name_and_no_pgpass():
    info = agent.conninfo(agent.settings_from_env(ENV))
    assert info["host"] == "10.129.0.21" and info["port"] == 6432
    assert info["application_name"] == "pgbouncer-health"
    assert info["password"] == "app-pass-1"
    assert info["passfile"] == "/dev/null"
    assert info["connect_timeout"] == 2


def test_conninfo_without_password_sends_none_and_rounds_the_timeout_up():
    settings = agent.settings_from_env(dict(ENV, PGBOUNCER_HEALTH_PASSWORD="", PGBOUNCER_HEALTH_TIMEOUT="3.5"))
    info = agent.conninfo(settings)
    assert "password" not in info
    assert info["connect_timeout"] == 4


@pytest.mark.parametrize("dbname, query", [("appdb", "SELECT 1"), ("pgbouncer", "SHOW VERSION")])
def test_query_for_database(dbname, query):
    assert agent.query_for(dbname) == query


def test_responses():
    assert agent.response(True) == (200, "OK\n")
    # The reason goes to the journal only, never to the network.
    assert agent.response(False, "PgBouncer at 10.129.0.21:6432: connection refused") == (503, "FAIL\n")


def test_reason_of_a_timeout_and_of_an_error():
    settings = agent.settings_from_env(ENV)
    assert agent.reason(TimeoutError(), settings) == "no answer from PgBouncer at 10.129.0.21:6432 within 2.0s"
    assert agent.reason(OSError("connection refused\n  Is the server running?"), settings) == (
        "PgBouncer at 10.129.0.21:6432: connection refused Is the server running?")


class FakePsycopg:
    """Stands in for psycopg: records the connect arguments, answers or fails as told."""

    def __init__(self, error=None, delay=0.0):
        self.error, self.delay, self.calls, self.row = error, delay, [], (1,)
        self.logins, self.broken = 0, set()  # numbers (from 1, in login order) of connections that fail
        fake = self

        class Conn:
            def __init__(self, number):
                self.number = number

            async def execute(self, query):
                fake.calls.append(("execute", query, self.number))
                if self.number in fake.broken:
                    raise OSError("server closed the connection unexpectedly")
                await asyncio.sleep(fake.delay)

                class Cursor:
                    async def fetchall(self):
                        return [fake.row]

                return Cursor()

            async def close(self):
                fake.calls.append(("close", self.number))

        class AsyncConnection:
            @staticmethod
            async def connect(**kwargs):
                fake.calls.append(("connect", kwargs))
                if fake.error:
                    raise fake.error
                fake.logins += 1
                return Conn(fake.logins)

        self.AsyncConnection = AsyncConnection
        self.AsyncClientCursor = object


def test_probe_logs_in_with_prepare_threshold_none_runs_the_query_and_keeps_the_connection():
    fake = FakePsycopg()
    assert agent.Prober(agent.settings_from_env(ENV), fake)() == (True, "")
    kind, kwargs = fake.calls[0]
    assert kind == "connect" and kwargs["prepare_threshold"] is None and kwargs["autocommit"] is True
    assert fake.calls[1:] == [("execute", "SELECT 1", 1)]


def test_probe_reports_a_refused_login():
    fake = FakePsycopg(error=OSError("connection refused"))
    assert agent.Prober(agent.settings_from_env(ENV), fake)() == (False, "PgBouncer at 10.129.0.21:6432: connection refused")


def test_probe_is_bounded_by_the_timeout_and_still_closes():
    fake = FakePsycopg(delay=5)
    settings = dict(agent.settings_from_env(ENV), timeout=0.2)
    ok, why = agent.Prober(settings, fake)()
    assert not ok and "within 0.2s" in why
    assert fake.calls[-1] == ("close", 1)


def primary():
    """A FakePsycopg whose role query answers: the primary."""
    fake = FakePsycopg()
    fake.row = (False, False, 0)
    return fake


def logins(fake):
    return [call[1]["dbname"] for call in fake.calls if call[0] == "connect"]


def test_probes_keep_one_connection_per_database():
    """Issue 23 item 3: a TLS login for every probe was most of the agent's CPU. Twenty probes
    of the three kinds make one login per database. Milliseconds."""
    fake = FakePsycopg()
    fake.row = (False, False, 0)
    prober = agent.Prober(agent.settings_from_env(ENV), fake)
    for _round in range(10):
        assert [prober(kind) for kind in ("health", "primary", "replica")] == [
            (True, ""), (True, ""), (False, "PostgreSQL is the primary, not a replica")]
    assert logins(fake) == ["appdb", "postgres"]
    assert not [call for call in fake.calls if call[0] == "close"]


def test_a_kept_connection_to_a_paused_pooler_fails_within_the_timeout_and_is_dropped():
    """A paused or stuck pooler does not answer the kept connection either: the probe's deadline
    still applies, and that connection is never used again. Under a second."""
    fake = primary()
    prober = agent.Prober(dict(agent.settings_from_env(ENV), timeout=0.2), fake)
    assert prober("primary") == (True, "")
    fake.delay = 5  # PAUSE: the query waits
    started = time.monotonic()
    assert prober("primary") == (False, "no answer from PgBouncer at 10.129.0.21:6432 within 0.2s")
    assert time.monotonic() - started < 1
    assert fake.calls[-1] == ("close", 1)
    fake.delay = 0  # RESUME: a fresh login
    assert prober("primary") == (True, "")
    assert fake.calls[-2:] == [("connect", fake.calls[0][1]), ("execute", agent.ROLE_QUERY, 2)]


def test_a_broken_kept_connection_is_replaced_by_a_fresh_login_in_the_same_probe():
    """PgBouncer restarted (or the client was killed): the kept connection fails, the same
    probe logs in again, and only that login's answer counts. Milliseconds."""
    fake = primary()
    prober = agent.Prober(agent.settings_from_env(ENV), fake)
    assert prober("primary") == (True, "")
    fake.broken.add(1)
    assert prober("primary") == (True, "")
    assert [call[0] for call in fake.calls] == ["connect", "execute", "execute", "close", "connect", "execute"]
    # Broken again, and no new login possible: the check fails, it does not pass on the old state.
    fake.broken.add(2)
    fake.error = OSError("connection refused")
    assert prober("primary") == (False, "PgBouncer at 10.129.0.21:6432: connection refused")
    assert ("close", 2) in fake.calls


def test_a_new_login_is_proved_at_least_every_login_interval():
    """What only a new login shows (max_client_conn reached, auth or TLS broken) is seen within
    login_interval seconds although the kept connection still answers; the new login is made
    before the old connection is closed, so it needs a client slot of its own. About 0.2 s."""
    fake = primary()
    prober = agent.Prober(dict(agent.settings_from_env(ENV), login_interval=0.1), fake)
    assert prober("primary") == (True, "")
    assert prober("primary") == (True, "")
    assert logins(fake) == ["postgres"]
    time.sleep(0.15)
    fake.error = OSError('FATAL:  no more connections allowed (max_client_conn)')
    for _probe in range(3):  # the old connection still held: the pooler stays full for new logins
        assert prober("primary") == (False, "PgBouncer at 10.129.0.21:6432: FATAL: no more connections allowed (max_client_conn)")
        assert fake.calls[-1] == ("connect", fake.calls[0][1])
    fake.error = None
    assert prober("primary") == (True, "")
    assert fake.calls[-3:] == [("connect", fake.calls[0][1]), ("execute", agent.ROLE_QUERY, 2), ("close", 1)]


def test_login_interval_zero_logs_in_for_every_probe():
    fake = FakePsycopg()
    prober = agent.Prober(dict(agent.settings_from_env(ENV), login_interval=0), fake)
    for _probe in range(3):
        assert prober("health") == (True, "")
    assert logins(fake) == ["appdb"] * 3
    assert [call for call in fake.calls if call[0] == "close"] == [("close", 1), ("close", 2)]


@pytest.fixture
def served():
    """An agent on 127.0.0.1 (a free port) whose probe answers what `state` says."""
    state = {"result": (True, "")}
    server = agent.HealthServer(dict(agent.settings_from_env({}), listen_addr="127.0.0.1", listen_port=0, cache=0),
                                lambda kind: state.get(kind, state["result"]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1], state
    server.shutdown()
    server.server_close()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_server_header_names_the_agent_only(served):
    """Issue 23, item 7: http.server's default Server header carried the Python version
    ("pgbouncer-health Python/3.11.2"). Two requests to a local agent, about 10 ms, and the
    fixture's shutdown (up to 0.5 s, serve_forever's poll)."""
    base, _state = served
    for path in ("/health", "/other"):
        request = urllib.request.Request(base + path, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                headers = answer.headers
        except urllib.error.HTTPError as exc:  # the 404
            headers = exc.headers
        assert headers["Server"] == "pgbouncer-health", (path, headers["Server"])


def test_http_answers_200_then_503_then_404_for_other_paths(served):
    base, state = served
    assert get(base + "/health") == (200, "OK\n")
    assert get(base + "/") == (200, "OK\n")
    state["result"] = (False, "PgBouncer at 127.0.0.1:6432: connection refused")
    assert get(base + "/health") == (503, "FAIL\n")
    assert get(base + "/other")[0] == 404


@pytest.mark.parametrize(("kind", "row", "verdict"), [
    ("primary", (False, False, 0), (True, "")),
    ("primary", (True, True, 0), (False, "PostgreSQL is in recovery, not the primary")),
    ("replica", (True, True, 0), (True, "")),
    ("replica", (False, False, 0), (False, "PostgreSQL is the primary, not a replica")),
    ("replica", (True, False, 0), (False, "PostgreSQL is in recovery but receives no WAL stream")),
    ("replica", (True, True, 9000), (True, "")),  # no lag bound by default
])
def test_role_verdicts(kind, row, verdict):
    assert agent.role_verdict(kind, row, agent.settings_from_env({})) == verdict


def test_a_replica_lagging_over_the_bound_is_not_a_replica_to_send_reads_to():
    settings = agent.settings_from_env({"PGBOUNCER_HEALTH_REPLICA_MAX_LAG": "8192"})
    assert agent.role_verdict("replica", (True, True, 8192), settings) == (True, "")
    assert agent.role_verdict("replica", (True, True, 8193), settings) == (False, "replay lags 8193 bytes behind what was received (limit 8192)")


def test_role_probes_go_through_pgbouncer_to_the_role_database():
    fake = FakePsycopg()
    fake.row = (True, True, 0)
    prober = agent.Prober(agent.settings_from_env(ENV), fake)
    assert prober("replica") == (True, "")
    assert fake.calls[0][1]["dbname"] == "postgres" and fake.calls[0][1]["host"] == "10.129.0.21"
    assert fake.calls[1] == ("execute", agent.ROLE_QUERY, 1)
    assert prober("primary") == (False, "PostgreSQL is in recovery, not the primary")
    assert fake.calls[2] == ("execute", agent.ROLE_QUERY, 1)  # the same connection: one database


def test_http_paths_run_their_own_check(served):
    base, state = served
    state.update(primary=(False, "PostgreSQL is in recovery, not the primary"), replica=(True, ""))
    assert get(base + "/primary") == (503, "FAIL\n")  # the reason goes to the journal only
    assert get(base + "/replica") == (200, "OK\n")
    assert get(base + "/health") == (200, "OK\n")
