"""scripts/record-series: the range API's answer becomes promtool input series that promtool
reads back as the same samples. A fake Prometheus on 127.0.0.1:17050 answers the query; Debian's
promtool (tests/unit/monitoring) replays the output. Cost: about 1 s."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "record-series"
sys.path.insert(0, str(ROOT / "tests" / "unit" / "monitoring"))
from test_monitoring_rules import RULES, run_promtool  # noqa: E402

_LOADER = importlib.machinery.SourceFileLoader("record_series", str(SCRIPT))
_SPEC = importlib.util.spec_from_loader("record_series", _LOADER)
record_series = importlib.util.module_from_spec(_SPEC)
_LOADER.exec_module(record_series)

START, STEP = 1_800_000_000, 5


@pytest.mark.parametrize(("values", "expected"), [
    ([1, 1, 1, 1], "1x3"),
    ([0, 150, 300, 450], "0+150x3"),
    ([10, 7, 4], "10-3x2"),
    ([2.5], "2.5"),
    ([1, 1, None, None, None, 0], "1x1 stale _x2 0"),
    ([None, None, 3, 3], "_x2 3x1"),
    ([0.1, 0.2, 0.30000000000000004, 7], "0.1+0.1x2 7"),
    ([1, None], "1 stale"),
])
def test_notation(values, expected):
    assert record_series.notation(values) == expected


# What the fake Prometheus answers: a counter that stops after 4 samples (a pooler killed:
# staleness), and a gauge over the whole range.
MATRIX = [
    {"metric": {"__name__": "pgbouncer_stats_totals_sql_transactions_pooled_total", "job": "pgbouncer",
                "instance": "10.129.0.21:9127", "database": "appdb"},
     "values": [[START + i * STEP, str(i * 100)] for i in range(4)]},
    {"metric": {"__name__": "pgbouncer_up", "job": "pgbouncer", "instance": "10.129.0.21:9127"},
     "values": [[START + i * STEP, "1" if i < 4 else "0"] for i in range(8)]},
]


class FakePrometheus(BaseHTTPRequestHandler):
    queries = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        FakePrometheus.queries.append((url.path, parse_qs(url.query)))
        if '"' in parse_qs(url.query)["query"][0]:
            status, answer = 200, {"status": "success", "data": {"resultType": "matrix", "result": MATRIX}}
        else:  # what Prometheus 2 answers to {job=pgbouncer}
            status, answer = 400, {"status": "error", "errorType": "bad_data", "error": 'invalid parameter "query": '
                                   '1:6: parse error: unexpected identifier "pgbouncer" in label matching, expected string'}
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def prometheus():
    server = ThreadingHTTPServer(("127.0.0.1", 17050), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:17050"
    server.shutdown()
    server.server_close()


def test_recorded_series_replay_in_promtool(prometheus, tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--url", prometheus, "--start", str(START),
                          "--end", str(START + 7 * STEP), "--step", "5s", "--match", '{job="pgbouncer"}'],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    path, params = FakePrometheus.queries[-1]
    assert path == "/api/v1/query_range" and params["query"] == ['{job="pgbouncer"}'] and params["step"] == ["5.0"]
    recorded = yaml.safe_load(run.stdout)
    assert recorded["interval"] == "5s"
    assert {item["values"] for item in recorded["input_series"]} == {"0+100x3 stale _x3", "1x3 0x3"}
    # promtool reads it back: the samples at 10 s, and the counter gone after its stale marker.
    test = {"rule_files": [str(RULES)], "evaluation_interval": "5s", "tests": [{
        **recorded,
        "promql_expr_test": [
            {"expr": "pgbouncer_stats_totals_sql_transactions_pooled_total", "eval_time": "10s", "exp_samples": [
                {"labels": 'pgbouncer_stats_totals_sql_transactions_pooled_total{database="appdb",'
                           'instance="10.129.0.21:9127",job="pgbouncer"}', "value": 200}]},
            {"expr": "pgbouncer_stats_totals_sql_transactions_pooled_total", "eval_time": "25s", "exp_samples": []},
            {"expr": "pgbouncer_up", "eval_time": "30s", "exp_samples": [
                {"labels": 'pgbouncer_up{instance="10.129.0.21:9127",job="pgbouncer"}', "value": 0}]},
        ]}]}
    (tmp_path / "replay.test.yml").write_text(yaml.safe_dump(test))
    result = run_promtool("test", "rules", "replay.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_refused_selector_says_why(prometheus):
    """A selector whose quotes a remote shell removed: Prometheus' reason and a hint, no traceback."""
    run = subprocess.run([sys.executable, str(SCRIPT), "--url", prometheus, "--start", str(START),
                          "--end", str(START + 7 * STEP), "--match", "{job=pgbouncer}"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "parse error" in run.stderr and "remote shell" in run.stderr, run.stderr


@pytest.mark.parametrize("doc", ["monitoring/README.md", "scripts/record-series"])
def test_documented_ssh_command_keeps_the_quotes(doc):
    """The documented `ssh ... python3 - ... < scripts/record-series` command, split as the local
    shell does, joined as ssh does and split again as the remote shell does, still passes each
    selector with its quotes (scripts/record-incidents' first run lost them: HTTP 400)."""
    text = (ROOT / doc).read_text()
    if doc.startswith("scripts/"):
        text = record_series.__doc__
    command = re.search(r"^ *(ssh .*?< scripts/record-series)", text.replace("\\\n", ""), re.M | re.S).group(1)
    local = shlex.split(command.split(" < ")[0])
    remote = shlex.split(" ".join(local[local.index("10.129.0.31") + 1:]))
    selectors = [remote[i + 1] for i, word in enumerate(remote) if word == "--match"]
    assert selectors == ['{job="pgbouncer"}', '{job="patroni"}'], remote
