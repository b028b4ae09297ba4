"""bench/ pure parts: pgbench (PostgreSQL 15) report parsing, ratios, goals, the Markdown table.

The pgbench outputs below were recorded on the lab (pgbench 15.18 on the app node, Debian 12).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench import pgbench, report  # noqa: E402
from bench.lab import BenchError, node_ip, recap  # noqa: E402
from bench.run import plan_rounds  # noqa: E402

# pgbench -n -S -C -c 20 -j 2 -T 3 through PgBouncer (md5 user, auth_type=md5).
CHURN_OK = """\
pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: simple
number of clients: 20
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 1484
number of failed transactions: 0 (0.000%)
latency average = 40.545 ms
average connection time = 3.718 ms
tps = 493.277433 (including reconnection times)
"""

# pgbench -n -S -c 20 -j 2 -T 3 through PgBouncer (persistent connections).
PERSISTENT_OK = """\
pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: simple
number of clients: 20
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 9214
number of failed transactions: 0 (0.000%)
latency average = 3.877 ms
initial connection time = 1234.769 ms
tps = 5159.046332 (without initial connection time)
"""

# The md5 user through PgBouncer with auth_type=scram-sha-256: no login at all (exit 1).
SETUP_FAILED = """\
pgbench: error: connection to server at "10.129.0.30", port 6432 failed: FATAL:  SASL authentication failed
pgbench: error: could not create connection for setup
"""

# -C with max_client_conn set below the client count: clients abort mid-run (exit 2).
CLIENTS_ABORTED = """\
pgbench (15.18 (Debian 15.18-0+deb12u1))
pgbench: error: connection to server at "10.129.0.30", port 6432 failed: FATAL:  no more connections allowed (max_client_conn)
pgbench: error: client 7 aborted while establishing connection
pgbench: error: connection to server at "10.129.0.30", port 6432 failed: FATAL:  no more connections allowed (max_client_conn)
pgbench: error: client 8 aborted while establishing connection
pgbench: error: connection to server at "10.129.0.30", port 6432 failed: FATAL:  no more connections allowed (max_client_conn)
pgbench: error: client 9 aborted while establishing connection
pgbench: error: connection to server at "10.129.0.30", port 6432 failed: FATAL:  no more connections allowed (max_client_conn)
pgbench: error: client 1 aborted while establishing connection
pgbench: error: connection to server at "10.129.0.30", port 6432 failed: FATAL:  no more connections allowed (max_client_conn)
pgbench: error: client 2 aborted while establishing connection
pgbench: error: connection to server at "10.129.0.30", port 6432 failed: FATAL:  no more connections allowed (max_client_conn)
pgbench: error: client 16 aborted while establishing connection
pgbench: error: connection to server at "10.129.0.30", port 6432 failed: FATAL:  no more connections allowed (max_client_conn)
pgbench: error: client 17 aborted while establishing connection
pgbench: error: connection to server at "10.129.0.30", port 6432 failed: FATAL:  no more connections allowed (max_client_conn)
pgbench: error: client 18 aborted while establishing connection
pgbench: error: connection to server at "10.129.0.30", port 6432 failed: FATAL:  no more connections allowed (max_client_conn)
pgbench: error: client 6 aborted while establishing connection
pgbench: error: connection to server at "10.129.0.30", port 6432 failed: FATAL:  no more connections allowed (max_client_conn)
pgbench: error: client 19 aborted while establishing connection
transaction type: <builtin: select only>
scaling factor: 1
query mode: simple
number of clients: 20
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 25
number of failed transactions: 0 (0.000%)
latency average = 1732.270 ms
average connection time = 168.292 ms
tps = 11.545547 (including reconnection times)
pgbench: error: Run was aborted; the above results are incomplete.
"""


def test_parse_churn_run():
    result = pgbench.parse(CHURN_OK, 0)
    assert result["ok"] is True
    assert result["version"] == "15.18"
    assert result["clients"] == 20
    assert result["threads"] == 2
    assert result["duration_s"] == 3
    assert result["failed_transactions"] == 0
    assert result["tps"] == pytest.approx(493.3, abs=0.1)
    assert result["tps_note"] == "including reconnection times"
    assert result["avg_connection_ms"] > 0
    assert "initial_connection_ms" not in result
    assert result["errors"] == []


def test_parse_persistent_run():
    result = pgbench.parse(PERSISTENT_OK, 0)
    assert result["ok"] is True
    assert result["transactions"] == 9214
    assert result["tps"] == pytest.approx(5159.046332)
    assert result["tps_note"] == "without initial connection time"
    assert result["latency_avg_ms"] == pytest.approx(3.877)
    assert result["initial_connection_ms"] == pytest.approx(1234.769)
    assert result["transaction_type"] == "<builtin: select only>"


def test_parse_failed_login():
    result = pgbench.parse(SETUP_FAILED, 1)
    assert result["ok"] is False
    assert result["tps"] is None
    assert "SASL authentication failed" in pgbench.first_error(result)
    assert result["errors"][1] == "could not create connection for setup"


def test_parse_aborted_clients_is_not_ok_even_with_a_tps_line():
    result = pgbench.parse(CLIENTS_ABORTED, 2)
    assert result["tps"] == pytest.approx(11.545547)
    assert result["aborted_clients"] == 10
    assert result["run_aborted"] is True
    assert result["ok"] is False
    assert "max_client_conn" in pgbench.first_error(result)


def test_parse_transactions_with_t():
    assert pgbench.parse("number of transactions actually processed: 100/100\n")["transactions"] == 100


def test_exit_code_alone_makes_a_run_fail():
    assert pgbench.parse(PERSISTENT_OK, 1)["ok"] is False


def entry(phase_target, auth, variant, text, rc=0, user=None):
    user = user or ("report_user" if auth == "md5" else "app_user")
    return {"user": user, "user_auth": auth, "target": phase_target, "variant": variant, "pgbench": pgbench.parse(text, rc)}


def run_with_tps(value: float) -> str:
    """The recorded churn report with another tps line."""
    return re.sub(r"^tps = .*$", "tps = %.6f (including reconnection times)" % value, CHURN_OK, flags=re.MULTILINE)


def results_fixture() -> dict:
    churn = [
        entry("direct", "scram-sha-256", "direct", run_with_tps(100.0)),
        entry("pooled", "scram-sha-256", "as deployed", run_with_tps(350.0)),
        entry("pooled", "scram-sha-256", "logging off", run_with_tps(400.0)),
        entry("direct", "md5", "direct", run_with_tps(50.0)),
        entry("pooled", "md5", "as deployed", SETUP_FAILED, 1),
        entry("pooled", "md5", "auth_type=md5", run_with_tps(1000.0)),
        entry("pooled", "md5", "auth_type=md5, logging off", run_with_tps(1250.0)),
    ]
    persistent = [entry("direct", "scram-sha-256", "direct", PERSISTENT_OK), entry("pooled", "scram-sha-256", "as deployed", PERSISTENT_OK)]
    fanin = {
        "interval_s": 0.5,
        "direct": {"clients": 1000, "connected": 97, "errors": 903, "connect_errors": {"FATAL:  sorry, too many clients already": 903},
                   "query_errors": {}, "servers_per_pair": {"appdb/app_user": 97}, "memory": {"backends": 97, "backends_pss_kb": 200 * 1024}},
        "pooled": {"clients": 1000, "connected": 1000, "errors": 0, "connect_errors": {}, "query_errors": {},
                   "servers_per_pair": {"appdb/app_user": 20}, "memory": {"backends": 20, "backends_pss_kb": 50 * 1024}},
    }
    ansible = [
        {"nodes": 3, "cold_s": 60.0, "cold_changed": 40, "warm_s": 12.0, "warm_changed": 0},
        {"nodes": 6, "cold_s": 90.0, "cold_changed": 80, "warm_s": 16.5, "warm_changed": 0},
    ]
    meta = {"started": "2026-11-21 12:00 UTC", "machine": {"nproc": 2, "pgbouncer": "1.18.0"},
            "pgbouncer_config": {"default_pool_size": "20", "auth_type": "scram-sha-256"}}
    return {"meta": meta, "churn": churn, "persistent": persistent, "fanin": fanin, "ansible": ansible}


def test_ratios():
    ratios = report.summarize(results_fixture())["ratios"]
    assert ratios["churn_scram"] == 3.5
    assert ratios["churn_md5"] == 20.0
    assert ratios["churn_md5_role_defaults"] is None
    assert ratios["persistent"] == 1.0
    assert ratios["logging_on_over_off_scram"] == 0.88
    assert ratios["logging_on_over_off_md5"] == 0.8


def test_goals():
    goals = {goal["goal"].split(":")[0]: goal for goal in report.summarize(results_fixture())["goals"]}
    assert goals["churn, md5 user"]["met"] is True
    assert "SASL authentication failed" in goals["churn, md5 user"]["note"]
    assert goals["churn, scram-sha-256 user"]["met"] is True
    assert goals["persistent"]["met"] is True
    assert goals["fan-in through PgBouncer"]["met"] is True
    assert goals["warm re-run of site.yml"]["met"] is False
    assert goals["warm re-run of site.yml"]["value"] == "16.5 s, 0 (6 nodes)"


def test_fanin_goal_counts_servers_against_default_pool_size():
    results = results_fixture()
    results["fanin"]["pooled"]["servers_per_pair"] = {"appdb/app_user": 21}
    goal = next(g for g in report.summarize(results)["goals"] if g["goal"].startswith("fan-in"))
    assert goal["met"] is False


def test_markdown_table():
    results = results_fixture()
    text = report.markdown(results, report.summarize(results))
    assert "| app_user (scram-sha-256) | 100 | 350 | 400 | not run | not run | not run |" in text
    assert "| report_user (md5) | 50 | FAILED: FATAL: SASL authentication failed | not run | 1000 | 1250 | not run |" in text
    assert "| 6 | 90.0 | 80 | 16.5 | 0 |" in text
    assert "- churn, md5 user, auth_type=md5: 20.00x" in text
    assert "| pooled | 1000 | 1000 | 0 | - | 20 | 20 |" in text


def test_plot_writes_a_png(tmp_path):
    # matplotlib is in tests/requirements.txt: without it this fails, it does not skip.
    report.plot(results_fixture(), tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plan_rounds_packs_sizes_into_free_slots():
    assert plan_rounds([3, 6], 7) == [[3], [6]]
    assert plan_rounds([1, 2, 4], 7) == [[1, 2, 4]]
    assert plan_rounds([1, 6], 7) == [[1, 6]]
    with pytest.raises(BenchError):
        plan_rounds([8], 7)


def test_node_ip_and_recap():
    assert node_ip("pg-srv4") == "10.129.0.24"
    assert node_ip("10.129.0.21") == "10.129.0.21"
    with pytest.raises(BenchError):
        node_ip("8.8.8.8")
    output = "PLAY RECAP ****\npg-srv4                    : ok=17   changed=8    unreachable=0    failed=0    skipped=4\n"
    assert recap(output) == {"pg-srv4": {"ok": 17, "changed": 8, "unreachable": 0, "failed": 0, "skipped": 4}}
