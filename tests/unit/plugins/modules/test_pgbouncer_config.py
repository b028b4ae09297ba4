"""pgbouncer_config: renders, checks and writes every process's pgbouncer.ini in one module.
A stand-in pgbouncer (a shell script) takes the dry start; the node's addresses, the port's
holder and the admin console are faked. Under 5 s."""

from __future__ import annotations

import getpass
import grp
import io
import json
import os
import stat
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _keys, _processes, _render  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.modules import pgbouncer_config  # noqa: E402

# As root the test can hand the file to another group, which proves the group is set before the move too.
GROUP = "nogroup" if os.geteuid() == 0 else grp.getgrgid(os.getgid()).gr_name
SECRET = "S3cr-it's \\ \"x\" a=b"
NODE = ["10.129.0.21", "127.0.0.1", "::1"]
# Comes up unless the file has a value PgBouncer refuses; logs each start in its directory.
FAKE = """#!/bin/sh
if [ "$1" = --version ]; then echo "PgBouncer 1.24.1"; echo "libevent 2.1.12-stable"; exit 0; fi
echo "$1" >> "$(dirname "$0")/starts"
if grep -q '^tcp_keepidle = soon' "$1"; then
  echo "2026-01-01 00:00:00.000 UTC [1] ERROR invalid value \\"soon\\" for parameter tcp_keepidle in configuration ($1:30)"
  echo "2026-01-01 00:00:00.000 UTC [1] FATAL cannot load config file"
  exit 1
fi
echo "2026-01-01 00:00:00.000 UTC [1] LOG process up: PgBouncer 1.24.1"
exec sleep 30
"""


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A config directory, a stand-in pgbouncer, and the fakes of what the node would say."""
    binary = tmp_path / "bin" / "pgbouncer"
    binary.parent.mkdir()
    binary.write_text(FAKE)
    binary.chmod(0o755)
    (tmp_path / "etc").mkdir()
    monkeypatch.setattr(pgbouncer_config, "node_addresses", lambda module: set(NODE))
    monkeypatch.setattr(pgbouncer_config._listen, "port_problem", lambda port: None)
    monkeypatch.setattr(pgbouncer_config, "live_changeable", lambda module, current, proc: None)
    return tmp_path


def starts(node):
    path = node / "bin" / "starts"
    return path.read_text().splitlines() if path.exists() else []


def args(node, **extra):
    base = dict(
        settings={"listen_addr": "10.129.0.21,127.0.0.1", "listen_port": 6432, "auth_type": "scram-sha-256",
                  "stats_period": 60, "unix_socket_mode": "0770", "log_connections": True},
        databases=[{"name": "appdb", "host": "10.129.0.22", "port": 5432, "user": "app_user", "password": SECRET}],
        wildcard={"host": "10.129.0.21", "port": 5432},
        layout={"config_dir": str(node / "etc"), "unix_socket_dir": str(node / "run")},
        header=["Ansible managed", "PgBouncer on pg-srv1. The packaged file is kept as pgbouncer.ini.orig."],
        owner=getpass.getuser(), group=GROUP, binary=str(node / "bin" / "pgbouncer"),
    )
    base.update(extra)
    return base


def run(module_args, check=False, diff=False):
    module_args = dict(module_args, _ansible_check_mode=check, _ansible_diff=diff)
    out = io.StringIO()
    with patch_module_args(module_args), redirect_stdout(out), pytest.raises(SystemExit):
        pgbouncer_config.main()
    text = out.getvalue()
    return json.loads(text), text


def expected(module_args, processes=1):
    layout = _processes.layout(processes, **module_args["layout"])
    return [_render.render(proc, layout, module_args["settings"], module_args["databases"], [], module_args["wildcard"],
                           False, module_args["header"]) for proc in layout]


def test_first_write_then_nothing_to_do(node):
    module_args = args(node)
    first, _text = run(module_args)
    ini = node / "etc" / "pgbouncer.ini"
    assert first["changed"] and first["files"] == [str(ini)]
    assert ini.read_text() == expected(module_args)[0]
    assert stat.S_IMODE(ini.stat().st_mode) == 0o640 and grp.getgrgid(ini.stat().st_gid).gr_name == GROUP
    # A new file: every restart-only key it sets is new.
    assert first["restart_required"] and {"listen_addr", "listen_port", "unix_socket_mode"} <= set(first["restart_keys"])
    assert first["version"] == "1.24.1"
    assert len(starts(node)) == 1

    again, _text = run(module_args)
    assert (again["changed"], again["files"], again["restart_required"], again["restart_keys"]) == (False, [], False, [])
    assert len(starts(node)) == 1, "an unchanged file is not dry-started again"


def test_reloadable_change_reloads_restart_only_change_restarts(node):
    run(args(node))
    reload, _text = run(args(node, settings=dict(args(node)["settings"], stats_period=61)))
    assert reload["changed"] and not reload["restart_required"] and reload["restart_keys"] == []
    restart, _text = run(args(node, settings=dict(args(node)["settings"], stats_period=61, unix_socket_mode="0700")))
    assert restart["restart_required"] and restart["restart_keys"] == ["unix_socket_mode"]


def test_show_config_adds_keys_the_table_lacks(node, monkeypatch):
    run(args(node))
    seen = []

    def changeable(module, current, proc):
        seen.append(proc["config_file"])
        return {"stats_period": False, "unix_socket_mode": False}

    monkeypatch.setattr(pgbouncer_config, "live_changeable", changeable)
    result, _text = run(args(node, settings=dict(args(node)["settings"], stats_period=61)))
    assert result["restart_keys"] == ["stats_period"] and seen == [str(node / "etc" / "pgbouncer.ini")]


def test_the_table_follows_the_version():
    assert "peer_id" not in _keys.restart_only("1.18.0") and "peer_id" in _keys.restart_only("1.24.1")
    assert "listen_addr" in _keys.restart_only("1.18.0") and "auth_query" in _keys.restart_only("1.18.0")
    assert _keys.changeable([{"key": "listen_port", "value": "6432", "changeable": "no"},
                             {"key": "stats_period", "value": "60", "changeable": "yes"}]) == {
        "listen_port": False, "stats_period": True}


def test_check_mode_changes_nothing_and_shows_the_diff_masked(node):
    run(args(node))
    ini = node / "etc" / "pgbouncer.ini"
    before = ini.read_text()
    new_secret = "Other-S3cr 'y'"
    databases = [dict(args(node)["databases"][0], password=new_secret)]
    settings = dict(args(node)["settings"], listen_port=6433)
    result, text = run(args(node, databases=databases, settings=settings), check=True, diff=True)
    assert ini.read_text() == before
    assert result["changed"] and result["files"] == [str(ini)] and result["restart_keys"] == ["listen_port"]
    assert "S3cr" not in text
    diff = result["diff"][0]["prepared"].splitlines()
    assert "-appdb = host=10.129.0.22 port=5432 user=app_user password=********" in diff
    assert "+appdb = host=10.129.0.22 port=5432 user=app_user password=********" in diff
    assert "+listen_port = 6433" in diff
    assert len(starts(node)) == 2, "check mode dry-starts the candidate too"


def test_a_password_like_setting_stays_out_of_the_result(node):
    settings = dict(args(node)["settings"], auth_ldap_options="ldapbindpasswd=Ldap-S3cr")
    _result, text = run(args(node, settings=settings), diff=True)
    assert "Ldap-S3cr" not in text


def test_without_pgbouncer_check_mode_warns_and_a_real_run_fails(node):
    missing = str(node / "bin" / "absent")
    result, _text = run(args(node, binary=missing), check=True)
    # ansible-core 2.19 returns each warning as a summary with its message inside.
    warnings = [item["event"]["msg"] if isinstance(item, dict) else item for item in result["warnings"]]
    assert result["changed"] and pgbouncer_config.NOT_INSTALLED in warnings
    assert not (node / "etc" / "pgbouncer.ini").exists()
    failed, _text = run(args(node, binary=missing))
    assert failed["failed"] and "install PgBouncer" in failed["msg"]
    assert not (node / "etc" / "pgbouncer.ini").exists()


def test_a_foreign_listen_addr_is_refused_before_anything(node):
    run(args(node))
    ini = node / "etc" / "pgbouncer.ini"
    before = ini.read_text()
    settings = dict(args(node)["settings"], listen_addr="10.9.9.9,127.0.0.1")
    result, _text = run(args(node, settings=settings))
    assert result["failed"]
    assert "10.9.9.9 is not an address of this node" in result["msg"]
    assert "10.129.0.21" in result["msg"]  # the node's addresses, to pick from
    assert ini.read_text() == before and len(starts(node)) == 1


def test_a_port_another_program_holds_is_refused(node, monkeypatch):
    monkeypatch.setattr(pgbouncer_config._listen, "port_problem", lambda port: "port %s is in use by haproxy (pid 7)" % port)
    result, _text = run(args(node))
    assert result["failed"] and "port 6432 is in use by haproxy (pid 7)" in result["msg"]
    assert not (node / "etc" / "pgbouncer.ini").exists() and starts(node) == []


def test_a_file_pgbouncer_refuses_is_not_written(node):
    settings = dict(args(node)["settings"], tcp_keepidle="soon")
    result, text = run(args(node, settings=settings))
    assert result["failed"]
    assert result["msg"].startswith("pgbouncer would not start with %s" % (node / "etc" / "pgbouncer.ini"))
    assert "for parameter tcp_keepidle" in result["msg"]
    assert "S3cr" not in text
    assert not (node / "etc" / "pgbouncer.ini").exists()


@pytest.fixture
def moves(monkeypatch):
    """Every rename onto a pgbouncer.ini, with the source's mode and group at that moment."""
    seen, real_rename = [], os.rename

    def rename(src, dst, *rest, **kwargs):
        if os.fsdecode(dst).endswith(".ini"):
            info = os.stat(src)
            seen.append((stat.S_IMODE(info.st_mode), grp.getgrgid(info.st_gid).gr_name))
        return real_rename(src, dst, *rest, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    return seen


@pytest.mark.parametrize("mode", ["0640", "0600"])
def test_the_file_has_its_mode_and_group_before_the_move(node, moves, mode):
    run(args(node, mode=mode))
    run(args(node, mode=mode, settings=dict(args(node)["settings"], stats_period=61)))
    assert moves == [(int(mode, 8), GROUP)] * 2
    assert not [name for name in os.listdir(node / "etc") if name.startswith(".pgbouncer.ini.")]


def test_a_mode_change_alone_is_a_change_without_restart(node):
    run(args(node))
    ini = node / "etc" / "pgbouncer.ini"
    ini.chmod(0o644)
    result, _text = run(args(node))
    assert result["changed"] and result["files"] == [str(ini)] and not result["restart_required"]
    assert stat.S_IMODE(ini.stat().st_mode) == 0o640
    assert len(starts(node)) == 1, "same content: no dry start"


def test_backup_keeps_one_previous_copy_with_the_files_owner_and_mode(node):
    ini = node / "etc" / "pgbouncer.ini"
    run(args(node))
    first = ini.read_text()
    result, _text = run(args(node, backup=True, settings=dict(args(node)["settings"], stats_period=61)))
    previous = node / "etc" / "pgbouncer.ini.previous"
    assert result["backups"] == [str(previous)] and previous.read_text() == first
    assert stat.S_IMODE(previous.stat().st_mode) == 0o640
    assert (previous.stat().st_uid, previous.stat().st_gid) == (ini.stat().st_uid, ini.stat().st_gid)
    # The next change replaces the copy: one per file, never a pile of them.
    second = ini.read_text()
    result, _text = run(args(node, backup=True, settings=dict(args(node)["settings"], stats_period=62)))
    assert result["backups"] == [str(previous)] and previous.read_text() == second
    assert sorted(path.name for path in (node / "etc").iterdir()) == ["pgbouncer.ini", "pgbouncer.ini.previous"]


def test_backup_in_check_mode_keeps_nothing(node):
    run(args(node))
    result, _text = run(args(node, backup=True, settings=dict(args(node)["settings"], stats_period=61)), check=True)
    assert result["changed"] and result["backups"] == []
    assert not (node / "etc" / "pgbouncer.ini.previous").exists()


def test_three_processes_three_files(node):
    module_args = args(node, processes=3, peering=True)
    result, _text = run(module_args)
    names = ["pgbouncer-%d.ini" % index for index in (1, 2, 3)]
    assert result["files"] == [str(node / "etc" / name) for name in names]
    layout = _processes.layout(3, **module_args["layout"])
    for proc, name in zip(layout, names):
        assert (node / "etc" / name).read_text() == _render.render(
            proc, layout, module_args["settings"], module_args["databases"], [], module_args["wildcard"], True,
            module_args["header"])
    assert len(starts(node)) == 3


def test_a_listen_port_that_is_no_port_is_refused(node):
    result, _text = run(args(node, settings=dict(args(node)["settings"], listen_port="64x")))
    assert result["failed"] and "listen_port '64x' is not a TCP port number" in result["msg"]


class FakeCursor:
    description = [type("Column", (), {"name": name}) for name in ("key", "value", "default", "changeable")]

    def __init__(self, seen):
        self.seen = seen

    def execute(self, query):
        self.seen.append(query)

    def fetchall(self):
        return [("listen_port", "6432", "6432", "no"), ("stats_period", "60", "60", "yes")]


class FakePsycopg:
    """Stands in for psycopg: records where the module connects, answers SHOW CONFIG."""

    Error = Exception
    ClientCursor = object

    def __init__(self):
        self.seen = []

    def connect(self, **kwargs):
        self.seen.append(kwargs)
        seen = self.seen
        return type("Conn", (), {"cursor": lambda conn: FakeCursor(seen), "close": lambda conn: None})()


def test_show_config_is_asked_where_the_live_file_puts_the_socket(tmp_path, monkeypatch):
    fake = FakePsycopg()
    monkeypatch.setattr(pgbouncer_config, "psycopg", fake)
    live = tmp_path / "live"
    live.mkdir()
    (live / ".s.PGSQL.6433").touch()
    module = type("Module", (), {"params": dict(owner=getpass.getuser(), console_user="pgbouncer", connect_timeout=5)})()
    proc = _processes.layout(1, unix_socket_dir=str(tmp_path / "run"))[0]
    current = "[pgbouncer]\nunix_socket_dir = %s\nlisten_port = 6433\n" % live
    assert pgbouncer_config.live_changeable(module, current, proc) == {"listen_port": False, "stats_period": True}
    assert (fake.seen[0]["host"], fake.seen[0]["port"], fake.seen[0]["user"], fake.seen[0]["dbname"]) == (
        str(live), "6433", "pgbouncer", "pgbouncer")
    assert fake.seen[1] == "SHOW CONFIG"
    # No socket there (PgBouncer stopped): nothing is asked.
    assert pgbouncer_config.live_changeable(module, current.replace("6433", "6434"), proc) is None
    assert len(fake.seen) == 2


@pytest.mark.parametrize("key", ["x = 1\nauth_type", "auth_type = trust", "logfile\x0b", "1abc", "", "a b", "[users]"])
def test_a_settings_key_that_is_no_setting_name_is_refused_before_anything(node, key):
    """Issue 23, item 6: the module used without the role wrote {"x = 1\\nauth_type": "trust"} as
    auth_type = trust. Now it fails naming the key, before the dry start. Milliseconds (no dry start)."""
    result, _text = run(args(node, settings=dict(args(node)["settings"], **{key: "trust"})))
    assert result["failed"] and result["msg"] == "settings: %r is not a PgBouncer setting name (a letter, then letters, " \
        "digits and _)" % key and result["key"] == key, result
    assert not (node / "etc" / "pgbouncer.ini").exists() and starts(node) == []


def test_setting_names_in_any_case_are_taken(node):
    """PgBouncer matches setting names without regard to case. Under a second (one dry start)."""
    result, _text = run(args(node, settings=dict(args(node)["settings"], Server_Lifetime=3600)))
    assert result["changed"] and "Server_Lifetime = 3600" in (node / "etc" / "pgbouncer.ini").read_text()
