"""pgbouncer_userlist: no window in which a new auth_file is readable by others (issue 15,
item 3); expired roles and superusers left out by default (item 2)."""

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
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _userlist  # noqa: E402
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


# --- expired roles and superusers (item 2) ------------------------------------------------

# pg_shadow rows as the module's query returns them: name, secret, superuser, expired.
SHADOW = [
    ("app_user", SCRAM, False, False),
    ("old_app", SCRAM, False, True),
    ("postgres", SCRAM, True, False),
    ("nologin", None, False, False),
]


def test_query_reads_superuser_and_expiry_with_infinity_and_null_as_valid():
    query = pgbouncer_userlist.QUERY
    assert "usesuper" in query and "COALESCE(valuntil < now(), false)" in query


def test_select_leaves_out_expired_roles_and_superusers_by_default():
    assert _userlist.select(SHADOW) == [("app_user", SCRAM)]
    assert _userlist.select(SHADOW, include_superusers=True) == [("app_user", SCRAM), ("postgres", SCRAM)]
    assert _userlist.left_out(SHADOW) == {"old_app": "expired (VALID UNTIL has passed)",
                                          "postgres": "a superuser (set include_superusers to write it)"}
    assert _userlist.left_out(SHADOW, include_superusers=True) == {"old_app": "expired (VALID UNTIL has passed)"}


def test_module_leaves_them_out_and_opts_in_superusers(monkeypatch, tmp_path):
    path = tmp_path / "userlist.txt"
    assert run_module(monkeypatch, SHADOW, path=str(path))["users"] == ["app_user"]
    assert run_module(monkeypatch, SHADOW, path=str(path), include_superusers=True)["users"] == ["app_user", "postgres"]


def test_module_fails_for_a_named_expired_role_or_superuser(monkeypatch, tmp_path):
    result = run_module(monkeypatch, SHADOW, path=str(tmp_path / "u.txt"), users=["app_user", "old_app", "postgres"])
    assert result["failed"]
    assert "old_app is expired" in result["msg"] and "postgres is a superuser" in result["msg"]
    assert not (tmp_path / "u.txt").exists()
