"""Parse the report pgbench (PostgreSQL 15) prints at the end of a run. Pure: no I/O."""

from __future__ import annotations

import re

# "key: value" lines of the report header, as pgbench 15 prints them.
_HEADER = {
    "transaction type": "transaction_type",
    "scaling factor": "scale",
    "query mode": "query_mode",
    "number of clients": "clients",
    "number of threads": "threads",
    "maximum number of tries": "max_tries",
    "duration": "duration_s",
    "number of transactions actually processed": "transactions",
    "number of failed transactions": "failed_transactions",
}
_INTS = {"scale", "clients", "threads", "max_tries", "failed_transactions"}
# "name = 1.234 ms" lines.
_MS = {
    "latency average": "latency_avg_ms",
    "latency stddev": "latency_stddev_ms",
    "initial connection time": "initial_connection_ms",
    "average connection time": "avg_connection_ms",
}
_TPS = re.compile(r"^tps = ([0-9.]+) \((.*)\)$")
# PostgreSQL 15: "client 3 aborted in command 0"; 17: "client 3 script 0 aborted in command 0".
_CLIENT_ABORT = re.compile(r"^(?:pgbench: error: )?client (\d+) (?:script \d+ )?aborted")


def parse(output: str, returncode: int | None = None) -> dict:
    """Return the numbers of one pgbench run from its combined stdout and stderr.

    `ok` is true only when pgbench exited 0, printed a tps line and no client aborted.
    `errors` keeps the error lines (first line of each, without the "pgbench: error: " prefix).
    """
    result: dict = {"ok": False, "tps": None, "errors": [], "aborted_clients": 0, "run_aborted": False}
    for raw in output.splitlines():
        line = raw.strip()
        if not line:
            continue
        version = re.match(r"^pgbench \((\d+(?:\.\d+)*)", line)
        if version and "version" not in result:
            result["version"] = version.group(1)
            continue
        tps = _TPS.match(line)
        if tps:
            result["tps"] = float(tps.group(1))
            result["tps_note"] = tps.group(2)
            continue
        if _CLIENT_ABORT.match(line):
            result["aborted_clients"] += 1
            result["errors"].append(line.removeprefix("pgbench: error: "))
            continue
        if "Run was aborted" in line:
            result["run_aborted"] = True
            continue
        if line.startswith("pgbench: error:") or line.startswith("pgbench: fatal:"):
            result["errors"].append(line.split(":", 2)[2].strip())
            continue
        key, sep, value = line.partition(" = ")
        if sep and key in _MS:
            result[_MS[key]] = float(value.split()[0])
            continue
        key, sep, value = line.partition(": ")
        if sep and key in _HEADER:
            result[_HEADER[key]] = _header_value(_HEADER[key], value)
    result["ok"] = (
        (returncode in (None, 0))
        and result["tps"] is not None
        and not result["aborted_clients"]
        and not result["run_aborted"]
    )
    return result


def _header_value(name: str, value: str):
    if name == "duration_s":
        return int(value.split()[0])
    if name == "transactions":
        # "1234", or "100/100" with -t.
        return int(value.split("/")[0])
    if name in _INTS:
        return int(value.split()[0])
    return value


def first_error(result: dict) -> str | None:
    """The first error line of a parsed run, or None."""
    return result["errors"][0] if result["errors"] else None
