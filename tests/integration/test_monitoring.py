"""Monitoring in the lab (issue 28): Prometheus on the app node (playbooks/lab/monitoring.yml)
scrapes an exporter per PgBouncer process (pgbouncer_exporter role), HAProxy's endpoint and
Patroni; every target is up, the exporters keep no password in the process list and survive a
PgBouncer restart, transactions through VIP:5000 under pgbench read from Prometheus match
pgbench's own count (exactly) and rate (within 5 %), and every Grafana panel names metrics this
Prometheus has.

Cost on the lab (Debian 12): about 110 s, most of it the 75 s pgbench run and the scrapes
waited for (5 s interval). Prometheus is queried on the app node over ssh (it listens on
127.0.0.1 only); pgbench runs on the app node through the VIP.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import time

import pytest

from conftest import (
    APP,
    APP_DB,
    APP_USER,
    NODES,
    ROOT,
    RW_PORT,
    SSH_CONFIG,
    STATS_PASSWORD,
    VIP,
    app_python,
    cluster_roles,
    parse_pgbench,
    ssh,
    wait_until,
)

# The metric-name reader the unit tests use on the dashboard (tests/unit/monitoring).
_SPEC = importlib.util.spec_from_file_location("unit_monitoring", ROOT / "tests" / "unit" / "monitoring" / "test_monitoring_rules.py")
unit_monitoring = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(unit_monitoring)

# The lab's scrape and evaluation interval (playbooks/lab/monitoring.yml).
SCRAPE = 5
PROMETHEUS_API = r"""
import json, sys, urllib.parse, urllib.request
path, params = sys.argv[1], json.loads(sys.argv[2])
with urllib.request.urlopen("http://127.0.0.1:9090" + path + "?" + urllib.parse.urlencode(params), timeout=20) as answer:
    print(answer.read().decode())
"""
# pgbench through VIP:5000: clients, seconds, and the window inside the run whose rate is compared.
CLIENTS, SECONDS, RATE_FROM, RATE_TO = 4, 75, 10, 70
APPDB_TRANSACTIONS = ('sum(pgbouncer_stats_totals_sql_transactions_pooled_total{database="%s"})'
                      ' or sum(pgbouncer_stats_sql_transactions_pooled_total{database="%s"})' % (APP_DB, APP_DB))


def api(path, **params):
    answer = app_python(PROMETHEUS_API, path, json.dumps(params), timeout=60)
    assert answer["status"] == "success", answer
    return answer["data"]


def query(expr, at=None):
    """An instant query: [(labels, value)]."""
    params = {"query": expr}
    if at is not None:
        params["time"] = "%.3f" % at
    return [(sample["metric"], float(sample["value"][1])) for sample in api("/api/v1/query", **params)["result"]]


def scalar(expr, at=None):
    result = query(expr, at)
    assert len(result) <= 1, (expr, result)
    return result[0][1] if result else 0.0


def targets_up():
    """{(job, instance): health} of every active target."""
    return {(target["labels"]["job"], target["labels"]["instance"]): target["health"]
            for target in api("/api/v1/targets", state="active")["activeTargets"]}


@pytest.mark.version_dependent
def test_every_target_is_up():
    expected = ({("pgbouncer", "%s:9127" % ip) for ip in NODES.values()} | {("patroni", "%s:8008" % ip) for ip in NODES.values()}
                | {("haproxy", "%s:8405" % ip) for ip in NODES.values()} | {("prometheus", "127.0.0.1:9090")})

    def all_up():
        now = targets_up()
        logged_in = sorted(sample["node"] for sample, value in query("pgbouncer_up") if value == 1)
        return now if set(now) >= expected and all(now[key] == "up" for key in expected) and logged_in == sorted(NODES) else None

    # Right after site.yml a target may not have been scraped yet, and an exporter whose
    # PgBouncer the previous test restarted logs in again at its next scrape.
    health = wait_until("every target up", all_up, within=6 * SCRAPE)
    print("targets:", sorted(health))
    assert {key for key, value in health.items() if value != "up"} == set()
    assert {(sample["job"], sample["instance"]) for sample, value in query("up") if value == 1} >= expected
    # Each exporter is logged in to its PgBouncer (the version of each is printed for the record).
    assert sorted(sample["node"] for sample, value in query("pgbouncer_up") if value == 1) == sorted(NODES)
    print("exporters:", sorted({sample["version"] for sample, _value in query("pgbouncer_exporter_build_info")}))


@pytest.mark.parametrize("name", sorted(NODES))
def test_no_password_in_the_process_list_and_settings_root_only(name):
    ip = NODES[name]
    processes = ssh(ip, "ps -eo user,args").stdout
    exporters = [line for line in processes.splitlines() if "prometheus-pgbouncer-exporter" in line]
    assert exporters and all(line.split()[0] == "postgres" for line in exporters), exporters
    assert STATS_PASSWORD not in processes
    assert ssh(ip, "stat -c '%U %a' /etc/pgbouncer-cluster/pgbouncer-exporter.env").stdout.split() == ["root", "600"]
    # The distribution's own unit stays masked (it would listen on every address with no login).
    assert ssh(ip, "systemctl is-enabled prometheus-pgbouncer-exporter.service", check=False).stdout.strip() == "masked"


def test_an_exporter_survives_a_pgbouncer_restart():
    """A replica's PgBouncer restarts: its exporter keeps running (same PID) and reads it again."""
    name = cluster_roles()["replicas"][0]
    ip = NODES[name]
    pid = ssh(ip, "systemctl show -p MainPID --value pgbouncer-exporter.service").stdout.strip()
    ssh(ip, "systemctl restart pgbouncer.service")
    wait_until("pgbouncer_up 1 again on %s" % name,
               lambda: ssh(ip, "python3 -c \"import urllib.request; print(urllib.request.urlopen("
                               "'http://%s:9127/metrics', timeout=3).read().decode())\"" % ip).stdout.count("\npgbouncer_up 1\n"),
               within=15)
    assert ssh(ip, "systemctl show -p MainPID --value pgbouncer-exporter.service").stdout.strip() == pid


def test_transactions_through_5000_match_pgbench():
    """pgbench's count equals the exporters' counter delta; the recorded rate within 5 %."""
    before = scalar(APPDB_TRANSACTIONS)
    script = ssh(APP, "mktemp /tmp/monitoring-tps.XXXXXX.sql").stdout.strip()
    ssh(APP, "cat > %s" % script, input="SELECT 1;\n")
    command = ("timeout %d pgbench -n -h %s -p %d -U %s -c %d -j 2 -T %d -P 5 -f %s %s"
               % (SECONDS + 60, VIP, RW_PORT, APP_USER, CLIENTS, SECONDS, script, APP_DB))
    started = time.time()
    try:
        run = subprocess.run(["ssh", "-F", str(SSH_CONFIG), APP, command], capture_output=True, text=True,
                             timeout=SECONDS + 120, check=False)
    finally:
        ssh(APP, "rm -f %s" % script, check=False)
    result = parse_pgbench(run.stdout + run.stderr)
    assert run.returncode == 0 and result["failed"] == 0 and result["aborted"] == 0, "\n".join(result["errors"][:20])
    # Two scrapes after the end, every exporter has counted the last transaction.
    time.sleep(2 * SCRAPE + 1)
    counted = scalar(APPDB_TRANSACTIONS) - before
    window = [tps for at, tps in result["progress"] if RATE_FROM < at <= RATE_TO]
    pgbench_rate = sum(window) / len(window)
    prometheus_rate = scalar('sum(pgbouncer:sql_transactions:rate1m{database="%s"})' % APP_DB, at=started + RATE_TO)
    print("pgbench: %d transactions, %.1f tps in %d-%d s; Prometheus: %d counted, %.1f tps"
          % (result["processed"], pgbench_rate, RATE_FROM, RATE_TO, counted, prometheus_rate))
    assert abs(counted - result["processed"]) <= 0.05 * result["processed"], (counted, result["processed"])
    assert abs(prometheus_rate - pgbench_rate) <= 0.05 * pgbench_rate, (prometheus_rate, pgbench_rate)


def test_every_dashboard_panel_names_metrics_prometheus_has():
    """Recording rules included: they exist once Prometheus has evaluated them."""
    names = set(api("/api/v1/label/__name__/values"))
    for title, expr in unit_monitoring.dashboard_targets():
        wanted = unit_monitoring.metric_names(expr)
        assert wanted and wanted <= names, (title, sorted(wanted - names))
        api("/api/v1/query", query=expr.replace("$cluster", "lab"))  # parses and runs


def test_the_rules_are_loaded_and_none_fires_in_normal_operation():
    groups = api("/api/v1/rules")["groups"]
    assert {group["name"] for group in groups} == {"pgbouncer-cluster.records", "pgbouncer-cluster.alerts"}
    assert all(rule["health"] == "ok" for group in groups for rule in group["rules"]), groups
    firing = [alert for alert in api("/api/v1/alerts")["alerts"] if alert["state"] == "firing"
              and alert["labels"]["alertname"] != "PostgresPrimaryChanged"]  # the switchover tests move the primary
    assert firing == [], firing
