"""pgbouncer.ini quoting, read back the way PgBouncer reads it.

`read_ini_line` and `read_connstr` below follow PgBouncer's own parsers (libusual
usual/cfparser.c for the file, src/loader.c cstr_get_pair for a [databases], [users] or
[peers] value; the same in 1.18 and 1.24), so a line the role writes is checked against what
PgBouncer would take from it, not against the role's own idea of quoting.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ini, _validate  # noqa: E402


class Refused(Exception):
    """PgBouncer would stop loading the file here."""


def read_ini_line(line):
    """(key, value) as cfparser reads a `key = value` line: an unquoted key of letters,
    digits and _ . - *, blanks around '=', the value to the end of the line less trailing
    whitespace."""
    match = re.match(r"\s*([A-Za-z0-9_.*-]+)[ \t]*=[ \t]*(.*)", line)
    if not match or "\n" in line:
        raise Refused("syntax error in configuration")
    return match.group(1), match.group(2).rstrip(" \t\r\n\v\f")


def read_connstr(text):
    """[(key, value)] as loader.c's cstr_get_pair reads a connection string."""
    pairs = []
    pos, end = 0, len(text)

    def skip_spaces(pos):
        while pos < end and text[pos] == " ":  # only spaces, not tabs
            pos += 1
        return pos

    pos = skip_spaces(pos)
    while pos < end:
        start = pos
        while pos < end and text[pos] not in "= ":
            pos += 1
        key = text[start:pos]
        pos = skip_spaces(pos)
        if pos >= end or text[pos] != "=" or not key:
            raise Refused("syntax error in connection string")
        pos = skip_spaces(pos + 1)
        if pos < end and text[pos] == "'":
            pos += 1
            chars = []
            while True:
                if pos >= end:
                    raise Refused("unterminated quote")
                if text[pos] == "'":
                    if pos + 1 < end and text[pos + 1] == "'":
                        pos += 1  # '' is one quote
                    else:
                        break
                chars.append(text[pos])
                pos += 1
            value = "".join(chars)
            pos += 1  # past the closing quote
        else:
            start = pos
            while pos < end and text[pos] != " ":
                pos += 1
            value = text[start:pos]
        if pos < end:
            pos += 1  # "if not EOL, cut value": the next character is dropped, whatever it is
        if not value:
            raise Refused("empty value")
        pairs.append((key, value))
        pos = skip_spaces(pos)
    return pairs


NASTY = [
    "it's",
    "back\\slash",
    'double"quote',
    "with space",
    "a=b",
    "'",
    "''",
    "\\'",
    "x' host=other connect_query='",
    "all of ' \\ \" = and\ttab",
    "trailing space ",
    "émoji ☃",
]


@pytest.mark.parametrize("password", NASTY)
def test_database_password_reads_back_as_written(password):
    entry = {"name": "appdb", "host": "10.129.0.21", "port": 5432, "user": "app_user", "password": password, "pool_size": 5}
    name, value = read_ini_line(_ini.database_line(entry))
    assert name == "appdb"
    assert read_connstr(value) == [("host", "10.129.0.21"), ("port", "5432"), ("user", "app_user"),
                                   ("password", password), ("pool_size", "5")]


@pytest.mark.parametrize("value", NASTY)
def test_every_connection_string_key_reads_back(value):
    for key in _ini.DATABASE_KEYS:
        text = read_ini_line(_ini.database_line({"name": "db", key: value}))[1]
        assert read_connstr(text) == [(key, value)], key


def test_a_value_cannot_inject_an_option():
    line = _ini.database_line({"name": "appdb", "host": "10.129.0.21", "password": "x' host=other connect_query='"})
    assert dict(read_connstr(read_ini_line(line)[1])) == {"host": "10.129.0.21", "password": "x' host=other connect_query='"}


def test_plain_values_stay_bare():
    # What the lab and most users write: no change from the earlier rendering.
    line = _ini.database_line({"name": "appdb_ro", "host": "10.129.0.22", "port": 5432, "dbname": "appdb", "max_db_connections": 5})
    assert line == "appdb_ro = host=10.129.0.22 port=5432 dbname=appdb max_db_connections=5"
    assert _ini.database_line({"name": "*", "host": "10.129.0.21", "port": 5432}) == "* = host=10.129.0.21 port=5432"
    assert _ini.peer_line({"peer_id": 2, "host": "/var/run/postgresql/pgbouncer-2", "port": 6432}) == (
        "2 = host=/var/run/postgresql/pgbouncer-2 port=6432")
    assert _ini.database_line({"name": "db", "connect_query": "SELECT 1"}) == "db = connect_query='SELECT 1'"


def test_user_and_peer_lines_quote_the_same_way():
    assert read_connstr(read_ini_line(_ini.user_line({"name": "u", "pool_mode": "it's"}))[1]) == [("pool_mode", "it's")]
    assert read_connstr(read_ini_line(_ini.peer_line({"peer_id": 1, "host": "/run/a b", "port": 1}))[1]) == [
        ("host", "/run/a b"), ("port", "1")]


@pytest.mark.parametrize("char", ["\n", "\r", "\0"])
def test_line_breaks_and_nul_are_refused_when_rendering(char):
    with pytest.raises(ValueError, match="line break") as raised:
        _ini.database_line({"name": "db", "host": "h", "password": "sec" + char + "ret"})
    assert "sec" not in str(raised.value)  # the message must not show a secret
    with pytest.raises(ValueError, match="line break"):
        _ini.user_line({"name": "u", "pool_mode": "session" + char})
    with pytest.raises(ValueError, match="line break"):
        _ini.peer_line({"peer_id": 2, "host": "/run" + char, "port": 1})
    with pytest.raises(ValueError, match="line break"):
        _ini.format_value("DISCARD ALL" + char + "listen_addr = *")
    with pytest.raises(ValueError, match="line break"):
        _ini.format_value(["a", "b" + char])


@pytest.mark.parametrize(
    ("variables", "where"),
    [
        ({"pgbouncer_extra_settings": {"application_name_add_host": "1\nlisten_addr = *"}},
         "pgbouncer_extra_settings.application_name_add_host:"),
        ({"pgbouncer_extra_settings": {"tcp_keepalive": "1\r"}}, "pgbouncer_extra_settings.tcp_keepalive:"),
        ({"pgbouncer_server_reset_query": "DISCARD ALL\n[databases]"}, "pgbouncer_server_reset_query:"),
        ({"pgbouncer_ignore_startup_parameters": ["extra_float_digits", "x\ny"]}, "pgbouncer_ignore_startup_parameters[1]:"),
        ({"pgbouncer_databases": [{"name": "appdb", "host": "h", "password": "p\nw"}]}, "pgbouncer_databases[0] (appdb).password:"),
        ({"pgbouncer_users": [{"name": "u", "pool_mode": "session\0"}]}, "pgbouncer_users[0] (u).pool_mode:"),
        ({"pgbouncer_auth_query": "SELECT 1\n"}, "pgbouncer_auth_query:"),
    ],
)
def test_line_breaks_are_refused_naming_the_variable_and_key(variables, where):
    found = [problem for problem in _validate.problems(variables) if "line break" in problem]
    assert len(found) == 1 and found[0].startswith(where), found
    assert "listen_addr = *" not in found[0] and "p\nw" not in found[0]


@pytest.mark.parametrize(
    ("name", "reason"),
    [("my db", "letters, digits"), ("a'b", "letters, digits"), ('a"b', "letters, digits"), ("a=b", "letters, digits"),
     ("x" * 64, "at most 63 bytes"), ("pgbouncer", "admin console"), ("", "letters, digits"), ("ü", "letters, digits")],
)
def test_database_names_pgbouncer_cannot_take_are_refused(name, reason):
    assert reason in (_ini.name_problem(name, "database") or "")
    with pytest.raises(ValueError, match=reason):
        _ini.database_line({"name": name, "host": "h"})
    if name:
        found = _validate.problems({"pgbouncer_databases": [{"name": name, "host": "h"}]})
        assert any(reason in problem for problem in found), found


def test_user_names_pgbouncer_cannot_take_are_refused():
    assert _ini.name_problem("report_user", "user") is None
    assert _ini.name_problem("x" * 127, "user") is None
    assert "at most 127 bytes" in _ini.name_problem("x" * 128, "user")
    found = _validate.problems({"pgbouncer_users": [{"name": 'odd"user', "pool_mode": "session"}]})
    assert any('pgbouncer_users[0] (odd"user): PgBouncer takes only letters' in problem for problem in found), found
    with pytest.raises(ValueError):
        _ini.user_line({"name": "a b", "pool_mode": "session"})


@pytest.mark.parametrize("name", ["appdb", "app-db.v2", "App_DB_1", "x" * 63])
def test_good_names_pass(name):
    assert _ini.name_problem(name, "database") is None
    assert read_ini_line(_ini.database_line({"name": name, "host": "h"}))[0] == name


def test_reader_matches_pgbouncer_on_known_lines():
    """The reader itself, on lines whose reading the C code fixes."""
    assert read_connstr("host=a  port=1") == [("host", "a"), ("port", "1")]
    assert read_connstr("password='a''b' user=u") == [("password", "a'b"), ("user", "u")]
    # The backslash escaping the role wrote before: PgBouncer refuses the line.
    for bad in ("password=''", "password='open", "=x", "key", "password='a\\'b'"):
        with pytest.raises(Refused):
            read_connstr(bad)
