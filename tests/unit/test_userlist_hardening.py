"""pgbouncer_userlist: no window in which a new auth_file is readable by others (issue 15,
item 3)."""

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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.modules import pgbouncer_userlist  # noqa: E402

SCRAM = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVka2V5:c2VydmVya2V5"
# As root the test can hand the file to another group, which proves the group is set before the rename too.
GROUP = "nogroup" if os.geteuid() == 0 else grp.getgrgid(os.getgid()).gr_name


def run_module(monkeypatch, rows, **args):
    monkeypatch.setattr(pgbouncer_userlist, "read_pg_shadow", lambda module: list(rows))
    args.setdefault("owner", getpass.getuser())
    args.setdefault("group", GROUP)
    out = io.StringIO()
    with patch_module_args(args), redirect_stdout(out), pytest.raises(SystemExit):
        pgbouncer_userlist.main()
    return json.loads(out.getvalue())


@pytest.fixture
def moves(monkeypatch):
    """Every rename onto a userlist file, with the source's mode and group at that moment."""
    seen, real_rename = [], os.rename

    def rename(src, dst, *args, **kwargs):
        if os.fsdecode(dst).endswith("userlist.txt"):
            info = os.stat(src)
            seen.append((stat.S_IMODE(info.st_mode), grp.getgrgid(info.st_gid).gr_name))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    return seen


@pytest.mark.parametrize("mode", ["0640", "0600"])
def test_new_file_has_its_mode_and_group_before_the_rename(monkeypatch, tmp_path, moves, mode):
    path = tmp_path / "userlist.txt"
    result = run_module(monkeypatch, [("app_user", SCRAM)], path=str(path), mode=mode)
    assert result["changed"]
    assert moves == [(int(mode, 8), GROUP)]
    assert stat.S_IMODE(path.stat().st_mode) == int(mode, 8)


def test_rewritten_file_keeps_its_mode_through_the_rename(monkeypatch, tmp_path, moves):
    path = tmp_path / "userlist.txt"
    run_module(monkeypatch, [("app_user", SCRAM)], path=str(path))
    moves.clear()
    result = run_module(monkeypatch, [("app_user", SCRAM), ("report_user", SCRAM)], path=str(path))
    assert result["changed"] and moves == [(0o640, GROUP)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["userlist.txt"]
