"""monitoring/: the Prometheus rules pass `promtool check rules` and their `promtool test
rules` tests, and the rules, their tests and the Grafana dashboard name only metrics the real
exporters have (issue 28).

The metric names come from /metrics recorded from the two exporters Debian ships
(prometheus-pgbouncer-exporter 0.10.2 of Debian 13 and 0.12.0 of testing, run against a
PgBouncer 1.18 on loopback: idle, busy with a paused database, PgBouncer stopped) and from
Patroni 3.0.2's metric names (tests/unit/fixtures/monitoring). promtool is Debian's, unpacked
by scripts/install-deps into .tools/bin (or $PROMTOOL); without it the tests fail, they never
skip. The recorded incidents (monitoring/prometheus/tests/recorded) are series the lab's Prometheus
recorded during real events, replayed. Cost: about 5 s in all (promtool starts 10 times).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "monitoring" / "prometheus" / "pgbouncer-cluster.rules.yml"
RULE_TESTS = ROOT / "monitoring" / "prometheus" / "tests" / "pgbouncer-cluster.test.yml"
# Series recorded from the lab during real incidents (scripts/record-incidents), replayed.
RECORDED = ROOT / "monitoring" / "prometheus" / "tests" / "recorded"
INCIDENTS = ("normal", "switchover", "replicas", "saturated", "paused", "kill9", "freeze")
RECORDED_TESTS = [RECORDED / ("%s.test.yml" % incident) for incident in INCIDENTS]
DASHBOARD = ROOT / "monitoring" / "grafana" / "pgbouncer-cluster.json"
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "monitoring"
EXPORTER_VERSIONS = ("0.10.2", "0.12.0")

# PromQL words that are not metric names.
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
            "bool", "inf", "nan"}


def promtool():
    """Debian's promtool: $PROMTOOL, .tools/bin/promtool (scripts/install-deps), or on PATH."""
    for candidate in (os.environ.get("PROMTOOL"), ROOT / ".tools" / "bin" / "promtool", shutil.which("promtool")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("promtool not found: run scripts/install-deps (it unpacks Debian's prometheus package into .tools/)")
    return None


def run_promtool(*args, cwd=None):
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def exporter_names(version):
    """Metric names in every /metrics recorded from exporter `version`."""
    names = set()
    for path in FIXTURES.glob("exporter-%s-*.metrics" % version):
        for line in path.read_text().splitlines():
            if line and not line.startswith("#"):
                names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def known_names():
    names = {"up", "scrape_duration_seconds"}
    for version in EXPORTER_VERSIONS:
        names |= exporter_names(version)
    patroni = (FIXTURES / "patroni-3.0.2.names").read_text().splitlines()
    return names | {line for line in patroni if line and not line.startswith("#")}


def rules():
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def recorded():
    return {rule["record"] for rule in rules() if "record" in rule}


def metric_names(expr):
    """The metric names an expression selects (not functions, labels, keywords or numbers)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                     # string literals
    text = re.sub(r"\{[^}]*\}", "", text)                                # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                               # ranges, subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if not call and word.lower() not in KEYWORDS:
            names.add(word)
    return names


def dashboard_targets():
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_metric_name_extraction():
    """The helper the name checks rely on: names kept, functions, labels and keywords dropped."""
    expr = ('max by (cluster) (patroni_postgres_timeline) > max by (cluster) (patroni_postgres_timeline offset 10m)'
            ' unless on (a) rate(x_total{job="up"}[1m]) or label_replace(y, "d", "$1", "n", "(.*)") > 0')
    assert metric_names(expr) == {"patroni_postgres_timeline", "x_total", "y"}


def test_fixtures_have_both_namings():
    """The recordings show the rename the rules cover: 0.10 stats_*, 0.12 stats_totals_*."""
    old, new = exporter_names("0.10.2"), exporter_names("0.12.0")
    assert "pgbouncer_stats_sql_transactions_pooled_total" in old - new
    assert "pgbouncer_stats_totals_sql_transactions_pooled_total" in new - old
    assert {"pgbouncer_up", "pgbouncer_databases_paused", "pgbouncer_pools_client_maxwait_seconds"} <= old & new


def test_promtool_check_rules():
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: %d rules found" % len(rules()) in result.stdout


@pytest.mark.parametrize("path", [RULE_TESTS, *RECORDED_TESTS], ids=lambda path: path.name)
def test_promtool_rule_tests(path):
    """Each alert fires on its event and stays quiet in normal operation: the hand-written
    tests, and each incident recorded in the lab replayed."""
    result = run_promtool("test", "rules", path.name, cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_recorded_file_is_tested():
    assert sorted(RECORDED.glob("*.test.yml")) == sorted(RECORDED_TESTS)


# The alerts each recorded incident is shown firing on (issue 28), and nothing else; the normal
# recording none. PgBouncerExporterAbsent has no lab incident (every target gone) and
# PgBouncerDatabaseConnectionLimit was not reached in the lab: the hand-written tests show them.
# A kill -9 that systemd restarts within a scrape leaves PgBouncerDown pending only. A pooler
# frozen by SIGSTOP for 90 s fires PgBouncerDown from 85 s: its exporter's scrape times out (up 0,
# scrape_duration_seconds 5 s, pgbouncer_up absent), and PgBouncerExporterDown asks for 2 minutes
# (the freeze file's header). A stopped exporter (saturated) fails its scrapes in milliseconds:
# PgBouncerExporterDown, not PgBouncerDown.
FIRES_ON = {
    "normal": set(),
    "switchover": {"PostgresPrimaryChanged"},
    "replicas": {"PgBouncerDown", "PgBouncerAllReplicaPoolersDown"},
    "saturated": {"PgBouncerClientsWaiting", "PgBouncerPoolSaturated", "PgBouncerExporterDown"},
    "paused": {"PgBouncerClientsWaiting", "PgBouncerDatabasePausedTooLong"},
    "kill9": set(),
    "freeze": {"PgBouncerDown"},
}


@pytest.mark.parametrize("incident", INCIDENTS)
def test_recorded_incident_fires_its_alerts(incident):
    """Each recorded incident's test shows its alerts firing (and the normal one every alert
    quiet), and asks, at the end of the recording, for every alert that fired at any evaluation
    (max_over_time of ALERTS): nothing else fired."""
    tests = yaml.safe_load((RECORDED / ("%s.test.yml" % incident)).read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    assert fired == FIRES_ON[incident]
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    if incident == "normal":
        assert quiet == {rule["alert"] for rule in rules() if "alert" in rule}
    everything = [case for test in tests for case in test.get("promql_expr_test", [])
                  if case["expr"].startswith('max_over_time(ALERTS{alertstate="firing"}[')]
    assert len(everything) == 1
    names = {re.search(r'alertname="(\w+)"', sample["labels"]).group(1) for sample in everything[0]["exp_samples"]}
    assert names == FIRES_ON[incident]


def test_every_alert_is_shown_firing_and_quiet():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for alert in (rule["alert"] for rule in rules() if "alert" in rule):
        assert any(case["alertname"] == alert and case["exp_alerts"] for case in cases), alert + " never fires"
        assert any(case["alertname"] == alert and not case["exp_alerts"] for case in cases), alert + " never quiet"


def test_rules_name_only_real_metrics():
    known, records = known_names(), recorded()
    for rule in rules():
        unknown = metric_names(rule["expr"]) - known - records
        assert not unknown, (rule.get("record") or rule.get("alert"), sorted(unknown))


def test_rules_read_both_exporter_namings():
    """A rule that reads a stats counter reads it under both names (a target has one of them)."""
    old, new = exporter_names("0.10.2"), exporter_names("0.12.0")
    for rule in rules():
        stats = {name for name in metric_names(rule["expr"]) if name.startswith("pgbouncer_stats_")}
        if stats:
            assert stats & old - new and stats & new - old, rule.get("record") or rule.get("alert")


@pytest.mark.parametrize("path", [RULE_TESTS, *RECORDED_TESTS], ids=lambda path: path.name)
def test_rule_test_series_use_real_names(path):
    known = known_names()
    for test in yaml.safe_load(path.read_text())["tests"]:
        for series in test["input_series"]:
            name = series["series"].split("{")[0]
            assert name in known, (test["name"], name)


def test_dashboard_queries_are_valid_promql(tmp_path):
    """promtool has no expression check in Debian 12's 2.42: each panel's query becomes a
    recording rule of a temporary rules file, which `promtool check rules` parses."""
    targets = dashboard_targets()
    assert len(targets) >= 12
    groups = [{"name": "dashboard", "rules": [
        {"record": "dashboard:panel_%d" % number, "expr": expr.replace("$cluster", "lab")}
        for number, (_title, expr) in enumerate(targets)]}]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: %d rules found" % len(targets) in result.stdout


def test_dashboard_names_only_real_metrics():
    known, records = known_names(), recorded()
    for title, expr in dashboard_targets():
        names = metric_names(expr)
        assert names, title
        assert not names - known - records, (title, sorted(names - known - records))


def test_dashboard_has_the_issues_panels():
    exprs = " ".join(expr for _title, expr in dashboard_targets())
    for needed in ("pgbouncer:pool_server_connections", "pgbouncer_pools_client_waiting_connections",
                   "pgbouncer:sql_transactions:rate1m", "pgbouncer_pools_client_maxwait_seconds",
                   "pgbouncer_databases_paused", "patroni_primary"):
        assert needed in exprs, needed
