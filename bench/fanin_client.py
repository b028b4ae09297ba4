"""Fan-in client, run on the lab's app node (python3 + python3-psycopg of Debian 12).

    python3 - '<json config>'   (this file on stdin)

Opens `clients` connections (at most `connect_concurrency` logins at a time), keeps every
one that logged in open, each running `SELECT 1` about every `interval` seconds, for
`hold` seconds after the last login attempt; then closes them all. Prints one line
"HOLD <open>" when the hold starts and one line "RESULT <json>" at the end.

With `admin` (a conninfo for PgBouncer's console), samples SHOW POOLS and SHOW SERVERS
every `sample_every` seconds during the hold; the console is exempt from max_client_conn.
Queries and latencies are counted during the hold only.
Every step is bounded: connect_timeout per login, `ramp_timeout` for all logins, and the
hold. Passwords come from ~/.pgpass.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import resource
import sys
import time

import psycopg


def message(exc: BaseException) -> str:
    """One line per distinct error, without the per-connection details that vary."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    # libpq: 'connection to server at "h", port p failed: FATAL:  sorry, too many clients already'
    if "failed:" in text:
        text = text.rsplit("failed:", 1)[1].strip()
    return text[:200]


class FanIn:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.connect_errors: collections.Counter = collections.Counter()
        self.query_errors: collections.Counter = collections.Counter()
        self.admin_errors: collections.Counter = collections.Counter()
        self.open = 0
        self.peak_open = 0
        self.attempted = 0
        self.connected = 0
        self.queries = 0
        self.holding = False
        self.latencies: list[float] = []
        self.stop = asyncio.Event()
        self.ramp_done = asyncio.Event()
        self.pools: dict = {}
        self.servers: dict = {}
        self.samples = 0

    async def client(self, sem: asyncio.Semaphore) -> None:
        cfg = self.cfg
        async with sem:
            try:
                conn = await asyncio.wait_for(
                    # No server-side prepared statements: PgBouncer 1.18 in transaction
                    # mode cannot keep them (psycopg prepares after 5 executions).
                    psycopg.AsyncConnection.connect(cfg["conninfo"], autocommit=True, prepare_threshold=None),
                    cfg["connect_timeout"] + 5,
                )
            except Exception as exc:  # noqa: BLE001 - every failure is counted, none is fatal
                self.connect_errors[message(exc)] += 1
                return
            finally:
                self.attempted += 1
                if self.attempted == cfg["clients"]:
                    self.ramp_done.set()
        self.connected += 1
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        try:
            while not self.stop.is_set():
                try:
                    await asyncio.wait_for(self.stop.wait(), cfg["interval"] * random.uniform(0.5, 1.5))
                    break
                except TimeoutError:
                    pass
                start = time.perf_counter()
                try:
                    await asyncio.wait_for(conn.execute("SELECT 1"), cfg["query_timeout"])
                except Exception as exc:  # noqa: BLE001
                    self.query_errors[message(exc)] += 1
                    break
                if self.holding:
                    self.latencies.append(time.perf_counter() - start)
                    self.queries += 1
        finally:
            self.open -= 1
            # Closing at the end: the counts are already taken.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

    async def sample_admin(self) -> None:
        """Peak server connections per database/user pair, from the console, during the hold."""
        cfg = self.cfg
        try:
            admin = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(cfg["admin"], autocommit=True, cursor_factory=psycopg.AsyncClientCursor),
                cfg["connect_timeout"] + 5,
            )
        except Exception as exc:  # noqa: BLE001
            self.admin_errors[message(exc)] += 1
            return
        try:
            while not self.stop.is_set():
                try:
                    await self.sample_once(admin)
                except Exception as exc:  # noqa: BLE001
                    self.admin_errors[message(exc)] += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), cfg["sample_every"])
        finally:
            await admin.close()

    async def sample_once(self, admin) -> None:
        cur = await asyncio.wait_for(admin.execute("SHOW POOLS"), 10)
        names = [d.name for d in cur.description]
        for row in await cur.fetchall():
            pool = dict(zip(names, row))
            key = "%s/%s" % (pool["database"], pool["user"])
            if pool["database"] == "pgbouncer":
                continue
            servers = sum(int(pool.get(k) or 0) for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
            peak = self.pools.setdefault(key, {"servers": 0, "cl_active": 0, "cl_waiting": 0, "maxwait_s": 0.0})
            peak["servers"] = max(peak["servers"], servers)
            peak["cl_active"] = max(peak["cl_active"], int(pool["cl_active"]))
            peak["cl_waiting"] = max(peak["cl_waiting"], int(pool["cl_waiting"]))
            wait = int(pool.get("maxwait") or 0) + int(pool.get("maxwait_us") or 0) / 1e6
            peak["maxwait_s"] = max(peak["maxwait_s"], wait)
        cur = await asyncio.wait_for(admin.execute("SHOW SERVERS"), 10)
        names = [d.name for d in cur.description]
        counts: collections.Counter = collections.Counter()
        for row in await cur.fetchall():
            server = dict(zip(names, row))
            counts["%s/%s" % (server["database"], server["user"])] += 1
        for key, count in counts.items():
            self.servers[key] = max(self.servers.get(key, 0), count)
        self.samples += 1

    async def run(self) -> dict:
        cfg = self.cfg
        sem = asyncio.Semaphore(cfg["connect_concurrency"])
        started = time.monotonic()
        tasks = [asyncio.create_task(self.client(sem)) for _number in range(cfg["clients"])]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ramp_done.wait(), cfg["ramp_timeout"])
        ramp_s = time.monotonic() - started
        open_at_hold = self.open
        self.holding = True
        print("HOLD %d" % open_at_hold, flush=True)
        sampler = asyncio.create_task(self.sample_admin()) if cfg.get("admin") else None
        await asyncio.sleep(cfg["hold"])
        open_at_end = self.open
        self.holding = False
        self.stop.set()
        done, pending = await asyncio.wait(tasks + ([sampler] if sampler else []), timeout=30)
        for task in pending:
            task.cancel()
        not_attempted = cfg["clients"] - self.attempted
        if not_attempted:
            self.connect_errors["login not attempted within ramp_timeout"] += not_attempted
        lat = sorted(self.latencies)

        def pct(p: float):
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else None

        return {
            "clients": cfg["clients"],
            "connected": self.connected,
            "open_at_hold_start": open_at_hold,
            "open_at_hold_end": open_at_end,
            "peak_open": self.peak_open,
            "ramp_s": round(ramp_s, 2),
            "hold_s": cfg["hold"],
            "connect_errors": dict(self.connect_errors),
            "query_errors": dict(self.query_errors),
            "errors": sum(self.connect_errors.values()) + sum(self.query_errors.values()),
            "queries": self.queries,
            "qps": round(self.queries / cfg["hold"], 1) if cfg["hold"] else None,
            "latency_ms": {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "max": pct(1.0)},
            "admin_samples": self.samples,
            "admin_errors": dict(self.admin_errors),
            "pools_peak": self.pools,
            "servers_peak": self.servers,
            "unfinished_tasks": len(pending),
        }


def main() -> None:
    cfg = json.loads(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, cfg["clients"] + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < cfg["clients"] + 64:
        sys.exit("open file limit %d is too low for %d clients" % (hard, cfg["clients"]))
    result = asyncio.run(FanIn(cfg).run())
    result["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
