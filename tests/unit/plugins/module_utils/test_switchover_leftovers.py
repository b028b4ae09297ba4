"""The pure parts of pgbouncer_switchover and pgbouncer_leftovers: Patroni's answers read, the
redirect block written as blockinfile writes it (so the hand-back's blockinfile removes it), what
an interrupted runbook left. Milliseconds."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _deadman, _leftovers, _switchover  # noqa: E402

MARKER = "; {mark} pgbouncer.cluster switchover: served by the new primary"
INI = "[databases]\nappdb = host=10.0.0.1 port=5432 dbname=appdb\nhealth = host=10.0.0.1 dbname=postgres\n\n[pgbouncer]\nlisten_port = 6432\n"

# Patroni 3.0 (Debian 12) calls the lock holder "leader" in GET /cluster; a member that is
# promoting shows as leader already, a stopped one has no state "running".
CLUSTER = {"members": [
    {"name": "pg-srv1", "role": "replica", "state": "streaming", "host": "10.0.0.1", "api_url": "http://10.0.0.1:8008/patroni"},
    {"name": "pg-srv2", "role": "leader", "state": "running", "host": "10.0.0.2", "port": 5432, "api_url": "http://10.0.0.2:8008/patroni"},
]}


def test_the_leader_is_the_running_lock_holder():
    assert _switchover.leader(CLUSTER)["name"] == "pg-srv2"
    assert _switchover.new_leader(CLUSTER, "pg-srv1")["host"] == "10.0.0.2"
    assert _switchover.new_leader(CLUSTER, "pg-srv2") is None
    stopped = {"members": [dict(CLUSTER["members"][1], state="stopped")]}
    assert _switchover.leader(stopped) is None and _switchover.leader({}) is None


def test_api_base_drops_the_patroni_path():
    assert _switchover.api_base(CLUSTER["members"][1]) == "http://10.0.0.2:8008"
    assert _switchover.api_base({"host": "10.0.0.9"}) == "http://10.0.0.9:8008"


def test_the_block_is_appended_as_blockinfile_writes_it_and_replaced_not_repeated():
    once = _switchover.redirected(INI, MARKER, "10.0.0.1", "10.0.0.2", keep=["health"])
    assert once.startswith(INI)
    block = once[len(INI):].splitlines()
    assert block[0] == MARKER.replace("{mark}", "BEGIN") and block[-1] == MARKER.replace("{mark}", "END")
    assert "appdb = host=10.0.0.2 port=5432 dbname=appdb" in block
    assert not any(line.startswith("health") for line in block)  # kept on the node's own PostgreSQL
    # A second switchover's block replaces the first; removing it gives the file back.
    twice = _switchover.redirected(once, MARKER, "10.0.0.1", "10.0.0.3", keep=["health"])
    assert twice.count(MARKER.replace("{mark}", "BEGIN")) == 1 and "host=10.0.0.3" in twice
    assert _switchover.without_block(twice, MARKER) == INI


def test_a_file_without_the_hosts_entries_has_nothing_to_hand_over():
    assert _switchover.redirected(INI, MARKER, "10.0.0.7", "10.0.0.2") is None


def test_write_like_keeps_mode_and_replaces_atomically(tmp_path):
    path = tmp_path / "pgbouncer.ini"
    path.write_text(INI)
    os.chmod(path, 0o640)
    _switchover.write_like(str(path), INI + "; more\n")
    assert path.read_text().endswith("; more\n") and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [entry.name for entry in tmp_path.iterdir()] == ["pgbouncer.ini"]


def test_leftover_blocks_and_timers_are_read_back():
    text = _switchover.with_block(INI, MARKER, "[databases]\nappdb = host=10.0.0.2\n")
    assert _leftovers.block_markers(text, [MARKER]) == [MARKER.replace("{mark}", "BEGIN")]
    assert _leftovers.block_markers(INI, [MARKER]) == []
    assert _leftovers.without_blocks(text, [MARKER, "; {mark} other"]) == INI
    unit = _deadman.unit_name("pause", "/var/run/postgresql", 6432, "appdb")
    listing = ("%s.timer loaded active waiting pgbouncer.cluster: RESUME\n"
               "pgbouncer-cluster-undo-vip-hold.timer loaded inactive dead x\n" % unit)
    assert _leftovers.armed_timers(listing) == [unit]
    assert _leftovers.describe_timer(unit) == "pause-/var/run/postgresql-6432-appdb"


def test_paused_databases_and_haproxy_servers():
    rows = [{"name": "appdb", "paused": 1}, {"name": "other", "paused": 0}, {"name": "pgbouncer", "paused": 0}]
    assert _leftovers.paused_databases(rows) == ["appdb"]
    configured = {"weight": 100, "initial_weight": 100, "admin_state": "ready", "admin_state_bits": 0,
                  "operational": "up", "health": "enabled", "check_status": "L7OK"}
    assert _leftovers.server_leftovers(configured) == ([], [])
    forced_up = dict(configured, health="disabled")
    assert _leftovers.server_leftovers(forced_up) == (["health check off, forced UP"], [])
    drained = dict(configured, weight=0, admin_state="drain", admin_state_bits=0x08)
    assert _leftovers.server_leftovers(drained) == ([], ["forced drain", "weight 0 instead of 100"])
    # A check turned back on: HAProxy may still show the server UP on a failing check.
    assert not _leftovers.settled(dict(configured, check_status="L7STS"))
    assert _leftovers.settled(dict(configured, check_status="L7STS", operational="down"))
    assert _leftovers.settled(forced_up)
