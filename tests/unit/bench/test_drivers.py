"""bench/drivers: the driver lane's pure parts (what counts as a broken driver, the docs
generator, the upstream suite's counts and cause groups), and the files the lab installs.
No driver is imported. Cost: under a second."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench.drivers import common, report, run, upstream  # noqa: E402


def result(driver, target, pooler_version="", settings=False, failing=(), ok=("write",)):
    features = {name: {"status": "ok", "ok": 3, "failed": 0, "error": "", "errors": {}} for name in ok}
    for name, error in dict(failing).items():
        features[name] = {"status": "error", "ok": 0, "failed": 2, "error": error, "errors": {error: 2}}
    return {"driver": driver, "target": target, "pooler_version": pooler_version, "settings": settings, "transactions": 10,
            "package": "pkg", "version": "1.0", "features": features, "errors": {}}


def test_pooler_line_splits_at_1_21():
    assert [common.pooler_line(v) for v in ("1.18.0", "1.20.1", "1.21.0", "1.24.1", "", "PgBouncer 1.18.0")] == [
        "1.18", "1.18", "1.21", "1.21", "1.21", "1.18"]


def test_error_key_folds_numbers_so_one_cause_is_one_key():
    first = common.error_key(ValueError('prepared statement "_pg3_12" does not exist\nDETAIL: x'))
    assert first == common.error_key(ValueError('prepared statement "_pg3_7" does not exist'))
    assert first == 'ValueError: prepared statement "_pgN_N" does not exist'


def test_session_check_tells_lost_from_leaked():
    with pytest.raises(common.Mismatch, match="lost"):
        common.check_session("w1-2", "", "session SET app.tenant")
    with pytest.raises(common.Mismatch, match="another client's"):
        common.check_session("w1-2", "w3-1", "session SET app.tenant")
    with pytest.raises(common.Mismatch, match="lost"):
        common.check_session("Asia/Tokyo", "Etc/UTC", "session SET TimeZone", common.ZONES)
    common.check_session("UTC", "UTC", "session SET TimeZone", common.ZONES)


def test_unexpected_failures_allow_only_the_documented_ones():
    # Direct, everything counts.
    assert common.unexpected_failures(result("psycopg2", "direct", failing={"sql_prepare": "x"})) == ["sql_prepare"]
    # Pooled with settings: SQL PREPARE and startup options are expected; asyncpg cursors only on 1.18.
    assert common.unexpected_failures(result("psycopg2", "p", "1.18.0", True, {"sql_prepare": "x", "startup_options": "y"})) == []
    assert common.unexpected_failures(result("asyncpg", "p", "1.18.0", True, {"server_cursor": "x"})) == []
    assert common.unexpected_failures(result("asyncpg", "p", "1.24.1", True, {"server_cursor": "x"})) == ["server_cursor"]
    assert common.unexpected_failures(result("django", "p", "1.24.1", True, {"copy": "x"})) == ["copy"]
    crashed = dict(result("django", "p", "1.24.1"), crashed="exit 1: Traceback")
    assert common.unexpected_failures(crashed) == ["crashed: exit 1: Traceback"]


def test_every_driver_has_settings_for_both_lines_and_a_runner():
    assert set(run.RUNNERS) == set(common.DRIVERS)
    for driver in common.DRIVERS:
        assert set(common.SETTINGS[driver]) == {"1.18", "1.21"}


def test_outcome_classifies_by_direct_defaults_and_settings():
    results = [
        result("asyncpg", "direct", ok=("prepared", "server_cursor", "copy")),
        result("asyncpg", "pooled-1.18-defaults", "1.18.0", failing={"prepared": "dup", "server_cursor": "dup"}, ok=("copy",)),
        result("asyncpg", "pooled-1.18-settings", "1.18.0", True, failing={"server_cursor": "dup"}, ok=("prepared", "copy")),
    ]
    assert report.outcome(results, "asyncpg", "copy", "1.18") == ("ok", "")
    assert report.outcome(results, "asyncpg", "prepared", "1.18") == ("ok-with-settings", "dup")
    assert report.outcome(results, "asyncpg", "server_cursor", "1.18") == ("fails-in-transaction-pooling", "dup")
    assert report.outcome(results, "asyncpg", "copy", "1.24") == ("not-run", "")


def test_docs_sections_are_rendered_between_their_markers_and_only_there():
    data = report.document([json.dumps(result("django", "direct")), json.dumps(result("django", "pooled-1.18-defaults", "1.18.0",
                                                                                      failing={"session_set": "Mismatch: lost"}))],
                           {"date": "2026-12-07", "where": "here"})
    page = "intro\n%s\nSTALE-LINE\n%s\nmiddle\n%s\n%s\nend\n" % (report.BEGIN, report.END, report.UPSTREAM_BEGIN, report.UPSTREAM_END)
    text = report.render(page, data, None)
    assert text.startswith("intro\n") and text.endswith("middle\n%s\n\n%s\nend\n" % (report.UPSTREAM_BEGIN, report.UPSTREAM_END))
    assert "STALE-LINE" not in text
    assert "| django | pkg 1.0 | 10 tx, all ok | 10 tx, fails: session_set |" in text
    assert report.render(text, data, None) == text
    with pytest.raises(ValueError, match="markers"):
        report.render("no markers", data, None)


def test_document_keeps_the_last_result_of_each_driver_and_target():
    first, second = result("django", "direct"), dict(result("django", "direct"), transactions=99)
    data = report.document([json.dumps(first), "not json", json.dumps(second)], {})
    assert [r["transactions"] for r in data["results"]] == [99]


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_notify" name="test_notify_handlers"><failure message="AssertionError: assert 1 == 2">x</failure></testcase>
<testcase classname="tests.test_transaction" name="test_basic">
<error message="failed on setup with &quot;prepared statement &quot;_pg3_1&quot; does not exist&quot;">x</error></testcase>
<testcase classname="tests.test_connection" name="test_broken"><failure message="Failed: DID NOT RAISE OperationalError">x</failure></testcase>
<testcase classname="tests.test_copy" name="test_copy_in"/>
<testcase classname="tests.test_copy" name="test_copy_out"><skipped message="no"/></testcase>
<testcase classname="tests.test_odd" name="test_weird"><failure message="something new">x</failure></testcase>
</testsuite></testsuites>"""


def test_upstream_counts_and_groups(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    counts, failing = upstream.counts_from_junit(path)
    assert counts == {"passed": 1, "failed": 3, "errors": 1, "skipped": 1, "xfailed": 0, "total": 6}
    direct = {"failing": {}}
    groups = {g["cause"]: g["tests"] for g in upstream.classify(direct, {"failing": failing})}
    assert groups == {"LISTEN/NOTIFY": ["test_notify.py::test_notify_handlers"],
                      "prepared statements": ["test_transaction.py::test_basic"],
                      "backend pid and server termination": ["test_connection.py::test_broken"],
                      "unclassified": ["test_odd.py::test_weird"]}
    # A test that fails direct as well is not the pooler's doing.
    assert upstream.classify({"failing": failing}, {"failing": failing}) == []


def test_the_lab_play_copies_every_lane_module_and_the_requirements_are_pinned():
    play = yaml.safe_load((ROOT / "playbooks" / "lab" / "drivers.yml").read_text())[0]
    copied = next(task for task in play["tasks"] if task["name"] == "Copy the lane's code")["loop"]
    wanted = sorted(str(p.relative_to(ROOT / "bench")) for p in (ROOT / "bench" / "drivers").rglob("*")
                    if p.is_file() and p.suffix in (".py", ".txt") and p.name != "phase.py" and "__pycache__" not in p.parts)
    assert sorted(c for c in copied if c != "__init__.py") == wanted
    for name in ("requirements.txt", "requirements-upstream.txt"):
        lines = [line for line in (ROOT / "bench" / "drivers" / name).read_text().splitlines() if line and not line.startswith("#")]
        assert lines and all("==" in line for line in lines), name


def test_a_run_on_one_version_keeps_the_other_versions_results():
    """A lab runs one PgBouncer version: publishing its run keeps the other version's rows and
    says which run they come from; its own targets (direct included) replace the old ones."""
    old = {"meta": {"date": "d1", "where": "lab 12"},
           "results": [{"driver": "psycopg2", "target": "direct", "n": 1}, {"driver": "psycopg2", "target": "pooled-1.18-defaults", "n": 1}]}
    new = {"meta": {"date": "d2", "where": "lab 13"},
           "results": [{"driver": "psycopg2", "target": "direct", "n": 2}, {"driver": "psycopg2", "target": "pooled-1.24-defaults", "n": 2}]}
    both = report.merged(new, old)
    assert sorted((r["target"], r["n"]) for r in both["results"]) == [("direct", 2), ("pooled-1.18-defaults", 1), ("pooled-1.24-defaults", 2)]
    assert both["meta"]["earlier"] == [{"date": "d1", "where": "lab 12", "targets": ["pooled-1.18-defaults"]}]
    again = report.merged({"meta": {"date": "d3"}, "results": [{"driver": "psycopg2", "target": "pooled-1.18-defaults", "n": 3}]}, both)
    assert again["meta"]["earlier"] == [{"date": "d2", "where": "lab 13", "targets": ["direct", "pooled-1.24-defaults"]}]
    assert report.merged(new, {}) == new
