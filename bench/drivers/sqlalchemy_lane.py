"""SQLAlchemy 2 workloads: the psycopg (3) dialect with a QueuePool, the asyncpg dialect with
an async engine (AsyncAdaptedQueuePool). A client checks a connection out of the engine's
pool for each round's feature, as an application does per request, except the session SET
checks, which keep one checked-out connection (see Client.session)."""

from __future__ import annotations

import asyncio
import uuid

from bench.drivers import common

FEATURES = ("write", "transaction", "prepared", "server_cursor", "copy", "session_set", "session_set_tracked", "read_dsn")
INSERT = "INSERT INTO %s (driver, worker, payload) VALUES (:driver, :worker, :payload)" % common.TABLE
INSERT_ID = "INSERT INTO %s (driver, worker) VALUES (:driver, :worker) RETURNING id" % common.TABLE
COUNT = "SELECT count(*) FROM %s WHERE worker = :worker AND id > :id" % common.TABLE
SCAN = "SELECT id, payload FROM %s ORDER BY id DESC LIMIT 500" % common.TABLE


def url(dsn, dialect):
    return dsn.replace("postgresql://", "postgresql+%s://" % dialect, 1).replace("postgres://", "postgresql+%s://" % dialect, 1)


class SyncClient:
    def __init__(self, cfg, worker, engines, sa):
        self.cfg, self.worker, self.sa = cfg, worker, sa
        self.engine, self.read_engine = engines
        self.name = cfg["driver"]
        self.session = self.engine.connect()  # held for the session SET checks
        self.tenant = self.zone = None
        self.round = 0

    def close(self):
        self.session.invalidate()
        self.session.close()

    def write(self):
        with self.engine.begin() as conn:
            conn.execute(self.sa.text(INSERT), {"driver": self.name, "worker": self.worker, "payload": "w"})
        return 1

    def transaction(self):
        text = self.sa.text
        with self.engine.begin() as conn:
            row_id = conn.execute(text(INSERT_ID), {"driver": self.name, "worker": self.worker}).scalar_one()
            savepoint = conn.begin_nested()
            conn.execute(text("UPDATE %s SET n = -1 WHERE id = :id" % common.TABLE), {"id": row_id})
            savepoint.rollback()
            conn.execute(text("UPDATE %s SET n = n + 1 WHERE id = :id" % common.TABLE), {"id": row_id})
        with self.engine.connect() as conn:
            common.check(1, conn.execute(text("SELECT n FROM %s WHERE id = :id" % common.TABLE), {"id": row_id}).scalar_one(), "committed row")
        return 1

    def prepared(self):
        with self.engine.connect() as conn:
            for i in range(common.PREPARED_REPEATS):
                conn.execute(self.sa.text(COUNT), {"worker": self.worker, "id": i}).scalar_one()
            conn.commit()
        return common.PREPARED_REPEATS

    def server_cursor(self):
        with self.engine.begin() as conn:
            for _row in conn.execution_options(stream_results=True, yield_per=100).execute(self.sa.text(SCAN)):
                pass
        return 1

    def copy(self):
        with self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            with cur.copy("COPY %s (driver, worker, payload) FROM STDIN" % common.TABLE) as copy:
                for i in range(common.COPY_ROWS):
                    copy.write_row((self.name, self.worker, "copy %d" % i))
            with cur.copy("COPY (SELECT id FROM %s WHERE worker = %d ORDER BY id DESC LIMIT 50) TO STDOUT" % (common.TABLE, self.worker)) as copy:
                for _row in copy:
                    pass
        return 2

    def session_set(self):
        text, conn = self.sa.text, self.session
        if self.cfg["settings"]:
            tenant = "w%d-%d" % (self.worker, self.round)
            with conn.begin():
                conn.execute(text("SELECT set_config('app.tenant', :t, true)"), {"t": tenant})
                common.check(tenant, conn.execute(text("SELECT current_setting('app.tenant', true)")).scalar_one(), "SET LOCAL app.tenant")
            return 1
        self.round += 1
        with conn.begin():
            if self.tenant is not None:
                got = conn.execute(text("SELECT current_setting('app.tenant', true)")).scalar_one()
                expected, self.tenant = self.tenant, None
                common.check_session(expected, got, "session SET app.tenant")
        self.tenant = "w%d-%d" % (self.worker, self.round)
        with conn.begin():
            conn.execute(text("SET app.tenant = '%s'" % self.tenant))
        return 1

    def session_set_tracked(self):
        text, conn = self.sa.text, self.session
        with conn.begin():
            if self.zone is not None:
                got = conn.execute(text("SHOW TimeZone")).scalar_one()
                expected, self.zone = self.zone, None
                common.check_session(expected, got, "session SET TimeZone", common.ZONES)
        self.zone = common.ZONES[(self.worker + self.round) % len(common.ZONES)]
        with conn.begin():
            conn.execute(text("SET TimeZone = '%s'" % self.zone))
        return 1

    def read_dsn(self):
        with self.read_engine.connect() as conn:
            conn.execute(self.sa.text("SELECT count(*) FROM %s WHERE worker = :worker" % common.TABLE), {"worker": self.worker}).scalar_one()
        return 1


def run_psycopg(cfg):
    import sqlalchemy as sa  # noqa: PLC0415

    connect_args = {"connect_timeout": 5}
    if cfg["settings"] and common.pooler_line(cfg["pooler_version"]) == "1.18":
        connect_args["prepare_threshold"] = None
    pool = {"pool_size": cfg["clients"] * 2, "max_overflow": cfg["clients"], "pool_pre_ping": True}
    engines = (sa.create_engine(url(cfg["dsn"], "psycopg"), connect_args=connect_args, **pool),
               sa.create_engine(url(cfg["read_dsn"], "psycopg"), connect_args=connect_args, **pool))
    try:
        stats = common.run_threads(lambda worker: SyncClient(cfg, worker, engines, sa), FEATURES, cfg["clients"], cfg["seconds"])
    finally:
        for engine in engines:
            engine.dispose()
    return "sqlalchemy", {"dialect": "postgresql+psycopg", "connect_args": {k: v for k, v in connect_args.items() if k != "connect_timeout"}}, stats


class AsyncClient:
    def __init__(self, cfg, worker, engines, sa):
        self.cfg, self.worker, self.sa = cfg, worker, sa
        self.engine, self.read_engine = engines
        self.name = cfg["driver"]
        self.session = None
        self.tenant = self.zone = None
        self.round = 0

    async def open(self):
        self.session = await self.engine.connect()
        return self

    async def close(self):
        await self.session.invalidate()
        await self.session.close()

    async def write(self):
        async with self.engine.begin() as conn:
            await conn.execute(self.sa.text(INSERT), {"driver": self.name, "worker": self.worker, "payload": "w"})
        return 1

    async def transaction(self):
        text = self.sa.text
        async with self.engine.begin() as conn:
            row_id = (await conn.execute(text(INSERT_ID), {"driver": self.name, "worker": self.worker})).scalar_one()
            savepoint = await conn.begin_nested()
            await conn.execute(text("UPDATE %s SET n = -1 WHERE id = :id" % common.TABLE), {"id": row_id})
            await savepoint.rollback()
            await conn.execute(text("UPDATE %s SET n = n + 1 WHERE id = :id" % common.TABLE), {"id": row_id})
        async with self.engine.connect() as conn:
            got = (await conn.execute(text("SELECT n FROM %s WHERE id = :id" % common.TABLE), {"id": row_id})).scalar_one()
        common.check(1, got, "committed row")
        return 1

    async def prepared(self):
        async with self.engine.connect() as conn:
            for i in range(common.PREPARED_REPEATS):
                (await conn.execute(self.sa.text(COUNT), {"worker": self.worker, "id": i})).scalar_one()
            await conn.commit()
        return common.PREPARED_REPEATS

    async def server_cursor(self):
        async with self.engine.begin() as conn:
            result = await conn.stream(self.sa.text(SCAN))
            async for _row in result:
                pass
        return 1

    async def copy(self):
        async with self.engine.begin() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            await raw.copy_records_to_table(common.TABLE, records=[(self.name, self.worker, "copy %d" % i) for i in range(common.COPY_ROWS)],
                                            columns=["driver", "worker", "payload"])
        return 1

    async def session_set(self):
        text, conn = self.sa.text, self.session
        if self.cfg["settings"]:
            tenant = "w%d-%d" % (self.worker, self.round)
            async with conn.begin():
                await conn.execute(text("SELECT set_config('app.tenant', :t, true)"), {"t": tenant})
                got = (await conn.execute(text("SELECT current_setting('app.tenant', true)"))).scalar_one()
                common.check(tenant, got, "SET LOCAL app.tenant")
            return 1
        self.round += 1
        async with conn.begin():
            if self.tenant is not None:
                got = (await conn.execute(text("SELECT current_setting('app.tenant', true)"))).scalar_one()
                expected, self.tenant = self.tenant, None
                common.check_session(expected, got, "session SET app.tenant")
        self.tenant = "w%d-%d" % (self.worker, self.round)
        async with conn.begin():
            await conn.execute(text("SET app.tenant = '%s'" % self.tenant))
        return 1

    async def session_set_tracked(self):
        text, conn = self.sa.text, self.session
        async with conn.begin():
            if self.zone is not None:
                got = (await conn.execute(text("SHOW TimeZone"))).scalar_one()
                expected, self.zone = self.zone, None
                common.check_session(expected, got, "session SET TimeZone", common.ZONES)
        self.zone = common.ZONES[(self.worker + self.round) % len(common.ZONES)]
        async with conn.begin():
            await conn.execute(text("SET TimeZone = '%s'" % self.zone))
        return 1

    async def read_dsn(self):
        async with self.read_engine.connect() as conn:
            (await conn.execute(self.sa.text("SELECT count(*) FROM %s WHERE worker = :worker" % common.TABLE), {"worker": self.worker})).scalar_one()
        return 1


def run_asyncpg(cfg):
    import sqlalchemy as sa  # noqa: PLC0415
    from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415

    connect_args, query = {"timeout": 5}, ""
    if cfg["settings"] and common.pooler_line(cfg["pooler_version"]) == "1.18":
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = lambda: "__asyncpg_%s__" % uuid.uuid4()
        query = "prepared_statement_cache_size=0"

    def make(dsn):
        target = url(dsn, "asyncpg")
        if query:
            target += ("&" if "?" in target else "?") + query
        return create_async_engine(target, connect_args=connect_args, pool_size=cfg["clients"] * 2, max_overflow=cfg["clients"], pool_pre_ping=True)

    async def main():
        engines = (make(cfg["dsn"]), make(cfg["read_dsn"]))
        try:
            return await common.run_tasks(lambda worker: AsyncClient(cfg, worker, engines, sa).open(), FEATURES, cfg["clients"], cfg["seconds"])
        finally:
            for engine in engines:
                await engine.dispose()

    stats = asyncio.run(main())
    shown = {k: ("uuid4 names" if callable(v) else v) for k, v in connect_args.items() if k != "timeout"}
    return "sqlalchemy", {"dialect": "postgresql+asyncpg", "connect_args": shown, "url_query": query}, stats
