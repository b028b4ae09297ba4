"""asyncpg workload: one connection per client task (no pool: asyncpg's own pool would hide
reconnects), the default statement cache or statement_cache_size=0."""

from __future__ import annotations

import asyncio

from bench.drivers import common

FEATURES = ("write", "transaction", "prepared", "server_cursor", "copy", "session_set", "session_set_tracked",
            "startup_options", "read_dsn")


class Client:
    def __init__(self, cfg, worker, connect):
        self.cfg, self.worker, self.connect = cfg, worker, connect
        self.name = cfg["driver"]
        self.conn = self.read = None
        self.tenant = self.zone = None
        self.round = 0

    async def open(self):
        self.conn = await self.connect(self.cfg["dsn"])
        return self

    async def close(self):
        for conn in (self.conn, self.read):
            if conn is not None:
                conn.terminate()

    async def write(self):
        await self.conn.execute("INSERT INTO %s (driver, worker, payload) VALUES ($1, $2, $3)" % common.TABLE, self.name, self.worker, "w")
        return 1

    async def transaction(self):
        async with self.conn.transaction():
            row_id = await self.conn.fetchval("INSERT INTO %s (driver, worker) VALUES ($1, $2) RETURNING id" % common.TABLE, self.name, self.worker)
            try:
                async with self.conn.transaction():  # a savepoint
                    await self.conn.execute("UPDATE %s SET n = -1 WHERE id = $1" % common.TABLE, row_id)
                    raise RuntimeError("roll back to the savepoint")
            except RuntimeError:
                pass
            await self.conn.execute("UPDATE %s SET n = n + 1 WHERE id = $1" % common.TABLE, row_id)
        common.check(1, await self.conn.fetchval("SELECT n FROM %s WHERE id = $1" % common.TABLE, row_id), "committed row")
        return 1

    async def prepared(self):
        sql = "SELECT count(*) FROM %s WHERE worker = $1 AND id > $2" % common.TABLE
        for i in range(common.PREPARED_REPEATS):
            await self.conn.fetchval(sql, self.worker, i)
        return common.PREPARED_REPEATS

    async def server_cursor(self):
        async with self.conn.transaction():
            async for _row in self.conn.cursor("SELECT id, payload FROM %s ORDER BY id DESC LIMIT 500" % common.TABLE, prefetch=100):
                pass
        return 1

    async def copy(self):
        await self.conn.copy_records_to_table(common.TABLE, records=[(self.name, self.worker, "copy %d" % i) for i in range(common.COPY_ROWS)],
                                              columns=["driver", "worker", "payload"])
        sink = bytearray()

        async def collect(data):
            sink.extend(data)

        await self.conn.copy_from_query("SELECT id FROM %s WHERE worker = $1 ORDER BY id DESC LIMIT 50" % common.TABLE, self.worker, output=collect)
        return 2

    async def session_set(self):
        if self.cfg["settings"]:
            tenant = "w%d-%d" % (self.worker, self.round)
            async with self.conn.transaction():
                await self.conn.execute("SET LOCAL app.tenant = '%s'" % tenant)
                common.check(tenant, await self.conn.fetchval("SELECT current_setting('app.tenant', true)"), "SET LOCAL app.tenant")
            return 1
        self.round += 1
        if self.tenant is not None:
            got = await self.conn.fetchval("SELECT current_setting('app.tenant', true)")
            expected, self.tenant = self.tenant, None
            common.check_session(expected, got, "session SET app.tenant")
        self.tenant = "w%d-%d" % (self.worker, self.round)
        await self.conn.execute("SET app.tenant = '%s'" % self.tenant)
        return 1

    async def session_set_tracked(self):
        if self.zone is not None:
            got = await self.conn.fetchval("SHOW TimeZone")
            expected, self.zone = self.zone, None
            common.check_session(expected, got, "session SET TimeZone", common.ZONES)
        self.zone = common.ZONES[(self.worker + self.round) % len(common.ZONES)]
        await self.conn.execute("SET TimeZone = '%s'" % self.zone)
        return 1

    async def startup_options(self):
        # asyncpg sends server_settings as startup parameters of their own (not in "options").
        conn = await self.connect(self.cfg["dsn"], server_settings={"statement_timeout": common.STARTUP_TIMEOUT_MS})
        try:
            got = await conn.fetchval("SHOW statement_timeout")
        finally:
            conn.terminate()
        common.check(common.STARTUP_TIMEOUT_MS + "ms", got, "startup parameter statement_timeout")
        return 1

    async def read_dsn(self):
        if self.read is None:
            self.read = await self.connect(self.cfg["read_dsn"])
        await self.read.fetchval("SELECT count(*) FROM %s WHERE worker = $1" % common.TABLE, self.worker)
        return 1


def run(cfg):
    import asyncpg  # noqa: PLC0415

    kwargs = {"timeout": 5}
    if cfg["driver"] == "asyncpg-nocache" or (cfg["settings"] and common.pooler_line(cfg["pooler_version"]) == "1.18"):
        kwargs["statement_cache_size"] = 0

    async def connect(dsn, **extra):
        return await asyncpg.connect(dsn, **kwargs, **extra)

    async def client(worker):
        return await Client(cfg, worker, connect).open()

    stats = asyncio.run(common.run_tasks(client, FEATURES, cfg["clients"], cfg["seconds"]))
    return "asyncpg", {"statement_cache_size": kwargs.get("statement_cache_size", 100)}, stats
