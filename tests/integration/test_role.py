"""The pgbouncer role on the lab nodes: service, files, userlist, real pooling."""

from __future__ import annotations

import sys

import pytest

from conftest import ADMIN_PASSWORD, ADMIN_USER, APP_DB, APP_PASSWORD, APP_USER, NODES, ROOT, app_python, psql, ssh

# Version-dependent: Debian's pgbouncer package (its shipped config and unit) differs between releases.
pytestmark = pytest.mark.version_dependent

sys.path.insert(0, str(ROOT / ".ansible" / "collections"))
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _userlist  # noqa: E402

DEFAULT_POOL_SIZE = 20  # roles/pgbouncer/defaults/main.yml
CONFIG = "/etc/pgbouncer/pgbouncer.ini"
USERLIST = "/etc/pgbouncer/userlist.txt"


@pytest.mark.parametrize("name", sorted(NODES))
def test_service_is_active_and_enabled(hosts, name):
    service = hosts[name].service("pgbouncer")
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize("name", sorted(NODES))
def test_config_points_at_this_node(hosts, name):
    ip = NODES[name]
    ini = hosts[name].file(CONFIG)
    assert ini.user == "postgres" and ini.mode == 0o640
    text = ini.content_string
    databases = text.split("[databases]", 1)[1].split("[pgbouncer]", 1)[0]
    assert "* = host=%s port=5432" % ip in databases
    assert "listen_addr = %s,127.0.0.1\n" % ip in text
    assert "listen_port = 6432\n" in text
    # Listening on the node's address and on 127.0.0.1 (pgbouncer_listen_localhost), never on every address.
    assert hosts[name].socket("tcp://%s:6432" % ip).is_listening
    assert hosts[name].socket("tcp://127.0.0.1:6432").is_listening
    assert not hosts[name].socket("tcp://0.0.0.0:6432").is_listening


@pytest.mark.parametrize("name", sorted(NODES))
def test_local_checks_of_the_setup_guides_work(name):
    """Issue 15: `psql -h localhost -p 6432` and the console's SHOW POOLS on 127.0.0.1, run on
    the node itself, work with the defaults. About 1 s per node."""
    ip = NODES[name]
    app = ssh(ip, "PGPASSWORD=%s PGCONNECT_TIMEOUT=3 psql -h localhost -p 6432 -U %s %s -tAc 'select 1'"
              % (APP_PASSWORD, APP_USER, APP_DB))
    assert app.stdout.strip() == "1"
    pools = ssh(ip, "PGPASSWORD=%s PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p 6432 -U %s pgbouncer -c 'SHOW POOLS'"
                % (ADMIN_PASSWORD, ADMIN_USER))
    assert "cl_active" in pools.stdout


@pytest.mark.parametrize("name", sorted(NODES))
def test_packaged_config_kept_once(hosts, name):
    orig = hosts[name].file(CONFIG + ".orig")
    assert orig.exists
    # The packaged sample, not ours: it still has the package's localhost listener.
    assert "listen_addr = localhost" in orig.content_string
    assert "ansible" not in orig.content_string.lower()


@pytest.mark.parametrize("name", sorted(NODES))
def test_userlist_matches_pg_shadow(hosts, name):
    userlist = hosts[name].file(USERLIST)
    assert (userlist.user, userlist.group, userlist.mode) == ("postgres", "postgres", 0o640)
    entries = _userlist.parse(userlist.content_string)
    # Superusers and roles whose password has expired never go in (pgbouncer_userlist's default).
    shadow = psql(NODES[name], "SELECT usename, passwd FROM pg_shadow WHERE passwd IS NOT NULL AND NOT usesuper "
                               "AND (valuntil IS NULL OR valuntil > now()) ORDER BY usename")
    assert entries == sorted((user, secret) for user, secret in shadow)
    kinds = {user: _userlist.secret_kind(secret) for user, secret in entries}
    assert kinds["app_user"] == "scram-sha-256"
    assert kinds["report_user"] == "md5"
    # The quote in the name is doubled in the file and survives the round trip.
    assert 'odd"user' in kinds
    assert '"odd""user" ' in userlist.content_string


POOL_SCRIPT = r"""
import json, sys, threading, time
import psycopg

host, clients, user, password, db, admin, admin_password = sys.argv[1:8]
clients = int(clients)
pids, errors, samples = set(), [], []
lock = threading.Lock()
start = threading.Barrier(clients + 1)
done = threading.Event()

def client():
    try:
        with psycopg.connect(host=host, port=6432, user=user, password=password, dbname=db,
                             connect_timeout=10, autocommit=False) as conn:
            start.wait(timeout=30)
            for _ in range(5):
                with conn.transaction():
                    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
                    conn.execute("SELECT pg_sleep(0.05)")
                with lock:
                    pids.add(pid)
    except Exception as exc:
        with lock:
            errors.append(repr(exc))

def sample_pools():
    with psycopg.connect(host=host, port=6432, user=admin, password=admin_password, dbname="pgbouncer",
                         autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        while not done.is_set():
            cur = conn.execute("SHOW POOLS")
            cols = [c.name for c in cur.description]
            for row in cur.fetchall():
                row = dict(zip(cols, row))
                if row["database"] == db and row["user"] == user:
                    samples.append(sum(v for k, v in row.items() if k.startswith("sv_") and isinstance(v, int)))
            time.sleep(0.05)

threads = [threading.Thread(target=client) for _ in range(clients)]
sampler = threading.Thread(target=sample_pools)
sampler.start()
for t in threads:
    t.start()
try:
    start.wait(timeout=30)
except threading.BrokenBarrierError:
    pass
for t in threads:
    t.join(timeout=60)
done.set()
sampler.join(timeout=10)
print(json.dumps({"pids": len(pids), "errors": errors, "max_sv": max(samples or [0]), "samples": len(samples)}))
"""


def test_sixty_clients_share_at_most_default_pool_size_servers():
    """60 concurrent clients in transactions through one node: all succeed, and PostgreSQL
    sees no more backends than default_pool_size (pids and SHOW POOLS sv_* agree)."""
    result = app_python(POOL_SCRIPT, NODES["pg-srv1"], 60, APP_USER, APP_PASSWORD, APP_DB, ADMIN_USER, ADMIN_PASSWORD)
    assert result["errors"] == []
    # Real concurrency (several backends), yet never more than the pool.
    assert 5 <= result["pids"] <= DEFAULT_POOL_SIZE
    assert result["samples"] > 0
    assert 1 <= result["max_sv"] <= DEFAULT_POOL_SIZE
