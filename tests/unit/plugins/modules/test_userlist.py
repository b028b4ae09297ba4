"""userlist.txt format (module_utils/_userlist.py) and the pgbouncer_userlist module's logic."""

from __future__ import annotations

import getpass
import grp
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _userlist  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.modules import pgbouncer_userlist  # noqa: E402

from conftest import module_result  # noqa: E402

SCRAM = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVka2V5:c2VydmVya2V5"
MD5 = "md5" + "0123456789abcdef" * 2


def test_quote_doubles_embedded_quotes():
    assert _userlist.quote('odd"user') == '"odd""user"'
    assert _userlist.quote("") == '""'


def test_render_then_parse_round_trips_awkward_names_and_secrets():
    entries = [("app_user", SCRAM), ('odd"user', 'pa"ss\'word'), ("report user", MD5)]
    text = _userlist.render(entries)
    assert text.splitlines()[1] == '"odd""user" "pa""ss\'word"'
    assert _userlist.parse(text) == entries


def test_parse_skips_comments_and_blank_lines():
    assert _userlist.parse('; managed\n\n"a" "b"\n') == [("a", "b")]


@pytest.mark.parametrize("line", ['"a" b', '"a"', 'a b', '"a" "b" "c"', '"a""b"'])
def test_parse_rejects_lines_pgbouncer_would_not_read(line):
    with pytest.raises(ValueError, match="line 2"):
        _userlist.parse('"ok" "ok"\n' + line + "\n")


def test_select_filters_and_sorts_and_drops_roles_without_password():
    rows = [("zed", SCRAM), ("app", MD5), ("nopass", None), ("postgres", SCRAM)]
    assert _userlist.select(rows) == [("app", MD5), ("postgres", SCRAM), ("zed", SCRAM)]
    assert _userlist.select(rows, users=["zed", "nopass"]) == [("zed", SCRAM)]
    assert _userlist.select(rows, exclude=["postgres"]) == [("app", MD5), ("zed", SCRAM)]


def test_secret_kind():
    assert _userlist.secret_kind(SCRAM) == "scram-sha-256"
    assert _userlist.secret_kind(MD5) == "md5"
    assert _userlist.secret_kind("hunter2") == "plain"


def test_mask_hides_secrets_but_shows_a_changed_one():
    key = b"k" * 16
    before = _userlist.mask([("a", SCRAM), ("b", MD5)], key)
    after = _userlist.mask([("a", SCRAM), ("b", MD5 + "x")], key)
    assert SCRAM not in before and MD5 not in before
    assert before.splitlines()[0] == after.splitlines()[0]
    assert before.splitlines()[1] != after.splitlines()[1]
    # A fingerprint depends on the per-run key: nothing to check offline.
    assert _userlist.mask([("a", SCRAM)], b"other key 123456") != before.splitlines(True)[0]


# --- the module, with pg_shadow replaced by fixed rows ---------------------------------------

ROWS = (("app_user", SCRAM), ("report_user", MD5), ("nologin", None), ('odd"user', "pa\"ss"))


def run_module(monkeypatch, rows=ROWS, check_mode=False, diff=False, **args):
    monkeypatch.setattr(pgbouncer_userlist, "read_pg_shadow", lambda module: list(rows))
    args.setdefault("owner", getpass.getuser())
    args.setdefault("group", grp.getgrgid(os.getgid()).gr_name)
    return module_result(pgbouncer_userlist.main, args, check_mode, diff)


def test_module_writes_atomically_with_mode_and_is_idempotent(monkeypatch, tmp_path):
    path = tmp_path / "userlist.txt"
    first = run_module(monkeypatch, path=str(path))
    assert first["changed"] and first["users"] == ["app_user", 'odd"user', "report_user"]
    assert _userlist.parse(path.read_text()) == [("app_user", SCRAM), ('odd"user', 'pa"ss'), ("report_user", MD5)]
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert [p.name for p in tmp_path.iterdir()] == ["userlist.txt"]  # no temp file left behind
    assert run_module(monkeypatch, path=str(path))["changed"] is False


def test_module_check_mode_writes_nothing_and_diff_masks_secrets(monkeypatch, tmp_path):
    path = tmp_path / "userlist.txt"
    path.write_text('"app_user" "old-secret"\n')
    result = run_module(monkeypatch, path=str(path), users=["app_user"], check_mode=True, diff=True)
    assert result["changed"] is True
    assert path.read_text() == '"app_user" "old-secret"\n'
    diff = result["diff"]["before"] + result["diff"]["after"]
    assert "old-secret" not in diff and SCRAM not in diff
    assert "<plain secret" in result["diff"]["before"] and "<scram-sha-256 secret" in result["diff"]["after"]


def test_module_fails_for_a_named_user_missing_or_without_password(monkeypatch, tmp_path):
    result = run_module(monkeypatch, path=str(tmp_path / "u.txt"), users=["app_user", "nologin", "ghost"])
    assert result["failed"]
    assert "ghost, nologin" in result["msg"]
    assert not (tmp_path / "u.txt").exists()


def test_module_fixes_mode_without_rewriting_content(monkeypatch, tmp_path):
    path = tmp_path / "userlist.txt"
    run_module(monkeypatch, path=str(path))
    path.chmod(0o644)
    result = run_module(monkeypatch, path=str(path))
    assert result["changed"] is True
    assert oct(path.stat().st_mode & 0o777) == "0o640"
