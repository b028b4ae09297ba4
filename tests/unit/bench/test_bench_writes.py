"""bench/writes.py: the write load across a switchover or failover that test_switchover.py
and the bench's switchover phase share. Cost: under a second."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench import pgbench, writes  # noqa: E402

# pgbench 17.12 --aggregate-interval=1 lines (recorded on the Debian 13 lab): start, count,
# sum, sum of squares, min, max (us), then failure and retry counters.
LOG = """\
1795986705 1987 8201740 44845034048 0 20035 0 0 0 0 0 0 0 0 0
1795986706 2696 9919693 49678386429 0 26666 0 0 0 0 0 0 0 0 0
1795986707 0 0 0 0 0 0 0 0 0 0 0 0 0 0
1795986708 12 5104000 4000000 1000 5104000 0 0 0 0 0 0 0 0 0
"""

# pgbench 17 when HAProxy cut its clients: no summary.
CUT = """\
pgbench (17.12 (Debian 17.12-0+deb13u1))
pgbench: error: client 14 script 0 aborted in command 0 query 0: FATAL:  terminating connection due to administrator command
pgbench: error: client 16 script 0 aborted in command 0 query 0: FATAL:  server conn crashed?
pgbench: error: unexpected error status: 4
"""


def test_aggregate_log_counts_transactions_and_the_longest_one():
    assert writes.aggregate_log(LOG) == (1987 + 2696 + 12, 5104.0)
    assert writes.aggregate_log("") == (0, 0.0)


def test_a_run_without_summary_counts_the_log_and_the_cut_clients():
    result = writes.pgbench_result(CUT, LOG, lambda output: {"unused": True})
    assert (result["summary"], result["processed"], result["aborted"], result["longest_ms"]) == (False, 4695, 2, 5104.0)
    assert result["errors"][-1] == "pgbench: error: unexpected error status: 4"


def test_a_run_with_a_summary_uses_it():
    output = "number of transactions actually processed: 4695\n"
    result = writes.pgbench_result(output, LOG, lambda text: {"processed": 4695, "failed": 0, "aborted": 0, "errors": []})
    assert (result["summary"], result["processed"], result["longest_ms"]) == (True, 4695, 5104.0)


def test_write_gap_is_measured_to_the_first_write_on_the_new_primary():
    samples = [
        [99.0, 99.01, True, 1, "10.129.0.21"],
        [100.2, 100.21, True, 2, "10.129.0.21"],  # the old primary still answered after the stop
        [100.5, 101.5, False, "server closed the connection unexpectedly", ""],
        [101.6, 102.6, False, "server closed the connection unexpectedly", ""],
        [104.0, 104.52, True, 3, "10.129.0.22"],
    ]
    seen = writes.write_gap(samples, 100.0, "10.129.0.22")
    assert seen == {"gap_s": 4.52, "acknowledged": [1, 2, 3], "failed_attempts": 2,
                    "errors": ["server closed the connection unexpectedly"]}
    assert writes.write_gap(samples[:2], 100.0, "10.129.0.22")["gap_s"] is None


def test_pgbench_command_keeps_connections_and_does_not_retry():
    command = writes.pgbench_command("/tmp/p", "10.129.0.20", 5000, "app_user", "appdb", 20, 24)
    assert " -C " not in command and "--max-tries=1" in command and "-T 24 " in command and command.startswith("cd /tmp && timeout 84 ")


def test_pgbench_17_aborted_clients_are_counted():
    assert pgbench.parse(CUT, 2)["aborted_clients"] == 2


def test_the_report_puts_both_switchovers_side_by_side_and_the_failover_gap():
    from bench import report

    results = {"meta": {"machine": {"pgbouncer": "1.24.1", "postgres": "17.12"}}, "switchover": [
        {"run": "switchover.yml", "old_primary": "pg-srv1", "new_primary": "pg-srv2", "clients": 20, "processed": 1000,
         "summary": True, "failed": 0, "clients_cut": 0, "longest_ms": 5104.0, "rows": 1000},
        {"run": "patronictl switchover", "old_primary": "pg-srv2", "new_primary": "pg-srv3", "clients": 20, "processed": 800,
         "summary": False, "failed": 0, "clients_cut": 19, "longest_ms": 66.0, "rows": 850},
        {"run": "failover (Patroni stopped)", "old_primary": "pg-srv3", "new_primary": "pg-srv1", "gap_s": 4.5,
         "acknowledged": 999, "acknowledged_found": 999, "failed_attempts": 86},
    ]}
    text = "\n".join(report.switchover_lines(results))
    assert "| switchover.yml (pg-srv1 -> pg-srv2) | 20 | 1000 | 0 | 0 | 5104 ms | 1000 |" in text
    assert "| patronictl switchover (pg-srv2 -> pg-srv3) | 20 | 800 logged (pgbench gave up) | 0 | 19 | 66 ms | 850 |" in text
    assert "first write on the new primary 4.5 s after the stop; 999 writes acknowledged, 999 of them" in text
