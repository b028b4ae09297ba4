"""psycopg 3's own test suite pointed at a DSN: direct to PostgreSQL and through the pooler,
counted side by side, with every test that fails only through the pooler put in a cause group.

    python -m bench.drivers.upstream run --source DIR --dsn 'host=... port=... dbname=appdb user=... password=...' \\
        --target direct --out /tmp/upstream-direct.json
    python -m bench.drivers.upstream run --source DIR --dsn '... port=6432 ...' --target pooled-1.18 --out /tmp/upstream-pooled.json
    python -m bench.drivers.upstream compare /tmp/upstream-direct.json /tmp/upstream-pooled.json \\
        --version 3.3.9 --source-label 'psycopg git 3.3.4-52-gc079c37c' --where 'local loopback' > docs/drivers/upstream.json

DIR holds psycopg's tests/ (a checkout of github.com/psycopg/psycopg, or `git archive` of it);
the Python running this needs psycopg, pytest and anyio (requirements-upstream.txt). The suite
runs the files of SELECTION with -m "not slow and not timing" (timing tests measure the machine,
not the pooler; the slow ones are stress tests that cost minutes).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

# The files that exercise the protocol and session behaviour a pooler can change (connection,
# cursors, server-side cursors, prepared statements, COPY, transactions, pipeline, LISTEN/NOTIFY,
# two-phase commit, type introspection, DB-API conformance, errors), sync and async: 1726 tests,
# about 35 s direct on loopback. The whole suite (5738 tests) takes about 30 minutes on the
# 2-core host, mostly adaptation tests that never see the pooler.
FILES = ("connection", "cursor", "cursor_server", "cursor_common", "prepared", "copy", "transaction", "pipeline", "notify", "tpc")
SELECTION = ([f for name in FILES for f in ("tests/test_%s.py" % name, "tests/test_%s_async.py" % name)]
             + ["tests/test_typeinfo.py", "tests/test_psycopg_dbapi20.py", "tests/test_errors.py", "-m", "not slow and not timing"])

# Cause groups for tests that fail only through PgBouncer in transaction pooling: (name, regex
# over "test id + first line of the failure", class, why). First match wins; a test matching
# none lands in "unclassified", which the docs show and which needs a look.
CAUSES = (
    ("temporary tables", r"create temp|DuplicateTable", "expected",
     "a temporary table lives on the server connection that created it; the next test (or client) that lands there "
     "finds it, and the creator may not"),
    ("LISTEN/NOTIFY", r"notif|listen", "expected",
     "LISTEN registers the server connection, which goes back to the pool after the transaction: notifications reach "
     "whichever client holds it next, or nobody, and the notifying backend's pid is not the client's backend_pid"),
    ("prepared statements", r"prepare|prepared statement|_pg3_|_pg_", "expected on 1.18; on 1.21+ only tests that read pg_prepared_statements",
     "psycopg prepares a query after 5 executions (the test fixtures too); PgBouncer 1.18 does not track named "
     "prepared statements, so a later transaction finds another server connection's set. 1.21+ with "
     "max_prepared_statements runs them, under its own names (PGBOUNCER_N), which the tests that read "
     "pg_prepared_statements do not expect"),
    ("backend pid and server termination", r"broken|server_disconnect|no_clobber|terminat|backend_pid|cancel", "expected",
     "the tests kill their own backend with pg_terminate_backend(backend_pid): behind PgBouncer backend_pid is the "
     "pooler's key, not a server process, so nothing is killed (or another client's server is) and the expected error never comes"),
    ("two-phase commit", r"tpc|xid|prepared transaction", "expected",
     "the tests read pg_prepared_xacts and recover xids across connections, which land on other server connections"),
    ("session state", r"set_|session|application_name|search_path|timezone|datestyle|guc|isolation|read_only|deferrable",
     "expected", "session-level SET / SET SESSION CHARACTERISTICS stay on one server connection; only the parameters "
     "PostgreSQL reports (client_encoding, DateStyle, TimeZone, standard_conforming_strings, application_name) are restored"),
    ("startup parameters", r"options|startup|conninfo", "defaults of the collection",
     "ignore_startup_parameters (role default: extra_float_digits, options) drops options='-c ...' silently"),
    ("pipeline mode", r"pipeline", "expected",
     "pipelines that span transactions can land on other server connections mid-pipeline"),
)


def counts_from_junit(path):
    """passed/failed/errors/skipped/xfailed/total and the failing test ids with their first message line."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = dict.fromkeys(("passed", "failed", "errors", "skipped", "xfailed"), 0)
    failing = {}
    for suite in suites:
        for case in suite.iter("testcase"):
            name = "%s::%s" % (case.get("classname", "").replace(".", "/") + ".py", case.get("name"))
            tags = {child.tag: child for child in case}
            if "failure" in tags or "error" in tags:
                node = tags.get("failure", tags.get("error"))
                key = "failed" if "failure" in tags else "errors"
                counts[key] += 1
                failing[name] = (node.get("message") or node.text or "").strip().splitlines()[0][:300] if (node.get("message") or node.text) else ""
            elif "skipped" in tags:
                counts["xfailed" if tags["skipped"].get("type") == "pytest.xfail" else "skipped"] += 1
            else:
                counts["passed"] += 1
    counts["total"] = sum(counts.values())
    return counts, failing


def run(args):
    xml = args.out + ".xml"
    # psycopg's conftest refuses to run after an interrupted run left this flag in pytest's cache.
    (Path(args.source) / ".pytest_cache" / "v" / "segfault").unlink(missing_ok=True)
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", *SELECTION, "--test-dsn", args.dsn, "-q", "--junitxml", xml]
    proc = subprocess.run(command, cwd=args.source, capture_output=True, text=True, timeout=args.timeout, check=False)
    if proc.returncode not in (0, 1):
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode or 2
    counts, failing = counts_from_junit(xml)
    counts["seconds"] = round(time.monotonic() - started)
    tail = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    result = {"target": args.target, "counts": counts, "failing": failing, "summary": tail, "exit": proc.returncode}
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(result, out, indent=1, sort_keys=True)
    print(json.dumps({"target": args.target, "counts": counts, "summary": tail}))
    return 0


def classify(direct, pooled):
    """Cause groups of the tests that fail through the pooler but pass direct."""
    only = {t: m for t, m in pooled["failing"].items() if t not in direct["failing"]}
    groups = {}
    for test, message in sorted(only.items()):
        text = "%s %s" % (test, message)
        unknown = ("unclassified", "", "needs a look", "matched no known cause")
        name, _pattern, klass, why = next((cause for cause in CAUSES if re.search(cause[1], text, re.IGNORECASE)), unknown)
        group = groups.setdefault(name, {"cause": name, "class": klass, "why": why, "tests": [], "messages": {}})
        group["tests"].append(test.split("/")[-1])
        short = re.sub(r"\d+", "N", message)[:160]
        group["messages"][short] = group["messages"].get(short, 0) + 1
    return sorted(groups.values(), key=lambda g: -len(g["tests"]))


def compare(args):
    runs = []
    for path in args.results:
        with open(path, encoding="utf-8") as handle:
            runs.append(json.load(handle))
    data = {
        "suite": "psycopg", "version": args.version, "source": args.source_label, "where": args.where,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "command": "pytest %s --test-dsn DSN" % " ".join(a if " " not in a else "'%s'" % a for a in SELECTION),
        "runs": [{"target": r["target"], "counts": r["counts"]} for r in runs],
        "groups": {r["target"]: classify(runs[0], r) for r in runs[1:]},
        "failing_direct": sorted(runs[0]["failing"]),
    }
    print(json.dumps(data, indent=1, sort_keys=True))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run", help="run the suite against one DSN")
    one.add_argument("--source", required=True, help="directory holding psycopg's tests/")
    one.add_argument("--dsn", required=True, help="libpq DSN (key=value) of the database under test")
    one.add_argument("--target", required=True, help="label: direct, pooled-1.18, ...")
    one.add_argument("--out", required=True, help="result JSON (and OUT.xml, pytest's junit report)")
    one.add_argument("--timeout", type=int, default=1200)
    both = sub.add_parser("compare", help="direct result first, then the pooled ones: the docs' upstream.json on stdout")
    both.add_argument("results", nargs="+")
    both.add_argument("--version", required=True, help="psycopg version the suite ran with")
    both.add_argument("--source-label", required=True, help="where the tests came from (git describe)")
    both.add_argument("--where", default="local loopback")
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
