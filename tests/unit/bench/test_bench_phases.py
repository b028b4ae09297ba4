"""bench/run.py's interleaved phases against a fake lab: ssh, the route check and
ansible-playbook are replaced, so the run order, the settle step, the converges and the
results the report reads are checked without containers. No timing. Cost: about a second."""

from __future__ import annotations

import csv
import io
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench import interleave, report, run  # noqa: E402

PGBENCH = """\
pgbench (17.11 (Debian 17.11-0+deb13u1))
transaction type: <builtin: select only>
number of clients: {clients}
number of threads: 1
duration: 5 s
number of transactions actually processed: 5000
number of failed transactions: 0 (0.000%)
latency average = {latency} ms
tps = {tps} ({note})
"""
SASL = 'pgbench: error: connection to server at "10.129.0.21", port 6432 failed: FATAL:  SASL authentication failed\n'
CONFIG = {"auth_type": "scram-sha-256", "log_connections": "1", "log_disconnections": "1", "server_reset_query": "DISCARD ALL",
          "pool_mode": "transaction", "default_pool_size": "20"}


class FakeLab:
    """Answers the commands bench/run.py sends, with a little state: PgBouncer's settings, the
    socket entry and the number of processes, changed by SET and by converges."""

    def __init__(self):
        self.config = dict(CONFIG)
        self.socket_entry = False
        self.processes = 1
        self.time_wait = [0]
        self.commands: list[str] = []
        self.converges: list[tuple] = []
        self.tps = 100.0

    def ssh(self, ip, command, timeout, input=None, check_rc=True):
        self.commands.append(command)
        out, rc = "", 0
        if command.startswith("ss -Htan"):
            count = self.time_wait.pop(0) if len(self.time_wait) > 1 else self.time_wait[0]
            out = "x\n" * count
        elif "pgbench -n" in command:
            out, rc = self.pgbench(command)
        elif "SHOW CONFIG" in command:
            out = "key,value\n" + "".join("%s,%s\n" % item for item in self.config.items())
        elif "SET " in command and "psql -X --csv" in command:
            sql = shlex.split(command)[-1]  # SET key = 'value'
            key, value = sql[len("SET "):].split(" = ", 1)
            self.config[key] = value[1:-1].replace("''", "'")
        elif "SHOW DATABASES" in command:
            rows = [{"name": "appdb", "host": ""}] + ([{"name": "appdb_sock", "host": "/var/run/postgresql"}] if self.socket_entry else [])
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, ["name", "host"])
            writer.writeheader()
            writer.writerows(rows)
            out = buffer.getvalue()
        elif "pg_is_in_recovery" in command:
            out = "f\n" if ip == "10.129.0.21" else "t\n"
        elif "pg_hba_file_rules" in command:
            out = "1\n"
        elif "pgbouncer@*" in command:
            out = "%d\n" % (self.processes if self.processes > 1 else 0)
        return subprocess.CompletedProcess(command, rc, out, "")

    def pgbench(self, command):
        clients = int(command.split(" -c ")[1].split()[0])
        if " -C " in command and "report_user" in command and "6432" in command and self.config["auth_type"] != "md5":
            return SASL, 1
        self.tps += 1
        latency = 1000.0 * clients / self.tps
        note = "including reconnection times" if " -C " in command else "without initial connection time"
        return PGBENCH.format(clients=clients, latency="%.3f" % latency, tps="%.6f" % self.tps, note=note), 0

    def ansible_playbook(self, inventory, playbook, timeout, extra=()):
        variables = {}
        if "-e" in extra:
            path = extra[extra.index("-e") + 1].lstrip("@")
            variables = __import__("json").loads(Path(path).read_text())
        self.converges.append((playbook, extra[:2], variables))
        self.processes = variables.get("pgbouncer_processes", 1)
        self.socket_entry = any(entry["name"] == "appdb_sock" for entry in variables.get("pgbouncer_databases", []))
        return 2.0, 0, "PLAY RECAP ***\npg-srv1 : ok=50 changed=1 unreachable=0 failed=0 skipped=3\n"


@pytest.fixture
def bench(tmp_path, monkeypatch):
    lab = FakeLab()
    for name in list(vars(run)):
        if name.startswith("BENCH_") and name != "BENCH_NODES_FILE":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BENCH_OUT", str(tmp_path))
    monkeypatch.setattr(run, "ssh", lab.ssh)
    monkeypatch.setattr(run, "check", lambda ip: None)
    monkeypatch.setattr(run, "ansible_playbook", lab.ansible_playbook)
    settings = run.Settings()
    made = run.Bench(settings, tmp_path / "out")
    made.config = dict(CONFIG)
    made.lab = lab
    monkeypatch.setattr(made, "fanin_one", lambda target, port, clients=None, hold=None, label=None: {
        "clients": clients, "connected": clients, "errors": 0, "connect_errors": {}, "query_errors": {}, "ramp_s": 4.0 + lab.processes,
        "qps": 700.0, "latency_ms": {"p99": 20.0}})
    return made


def variants_in_order(entries):
    return [entry["variant"] for entry in entries]


def test_churn_alternates_variants_and_settles_before_each_run(bench):
    bench.churn()
    churn = bench.results["churn"]
    scram = [entry for entry in churn if entry["user_auth"] == "scram-sha-256"]
    assert variants_in_order(scram)[:8] == ["direct", "as deployed", "logging off", "auth_type=md5"] * 2
    assert len(scram) == 4 * interleave.DEFAULT_REPEATS
    md5 = [entry for entry in churn if entry["user_auth"] == "md5"]
    # The md5 user's pooled run as deployed fails once (SASL) and is not repeated.
    assert md5[0]["variant"] == "as deployed" and md5[0]["probe"] and not md5[0]["pgbench"]["ok"]
    assert variants_in_order(md5[1:5]) == ["direct", "auth_type=md5", "auth_type=md5, logging off", "auth_type=md5, no server_reset_query"]
    assert all(entry["settle"]["settled"] for entry in churn)
    assert {entry["settle"]["port"] for entry in churn if entry["target"] == "direct"} == {5432}
    # Settings are set back after every pooled variant.
    assert bench.lab.config == CONFIG
    summary = report.summarize(bench.results)
    labels = [item["label"] for item in summary["comparisons"]]
    assert "churn, md5 user (session mode): server_reset_query '' against DISCARD ALL" in labels
    assert summary["ratios"]["churn_md5"] is not None


def test_settle_waits_for_time_wait_to_drain(bench, monkeypatch):
    monkeypatch.setattr(interleave.time, "sleep", lambda seconds: None)
    bench.lab.time_wait = [5000, 2000, 10]
    result = bench.settle(6432)
    assert result["before"] == 5000 and result["after"] == 10 and result["settled"]


def test_path_runs_every_target_at_each_client_count(bench):
    bench.path()
    path = bench.results["path"]
    groups = report.path_groups(path)
    assert groups == [("select", 1), ("select", 20), ("write", 1)]
    select_1 = [entry["target"] for entry in path if (entry["script"], entry["clients"]) == ("select", 1)]
    assert select_1[:4] == ["direct", "pooler", "haproxy rw", "haproxy ro"]
    assert "haproxy ro" not in {entry["target"] for entry in path if entry["script"] == "write"}
    assert {(entry["host"], entry["port"]) for entry in path} == {
        ("10.129.0.21", 5432), ("10.129.0.21", 6432), (run.VIP, 5000), (run.VIP, 5001)}
    assert any(" -N " in command for command in bench.lab.commands)
    assert any(" -c 1 -j 1 " in command for command in bench.lab.commands)
    text = "\n".join(report.path_lines(bench.results))
    assert "| VIP:5001 (HAProxy, ro: replicas) |" in text and "Added (us)" in text


def test_socket_adds_and_removes_its_entry(bench):
    bench.socket()
    assert [entry["variant"] for entry in bench.results["socket"]][:2] == ["tcp", "unix socket"]
    assert {entry["db"] for entry in bench.results["socket"]} == {"appdb", "appdb_sock"}
    first, last = bench.lab.converges[0], bench.lab.converges[-1]
    assert first[1] == ("--limit", "pg-srv1")
    assert first[2]["pgbouncer_databases"][-1] == {"name": "appdb_sock", "host": "/var/run/postgresql", "port": 5432, "dbname": "appdb"}
    # The lab's own entries stay.
    assert first[2]["pgbouncer_databases"][0]["name"] == "appdb_ro"
    assert last[2] == {} and not bench.lab.socket_entry


def test_reuseport_converges_on_each_switch_and_ends_on_one_process(bench):
    bench.reuseport()
    entries = bench.results["reuseport"]
    assert [entry["processes"] for entry in entries] == [1, 2] * interleave.DEFAULT_REPEATS
    assert entries[0]["converge_s"] is None and all(entry["converge_s"] for entry in entries[1:])
    # 9 switches and the converge back to the inventory's setting.
    assert len(bench.lab.converges) == 2 * interleave.DEFAULT_REPEATS
    assert bench.lab.converges[-1][2] == {} and bench.lab.processes == 1
    text = "\n".join(report.reuseport_lines(bench.results))
    assert "| 2 | " in text


def test_phase_budget_stops_before_a_new_round(bench):
    bench.s.phase_budget = -1
    bench.persistent()
    assert [entry["round"] for entry in bench.results["persistent"]] == [1, 1]
    assert "stopped after 1 of 5 rounds" in bench.results["meta"]["cut_short"][0]


def test_whole_report_from_the_fake_run(bench, tmp_path):
    for phase in ("churn", "persistent", "path", "socket", "reuseport"):
        getattr(bench, phase)()
    bench.results["meta"]["settings"] = bench.s.record()
    summary = report.summarize(bench.results)
    text = report.markdown(bench.results, summary)
    assert "## Comparisons (generated from the interleaved runs)" in text
    assert "## Settling between runs" in text
    assert "unix socket against TCP" in text
    report.plot(bench.results, tmp_path / "bench.png")
