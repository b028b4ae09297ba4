"""Django ORM workload: persistent connections (CONN_MAX_AGE=None), atomic(), .iterator() inside
and outside atomic(), COPY through the backend's psycopg cursor, reads through `.using("replica")`.
One thread per client; Django gives each thread its own connection."""

from __future__ import annotations

import json
import os

from bench.drivers import common

FEATURES = ("write", "transaction", "prepared", "server_cursor", "server_cursor_autocommit", "copy", "session_set",
            "session_set_tracked", "read_dsn")


class Client:
    def __init__(self, cfg, worker, dj):
        self.cfg, self.worker, self.dj = cfg, worker, dj
        self.name = cfg["driver"]
        self.tenant = self.zone = None
        self.round = 0

    def close(self):
        for alias in ("default", "replica"):
            self.dj["connections"][alias].close()

    def cursor(self):
        return self.dj["connections"]["default"].cursor()

    def scalar(self, sql, params=None):
        with self.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()[0]

    def write(self):
        self.dj["LaneRow"].objects.create(driver=self.name, worker=self.worker, payload="w")
        return 1

    def transaction(self):
        model, atomic = self.dj["LaneRow"], self.dj["atomic"]
        with atomic():
            row = model.objects.create(driver=self.name, worker=self.worker)
            try:
                with atomic():  # a savepoint
                    model.objects.filter(id=row.id).update(n=-1)
                    raise RuntimeError("roll back to the savepoint")
            except RuntimeError:
                pass
            model.objects.filter(id=row.id).update(n=self.dj["F"]("n") + 1)
        common.check(1, model.objects.get(id=row.id).n, "committed row")
        return 1

    def prepared(self):
        model = self.dj["LaneRow"]
        for i in range(common.PREPARED_REPEATS):
            model.objects.filter(worker=self.worker, id__gt=i).count()
        return common.PREPARED_REPEATS

    def server_cursor(self):
        with self.dj["atomic"]():
            for _row in self.dj["LaneRow"].objects.order_by("-id")[:500].iterator(chunk_size=100):
                pass
        return 1

    def server_cursor_autocommit(self):
        for _row in self.dj["LaneRow"].objects.order_by("-id")[:500].iterator(chunk_size=100):
            pass
        return 1

    def copy(self):
        with self.cursor() as cur:
            with cur.copy("COPY %s (driver, worker, payload, created) FROM STDIN" % common.TABLE) as copy:
                for i in range(common.COPY_ROWS):
                    copy.write_row((self.name, self.worker, "copy %d" % i, "now"))
            with cur.copy("COPY (SELECT id FROM %s WHERE worker = %d ORDER BY id DESC LIMIT 50) TO STDOUT" % (common.TABLE, self.worker)) as copy:
                for _row in copy:
                    pass
        return 2

    def session_set(self):
        if self.cfg["settings"]:
            tenant = "w%d-%d" % (self.worker, self.round)
            with self.dj["atomic"]():
                self.scalar("SELECT set_config('app.tenant', %s, true)", [tenant])
                common.check(tenant, self.scalar("SELECT current_setting('app.tenant', true)"), "SET LOCAL app.tenant")
            return 1
        self.round += 1
        if self.tenant is not None:
            got = self.scalar("SELECT current_setting('app.tenant', true)")
            expected, self.tenant = self.tenant, None
            common.check_session(expected, got, "session SET app.tenant")
        self.tenant = "w%d-%d" % (self.worker, self.round)
        with self.cursor() as cur:
            cur.execute("SET app.tenant = '%s'" % self.tenant)
        return 1

    def session_set_tracked(self):
        if self.zone is not None:
            got = self.scalar("SHOW TimeZone")
            expected, self.zone = self.zone, None
            common.check_session(expected, got, "session SET TimeZone", common.ZONES)
        self.zone = common.ZONES[(self.worker + self.round) % len(common.ZONES)]
        with self.cursor() as cur:
            cur.execute("SET TimeZone = '%s'" % self.zone)
        return 1

    def read_dsn(self):
        self.dj["LaneRow"].objects.using("replica").filter(worker=self.worker).count()
        return 1


def run(cfg):
    os.environ["DRIVERS_LANE_DJANGO"] = json.dumps({"dsn": common.dsn_parts(cfg["dsn"]), "read_dsn": common.dsn_parts(cfg["read_dsn"]),
                                                    "settings": cfg["settings"]})
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.drivers.djangoapp.settings"
    import django  # noqa: PLC0415

    django.setup()
    from django.db import connections, transaction  # noqa: PLC0415
    from django.db.models import F  # noqa: PLC0415

    from bench.drivers.djangoapp.models import LaneRow  # noqa: PLC0415

    dj = {"connections": connections, "atomic": transaction.atomic, "F": F, "LaneRow": LaneRow}
    stats = common.run_threads(lambda worker: Client(cfg, worker, dj), FEATURES, cfg["clients"], cfg["seconds"])
    backend = connections["default"].Database.__name__
    return "django", {"CONN_MAX_AGE": None, "DISABLE_SERVER_SIDE_CURSORS": bool(cfg["settings"]), "backend_driver": backend}, stats
