"""`make bench`: measure PgBouncer (6432) against direct PostgreSQL (5432) on the podman lab.

Phases (BENCH_PHASES, comma-separated, all by default, in this order):
  churn       pgbench -C -S, direct and pooled, a scram-sha-256 and an md5 user, and the cost
              of PgBouncer's log_connections/log_disconnections and server_reset_query (set
              through the console for the run, set back after it)
  persistent  pgbench -S, direct and pooled
  fanin       BENCH_FANIN_CLIENTS clients held open through one node, direct and pooled
  path        pgbench -S at each BENCH_PATH_CLIENTS (and simple-update, -N, at each
              BENCH_PATH_WRITE_CLIENTS) to the primary's 5432, the primary's 6432, VIP:5000
              (HAProxy -> the primary's pooler) and VIP:5001 (HAProxy -> the replicas' poolers,
              selects only): tps, latency, and the microseconds each path adds over direct
  socket      the bench node's PgBouncer to its PostgreSQL over the unix socket against TCP:
              a converge adds [databases] appdb_sock (host=/var/run/postgresql), pgbench -S
              to appdb and appdb_sock through 6432, a last converge removes the entry
  reuseport   pgbouncer_processes 1 against 2 (so_reuseport): churn and a fan-in of
              BENCH_REUSEPORT_FANIN_CLIENTS, each switch a converge of the bench node
              (site.yml --limit), the inventory's setting converged back at the end
  ansible     cold converge and warm re-run of site.yml on fresh extra nodes, per lab size
  switchover  writes through VIP:5000 (BENCH_CLIENTS pgbench clients, connections kept) across
              playbooks/switchover.yml, across a bare `patronictl switchover`, and a reconnecting
              writer across a failover (Patroni stopped on the primary): failed transactions,
              clients cut, the longest transaction, the write gap, rows against acknowledged
  drivers     the driver lane (bench/drivers/phase.py): psycopg 3, psycopg2, asyncpg, SQLAlchemy,
              Django from the app node, direct, through VIP:5000/5001 with the role's defaults and
              with the per-driver settings, then all at once across playbooks/switchover.yml;
              publishes docs/drivers/results.json and regenerates docs/drivers.md

Interleaving (bench/interleave.py): churn, persistent, path, socket and reuseport run each
comparison's variants round by round, A, B, A, B, ... (BENCH_REPEATS rounds). Before every run
the app node settles: the bench waits until fewer than BENCH_SETTLE_TIME_WAIT of its sockets
toward the run's port are in TIME_WAIT (`ss -tan state time-wait`), at most
BENCH_SETTLE_MAX_SECONDS, and records the wait. The report gives each variant's median, [min-max]
and spread ((max - min) / median), and quotes a difference only when the medians differ by more
than the range of both variants ("within noise" otherwise).

Bounds: every pgbench run has `timeout` (its -T + 60 s) and ssh (+ 90 s); every settle step
BENCH_SETTLE_MAX_SECONDS; every converge BENCH_CONVERGE_TIMEOUT; a fan-in its ramp timeout +
hold + 120 s; the interleaved phases run at most BENCH_REPEATS rounds and start no new round
once the phase has run BENCH_PHASE_BUDGET seconds (noted as "cut short" in the report). All
traffic goes from the app node to lab addresses (10.129.0.x), checked before each command.

Time with the defaults, on the 2-core lab machine (estimates; results.json records each phase's
duration in meta.phase_s): churn about 25 min (most of it waiting for TIME_WAIT to drain after
each md5 pooled run, about 60 s each), persistent 2, fanin 3, path 8, socket 3, reuseport 15
(10 converges of 30-60 s), ansible 8, switchover 3, drivers 10: about 80 minutes in all. BENCH_REPEATS=2 and
BENCH_PHASES pick a quicker look (a difference is quoted only with 5 runs per variant).

The client is always the app node. Settings changed on the bench node are set back when the
phase ends, and checked again at the very end, whatever happened. Output goes to
bench-results/<UTC time>/ (results.json, results.md, bench.png, raw/); bench-results/latest
points at the last complete run, and docs/bench/ gets its table and plot, and switchover.md
from the switchover phase (BENCH_PUBLISH=0 to skip). If the lab is not up, or any phase cannot run, the bench stops with a non-zero exit.

Settings (environment):
  BENCH_NODE=pg-srv1           the PostgreSQL+PgBouncer node measured (pg-srvN or 10.129.0.x), or
                               "fresh": a new node (pg-srv10) prepared and converged like the lab,
                               removed at the end (leaves pg-srv1..3 alone; about 2 minutes more)
  BENCH_PHASES=churn,persistent,fanin,path,socket,reuseport,ansible,switchover
  BENCH_CLIENTS=20 BENCH_THREADS=2 BENCH_SCALE=1     pgbench -c, -j, and -i -s
  BENCH_CHURN_SECONDS=5 BENCH_PERSISTENT_SECONDS=5   pgbench -T of each run
  BENCH_REPEATS=5              rounds of each interleaved comparison
  BENCH_SETTLE_TIME_WAIT=1000 BENCH_SETTLE_MAX_SECONDS=75   the settle step before each run
  BENCH_PHASE_BUDGET=2700      seconds after which an interleaved phase starts no new round
  BENCH_SSLMODE=disable        libpq sslmode of every client (prefer: TLS wherever offered)
  BENCH_FANIN_CLIENTS=1000 BENCH_FANIN_SECONDS=20 BENCH_FANIN_INTERVAL=0.5
  BENCH_FANIN_CONCURRENCY=50 BENCH_FANIN_RAMP_TIMEOUT=180   logins at a time, and for all of them
  BENCH_PATH_SECONDS=5 BENCH_PATH_CLIENTS=1,20 BENCH_PATH_WRITE_CLIENTS=1   (empty: no writes)
  BENCH_SOCKET_SECONDS=5       pgbench -T of each socket run (BENCH_CLIENTS clients)
  BENCH_REUSEPORT_SECONDS=5 BENCH_REUSEPORT_FANIN_CLIENTS=400 BENCH_REUSEPORT_FANIN_SECONDS=10
  BENCH_CONVERGE_TIMEOUT=300   per site.yml --limit <node> of the socket and reuseport phases
  BENCH_ANSIBLE_SIZES=3,6      lab sizes converged from fresh nodes (extra nodes pg-srv4..10)
  BENCH_ANSIBLE_TIMEOUT=900    per ansible-playbook run
  BENCH_SWITCHOVER_SECONDS=24 BENCH_FAILOVER_SECONDS=25   write load of each switchover and the failover
  BENCH_DRIVERS_SECONDS=20 BENCH_DRIVERS_SWITCHOVER_SECONDS=60   each driver's lane run; the run across the switchover
  BENCH_OUT=bench-results BENCH_PUBLISH=1
  BENCH_KEEP_NODES=1           after a failure, keep the extra nodes for a look
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import json
import os
import platform
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from bench import interleave, pgbench, report, writes
from bench.drivers import phase as drivers_phase
from bench.lab import ROOT, BenchError, ansible_playbook, check, lab_sh, node_ip, recap, ssh, ssh_popen

APP_IP = "10.129.0.31"
VIP, RW_PORT, RO_PORT = "10.129.0.20", 5000, 5001  # keepalived's address, HAProxy's read-write and read-only ports
CLUSTER = ("pg-srv1", "pg-srv2", "pg-srv3")  # the lab's Patroni members
PHASES = ("churn", "persistent", "fanin", "path", "socket", "reuseport", "ansible", "switchover", "drivers")
# Phases that run pgbench in appdb (and churn in reportdb too).
PGBENCH_PHASES = {"churn", "persistent", "path", "socket", "reuseport"}
# The socket phase's [databases] entry: appdb through the local PostgreSQL's unix socket.
SOCKET_DB, SOCKET_DIR = "appdb_sock", "/var/run/postgresql"
# Lab accounts (inventories/lab/group_vars/all.yml); passwords come from the app node's ~/.pgpass.
SCRAM_USER, SCRAM_DB = "app_user", "appdb"
MD5_USER, MD5_DB = "report_user", "reportdb"
ADMIN_USER = "pgbouncer"
LOGGING_OFF = {"log_connections": "0", "log_disconnections": "0"}
# Role default -> SHOW CONFIG key, compared before measuring.
ROLE_KEYS = ("pool_mode", "default_pool_size", "min_pool_size", "reserve_pool_size", "max_client_conn", "max_db_connections",
             "max_user_connections", "auth_type", "log_connections", "log_disconnections", "server_reset_query", "server_reset_query_always")
# The lab's extra node slots: pg-srvN at 10.129.0.(20+N); .31 is the app node.
LAST_SLOT = 10
BENCH_NODES_FILE = ROOT / ".lab" / "bench-nodes"


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def env_list(name: str, default: str) -> list[int]:
    return [int(item) for item in os.environ.get(name, default).split(",") if item.strip()]


class Settings:
    """Everything tunable, from the environment (documented in the module docstring)."""

    def __init__(self):
        self.node = os.environ.get("BENCH_NODE", "pg-srv1")
        self.app = os.environ.get("BENCH_APP", APP_IP)
        self.phases = [p.strip() for p in os.environ.get("BENCH_PHASES", ",".join(PHASES)).split(",") if p.strip()]
        self.clients = env_int("BENCH_CLIENTS", 20)
        self.threads = env_int("BENCH_THREADS", 2)
        self.churn_s = env_int("BENCH_CHURN_SECONDS", 5)
        self.persistent_s = env_int("BENCH_PERSISTENT_SECONDS", 5)
        self.scale = env_int("BENCH_SCALE", 1)
        # Interleaving: rounds per comparison, the settle step before each run, and a time budget
        # per phase after which no new round starts.
        self.repeats = interleave.repeats_from(os.environ.get("BENCH_REPEATS"))
        self.settle_threshold = env_int("BENCH_SETTLE_TIME_WAIT", 1000)
        self.settle_max_wait = env_float("BENCH_SETTLE_MAX_SECONDS", 75)
        self.phase_budget = env_int("BENCH_PHASE_BUDGET", 2700)
        self.fanin_clients = env_int("BENCH_FANIN_CLIENTS", 1000)
        self.fanin_s = env_int("BENCH_FANIN_SECONDS", 20)
        self.fanin_interval = env_float("BENCH_FANIN_INTERVAL", 0.5)
        self.fanin_concurrency = env_int("BENCH_FANIN_CONCURRENCY", 50)
        self.fanin_ramp_timeout = env_int("BENCH_FANIN_RAMP_TIMEOUT", 180)
        self.path_s = env_int("BENCH_PATH_SECONDS", 5)
        self.path_clients = env_list("BENCH_PATH_CLIENTS", "1,20")
        self.path_write_clients = env_list("BENCH_PATH_WRITE_CLIENTS", "1")
        self.socket_s = env_int("BENCH_SOCKET_SECONDS", 5)
        self.reuseport_s = env_int("BENCH_REUSEPORT_SECONDS", 5)
        self.reuseport_fanin_clients = env_int("BENCH_REUSEPORT_FANIN_CLIENTS", 400)
        self.reuseport_fanin_s = env_int("BENCH_REUSEPORT_FANIN_SECONDS", 10)
        self.converge_timeout = env_int("BENCH_CONVERGE_TIMEOUT", 300)
        self.ansible_sizes = [int(n) for n in os.environ.get("BENCH_ANSIBLE_SIZES", "3,6").split(",") if n.strip()]
        self.ansible_timeout = env_int("BENCH_ANSIBLE_TIMEOUT", 900)
        self.switchover_s = env_int("BENCH_SWITCHOVER_SECONDS", 24)
        self.failover_s = env_int("BENCH_FAILOVER_SECONDS", 25)
        self.out = Path(os.environ.get("BENCH_OUT", ROOT / "bench-results")).resolve()
        self.publish = os.environ.get("BENCH_PUBLISH", "1") == "1"
        # disable: pooling compared like for like, without TLS handshakes on either side
        # (Debian's PostgreSQL has ssl=on, so libpq's default "prefer" would use TLS to 5432).
        self.sslmode = os.environ.get("BENCH_SSLMODE", "disable")
        unknown = set(self.phases) - set(PHASES)
        if unknown:
            raise BenchError("unknown BENCH_PHASES: %s" % ", ".join(sorted(unknown)))
        if self.clients < self.threads:
            raise BenchError("BENCH_CLIENTS must be >= BENCH_THREADS")
        if not self.path_clients or min(self.path_clients + self.path_write_clients + [1]) < 1:
            raise BenchError("BENCH_PATH_CLIENTS needs at least one client count, each >= 1")

    def record(self) -> dict:
        return {
            "clients": self.clients, "churn_s": self.churn_s, "persistent_s": self.persistent_s, "scale": self.scale,
            "repeats": self.repeats, "settle_time_wait": self.settle_threshold, "settle_max_s": self.settle_max_wait,
            "fanin_clients": self.fanin_clients, "fanin_s": self.fanin_s, "ansible_sizes": ",".join(map(str, self.ansible_sizes)),
            "path_s": self.path_s, "path_clients": ",".join(map(str, self.path_clients)),
            "path_write_clients": ",".join(map(str, self.path_write_clients)), "socket_s": self.socket_s,
            "reuseport_s": self.reuseport_s, "reuseport_fanin_clients": self.reuseport_fanin_clients,
            "reuseport_fanin_s": self.reuseport_fanin_s,
            "sslmode": self.sslmode, "switchover_s": self.switchover_s, "failover_s": self.failover_s,
        }


class Bench:
    def __init__(self, settings: Settings, out: Path):
        self.s = settings
        self.out = out
        self.raw = out / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        # "fresh": a node of its own (the last extra slot), made by setup_fresh_node().
        self.fresh = settings.node == "fresh"
        if self.fresh:
            self.s.node = "pg-srv%d" % LAST_SLOT
        self.ip = node_ip(self.s.node)
        # The inventory name of the node (BENCH_NODE may be its address): pg-srvN is 10.129.0.(20+N).
        self.name = "pg-srv%d" % (int(self.ip.rsplit(".", 1)[1]) - 20)
        self.config: dict[str, str] = {}
        self.touched: set[str] = set()
        self.results: dict = {"meta": {}, "churn": [], "persistent": [], "fanin": {}, "path": [], "socket": [], "reuseport": [],
                              "ansible": [], "switchover": [], "drivers": {}}
        # The lab inventory, or the fresh bench node's (setup_fresh_node); converges are limited to the node.
        self.inventory = ROOT / "inventories" / "lab"
        self.phase_started = time.monotonic()

    # --- helpers --------------------------------------------------------------------------
    def log(self, text: str) -> None:
        print("[bench %s] %s" % (time.strftime("%H:%M:%S"), text), flush=True)

    def app(self, command: str, timeout: float, check_rc: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        """A shell command on the app node; the bench node's route is checked too (traffic goes there)."""
        check(self.ip)
        return ssh(self.s.app, command, timeout=timeout, check_rc=check_rc, input=input)

    def conninfo(self, port: int, user: str, db: str) -> str:
        return "host=%s port=%d dbname=%s user=%s connect_timeout=10 sslmode=%s" % (self.ip, port, db, user, self.s.sslmode)

    def admin(self, command: str) -> list[dict]:
        """A console command through the app node, as the admin user, rows as dicts."""
        argv = "psql -X --csv %s -c %s" % (shlex.quote(self.conninfo(6432, ADMIN_USER, "pgbouncer")), shlex.quote(command))
        for attempt in range(3):
            proc = self.app(argv, timeout=30, check_rc=False)
            # A login that timed out on a busy machine is tried again; anything else is final.
            if proc.returncode == 0 or "timeout expired" not in proc.stderr or attempt == 2:
                break
            self.log("console login timed out, trying again")
            time.sleep(2)
        if proc.returncode != 0:
            raise BenchError("PgBouncer console on %s: %s failed: %s" % (self.ip, command, proc.stderr.strip()))
        return list(csv.DictReader(io.StringIO(proc.stdout))) if proc.stdout.strip() else []

    def read_config(self) -> dict[str, str]:
        return {row["key"]: row["value"] for row in self.admin("SHOW CONFIG")}

    @contextlib.contextmanager
    def pgbouncer_settings(self, settings: dict[str, str]):
        """SET settings through the console for the block; set back the values read at the start."""
        try:
            for key, value in settings.items():
                self.touched.add(key)
                self.admin("SET %s = '%s'" % (key, value))
            live = self.read_config()
            wrong = {k: live.get(k) for k, v in settings.items() if live.get(k) != v}
            if wrong:
                raise BenchError("PgBouncer did not take %s: it shows %s" % (settings, wrong))
            yield
        finally:
            self.restore()

    def restore(self) -> None:
        """Set back every setting the bench changed; BenchError if PgBouncer does not show them back."""
        if not self.touched:
            return
        for key in sorted(self.touched):
            self.admin("SET %s = '%s'" % (key, self.config[key].replace("'", "''")))
        live = self.read_config()
        wrong = {key: (live.get(key), self.config[key]) for key in self.touched if live.get(key) != self.config[key]}
        if wrong:
            raise BenchError("could not set back PgBouncer settings on %s (live, wanted): %s; run RELOAD on its console" % (self.s.node, wrong))
        self.touched.clear()

    # --- preflight and metadata -----------------------------------------------------------
    def preflight(self) -> None:
        for ip in (self.s.app, self.ip):
            check(ip)
        proc = ssh(self.s.app, "command -v pgbench psql python3 && python3 -c 'import psycopg'", timeout=30, check_rc=False)
        if proc.returncode != 0:
            raise BenchError("the app node %s lacks pgbench/psql/python3-psycopg (run `make lab`): %s" % (self.s.app, proc.stderr.strip()))
        # PostgreSQL under Patroni (the lab) runs in patroni@VERSION-main, not postgresql@: ask it directly.
        proc = ssh(self.ip, "systemctl is-active pgbouncer && pg_isready", timeout=30, check_rc=False)
        if proc.returncode != 0:
            raise BenchError("PgBouncer or PostgreSQL is not running on %s (run `make lab`): %s" % (self.s.node, proc.stdout.strip()))
        self.config = self.read_config()
        if not self.config:
            raise BenchError("PgBouncer's console on %s:6432 answered nothing" % self.ip)

    def metadata(self, settings: Settings) -> None:
        meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
        node = ssh(self.ip, "pgbouncer --version | head -1; runuser -u postgres -- psql -XAt -c 'SHOW server_version'", timeout=30).stdout.splitlines()
        app = ssh(self.s.app, "pgbench --version", timeout=30).stdout.strip()
        ansible = subprocess.run(["ansible", "--version"], capture_output=True, text=True, timeout=60, check=False).stdout.splitlines()
        git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "roles", "playbooks", "plugins", "inventories"],
                               capture_output=True, text=True, timeout=30, check=False).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
        if dirty:
            self.log("WARNING: the role/playbooks/inventories have uncommitted changes; the ansible phase measures them: %s" % dirty)
        defaults = yaml.safe_load((ROOT / "roles" / "pgbouncer" / "defaults" / "main.yml").read_text())
        differs = {}
        for key in ROLE_KEYS:
            want = defaults.get("pgbouncer_" + key)
            want = ("1" if want else "0") if isinstance(want, bool) else str(want)
            if self.config.get(key) != want:
                differs[key] = {"live": self.config.get(key), "role_default": want}
        if differs:
            self.log("WARNING: PgBouncer on %s does not run the role defaults: %s" % (self.s.node, differs))
        self.results["meta"] = {
            "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "git": git + (" (uncommitted changes in %d files)" % len(dirty) if dirty else ""),
            "git_dirty": dirty,
            "node": self.s.node,
            "node_ip": self.ip,
            "app_ip": self.s.app,
            "settings": settings.record(),
            "machine": {
                "cpu": cpu,
                "nproc": os.cpu_count(),
                "memory": "%.1f GiB" % (int(meminfo[1]) / 1024 / 1024),
                "kernel": platform.release(),
                "pgbouncer": node[0].replace("PgBouncer ", "") if node else "?",
                "postgres": node[1] if len(node) > 1 else "?",
                "pgbench": app.replace("pgbench (PostgreSQL) ", ""),
                "ansible": ansible[0].split("[core ")[-1].rstrip("]") if ansible else "?",
            },
            "pgbouncer_config": {key: self.config.get(key) for key in sorted(set(ROLE_KEYS) | {"max_db_connections", "query_wait_timeout"})},
            "config_vs_role_defaults": differs,
            "pgbouncer_users": [row for row in self.admin("SHOW USERS") if row.get("pool_mode")],
            "pgbouncer_databases": [row["name"] for row in self.admin("SHOW DATABASES")],
        }

    # --- pgbench --------------------------------------------------------------------------
    def init_pgbench(self, databases: tuple[tuple[str, str], ...] = ((SCRAM_USER, SCRAM_DB), (MD5_USER, MD5_DB))) -> None:
        """pgbench tables once per database, created by (so owned by) the database's user, on the
        primary (the bench node may be a replica; the tables reach it by streaming)."""
        primary_ip = None
        for user, db in databases:
            info = shlex.quote(self.conninfo(5432, user, db))
            probe = self.app(
                "psql -XAt %s -c \"SELECT count(*) FROM pgbench_branches\" -c \"SELECT tableowner FROM pg_tables WHERE tablename = 'pgbench_accounts'\"" % info,
                timeout=30, check_rc=False)
            if probe.returncode == 0 and probe.stdout.split() == [str(self.s.scale), user]:
                continue
            primary_ip = primary_ip or node_ip(Switchover(self).primary())
            self.log("pgbench -i -s %d in %s as %s on the primary %s" % (self.s.scale, db, user, primary_ip))
            command = "PGSSLMODE=%s PGCONNECT_TIMEOUT=10 timeout 300 pgbench -i -q -s %d -h %s -p 5432 -U %s %s"
            self.app(command % (self.s.sslmode, self.s.scale, primary_ip, user, db), timeout=330)

    def pgbench(self, name: str, user: str, db: str, port: int, connect_each: bool, seconds: int,
                host: str | None = None, clients: int | None = None, builtin: str = "-S") -> dict:
        """One pgbench run from the app node, bounded by `timeout` (seconds + 60) and ssh (+ 90)."""
        clients = clients or self.s.clients
        command = "PGSSLMODE=%s PGCONNECT_TIMEOUT=10 timeout -k 5 %d pgbench -n %s %s-c %d -j %d -T %d -h %s -p %d -U %s %s" % (
            self.s.sslmode, seconds + 60, builtin, "-C " if connect_each else "", clients, min(self.s.threads, clients), seconds,
            host or self.ip, port, user, db)
        proc = self.app(command, timeout=seconds + 90, check_rc=False)
        output = proc.stdout + proc.stderr
        (self.raw / ("%s.txt" % safe_name(name))).write_text("$ %s\n%s\nexit %d\n" % (command, output, proc.returncode))
        parsed = pgbench.parse(output, proc.returncode)
        parsed["returncode"] = proc.returncode
        shown = "%.1f tps" % parsed["tps"] if parsed["ok"] else "FAILED: %s" % (pgbench.first_error(parsed) or "exit %d" % proc.returncode)
        if parsed["ok"] and parsed.get("latency_avg_ms") is not None:
            shown += ", %.3f ms" % parsed["latency_avg_ms"]
        self.log("%-55s %s" % (name, shown))
        return parsed

    # --- interleaving -----------------------------------------------------------------------
    def time_wait(self, port: int) -> int:
        """Sockets in TIME_WAIT on the app node toward `port`."""
        return interleave.count_time_wait(ssh(self.s.app, interleave.time_wait_command(port), timeout=30).stdout)

    def settle(self, port: int) -> dict:
        """Let the client settle before a run: wait (bounded) until its TIME_WAIT toward `port` is low."""
        result = interleave.settle(lambda: self.time_wait(port), self.s.settle_threshold, self.s.settle_max_wait)
        result["port"] = port
        if result["waited_s"] >= 1 or not result["settled"]:
            self.log("settle :%d: TIME_WAIT %d -> %d in %.0f s%s" % (
                port, result["before"], result["after"], result["waited_s"], "" if result["settled"] else " (max wait reached, running anyway)"))
        return result

    def interleaved(self, label: str, variants: list[dict], run) -> list[dict]:
        """Run `variants` round by round (A, B, A, B, ..., BENCH_REPEATS rounds), each run after a
        settle step toward its port (variant["port"]). run(variant, round) returns the entry,
        which gets "round", "settle" and "comparison" (the label). Stops before a new round once
        the phase has used BENCH_PHASE_BUDGET seconds, so every variant keeps the same count."""
        by_name = {variant["name"]: variant for variant in variants}
        entries: list[dict] = []
        for number, name in interleave.order(list(by_name), self.s.repeats):
            if name == variants[0]["name"] and number > 1 and time.monotonic() - self.phase_started > self.s.phase_budget:
                note = "%s: stopped after %d of %d rounds (BENCH_PHASE_BUDGET=%d s)" % (label, number - 1, self.s.repeats, self.s.phase_budget)
                self.log("WARNING: " + note)
                self.results["meta"].setdefault("cut_short", []).append(note)
                break
            settled = self.settle(by_name[name]["port"])
            entry = run(by_name[name], number)
            entry.setdefault("settle", settled)  # a run that converged first settles again and keeps that one
            entry.update({"round": number, "comparison": label})
            entries.append(entry)
        return entries

    # --- churn and persistent -----------------------------------------------------------------
    def churn(self) -> None:
        """Per user, the direct run and the pooled variants interleaved; the md5 user's pooled run
        as deployed is tried once first (it fails under auth_type=scram-sha-256: a finding, not a
        measurement) and joins the rounds only if it logs in."""
        groups = [
            ("scram-sha-256", SCRAM_USER, SCRAM_DB, [
                ("direct", {}), ("as deployed", {}), ("logging off", LOGGING_OFF), ("auth_type=md5", {"auth_type": "md5"})]),
            ("md5", MD5_USER, MD5_DB, [
                ("direct", {}), ("auth_type=md5", {"auth_type": "md5"}), ("auth_type=md5, logging off", {"auth_type": "md5", **LOGGING_OFF}),
                # Only runs anything in session mode (the lab's [users] entry for report_user):
                # in transaction mode server_reset_query is not used unless server_reset_query_always.
                ("auth_type=md5, no server_reset_query", {"auth_type": "md5", "server_reset_query": ""})]),
        ]
        for auth, user, db, variants in groups:
            if auth == "md5":
                settled = self.settle(6432)
                probe = self.churn_run(auth, user, db, {"name": "as deployed", "settings": {}, "port": 6432}, 1)
                probe["settle"] = settled
                probe.update({"round": 1, "comparison": "churn %s (probe)" % user, "probe": True})
                if probe["pgbench"]["ok"]:
                    variants = [variants[0], ("as deployed", {}), *variants[1:]]
                else:
                    self.results["churn"].append(probe)
            listed = [{"name": name, "settings": settings, "port": 5432 if name == "direct" else 6432} for name, settings in variants]
            self.results["churn"].extend(self.interleaved(
                "churn %s" % user, listed, lambda variant, number, auth=auth, user=user, db=db: self.churn_run(auth, user, db, variant, number)))

    def churn_run(self, auth: str, user: str, db: str, variant: dict, number: int) -> dict:
        target = "direct" if variant["name"] == "direct" else "pooled"
        with self.pgbouncer_settings(variant["settings"]):
            parsed = self.pgbench("churn %s %s r%d" % (user, variant["name"], number), user, db, variant["port"], True, self.s.churn_s)
        return {"user": user, "user_auth": auth, "db": db, "target": target, "port": variant["port"],
                "variant": variant["name"], "settings": variant["settings"], "pgbench": parsed}

    def persistent(self) -> None:
        def run(variant: dict, number: int) -> dict:
            target = "direct" if variant["name"] == "direct" else "pooled"
            parsed = self.pgbench("persistent %s %s r%d" % (SCRAM_USER, target, number), SCRAM_USER, SCRAM_DB, variant["port"], False,
                                  self.s.persistent_s)
            return {"user": SCRAM_USER, "user_auth": "scram-sha-256", "db": SCRAM_DB, "target": target,
                    "port": variant["port"], "variant": variant["name"], "pgbench": parsed}

        self.results["persistent"] = self.interleaved("persistent", [{"name": "direct", "port": 5432}, {"name": "as deployed", "port": 6432}], run)

    # --- path: app -> VIP -> HAProxy -> PgBouncer -> PostgreSQL ---------------------------------
    def path(self) -> None:
        """pgbench -S (and the builtin simple-update) from the app node to the primary's 5432, the
        primary's pooler, VIP:5000 (HAProxy -> the primary's pooler) and VIP:5001 (HAProxy -> the
        replicas' poolers; selects only), interleaved, at each client count."""
        primary = Switchover(self).primary()
        ip = node_ip(primary)
        check(VIP)
        targets = [{"name": "direct", "host": ip, "port": 5432}, {"name": "pooler", "host": ip, "port": 6432},
                   {"name": "haproxy rw", "host": VIP, "port": RW_PORT}, {"name": "haproxy ro", "host": VIP, "port": RO_PORT}]
        groups = [("select", clients) for clients in self.s.path_clients] + [("write", clients) for clients in self.s.path_write_clients]
        for script, clients in groups:
            variants = [target for target in targets if script == "select" or target["name"] != "haproxy ro"]

            def run(variant: dict, number: int, script=script, clients=clients) -> dict:
                parsed = self.pgbench("path %s c%d %s r%d" % (script, clients, variant["name"], number), SCRAM_USER, SCRAM_DB,
                                      variant["port"], False, self.s.path_s, host=variant["host"], clients=clients,
                                      builtin="-S" if script == "select" else "-N")
                return {"script": script, "clients": clients, "target": variant["name"], "host": variant["host"],
                        "port": variant["port"], "primary": primary, "pgbench": parsed}

            self.results["path"].extend(self.interleaved("path %s %d clients" % (script, clients), variants, run))

    # --- settings that need the role: converges of the bench node ------------------------------
    def converge_node(self, label: str, extra_vars: dict | None = None) -> float:
        """site.yml limited to the bench node (as tests/integration/test_processes.py does), with
        extra variables from a file in raw/; bounded by BENCH_CONVERGE_TIMEOUT. Returns seconds."""
        extra: tuple[str, ...] = ("--limit", self.name)
        if extra_vars:
            path = self.raw / ("vars-%s.json" % safe_name(label))
            path.write_text(json.dumps(extra_vars, indent=2))
            extra += ("-e", "@%s" % path)
        self.log("converging %s: %s" % (self.s.node, label))
        seconds, rc, output = ansible_playbook(self.inventory, "playbooks/site.yml", self.s.converge_timeout, extra)
        (self.raw / ("converge-%s.log" % safe_name(label))).write_text(output)
        if rc != 0 or self.name not in recap(output):
            raise BenchError("site.yml --limit %s (%s) failed (exit %d):\n%s" % (self.name, label, rc, output[-3000:]))
        self.log("converged %s (%s) in %.1f s" % (self.s.node, label, seconds))
        return round(seconds, 1)

    def live_processes(self) -> int:
        """PgBouncer processes running on the bench node: active pgbouncer@N units, else 1."""
        out = ssh(self.ip, "systemctl list-units --plain --no-legend --state=active 'pgbouncer@*.service' | wc -l", timeout=30).stdout
        return int(out.strip() or 0) or 1

    def socket(self) -> None:
        """PgBouncer to its local PostgreSQL over the unix socket against TCP to the node's address:
        one converge adds a [databases] entry appdb_sock (host=/var/run/postgresql, dbname=appdb,
        pool as large as appdb's), so both transports serve from one PgBouncer, run after run,
        through 6432 (pgbench -S, BENCH_CLIENTS clients, connections kept); a last converge
        removes it. The wildcard entry stays on TCP."""
        rules = ssh(self.ip, "runuser -u postgres -- psql -XAt -c \"SELECT count(*) FROM pg_hba_file_rules WHERE type = 'local' "
                             "AND auth_method IN ('md5', 'scram-sha-256', 'password') AND NOT ('replication' = ANY(database))\"",
                    timeout=30, check_rc=False)
        if rules.returncode != 0 or rules.stdout.strip() in ("", "0"):
            raise BenchError("PostgreSQL on %s has no pg_hba `local` line accepting passwords (%s): PgBouncer could not log in over "
                             "the socket; `make lab-prepare` writes the lab's (playbooks/lab/templates/patroni.yml.j2)" % (
                                 self.s.node, (rules.stdout + rules.stderr).strip()))
        lab = yaml.safe_load((ROOT / "inventories" / "lab" / "group_vars" / "pgbouncer.yml").read_text())
        # Its pool is appdb's (default_pool_size, capped by max_db_connections): like for like.
        entry = {"name": SOCKET_DB, "host": SOCKET_DIR, "port": 5432, "dbname": SCRAM_DB}
        self.results["meta"]["socket_entry"] = entry
        try:
            # The sizing check counts the entry's pool on top of appdb's (3 x 25 + 25 > 97 on the
            # lab), though only one of the two is used at a time: off for this converge only.
            self.converge_node("socket entry on", {"pgbouncer_databases": [*(lab.get("pgbouncer_databases") or []), entry],
                                                   "pgbouncer_pool_sizing_check": False})
            hosts = {row["name"]: row.get("host") for row in self.admin("SHOW DATABASES")}
            if hosts.get(SOCKET_DB) != SOCKET_DIR:
                raise BenchError("PgBouncer on %s shows %s host=%r, not %s" % (self.s.node, SOCKET_DB, hosts.get(SOCKET_DB), SOCKET_DIR))
            login = self.app("psql -XAt %s -c 'SELECT 1'" % shlex.quote(self.conninfo(6432, SCRAM_USER, SOCKET_DB)), timeout=60, check_rc=False)
            if login.returncode != 0:
                raise BenchError("no login through %s (unix socket) on %s: %s" % (SOCKET_DB, self.s.node, login.stderr.strip()))

            def run(variant: dict, number: int) -> dict:
                parsed = self.pgbench("socket %s r%d" % (variant["name"], number), SCRAM_USER, variant["db"], 6432, False, self.s.socket_s)
                return {"variant": variant["name"], "db": variant["db"], "clients": self.s.clients, "pgbench": parsed}

            variants = [{"name": "tcp", "db": SCRAM_DB, "port": 6432}, {"name": "unix socket", "db": SOCKET_DB, "port": 6432}]
            self.results["socket"] = self.interleaved("socket", variants, run)
        finally:
            self.converge_node("socket entry off")
            if SOCKET_DB in {row["name"] for row in self.admin("SHOW DATABASES")}:
                raise BenchError("PgBouncer on %s still has %s after the converge that removes it" % (self.s.node, SOCKET_DB))

    def reuseport(self) -> None:
        """pgbouncer_processes 1 against 2 (so_reuseport), interleaved; each switch is a converge
        of the bench node. In each state: churn (pgbench -C -S, scram user, BENCH_CLIENTS) and a
        fan-in of BENCH_REUSEPORT_FANIN_CLIENTS clients (under max_client_conn / 2, each
        process's share). The node goes back to the inventory's setting at the end."""
        state = {"processes": self.live_processes(), "changed": False}
        if state["processes"] != 1:
            raise BenchError("%s runs %d PgBouncer processes: the reuseport phase starts from 1" % (self.s.node, state["processes"]))

        def run(variant: dict, number: int) -> dict:
            converge_s = None
            if state["processes"] != variant["processes"]:
                converge_s = self.converge_node("pgbouncer_processes=%d" % variant["processes"], {"pgbouncer_processes": variant["processes"]})
                state.update(processes=variant["processes"], changed=True)
                if self.live_processes() != variant["processes"]:
                    raise BenchError("%s does not run %d PgBouncer processes after the converge" % (self.s.node, variant["processes"]))
            # Settle (again, after a converge): the converge's own checks leave client sockets too.
            settled = self.settle(6432) if converge_s is not None else None
            churn = self.pgbench("reuseport churn %s r%d" % (variant["name"], number), SCRAM_USER, SCRAM_DB, 6432, True, self.s.reuseport_s)
            fanin = self.fanin_one("pooled", 6432, clients=self.s.reuseport_fanin_clients, hold=self.s.reuseport_fanin_s,
                                   label="reuseport %s r%d" % (variant["name"], number))
            keep = ("clients", "connected", "errors", "connect_errors", "query_errors", "ramp_s", "qps", "latency_ms")
            entry = {"variant": variant["name"], "processes": variant["processes"], "converge_s": converge_s, "pgbench": churn,
                     "fanin": {key: fanin.get(key) for key in keep}}
            if settled is not None:
                entry["settle"] = settled
            return entry

        try:
            variants = [{"name": "1 process", "processes": 1, "port": 6432}, {"name": "2 processes", "processes": 2, "port": 6432}]
            self.results["reuseport"] = self.interleaved("reuseport", variants, run)
        finally:
            if state["changed"]:
                self.converge_node("pgbouncer_processes as in the inventory")
                if self.live_processes() != 1 or ssh(self.ip, "systemctl is-active pgbouncer", timeout=30, check_rc=False).returncode != 0:
                    raise BenchError("%s is not back to one PgBouncer process (pgbouncer.service)" % self.s.node)

    def switchover(self) -> None:
        self.results["switchover"] = Switchover(self).run()

    def drivers(self) -> None:
        self.results["drivers"] = drivers_phase.run(self, Switchover(self))

    # --- fan-in ---------------------------------------------------------------------------
    def memory(self) -> dict:
        """PostgreSQL backends (count, per db/user, RSS and PSS) and PgBouncer's memory on the bench node."""
        proc = ssh(self.ip, "python3 -", timeout=60, input=(Path(__file__).parent / "memory_probe.py").read_text())
        return json.loads(proc.stdout)

    def fanin(self) -> None:
        self.results["fanin"]["interval_s"] = self.s.fanin_interval
        for target, port in (("direct", 5432), ("pooled", 6432)):
            self.results["fanin"][target] = self.fanin_one(target, port)

    def fanin_one(self, target: str, port: int, clients: int | None = None, hold: int | None = None, label: str | None = None) -> dict:
        """bench/fanin_client.py from the app node. With `clients`/`hold` (the reuseport phase) a
        plain client load: no console samples and no memory probe (with several PgBouncer
        processes the TCP console reaches one of them only)."""
        plain = clients is not None
        label = label or target
        cfg = {
            "clients": clients or self.s.fanin_clients, "conninfo": self.conninfo(port, SCRAM_USER, SCRAM_DB),
            "admin": self.conninfo(6432, ADMIN_USER, "pgbouncer") if target == "pooled" and not plain else None,
            "connect_timeout": 10, "connect_concurrency": self.s.fanin_concurrency, "ramp_timeout": self.s.fanin_ramp_timeout,
            "hold": hold or self.s.fanin_s, "interval": self.s.fanin_interval, "query_timeout": 30, "sample_every": 2,
        }
        before = None if plain else self.memory()
        self.log("fan-in %s: %d clients to %s:%d, hold %d s" % (target, cfg["clients"], self.ip, port, cfg["hold"]))
        check(self.ip)
        proc = ssh_popen(self.s.app, "python3 - %s" % shlex.quote(json.dumps(cfg)))
        lines: queue.Queue = queue.Queue()
        stderr: list[str] = []

        def pump(stream, sink) -> None:
            for line in stream:
                sink(line)

        threading.Thread(target=pump, args=(proc.stdout, lines.put), daemon=True).start()
        threading.Thread(target=pump, args=(proc.stderr, stderr.append), daemon=True).start()
        proc.stdin.write((Path(__file__).parent / "fanin_client.py").read_text())
        proc.stdin.close()
        deadline = time.monotonic() + self.s.fanin_ramp_timeout + cfg["hold"] + 120
        result, during, hold_at = None, None, None
        try:
            while result is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError("fan-in %s did not finish in time" % target)
                if hold_at is not None and during is None and not plain and time.monotonic() >= hold_at:
                    during = self.memory()
                try:
                    line = lines.get(timeout=min(left, 1.0))
                except queue.Empty:
                    if proc.poll() is not None and lines.empty():
                        raise BenchError("fan-in %s client exited %s: %s" % (target, proc.returncode, "".join(stderr)[-1500:])) from None
                    continue
                if line.startswith("HOLD "):
                    self.log("fan-in %s: %s clients open, holding" % (target, line.split()[1]))
                    hold_at = time.monotonic() + cfg["hold"] / 2
                elif line.startswith("RESULT "):
                    result = json.loads(line[len("RESULT "):])
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        if plain:
            self.log("fan-in %s: %d/%d logged in in %.1f s, %d errors, %.0f queries/s, p99 %s ms" % (
                label, result["connected"], result["clients"], result["ramp_s"], result["errors"], result["qps"] or 0,
                result["latency_ms"]["p99"]))
            (self.raw / ("fanin_%s.json" % safe_name(label))).write_text(json.dumps(result, indent=2))
            return result
        if during is None:
            during = self.memory()
        result["memory_before"] = before
        result["memory"] = during
        pair = "%s/%s" % (SCRAM_DB, SCRAM_USER)
        if target == "pooled":
            result["servers_per_pair"] = result.get("servers_peak") or {}
        else:
            result["servers_per_pair"] = {pair: during.get("backends_from", {}).get(self.s.app, {}).get(pair, 0)}
        (self.raw / ("fanin_%s.json" % target)).write_text(json.dumps(result, indent=2))
        self.log("fan-in %s: %d/%d logged in, %d errors %s, servers per pair %s, %s backends, backends PSS %.0f MiB" % (
            target, result["connected"], result["clients"], result["errors"],
            {**result["connect_errors"], **result["query_errors"]}, result["servers_per_pair"],
            during["backends"], during["backends_pss_kb"] / 1024))
        return result

    # --- ansible --------------------------------------------------------------------------
    def slots(self) -> list[str]:
        """Extra node names free for the ansible phase (the fresh bench node keeps the last one)."""
        first = int(os.environ.get("LAB_NODES", "3")) + 1
        return ["pg-srv%d" % n for n in range(first, LAST_SLOT + (0 if self.fresh else 1))]

    def setup_fresh_node(self) -> None:
        """BENCH_NODE=fresh: a new node from the lab's node image, through prepare.yml and site.yml
        with the lab's inventory variables, so it runs what the lab runs, untouched by anyone."""
        self.cleanup_leftovers()
        self.add_nodes([self.s.node])
        inventory = self.inventory = write_inventory("bench-node", [self.s.node])
        for playbook, extra in (("playbooks/lab/prepare.yml", ("--limit", "%s,localhost" % self.s.node)), ("playbooks/site.yml", ())):
            self.log("%s on the fresh bench node %s" % (playbook, self.s.node))
            seconds, rc, output = ansible_playbook(inventory, playbook, timeout=self.s.ansible_timeout, extra=extra)
            (self.raw / ("bench-node-%s.log" % Path(playbook).stem)).write_text(output)
            if rc != 0:
                raise BenchError("%s failed on the fresh bench node %s:\n%s" % (playbook, self.s.node, output[-3000:]))

    def ansible(self) -> None:
        slots = self.slots()
        rounds = plan_rounds(self.s.ansible_sizes, len(slots))
        if not self.fresh:
            self.cleanup_leftovers()
        for sizes in rounds:
            names = slots[: sum(sizes)]
            self.add_nodes(names)
            try:
                inventory = write_inventory("bench-prepare", names)
                self.log("preparing %s (playbooks/lab/prepare.yml)" % ", ".join(names))
                seconds, rc, output = ansible_playbook(inventory, "playbooks/lab/prepare.yml", timeout=self.s.ansible_timeout,
                                                       extra=("--limit", ",".join([*names, "localhost"])))
                (self.raw / ("prepare-%s.log" % "-".join(names))).write_text(output)
                if rc != 0:
                    raise BenchError("prepare.yml failed on %s:\n%s" % (names, output[-3000:]))
                offset = 0
                for size in sizes:
                    group = names[offset: offset + size]
                    offset += size
                    self.results["ansible"].append(self.converge(group))
            finally:
                self.remove_nodes(names)

    def converge(self, names: list[str]) -> dict:
        inventory = write_inventory("bench-site-%d" % len(names), names)
        shutil.copy(inventory / "hosts.yml", self.raw / ("inventory-%d-nodes.yml" % len(names)))
        run = {"nodes": len(names), "hosts": names}
        for kind in ("cold", "warm"):
            seconds, rc, output = ansible_playbook(inventory, "playbooks/site.yml", timeout=self.s.ansible_timeout)
            (self.raw / ("site-%d-nodes-%s.log" % (len(names), kind))).write_text(output)
            stats = recap(output)
            if rc != 0 or set(stats) != set(names):
                raise BenchError("%s converge of site.yml on %s failed (exit %d):\n%s" % (kind, names, rc, output[-3000:]))
            run["%s_s" % kind] = round(seconds, 1)
            run["%s_changed" % kind] = sum(host["changed"] for host in stats.values())
            run["%s_ok" % kind] = sum(host["ok"] for host in stats.values())
            self.log("site.yml %s on %d nodes: %.1f s, changed=%d" % (kind, len(names), seconds, run["%s_changed" % kind]))
        return run

    def cleanup_leftovers(self) -> None:
        """Remove the extra nodes a killed earlier bench left behind (only those it recorded)."""
        if BENCH_NODES_FILE.exists():
            names = BENCH_NODES_FILE.read_text().split()
            if names:
                self.log("removing extra nodes left by an earlier bench: %s" % " ".join(names))
                lab_sh("remove", *names)
            BENCH_NODES_FILE.unlink()

    def add_nodes(self, names: list[str]) -> None:
        existing = [name for name in names if subprocess.run(["podman", "container", "exists", name], timeout=30, check=False).returncode == 0]
        if existing:
            raise BenchError("extra nodes %s already exist: the bench converges only fresh nodes (lab/lab.sh remove %s)" % (existing, " ".join(existing)))
        BENCH_NODES_FILE.write_text(" ".join(sorted(set(names) | set(self.pending_nodes()))))
        self.log("adding fresh nodes %s" % " ".join(names))
        lab_sh("add", *names)

    def remove_bench_nodes(self) -> None:
        """Remove every extra node this bench still has (the fresh bench node, or leftovers of a failure)."""
        names = self.pending_nodes()
        if names:
            self.remove_nodes(names)

    def pending_nodes(self) -> list[str]:
        return BENCH_NODES_FILE.read_text().split() if BENCH_NODES_FILE.exists() else []

    def remove_nodes(self, names: list[str]) -> None:
        lab_sh("remove", *names)
        left = [name for name in self.pending_nodes() if name not in names]
        if left:
            BENCH_NODES_FILE.write_text(" ".join(left))
        elif BENCH_NODES_FILE.exists():
            BENCH_NODES_FILE.unlink()
        self.log("removed %s" % " ".join(names))


class Switchover:
    """The switchover phase: writes through VIP:5000 across the lab's primary moving. The same
    load and measures as tests/integration/test_switchover.py (bench/writes.py)."""

    def __init__(self, bench: Bench):
        self.bench = bench
        self.s = bench.s
        self.ips = {name: node_ip(name) for name in CLUSTER}

    def psql(self, name: str, sql: str, db: str = SCRAM_DB) -> list[str]:
        proc = ssh(self.ips[name], "runuser -u postgres -- psql -XAt -v ON_ERROR_STOP=1 -d %s" % db, timeout=60, input=sql)
        return proc.stdout.split()

    def primary(self, within: float = 90, without: str | None = None) -> str:
        """The member whose PostgreSQL is not in recovery, once every other one answers."""
        deadline = time.monotonic() + within
        while True:
            flags = {}
            for name in CLUSTER:
                if name != without:
                    proc = ssh(self.ips[name], "runuser -u postgres -- psql -XAtc 'SELECT pg_is_in_recovery()'", timeout=30, check_rc=False)
                    flags[name] = proc.stdout.strip() if proc.returncode == 0 else None
            primaries = [name for name, flag in flags.items() if flag == "f"]
            if None not in flags.values() and len(primaries) == 1:
                return primaries[0]
            if time.monotonic() > deadline:
                raise BenchError("no single primary among the answering members within %ds: %s" % (within, flags))
            time.sleep(1)

    def table(self, primary: str, label: str) -> str:
        name = "bench_%s_%d" % ("".join(ch if ch.isalnum() else "_" for ch in label), int(time.time() * 1000))
        self.psql(primary, "CREATE TABLE %s (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());"
                           "GRANT INSERT, SELECT ON %s TO %s; GRANT USAGE ON SEQUENCE %s_id_seq TO %s;" % (name, name, SCRAM_USER, name, SCRAM_USER))
        return name

    def rows(self, primary: str, table: str, ids: list[int] | None = None) -> int:
        where = " WHERE id = ANY('{%s}'::bigint[])" % ",".join(map(str, ids)) if ids is not None else ""
        return int(self.psql(primary, "SELECT count(*) FROM %s%s;" % (table, where))[0])

    def settle(self, within: float = 120) -> str:
        """The primary once both other members stream from it again."""
        deadline = time.monotonic() + within
        while True:
            primary = self.primary(within)
            if self.psql(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming';", db="postgres") == [str(len(CLUSTER) - 1)]:
                return primary
            if time.monotonic() > deadline:
                raise BenchError("the replicas did not stream from %s within %ds" % (primary, within))
            time.sleep(1)

    def under_pgbench(self, label: str, move) -> dict:
        """pgbench writes through VIP:5000 while move(old primary) runs, 5 s after the start."""
        old = self.settle()
        table = self.table(old, label)
        prefix = "/tmp/bench-%s" % table
        self.bench.app("cat > %s.sql" % prefix, timeout=30, input=writes.PGBENCH_SCRIPT.format(table=table))
        command = writes.pgbench_command(prefix, VIP, RW_PORT, SCRAM_USER, SCRAM_DB, self.s.clients, self.s.switchover_s)
        check(VIP)
        process = ssh_popen(self.s.app, command)
        try:
            time.sleep(5)
            took, note = move(old)
            output = "".join(process.communicate(timeout=self.s.switchover_s + 120))
        finally:
            if process.poll() is None:
                process.kill()
        log_text = self.bench.app("cat %s.[0-9]*; rm -f %s.*" % (prefix, prefix), timeout=60, check_rc=False).stdout
        (self.bench.raw / ("switchover_%s.txt" % label)).write_text("$ %s\n%s\nexit %s\n%s" % (command, output, process.returncode, note))
        result = writes.pgbench_result(output, log_text, self.summary)
        new = self.settle()
        written = self.rows(new, table)
        entry = {"run": label, "old_primary": old, "new_primary": new, "seconds": round(took, 1), "clients": self.s.clients,
                 "processed": result["processed"], "summary": result["summary"], "failed": result["failed"],
                 "clients_cut": result["aborted"], "longest_ms": result["longest_ms"], "rows": written,
                 "errors": result["errors"][:5]}
        self.bench.log("%-22s %s -> %s: %d transactions%s, %d failed, %d of %d clients cut, longest %.0f ms, %d rows" % (
            label, old, new, entry["processed"], "" if entry["summary"] else " (logged)", entry["failed"], entry["clients_cut"],
            self.s.clients, entry["longest_ms"], written))
        return entry

    @staticmethod
    def summary(output: str) -> dict:
        parsed = pgbench.parse(output)
        return {"processed": parsed.get("transactions", 0), "failed": parsed.get("failed_transactions", 0),
                "aborted": parsed["aborted_clients"], "errors": parsed["errors"]}

    def playbook(self, old: str) -> tuple[float, str]:
        took, returncode, output = ansible_playbook(ROOT / "inventories" / "lab", "playbooks/switchover.yml", self.s.ansible_timeout,
                                                    ("-e", "switchover_databases=%s" % SCRAM_DB))
        if returncode != 0:
            raise BenchError("switchover.yml failed (%d): %s" % (returncode, output[-2000:]))
        return took, output[-3000:]

    def bare(self, old: str) -> tuple[float, str]:
        started = time.monotonic()
        proc = ssh(self.ips[old], "patronictl -c /etc/patroni/*-main.yml switchover --force", timeout=120)
        return time.monotonic() - started, proc.stdout[-2000:]

    def failover(self) -> dict:
        """A reconnecting writer through VIP:5000 while Patroni stops on the primary."""
        old = self.settle()
        table = self.table(old, "failover")
        unit = ssh(self.ips[old], "systemctl list-units --plain --no-legend 'patroni@*' | cut -d' ' -f1", timeout=30).stdout.strip()
        if not unit.startswith("patroni@"):
            raise BenchError("no patroni@ unit on %s: %r" % (old, unit))
        check(VIP)
        writer = ssh_popen(self.s.app, "timeout %d python3 - %s %d %s %s %s %d 0 0.02" % (
            self.s.failover_s + 60, VIP, RW_PORT, SCRAM_USER, SCRAM_DB, table, self.s.failover_s))
        try:
            writer.stdin.write(writes.WRITER)
            writer.stdin.close()
            time.sleep(5)
            stopped_at = time.time()
            ssh(self.ips[old], "systemctl stop %s" % unit, timeout=120)
            output = writer.stdout.read()  # the writer stops by itself after failover_s
            writer.wait(timeout=60)
            if not output.strip():
                raise BenchError("the writer printed nothing (exit %s): %s" % (writer.returncode, writer.stderr.read()[-2000:]))
            samples = json.loads(output)
        finally:
            if writer.poll() is None:
                writer.kill()
            ssh(self.ips[old], "systemctl start %s" % unit, timeout=120, check_rc=False)
        new = self.primary(without=old)
        seen = writes.write_gap(samples, stopped_at, self.ips[new])
        found = self.rows(new, table, seen["acknowledged"])
        self.settle()
        entry = {"run": "failover (Patroni stopped)", "old_primary": old, "new_primary": new, "gap_s": seen["gap_s"],
                 "acknowledged": len(seen["acknowledged"]), "acknowledged_found": found, "failed_attempts": seen["failed_attempts"],
                 "errors": seen["errors"][:5]}
        self.bench.log("failover %s -> %s: first write on the new primary after %s s, %d acknowledged, %d of them found" % (
            old, new, seen["gap_s"], entry["acknowledged"], found))
        return entry

    def run(self) -> list[dict]:
        return [self.under_pgbench("switchover.yml", self.playbook), self.under_pgbench("patronictl switchover", self.bare), self.failover()]


def safe_name(text: str) -> str:
    """A file name from a run label: letters, digits, "-" and "_"."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text.strip()).strip("_")


def plan_rounds(sizes: list[int], slots: int) -> list[list[int]]:
    """Group lab sizes into rounds of fresh nodes that fit the free slots together."""
    rounds: list[list[int]] = []
    for size in sizes:
        if size < 1 or size > slots:
            raise BenchError("lab size %d does not fit the %d extra node slots" % (size, slots))
        if rounds and sum(rounds[-1]) + size <= slots:
            rounds[-1].append(size)
        else:
            rounds.append([size])
    return rounds


def write_inventory(label: str, names: list[str]) -> Path:
    """inventories/lab/hosts.yml with `names` as the only pgbouncer nodes, using the lab group_vars (linked).

    The other groups (app, outsiders, controller) stay, so the plays see the lab as it is;
    callers limit prepare.yml to the new nodes and localhost. It lives two levels under the
    checkout, as inventories/lab does, because the lab group_vars find the ssh key and
    lab/connect relative to inventory_dir (LAB_ROOT is set as well).
    """
    hosts = yaml.safe_load((ROOT / "inventories" / "lab" / "hosts.yml").read_text())
    hosts["pgbouncer"]["hosts"] = {name: {"ansible_host": node_ip(name)} for name in names}
    lab_nodes = set(yaml.safe_load((ROOT / "inventories" / "lab" / "hosts.yml").read_text())["pgbouncer"]["hosts"])
    listed = set()
    for group in hosts.values():
        listed |= set((group or {}).get("hosts") or {})
    if listed & lab_nodes:
        raise BenchError("refusing an inventory that lists the lab's own nodes %s" % sorted(listed & lab_nodes))
    directory = ROOT / ".lab" / label
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "group_vars"
    if not link.is_symlink():
        link.symlink_to(Path("..") / ".." / "inventories" / "lab" / "group_vars")
    (directory / "hosts.yml").write_text("# Generated by bench/run.py from inventories/lab/hosts.yml: fresh extra nodes.\n"
                                         + yaml.safe_dump(hosts, sort_keys=False))
    return directory


def publish(out: Path, markdown: str, results: dict) -> None:
    """Copy the table, plot and data of a complete run to docs/bench/, and write its README;
    the switchover phase's table goes to docs/bench/switchover.md. A run of the switchover
    phase alone leaves the other published results as they are."""
    if results.get("drivers"):
        drivers_phase.publish(results["drivers"])
    docs = ROOT / "docs" / "bench"
    docs.mkdir(parents=True, exist_ok=True)
    if results.get("switchover"):
        (docs / "switchover.md").write_text("\n".join(["# pgbouncer.cluster bench: switchover and failover", "",
                                                       "Run %s, %s." % (results["meta"].get("started", "?"), results["meta"].get("git", "?")), "",
                                                       *report.switchover_lines(results)[2:]]))
    if not any(results.get(phase) for phase in ("churn", "persistent", "fanin", "path", "socket", "reuseport", "ansible")):
        return
    shutil.copy(out / "bench.png", docs / "bench.png")
    shutil.copy(out / "results.json", docs / "results.json")
    (docs / "results.md").write_text(markdown)
    findings = docs / "findings.md"
    (docs / "README.md").write_text(report.readme(markdown, findings.read_text() if findings.exists() else ""))


def main() -> int:
    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    bench = None
    try:
        settings = Settings()
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        out = settings.out / stamp
        bench = Bench(settings, out)
        bench.log("output: %s" % out)
        if bench.fresh:
            bench.setup_fresh_node()
        bench.preflight()
        bench.metadata(settings)
        if PGBENCH_PHASES & set(settings.phases):
            if "churn" in settings.phases:
                bench.init_pgbench()
            else:
                bench.init_pgbench(((SCRAM_USER, SCRAM_DB),))
        for phase in PHASES:
            if phase in settings.phases:
                bench.log("--- %s" % phase)
                bench.phase_started = time.monotonic()
                getattr(bench, phase)()
                bench.results["meta"].setdefault("phase_s", {})[phase] = round(time.monotonic() - bench.phase_started, 1)
        bench.restore()
    except (BenchError, KeyboardInterrupt, Exception) as exc:  # noqa: BLE001 - every failure ends loudly below
        failure = exc
    else:
        failure = None
    finally:
        if bench is not None:
            try:
                bench.restore()
            except Exception as exc:  # noqa: BLE001
                print("BENCH: could not set back PgBouncer settings: %s" % exc, file=sys.stderr)
                failure = failure or exc
            try:
                if failure is not None and os.environ.get("BENCH_KEEP_NODES") == "1":
                    print("BENCH_KEEP_NODES=1: keeping %s for a look; lab/lab.sh remove them" % bench.pending_nodes(), file=sys.stderr)
                else:
                    bench.remove_bench_nodes()
            except Exception as exc:  # noqa: BLE001
                print("BENCH: could not remove extra nodes: %s" % exc, file=sys.stderr)
                failure = failure or exc
    if failure is not None:
        if bench is not None:
            (bench.out / "results.failed.json").write_text(json.dumps(bench.results, indent=2, default=str))
        print("\n" + "=" * 78, file=sys.stderr)
        print("BENCH FAILED: %s: %s" % (type(failure).__name__, failure), file=sys.stderr)
        print("No report was written%s." % (" (partial data: %s)" % (bench.out / "results.failed.json") if bench else ""), file=sys.stderr)
        print("=" * 78, file=sys.stderr)
        return 130 if isinstance(failure, KeyboardInterrupt) else 1

    results = bench.results
    results["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    summary = report.summarize(results)
    results["summary"] = summary
    (bench.out / "results.json").write_text(json.dumps(results, indent=2))
    markdown = report.markdown(results, summary)
    (bench.out / "results.md").write_text(markdown)
    report.plot(results, bench.out / "bench.png")
    latest = bench.s.out / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(bench.out.name)
    if bench.s.publish:
        publish(bench.out, markdown, results)
    print()
    print("Pooled over direct (%s, %.0f s):" % (bench.out, results["meta"]["duration_s"]))
    for line in report.ratio_lines(summary):
        print("  " + line)
    for goal in summary["goals"]:
        print("  goal %-75s %s: %s" % (goal["goal"], {True: "met", False: "NOT met", None: "n/a"}[goal["met"]], goal["value"]))
    for item in summary["comparisons"]:
        print("  " + report.finding(item).replace("**", ""))
    for note in results["meta"].get("cut_short") or []:
        print("  CUT SHORT: " + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
