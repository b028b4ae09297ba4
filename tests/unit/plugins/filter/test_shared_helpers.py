"""The helpers that had copies (version parsing, double quoting, whole numbers, unit names):
one home each in module_utils (_version.py, _text.py), used by every former copy."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.filter.pgbouncer import FilterModule  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.module_utils import (  # noqa: E402
    _admin,
    _keys,
    _processes,
    _text,
    _userlist,
    _version,
)

PLUGINS = ROOT / "plugins"


@pytest.mark.parametrize(
    ("text", "parsed", "written"),
    [
        ("PgBouncer 1.18.0", (1, 18, 0), "1.18.0"),
        ("PgBouncer 1.24.1\nlibevent 2.1.12-stable", (1, 24, 1), "1.24.1"),
        ("1.21", (1, 21, 0), "1.21"),
        ("PgBouncer 1.25.0rc1", (1, 25, 0), "1.25.0"),
    ],
)
def test_one_version_reader(text, parsed, written):
    assert _version.parse_version(text) == parsed
    assert _version.version_text(text) == written
    assert _keys.parse_version(text) == parsed[:2]
    assert _admin.parse_version(text) == parsed
    assert FilterModule().filters()["pgbouncer_version"](text) == written


def test_no_version_is_an_error_in_each_callers_own_terms():
    assert _version.version_text("PgBouncer") is None
    with pytest.raises(ValueError):
        _keys.parse_version("no version")
    with pytest.raises(_admin.AdminError):
        _admin.parse_version("")


def test_double_quoting():
    assert _text.double_quoted('odd"user') == '"odd""user"'
    assert _admin.quote_ident('my "db"') == '"my ""db"""'
    assert _userlist.render([('odd"user', "pa\"ss")]) == '"odd""user" "pa""ss"\n'
    with pytest.raises(_admin.AdminError):
        _admin.quote_ident("bad\nname")


@pytest.mark.parametrize(("value", "number"), [(5, 5), ("12", 12), (None, 0), ("", 0), ("x", 0), (0, 0), ("-3", -3)])
def test_whole_numbers(value, number):
    assert _text.as_int(value) == number


def test_unit_names():
    assert _text.unit_base("pgbouncer.service") == "pgbouncer"
    assert _text.unit_base("pgbouncer") == "pgbouncer"
    assert _processes.process(2, 2, service_name="pgb.service")["unit"] == "pgb@2.service"


@pytest.mark.parametrize(
    ("pattern", "home"),
    [
        (r"""replace\('"', '""'\)""", "module_utils/_text.py"),
        (r"""\[: -len\("\.service"\)\]""", "module_utils/_text.py"),
        (r"""\(\\d\+\)\\\.\(\\d\+\)""", "module_utils/_version.py"),
        (r"def _int\(|def _as_int\(", None),
    ],
)
def test_no_copy_is_left_in_the_plugins(pattern, home):
    found = sorted(str(path.relative_to(PLUGINS)) for path in PLUGINS.rglob("*.py") if re.search(pattern, path.read_text()))
    assert found == ([home] if home else []), found
