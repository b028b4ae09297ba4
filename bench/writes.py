"""Write load across a switchover or failover, shared by tests/integration/test_switchover.py
and the bench's switchover phase: the commands run on the app node and the pure functions that
read what they leave. No I/O here."""

from __future__ import annotations

import re

# pgbench's script: one INSERT per transaction into `table` (id bigserial, at timestamptz).
PGBENCH_SCRIPT = "INSERT INTO {table} DEFAULT VALUES;\n"

# Runs on the app node (python3-psycopg): INSERT one row through host:port every `every` seconds
# for `seconds` (or until `count` rows), reconnecting after an error; prints
# [[started, finished, ok, id or error, server address], ...] as JSON.
WRITER = r"""
import json, sys, time, psycopg
host, port, user, db, table = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
seconds, count, every = float(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
samples, conn, end = [], None, time.time() + seconds
while time.time() < end and (count == 0 or len(samples) < count):
    started = time.time()
    try:
        if conn is None:
            # A session stranded by the VIP moving (its HAProxy can no longer answer from the VIP)
            # ends in seconds: TCP keepalives reach the new VIP holder, which resets them.
            conn = psycopg.connect(host=host, port=port, user=user, dbname=db, connect_timeout=1,
                                   autocommit=True, prepare_threshold=None, tcp_user_timeout=2000,
                                   keepalives_idle=1, keepalives_interval=1, keepalives_count=2)
        row = conn.execute("INSERT INTO %s DEFAULT VALUES RETURNING id, host(inet_server_addr())" % table).fetchone()
        samples.append([started, time.time(), True, row[0], row[1]])
    except psycopg.Error as error:
        samples.append([started, time.time(), False, str(error).strip().splitlines()[0][:200], ""])
        if conn is not None:
            conn.close()
        conn = None
    time.sleep(max(0.0, every - (time.time() - started)))
print(json.dumps(samples))
"""

_ABORTED = re.compile(r"client \d+ (?:script \d+ )?aborted")


def pgbench_command(prefix, host, port, user, db, clients, seconds):
    """pgbench writing through host:port with `clients` kept connections for `seconds`, the
    script in prefix.sql, a per-second aggregate log in prefix.<pid>[.<thread>]; --max-tries=1,
    so a transaction that fails is counted, not retried. `timeout` stops it 60 s late at most."""
    return ("cd /tmp && timeout %d pgbench -n -h %s -p %d -U %s -c %d -j 2 -T %d -f %s.sql --max-tries=1 "
            "--failures-detailed -l --aggregate-interval=1 --log-prefix=%s %s"
            % (seconds + 60, host, port, user, clients, seconds, prefix, prefix, db))


def aggregate_log(text):
    """(transactions, the longest transaction in ms) of pgbench's --aggregate-interval log lines:
    start, count, sum, sum of squares, min, max (microseconds), ..."""
    intervals = [line.split() for line in text.splitlines() if len(line.split()) > 5]
    longest = max((int(fields[5]) for fields in intervals if fields[1] != "0"), default=0)
    return sum(int(fields[1]) for fields in intervals), longest / 1000.0


def pgbench_result(output, log_text, parse_summary):
    """{summary, processed, failed, aborted, errors, longest_ms} of one run: the counts of
    pgbench's summary (parse_summary(output)) when it printed one; when clients are cut pgbench
    17 may stop without it ("unexpected error status"), and then processed counts the
    transactions of its log, a lower bound (the interval in progress is lost)."""
    logged, longest_ms = aggregate_log(log_text)
    if "number of transactions actually processed" in output:
        result = dict(parse_summary(output), summary=True)
    else:
        result = {"summary": False, "processed": logged, "failed": 0, "aborted": len(_ABORTED.findall(output)),
                  "errors": re.findall(r"^pgbench: error: .*$", output, re.MULTILINE)}
    return dict(result, longest_ms=longest_ms)


def longest_stall(samples):
    """Seconds of the longest stretch without a commit among a WRITER's samples (one INSERT
    every few ms on a kept connection): what an application's user waits at worst."""
    done = sorted(finished for _started, finished, ok, _id, _server in samples if ok)
    return round(max((later - earlier for earlier, later in zip(done, done[1:])), default=0.0), 3)


def write_gap(samples, stopped_at, new_ip):
    """What a reconnecting WRITER saw across a failover: seconds from stopped_at to the first
    write answered by new_ip (None if none was), the ids acknowledged, the distinct errors."""
    on_new = [finished for _started, finished, ok, _id, server in samples if ok and server == new_ip]
    return {
        "gap_s": round(min(on_new) - stopped_at, 2) if on_new else None,
        "acknowledged": [row_id for _started, _finished, ok, row_id, _server in samples if ok],
        "failed_attempts": sum(1 for sample in samples if not sample[2]),
        "errors": sorted({error for _started, _finished, ok, error, _server in samples if not ok}),
    }
