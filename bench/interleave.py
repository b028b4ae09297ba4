"""Interleaved comparisons: the run order, the client's settle step between runs, and the
statistics the report quotes. Pure (the settle loop takes its clock, sleep and reader as
arguments), so tests/unit/bench/test_bench_interleave.py covers all of it without a lab.

Why: in one published run the first pooled md5 variant ran at 1381 tps and the two that
followed at 304-310 tps whatever they changed; the order of the runs, not the setting,
decided the result. Each comparison is now a set of variants run round by round
(A, B, A, B, ... at least 5 of each), and before each run the app node waits until its
connections in TIME_WAIT toward the next run's port fall below a threshold.

Spread: the relative range, (max - min) / median of a variant's runs. A difference between
two variants is quoted only when the difference of their medians is larger than the range
(max - min) of each of them; otherwise it is "within noise". With 5 runs each that is a
deliberately strict test: one outlier widens the range and silences the comparison.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence

DEFAULT_REPEATS = 5
# Comparisons with fewer runs per variant are shown but never quoted as a difference.
MIN_RUNS = 5


def order(variants: Sequence[str], repeats: int) -> list[tuple[int, str]]:
    """[(round, variant)]: every variant once per round, in the given order, `repeats` rounds."""
    if not variants:
        raise ValueError("no variants to run")
    if len(set(variants)) != len(variants):
        raise ValueError("variant names must be unique: %s" % list(variants))
    if repeats < 1:
        raise ValueError("repeats must be at least 1, not %d" % repeats)
    return [(number, variant) for number in range(1, repeats + 1) for variant in variants]


def repeats_from(value: str | None, default: int = DEFAULT_REPEATS) -> int:
    """BENCH_REPEATS: a whole number >= 1 (below MIN_RUNS the report quotes no difference)."""
    if value in (None, ""):
        return default
    number = int(value)
    if number < 1:
        raise ValueError("BENCH_REPEATS must be at least 1, not %d" % number)
    return number


def time_wait_command(port: int) -> str:
    """The app node's sockets in TIME_WAIT toward `port` (any address), one per line, no header."""
    return "ss -Htan state time-wait '( dport = :%d )'" % int(port)


def count_time_wait(output: str) -> int:
    """Number of sockets in the output of time_wait_command (one non-empty line each)."""
    return sum(1 for line in output.splitlines() if line.strip())


def settle(read: Callable[[], int], threshold: int, max_wait: float, poll: float = 2.0,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> dict:
    """Wait until read() (the TIME_WAIT count) is below `threshold`, at most `max_wait` seconds.

    Returns {"before", "after", "waited_s", "settled"}; settled is False when max_wait ran out
    (the run then starts anyway, and the report shows the count it started with).
    """
    started = clock()
    before = count = read()
    while count >= threshold:
        left = max_wait - (clock() - started)
        if left <= 0:
            return {"before": before, "after": count, "waited_s": round(clock() - started, 1), "settled": False}
        sleep(min(poll, left))
        count = read()
    return {"before": before, "after": count, "waited_s": round(clock() - started, 1), "settled": True}


def summary(values: Iterable[float | None]) -> dict:
    """Median, min, max and spread of the runs of one variant; None marks a failed run.

    spread = (max - min) / median, the relative range (None with fewer than 2 good runs).
    """
    values = list(values)
    good = [value for value in values if value is not None]
    result = {"n": len(good), "failed": len(values) - len(good), "values": values,
              "median": None, "min": None, "max": None, "range": None, "spread": None}
    if not good:
        return result
    median = statistics.median(good)
    result.update(median=median, min=min(good), max=max(good), range=max(good) - min(good))
    if len(good) >= 2 and median:
        result["spread"] = (max(good) - min(good)) / median
    return result


def compare(a: dict, b: dict, min_runs: int = MIN_RUNS) -> dict:
    """Is the difference between two variants (summary() dicts) larger than the noise?

    verdict: "higher" or "lower" (a against b) when |median a - median b| exceeds the range of
    each; "within noise" when it does not; "too few runs" when either has fewer than
    min_runs good runs (a failed run counts against it).
    """
    result = {"ratio": None, "difference": None, "noise": None, "verdict": "too few runs"}
    if a["median"] is None or b["median"] is None:
        return result
    result["difference"] = a["median"] - b["median"]
    result["ratio"] = a["median"] / b["median"] if b["median"] else None
    result["noise"] = max(a["range"], b["range"])
    if a["n"] < min_runs or b["n"] < min_runs or a["failed"] or b["failed"]:
        return result
    if abs(result["difference"]) > a["range"] and abs(result["difference"]) > b["range"]:
        result["verdict"] = "higher" if result["difference"] > 0 else "lower"
    else:
        result["verdict"] = "within noise"
    return result


def paired_differences(a: Sequence[float | None], b: Sequence[float | None]) -> list[float]:
    """a[i] - b[i] for the rounds where both ran cleanly (interleaved runs of one round are
    neighbours in time, so their difference cancels slow drift of the machine)."""
    return [x - y for x, y in zip(a, b) if x is not None and y is not None]
