"""psycopg 3 and psycopg2 workloads (DB-API): one client class, the differences in small methods."""

from __future__ import annotations

import io

from bench.drivers import common

FEATURES_PSYCOPG3 = ("write", "transaction", "prepared", "server_cursor", "copy", "session_set",
                     "session_set_tracked", "startup_options", "read_dsn")
FEATURES_PSYCOPG2 = ("write", "transaction", "sql_prepare", "server_cursor", "copy", "session_set",
                     "session_set_tracked", "startup_options", "read_dsn")


class Client:
    """One application connection (autocommit; transactions are explicit) and its read connection."""

    def __init__(self, cfg, worker, connect):
        self.cfg, self.worker, self.connect = cfg, worker, connect
        self.name = cfg["driver"]
        self.conn = connect(cfg["dsn"])
        self.read = None
        self.tenant = self.zone = None
        self.round = 0

    def close(self):
        for conn in (self.conn, self.read):
            if conn is not None:
                conn.close()

    def execute(self, sql, params=None, conn=None):
        cur = (conn or self.conn).cursor()
        cur.execute(sql, params)
        return cur

    def write(self):
        self.execute("INSERT INTO %s (driver, worker, payload) VALUES (%%s, %%s, %%s)" % common.TABLE,
                     (self.name, self.worker, "w"))
        return 1

    def transaction(self):
        self.execute("BEGIN")
        try:
            row_id = self.execute("INSERT INTO %s (driver, worker) VALUES (%%s, %%s) RETURNING id" % common.TABLE,
                                  (self.name, self.worker)).fetchone()[0]
            self.execute("SAVEPOINT s1")
            self.execute("UPDATE %s SET n = -1 WHERE id = %%s" % common.TABLE, (row_id,))
            self.execute("ROLLBACK TO SAVEPOINT s1")
            self.execute("UPDATE %s SET n = n + 1 WHERE id = %%s" % common.TABLE, (row_id,))
            self.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        common.check(1, self.execute("SELECT n FROM %s WHERE id = %%s" % common.TABLE, (row_id,)).fetchone()[0], "committed row")
        return 1

    def rollback(self):
        try:
            self.execute("ROLLBACK")
        except Exception:  # noqa: BLE001  (the caller re-raises the first error)
            self.close()

    def prepared(self):
        sql = "SELECT count(*) FROM %s WHERE worker = %%s AND id > %%s" % common.TABLE
        for i in range(common.PREPARED_REPEATS):
            self.execute(sql, (self.worker, i))
        return common.PREPARED_REPEATS

    def sql_prepare(self):
        name = "lane_%d" % self.worker
        self.execute("PREPARE %s (int) AS SELECT count(*) FROM %s WHERE worker = $1" % (name, common.TABLE))
        try:
            for _row in range(3):
                self.execute("EXECUTE %s (%%s)" % name, (self.worker,))
        finally:
            self.execute("DEALLOCATE %s" % name)
        return 5

    def server_cursor(self):
        self.execute("BEGIN")
        try:
            cur = self.named_cursor("lane_cur_%d" % self.worker)
            cur.execute("SELECT id, payload FROM %s ORDER BY id DESC LIMIT 500" % common.TABLE)
            while cur.fetchmany(100):
                pass
            cur.close()
            self.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        return 1

    def session_set(self):
        if self.cfg["settings"]:
            self.execute("BEGIN")
            tenant = "w%d-%d" % (self.worker, self.round)
            self.execute("SELECT set_config('app.tenant', %s, true)", (tenant,))
            common.check(tenant, self.execute("SELECT current_setting('app.tenant', true)").fetchone()[0], "SET LOCAL app.tenant")
            self.execute("COMMIT")
            return 1
        self.round += 1
        if self.tenant is not None:
            got = self.execute("SELECT current_setting('app.tenant', true)").fetchone()[0]
            expected, self.tenant = self.tenant, None
            common.check_session(expected, got, "session SET app.tenant")
        self.tenant = "w%d-%d" % (self.worker, self.round)
        self.execute("SET app.tenant = '%s'" % self.tenant)
        return 1

    def session_set_tracked(self):
        if self.zone is not None:
            got = self.execute("SHOW TimeZone").fetchone()[0]
            expected, self.zone = self.zone, None
            common.check_session(expected, got, "session SET TimeZone", common.ZONES)
        self.zone = common.ZONES[(self.worker + self.round) % len(common.ZONES)]
        self.execute("SET TimeZone = '%s'" % self.zone)
        return 1

    def startup_options(self):
        conn = self.connect(self.cfg["dsn"], options="-c statement_timeout=%s" % common.STARTUP_TIMEOUT_MS)
        try:
            got = self.execute("SHOW statement_timeout", conn=conn).fetchone()[0]
        finally:
            conn.close()
        common.check(common.STARTUP_TIMEOUT_MS + "ms", got, "startup option statement_timeout")
        return 1

    def read_dsn(self):
        if self.read is None:
            self.read = self.connect(self.cfg["read_dsn"])
        self.execute("SELECT count(*) FROM %s WHERE worker = %%s" % common.TABLE, (self.worker,), conn=self.read).fetchone()
        return 1


class Psycopg3Client(Client):
    def named_cursor(self, name):
        return self.conn.cursor(name=name)

    def copy(self):
        cur = self.conn.cursor()
        with cur.copy("COPY %s (driver, worker, payload) FROM STDIN" % common.TABLE) as copy:
            for i in range(common.COPY_ROWS):
                copy.write_row((self.name, self.worker, "copy %d" % i))
        out = io.BytesIO()
        with cur.copy("COPY (SELECT id FROM %s WHERE worker = %d ORDER BY id DESC LIMIT 50) TO STDOUT" % (common.TABLE, self.worker)) as copy:
            for data in copy:
                out.write(data)
        return 2


class Psycopg2Client(Client):
    def server_cursor(self):
        # psycopg2 refuses a named cursor in autocommit: the driver's own transaction.
        self.conn.autocommit = False
        try:
            with self.conn.cursor(name="lane_cur_%d" % self.worker) as cur:
                cur.itersize = 100
                cur.execute("SELECT id, payload FROM %s ORDER BY id DESC LIMIT 500" % common.TABLE)
                for _row in cur:
                    pass
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        finally:
            self.conn.autocommit = True
        return 1

    def copy(self):
        cur = self.conn.cursor()
        rows = "".join("%s\t%d\tcopy %d\n" % (self.name, self.worker, i) for i in range(common.COPY_ROWS))
        cur.copy_expert("COPY %s (driver, worker, payload) FROM STDIN" % common.TABLE, io.StringIO(rows))
        cur.copy_expert("COPY (SELECT id FROM %s WHERE worker = %d ORDER BY id DESC LIMIT 50) TO STDOUT" % (common.TABLE, self.worker),
                        io.StringIO())
        return 2


def run_psycopg3(cfg):
    import psycopg  # noqa: PLC0415  (the driver is imported only when it runs)

    kwargs = {"autocommit": True, "connect_timeout": 5}
    if cfg["driver"] == "psycopg3-prepare0":
        kwargs["prepare_threshold"] = 0
    if cfg["settings"] and common.pooler_line(cfg["pooler_version"]) == "1.18":
        kwargs["prepare_threshold"] = None

    def connect(dsn, **extra):
        return psycopg.connect(dsn, **kwargs, **extra)

    stats = common.run_threads(lambda worker: Psycopg3Client(cfg, worker, connect), FEATURES_PSYCOPG3, cfg["clients"], cfg["seconds"])
    return "psycopg", {"prepare_threshold": kwargs.get("prepare_threshold", 5)}, stats


def run_psycopg2(cfg):
    import psycopg2  # noqa: PLC0415

    def connect(dsn, **extra):
        conn = psycopg2.connect(dsn, connect_timeout=5, **extra)
        conn.autocommit = True
        return conn

    stats = common.run_threads(lambda worker: Psycopg2Client(cfg, worker, connect), FEATURES_PSYCOPG2, cfg["clients"], cfg["seconds"])
    return "psycopg2-binary", {}, stats
