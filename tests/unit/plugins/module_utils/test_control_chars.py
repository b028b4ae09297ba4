"""Control characters and line separators (issue 23, item 5).

PgBouncer ends a line of pgbouncer.ini or the auth_file at LF only; Python's splitlines() also
splits at VT, FF, U+001C-U+001E, U+0085, U+2028 and U+2029. A value holding one passed the
role's check (which knew CR, LF and NUL only), and the masked diff, split by splitlines(), showed
the tail of a password after one. Now every value a role writes is refused with such a
character, naming the variable, and every reader of those files splits at LF only
(_text.lines). Pure functions: milliseconds in all.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ini, _text, _userlist, _validate  # noqa: E402

# What splitlines() splits at besides CR and LF, then other controls no file line should carry.
SEPARATORS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
OTHERS = ["\r", "\n", "\0", "\x1b", "\x7f", "\x9b"]
BAD = SEPARATORS + OTHERS


@pytest.mark.parametrize("char", BAD)
def test_the_role_refuses_the_character_naming_the_variable(char):
    """The issue's case: a value with VT and a key of its own choosing after it. Milliseconds."""
    value = "100" + char + "logfile = /tmp/x"
    for variables, where in (
        ({"pgbouncer_max_client_conn": value}, "pgbouncer_max_client_conn:"),
        ({"pgbouncer_server_reset_query": "DISCARD ALL" + char + "logfile = /tmp/x"}, "pgbouncer_server_reset_query:"),
        ({"pgbouncer_databases": [{"name": "appdb", "host": "h", "password": "sec" + char + "ret"}]},
         "pgbouncer_databases[0] (appdb).password:"),
        ({"pgbouncer_extra_settings": {"tcp_keepidle" + char: "1"}}, "pgbouncer_extra_settings.tcp_keepidle"),
    ):
        found = [problem for problem in _validate.problems(variables) if "control character" in problem]
        assert len(found) == 1 and found[0].startswith(where), (variables, found)
        assert "ret" not in found[0] and "/tmp/x" not in found[0], "the value is never shown"


@pytest.mark.parametrize("char", BAD)
def test_every_role_refuses_it_in_any_of_its_variables(char):
    """haproxy, keepalived and the agent call the same check (pgbouncer_input_problems). Milliseconds."""
    found = _validate.input_problems({"keepalived_auth_pass": "pw" + char, "haproxy_backend_hosts": ["a", "b" + char],
                                      "pgbouncer_health_login_password": "x" + char + "y", "haproxy_frontend_port": 5000})
    assert [problem.split(":")[0] for problem in found] == [
        "haproxy_backend_hosts[1]", "keepalived_auth_pass", "pgbouncer_health_login_password"]
    assert not any("pw" in problem or "x" + char in problem for problem in found)


def test_tab_and_ordinary_text_pass():
    """A tab is whitespace to PgBouncer, not a line break; accents and quotes are ordinary. Milliseconds."""
    assert _validate.input_problems({"a": "x\ty", "b": "été 'q' \"d\" \\", "c": ["é"], "d": {"k": "€"}}) == []


@pytest.mark.parametrize("char", BAD)
def test_rendering_refuses_it_naming_the_key(char):
    """The module's own guard, for pgbouncer_config used without the role. Milliseconds."""
    with pytest.raises(ValueError, match="database db: password cannot hold a line break") as raised:
        _ini.database_line({"name": "db", "host": "h", "password": "sec" + char + "ret"})
    assert "sec" not in str(raised.value)
    with pytest.raises(ValueError, match="setting server_reset_query cannot hold"):
        _ini.format_value("DISCARD ALL" + char, "setting server_reset_query")
    with pytest.raises(ValueError, match="user u: pool_mode cannot hold"):
        _ini.user_line({"name": "u", "pool_mode": "session" + char})


@pytest.mark.parametrize("char", BAD)
def test_the_auth_file_refuses_it_in_a_name_or_password(char):
    """A PostgreSQL role may have any name; the auth_file holds one user per line. Milliseconds."""
    with pytest.raises(ValueError, match="password with a line break") as raised:
        _userlist.render([("app", "sec" + char + "ret")])
    assert "sec" not in str(raised.value)
    with pytest.raises(ValueError, match="name with a line break"):
        _userlist.render([("a" + char + "b", "secret")])
    rows = [("a" + char + "b", "SCRAM-SHA-256$x", False, False), ("app", "SCRAM-SHA-256$y", False, False)]
    assert "cannot hold" in _userlist.left_out(rows)["a" + char + "b"]
    assert _userlist.select(rows) == [("app", "SCRAM-SHA-256$y")]


def test_files_are_split_at_lf_only():
    """_text.lines, which every reader of pgbouncer.ini and the auth_file uses. Milliseconds."""
    assert _text.lines("a\x0bb\nc\u2028d\r\ne\x85f\n") == ["a\x0bb", "c\u2028d", "e\x85f"]
    assert _text.lines("") == [] and _text.lines("x") == ["x"] and _text.lines("x\n\n") == ["x", ""]
    assert _ini.parse("[pgbouncer]\nserver_reset_query = a\x0blogfile = /tmp/x\n") == {
        "pgbouncer": {"server_reset_query": "a\x0blogfile = /tmp/x"}}
    assert _userlist.parse('"a" "b\x0cc"\n') == [("a", "b\x0cc")]


@pytest.mark.parametrize("char", SEPARATORS)
def test_the_diff_of_a_file_with_a_separator_shows_no_password_tail(char):
    """The issue's check-mode diff: a current file written by hand (or by an older role) with a
    separator in a password showed the part after it. Milliseconds."""
    old = "[databases]\ndb = host=h password=sec" + char + "TAILret\n"
    new = "[databases]\ndb = host=h password=other\n"
    shown = "\n".join(_ini.masked_diff(old, new))
    assert "TAIL" not in shown and "other" not in shown and "sec" not in shown, shown


def test_only_line_endings_still_say_so():
    """CRLF against LF is no change to PgBouncer. Milliseconds."""
    assert _ini.masked_diff("a = 1\r\n", "a = 1\n") == ["pgbouncer.ini: only the line endings change"]
