"""Run the driver workloads and print one JSON result per driver (one line each).

    python -m bench.drivers.run --dsn postgresql://app_user:PW@VIP:5000/appdb \\
        --read-dsn postgresql://app_user:PW@VIP:5001/appdb --seconds 20 --drivers all \\
        [--settings] [--pooler-version 1.18] [--target pooled-1.18] [--out results.jsonl]

Each driver runs in its own Python process (a crash or a hang costs that driver only, bounded
by --seconds + 120 s) with --clients concurrent clients (threads, or asyncio tasks), each
running every feature of common.FEATURES its driver has, round after round, reconnecting
after an error. --settings applies the per-driver settings of common.SETTINGS for
--pooler-version (1.18 has no prepared statement support; 1.21 and later with
max_prepared_statements). Without --pooler-version the run is taken as direct to PostgreSQL.

Cost: --seconds per driver plus 1-3 s of start-up each (Django's and SQLAlchemy's imports).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from urllib.parse import urlsplit

from bench.drivers import common

RUNNERS = {
    "psycopg3": ("bench.drivers.dbapi", "run_psycopg3"),
    "psycopg3-prepare0": ("bench.drivers.dbapi", "run_psycopg3"),
    "psycopg2": ("bench.drivers.dbapi", "run_psycopg2"),
    "asyncpg": ("bench.drivers.asyncpg_lane", "run"),
    "asyncpg-nocache": ("bench.drivers.asyncpg_lane", "run"),
    "sqlalchemy-psycopg": ("bench.drivers.sqlalchemy_lane", "run_psycopg"),
    "sqlalchemy-asyncpg": ("bench.drivers.sqlalchemy_lane", "run_asyncpg"),
    "django": ("bench.drivers.django_lane", "run"),
}


def endpoint(dsn):
    url = urlsplit(dsn)
    return "%s:%s" % (url.hostname, url.port or 5432)


def setup(dsn):
    """The lane's table, through the DSN under test (DDL is fine in transaction pooling)."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None, connect_timeout=5) as conn:
        conn.execute(common.CREATE_TABLE)


def worker(driver, cfg):
    """In the driver's own process: run it and print its result as JSON."""
    module_name, function = RUNNERS[driver]
    started = time.monotonic()
    setup(cfg["dsn"])
    module = __import__(module_name, fromlist=[function])
    package, options, stats = getattr(module, function)(dict(cfg, driver=driver))
    elapsed = time.monotonic() - started
    result = {
        "driver": driver,
        "package": package,
        "version": metadata.version(package),
        "python": platform.python_version(),
        "target": cfg["target"],
        "endpoint": endpoint(cfg["dsn"]),
        "read_endpoint": endpoint(cfg["read_dsn"]),
        "pooler_version": cfg["pooler_version"],
        "settings": cfg["settings"],
        "settings_text": common.SETTINGS[driver][common.pooler_line(cfg["pooler_version"])] if cfg["settings"] else "",
        "options": options,
        "clients": cfg["clients"],
        "seconds": cfg["seconds"],
        "elapsed_s": round(elapsed, 1),
    }
    result.update(stats.summary())
    result["tps"] = round(result["transactions"] / max(cfg["seconds"], 1), 1)
    print(json.dumps(result, sort_keys=True))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="read-write DSN (VIP:5000 in the lab)")
    parser.add_argument("--read-dsn", help="read-only DSN (VIP:5001 in the lab); default --dsn")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--drivers", default="all", help="comma-separated, of: all, %s" % ", ".join(common.DRIVERS))
    parser.add_argument("--settings", action="store_true", help="apply the per-driver settings for --pooler-version")
    parser.add_argument("--pooler-version", default="", help="PgBouncer version behind --dsn (empty: direct to PostgreSQL)")
    parser.add_argument("--target", default="", help="label of this run in the results (default: direct or pooled-VERSION)")
    parser.add_argument("--out", help="also append each result line to this file")
    parser.add_argument("--parallel", action="store_true", help="run the drivers at the same time (the bench's switchover run)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    drivers = list(common.DRIVERS) if args.drivers == "all" else [d.strip() for d in args.drivers.split(",") if d.strip()]
    unknown = [d for d in drivers if d not in RUNNERS]
    if unknown:
        parser.error("unknown driver(s) %s; known: %s" % (", ".join(unknown), ", ".join(common.DRIVERS)))
    target = args.target or ("pooled-%s%s" % (args.pooler_version, "-settings" if args.settings else "") if args.pooler_version else "direct")
    cfg = {"dsn": args.dsn, "read_dsn": args.read_dsn or args.dsn, "seconds": args.seconds, "clients": args.clients,
           "settings": args.settings, "pooler_version": args.pooler_version, "target": target}
    if args.worker:
        worker(args.worker, cfg)
        return 0

    def command(driver):
        return [sys.executable, "-m", "bench.drivers.run", "--worker", driver, "--dsn", args.dsn, "--read-dsn", cfg["read_dsn"],
                "--seconds", str(args.seconds), "--clients", str(args.clients), "--pooler-version", args.pooler_version,
                "--target", target] + (["--settings"] if args.settings else [])

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    limit = args.seconds + 120
    if args.parallel:
        procs = {d: subprocess.Popen(command(d), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for d in drivers}
        outputs = {}
        for driver, proc in procs.items():
            try:
                stdout, stderr = proc.communicate(timeout=limit)
                outputs[driver] = (proc.returncode, stdout, stderr, "")
            except subprocess.TimeoutExpired:
                proc.kill()
                outputs[driver] = (None, "", "", "timed out after %d s" % limit)
    else:
        outputs = {}
        for driver in drivers:
            try:
                run = subprocess.run(command(driver), capture_output=True, text=True, timeout=limit, check=False, env=env)
                outputs[driver] = (run.returncode, run.stdout, run.stderr, "")
            except subprocess.TimeoutExpired:
                outputs[driver] = (None, "", "", "timed out after %d s" % limit)
            emit(driver, outputs[driver], target, args)
        return 1 if any(not ok for ok in _EMITTED) else 0
    for driver in drivers:
        emit(driver, outputs[driver], target, args)
    return 1 if any(not ok for ok in _EMITTED) else 0


_EMITTED: list = []


def emit(driver, output, target, args):
    """Print (and append to --out) one driver's result line; a crash is a result too."""
    returncode, stdout, stderr, problem = output
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if returncode == 0 and lines else None
    if result is None:
        problem = problem or "exit %s: %s" % (returncode, (stderr or stdout).strip()[-800:])
        result = {"driver": driver, "target": target, "pooler_version": args.pooler_version, "settings": args.settings,
                  "crashed": problem, "transactions": 0, "errors": {"crash": 1}, "features": {}}
    _EMITTED.append(result.get("crashed") is None)
    line = json.dumps(result, sort_keys=True)
    print(line, flush=True)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as out:
            out.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main())
