"""Boolean variables work when given as strings (`-e pgbouncer_auth_query_enabled=true`).

ansible-core 2.19 refuses a conditional whose result comes from a string ("Conditional
result (True) was derived from value of type 'str'"), and a string "false" is true in a
Jinja `if`. So every expression that reads a boolean variable of the roles (type bool in
meta/argument_specs.yml) or of the playbooks (a play's vars with a true/false default) must
read it through `| bool`. A static check over every task, handler, vars file, default,
playbook and template: fast, and it covers the paths a lab run would not take.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _validate  # noqa: E402

# Keys whose value is a bare Jinja expression, without {{ }}.
BARE = {"when", "failed_when", "changed_when", "until", "that"}
STRING_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"")
JINJA = re.compile(r"\{\{(.*?)\}\}|\{%-?(.*?)-?%\}", re.DOTALL)
# The variable, optionally with a default, then the bool filter.
AS_BOOL = r"\s*(\|\s*default\([^()]*\)\s*)?\|\s*bool\b"


def role_bools():
    found = set()
    for spec in ROOT.glob("roles/*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            found |= {name for name, option in entry.get("options", {}).items() if option.get("type") == "bool"}
    return found


def playbook_bools():
    found = set()
    for path in ROOT.glob("playbooks/**/*.yml"):
        for play in yaml.safe_load(path.read_text()) or []:
            if isinstance(play, dict) and "hosts" in play:
                found |= {name for name, value in (play.get("vars") or {}).items() if isinstance(value, bool)}
    return found


BOOLS = sorted(role_bools() | playbook_bools())


def yaml_files():
    for pattern in ("roles/*/tasks/*.yml", "roles/*/handlers/*.yml", "roles/*/vars/*.yml", "roles/*/defaults/*.yml",
                    "playbooks/**/*.yml"):
        yield from ROOT.glob(pattern)


def expressions_in(value, key=None):
    """Every Jinja expression in a parsed YAML document, string literals removed."""
    if isinstance(value, dict):
        for child_key, child in value.items():
            yield from expressions_in(child, child_key)
    elif isinstance(value, list):
        for child in value:
            yield from expressions_in(child, key)
    elif isinstance(value, str):
        if key in BARE:
            yield STRING_LITERAL.sub("''", value)
        for match in JINJA.finditer(value):
            yield STRING_LITERAL.sub("''", match.group(1) or match.group(2))


def all_expressions():
    for path in yaml_files():
        for expression in expressions_in(yaml.safe_load(path.read_text())):
            yield path.relative_to(ROOT), expression
    for path in ROOT.glob("roles/*/templates/*.j2"):
        for match in JINJA.finditer(path.read_text()):
            yield path.relative_to(ROOT), STRING_LITERAL.sub("''", match.group(1) or match.group(2))


def test_the_boolean_variables_are_found():
    assert {"pgbouncer_auth_query_enabled", "firewall_enabled", "keepalived_unicast", "haproxy_stats_page_enabled",
            "drain_wait", "rolling_restart_force", "maintenance_auto_database"} <= set(BOOLS)


@pytest.mark.parametrize("name", BOOLS)
def test_every_read_of_a_boolean_goes_through_the_bool_filter(name):
    use = re.compile(r"(?<![\w.])%s\b(?!\s*[:=](?!=))" % re.escape(name))
    bare = [
        "%s: %s" % (path, " ".join(expression.split()))
        for path, expression in all_expressions()
        for match in use.finditer(expression)
        if not re.match(AS_BOOL, expression[match.end():])
    ]
    assert bare == [], "read %s with | bool:\n%s" % (name, "\n".join(bare))


def test_the_check_sees_a_bare_read():
    use = re.compile(r"(?<![\w.])x\b")
    for expression, ok in (("x", False), ("x | bool", True), ("x | default(true) | bool", True), ("not x", False),
                           ("a if x else b", False), ("a if x|bool else b", True)):
        match = use.search(expression)
        assert bool(re.match(AS_BOOL, expression[match.end():])) is ok, expression


def test_the_role_checks_read_string_booleans_as_ansible_does():
    # "false" from the command line turns auth_query off: no auth_query checks.
    assert _validate.problems({"pgbouncer_auth_query_enabled": "false", "pgbouncer_auth_query": "no param"}) == []
    assert any("$1" in problem for problem in _validate.problems({"pgbouncer_auth_query_enabled": "true", "pgbouncer_auth_query": "x"}))
    assert _validate.problems({"pgbouncer_database_wildcard": "false", "pgbouncer_database_wildcard_host": "bad host!"}) == []
