"""Minimal Django settings for the driver lane: two databases from the environment (the
read-write DSN as "default", the read-only one as "replica"), persistent connections, and
DISABLE_SERVER_SIDE_CURSORS when the run applies the transaction-pooling settings."""

from __future__ import annotations

import json
import os

_CFG = json.loads(os.environ.get("DRIVERS_LANE_DJANGO", "{}"))


def _database(parts):
    return {
        "ENGINE": "django.db.backends.postgresql",  # psycopg 3 when installed (it is, requirements.txt)
        "NAME": parts.get("dbname", ""),
        "USER": parts.get("user", ""),
        "PASSWORD": parts.get("password", ""),
        "HOST": parts.get("host", ""),
        "PORT": str(parts.get("port", "")),
        "CONN_MAX_AGE": None,  # persistent connections
        "CONN_HEALTH_CHECKS": True,
        "DISABLE_SERVER_SIDE_CURSORS": bool(_CFG.get("settings")),
        "OPTIONS": {"connect_timeout": 5},
    }


SECRET_KEY = "drivers-lane-not-secret"  # noqa: S105  (no request is ever served)
USE_TZ = True
INSTALLED_APPS = ["bench.drivers.djangoapp"]
DATABASES = {"default": _database(_CFG.get("dsn", {})), "replica": _database(_CFG.get("read_dsn", {}))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
