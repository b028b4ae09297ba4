"""bench/interleave.py: run order, the settle decision, statistics and the comparison.
No lab, no timing: the settle loop runs on a fake clock. Cost: well under a second."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench import interleave  # noqa: E402


def test_order_alternates_variants_round_by_round():
    assert interleave.order(["A", "B"], 5) == [(1, "A"), (1, "B"), (2, "A"), (2, "B"), (3, "A"), (3, "B"),
                                               (4, "A"), (4, "B"), (5, "A"), (5, "B")]
    runs = interleave.order(["A", "B", "C"], 5)
    names = [variant for _round, variant in runs]
    assert names[:6] == ["A", "B", "C", "A", "B", "C"]
    assert all(names.count(name) == 5 for name in "ABC")
    # No variant ever runs twice in a row.
    assert all(x[1] != y[1] for x, y in zip(runs, runs[1:]))


@pytest.mark.parametrize("variants, repeats", [([], 5), (["A", "A"], 5), (["A"], 0)])
def test_order_refuses_bad_input(variants, repeats):
    with pytest.raises(ValueError):
        interleave.order(variants, repeats)


def test_repeats_from_environment():
    assert interleave.repeats_from(None) == 5
    assert interleave.repeats_from("") == 5
    assert interleave.repeats_from("7") == 7
    with pytest.raises(ValueError):
        interleave.repeats_from("0")


def test_time_wait_count():
    assert interleave.time_wait_command(6432) == "ss -Htan state time-wait '( dport = :6432 )'"
    output = "0      0      10.129.0.31:40000   10.129.0.21:6432\n0      0      10.129.0.31:40002   10.129.0.21:6432\n\n"
    assert interleave.count_time_wait(output) == 2
    assert interleave.count_time_wait("") == 0


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_settle_returns_at_once_below_the_threshold():
    clock = FakeClock()
    result = interleave.settle(lambda: 10, threshold=500, max_wait=60, clock=clock, sleep=clock.sleep)
    assert result == {"before": 10, "after": 10, "waited_s": 0.0, "settled": True}
    assert clock.slept == []


def test_settle_waits_until_the_count_drops():
    clock = FakeClock()
    counts = iter([9000, 4000, 1200, 300])
    result = interleave.settle(lambda: next(counts), threshold=500, max_wait=60, poll=2, clock=clock, sleep=clock.sleep)
    assert result == {"before": 9000, "after": 300, "waited_s": 6.0, "settled": True}


def test_settle_gives_up_after_max_wait():
    clock = FakeClock()
    result = interleave.settle(lambda: 9000, threshold=500, max_wait=5, poll=2, clock=clock, sleep=clock.sleep)
    assert result["settled"] is False
    assert result["after"] == 9000
    assert clock.slept == [2, 2, 1]  # never sleeps past max_wait
    assert result["waited_s"] == 5.0


def test_summary_median_range_and_spread():
    result = interleave.summary([100.0, 110.0, None, 90.0, 105.0, 95.0])
    assert result["n"] == 5 and result["failed"] == 1
    assert result["median"] == 100.0
    assert (result["min"], result["max"], result["range"]) == (90.0, 110.0, 20.0)
    assert result["spread"] == pytest.approx(0.2)
    assert interleave.summary([50.0])["spread"] is None
    empty = interleave.summary([None, None])
    assert empty["median"] is None and empty["failed"] == 2


def five(*values):
    return interleave.summary(values)


def test_compare_quotes_a_difference_only_beyond_the_range_of_both():
    a = five(1300, 1320, 1330, 1340, 1350)
    b = five(600, 610, 620, 640, 650)
    higher = interleave.compare(a, b)
    assert higher["verdict"] == "higher"
    assert higher["difference"] == 710
    assert higher["ratio"] == pytest.approx(1330 / 620)
    assert interleave.compare(b, a)["verdict"] == "lower"


def test_compare_within_noise_when_one_range_covers_the_difference():
    # The case: the same setting at 1332 in one round and 556-654 in the others.
    a = five(1332, 600, 620, 640, 654)
    b = five(556, 590, 610, 630, 650)
    result = interleave.compare(a, b)
    assert result["verdict"] == "within noise"
    assert result["noise"] == 1332 - 600


def test_compare_needs_enough_clean_runs():
    assert interleave.compare(five(1, 2, 3), five(10, 11, 12))["verdict"] == "too few runs"
    assert interleave.compare(five(1, 1, 1, 1, None), five(10, 10, 10, 10, 10), min_runs=4)["verdict"] == "too few runs"
    assert interleave.compare(five(1, 2, 3), five(10, 11, 12), min_runs=3)["verdict"] == "lower"
    assert interleave.compare(five(None), five(1))["verdict"] == "too few runs"


def test_paired_differences_skip_failed_rounds():
    assert interleave.paired_differences([1.5, None, 1.7], [1.0, 1.1, 1.2]) == pytest.approx([0.5, 0.5])
