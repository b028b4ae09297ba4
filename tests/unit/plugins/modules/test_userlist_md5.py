"""Users stored as md5 under auth_type scram-sha-256 (issue 23, item 13): they cannot log in
through PgBouncer, and the role wrote them into the auth_file without a word (the lab's
report_user is one). The decision: write them, and warn on every run naming them and the two
fixes (see _userlist.md5_under_scram for why not refuse). In-process, milliseconds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible.module_utils.common import warnings as module_warnings  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _userlist  # noqa: E402
from test_userlist import MD5, ROWS, SCRAM  # noqa: E402
from test_userlist import run_module as run_userlist  # noqa: E402


def run_module(monkeypatch, **args):
    """The module once, with Ansible's module warnings (process-wide, in-process) emptied first:
    each run's warnings are its own, as in a real task."""
    module_warnings._global_warnings.clear()
    return run_userlist(monkeypatch, **args)


def warnings_of(result):
    """The warnings' texts (ansible-core 2.19 returns them as structured events)."""
    return [item["event"]["msg"] if isinstance(item, dict) else str(item) for item in result.get("warnings", [])]


def test_md5_users_under_scram_are_named_with_both_fixes():
    names, message = _userlist.md5_under_scram([("zed", MD5), ("app_user", SCRAM), ("report_user", MD5)], "scram-sha-256")
    assert names == ["report_user", "zed"]
    assert "report_user, zed" in message
    assert "password_encryption = scram-sha-256" in message
    assert "pgbouncer_auth_type: md5" in message and "still uses SCRAM" in message
    # Never a secret in the message.
    assert MD5 not in message and SCRAM not in message


@pytest.mark.parametrize("auth_type", ["md5", "hba", "trust", None])
def test_other_auth_types_say_nothing(auth_type):
    """md5 accepts both kinds (SCRAM for SCRAM secrets); hba decides per line."""
    assert _userlist.md5_under_scram([("report_user", MD5)], auth_type) == ([], None)


def test_scram_and_plain_secrets_say_nothing():
    """A plain password (the auth_user of auth_query) works with SCRAM too."""
    assert _userlist.md5_under_scram([("app_user", SCRAM), ("pgbouncer_auth", "auth-pass-1")], "scram-sha-256") == ([], None)


def test_the_module_writes_them_and_warns_on_every_run(monkeypatch, tmp_path):
    path = tmp_path / "userlist.txt"
    for _run in range(2):  # the second run changes nothing, and still warns
        result = run_module(monkeypatch, path=str(path), auth_type="scram-sha-256")
        assert result["md5_users"] == ["report_user"]
        assert any("report_user" in warning and "scram-sha-256" in warning for warning in warnings_of(result)), result
    assert result["changed"] is False
    assert "report_user" in result["users"] and MD5 in path.read_text()


def test_the_module_is_quiet_without_auth_type_or_with_md5(monkeypatch, tmp_path):
    for args in ({}, {"auth_type": "md5"}):
        result = run_module(monkeypatch, path=str(tmp_path / "u.txt"), **args)
        assert result["md5_users"] == [] and warnings_of(result) == [], result


def test_rows_used_here_hold_an_md5_user():
    assert any(secret == MD5 for _name, secret in ROWS)
