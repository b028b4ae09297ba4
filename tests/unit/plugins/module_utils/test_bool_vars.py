"""Boolean variables work when given as strings (`-e pgbouncer_auth_query_enabled=true`).

ansible-core 2.19 refuses a conditional whose result comes from a string ("Conditional
result (True) was derived from value of type 'str'"), a string "false" is true in a Jinja
`if`, and 2.19's `bool` filter reads "y" and "t" as false (and anything unknown as false,
with a deprecation warning) where a role's argument spec, like every module, reads them with
Ansible's boolean(). So every expression that reads a boolean variable of the roles (type
bool in meta/argument_specs.yml) or of the playbooks (a play's vars with a true/false
default) reads it through `| pgbouncer.cluster.pgbouncer_bool` (module_utils/_text.flag, the
one coercion), and each role's checks refuse a value that is no boolean, naming the
variable (issue 23, item 4). A static check over every task, handler, vars file, default,
playbook and template: fast, and it covers the paths a lab run would not take.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.filter.pgbouncer import FilterModule  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _validate  # noqa: E402

as_bool = FilterModule().filters()["pgbouncer_bool"]

# Keys whose value is a bare Jinja expression, without {{ }}.
BARE = {"when", "failed_when", "changed_when", "until", "that"}
STRING_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"")
JINJA = re.compile(r"\{\{(.*?)\}\}|\{%-?(.*?)-?%\}", re.DOTALL)
# The variable, optionally with a default, then the collection's bool filter.
AS_BOOL = r"\s*(\|\s*default\([^()]*\)\s*)?\|\s*pgbouncer\.cluster\.pgbouncer_bool\b"


def bools_by_role():
    """{role: its boolean variables}, from meta/argument_specs.yml."""
    found = {}
    for spec in ROOT.glob("roles/*/meta/argument_specs.yml"):
        names = found.setdefault(spec.parts[-3], set())
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            names |= {name for name, option in entry.get("options", {}).items() if option.get("type") == "bool"}
    return found


def role_bools():
    return set().union(*bools_by_role().values())


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
    assert bare == [], "read %s with | pgbouncer.cluster.pgbouncer_bool:\n%s" % (name, "\n".join(bare))


def test_the_check_sees_a_bare_read():
    use = re.compile(r"(?<![\w.])x\b")
    for expression, ok in (("x", False), ("x | bool", False), ("x | pgbouncer.cluster.pgbouncer_bool", True),
                           ("x | default(true) | pgbouncer.cluster.pgbouncer_bool", True), ("not x", False),
                           ("a if x else b", False), ("a if x|pgbouncer.cluster.pgbouncer_bool else b", True)):
        match = use.search(expression)
        assert bool(re.match(AS_BOOL, expression[match.end():])) is ok, expression


def test_the_role_checks_read_string_booleans_as_ansible_does():
    # "false" from the command line turns auth_query off: no auth_query checks.
    assert _validate.problems({"pgbouncer_auth_query_enabled": "false", "pgbouncer_auth_query": "no param"}) == []
    assert any("$1" in problem for problem in _validate.problems({"pgbouncer_auth_query_enabled": "true", "pgbouncer_auth_query": "x"}))
    assert _validate.problems({"pgbouncer_database_wildcard": "false", "pgbouncer_database_wildcard_host": "bad host!"}) == []


# Every text form Ansible's boolean() knows, in the cases an inventory or -e may give, and forms it refuses.
TRUE_FORMS = ("true", "True", "TRUE", "yes", "Yes", "on", "ON", "1", "y", "Y", "t", "T", True, 1)
FALSE_FORMS = ("false", "False", "FALSE", "no", "No", "off", "OFF", "0", "n", "N", "f", "F", False, 0)
NOT_BOOLEAN = ("maybe", "", "2", "nein", "true!", None, [], {})
PGBOUNCER_DEFAULTS = yaml.safe_load((ROOT / "roles" / "pgbouncer" / "defaults" / "main.yml").read_text())
PGBOUNCER_BASE = dict({k: v for k, v in PGBOUNCER_DEFAULTS.items() if "{{" not in str(v)}, pgbouncer_listen_addr="10.129.0.21")


@functools.cache
def role_booleans_list(role):
    """The role's own list of its booleans (vars/main.yml __<role>_booleans), which its checks use."""
    return tuple(yaml.safe_load((ROOT / "roles" / role / "vars" / "main.yml").read_text()).get("__%s_booleans" % role, []))


def role_check(role, variables):
    """What the role's tasks/validate.yml says about `variables` (the filters it calls)."""
    booleans = role_booleans_list(role)
    if role == "pgbouncer":
        return _validate.problems(dict(PGBOUNCER_BASE, **variables), booleans)
    return _validate.boolean_problems(variables, booleans)


@pytest.mark.parametrize("role", sorted(bools_by_role()))
def test_each_role_checks_every_boolean_of_its_argument_spec(role):
    """Tens of milliseconds: two YAML files read."""
    assert sorted(role_booleans_list(role)) == sorted(bools_by_role()[role])


@pytest.mark.parametrize("role, name", sorted((role, name) for role, names in bools_by_role().items() for name in names))
def test_every_boolean_variable_given_as_each_string_form(role, name):
    """Issue 23, item 4: each form reads as Ansible's boolean() reads it, in the role's checks and in
    its templates (the pgbouncer_bool filter); anything else is refused naming the variable.
    About 30 forms per variable: well under 0.1 s."""
    for forms, expected in ((TRUE_FORMS, True), (FALSE_FORMS, False)):
        for form in forms:
            assert as_bool(form, name) is expected, (name, form)
            assert not [problem for problem in role_check(role, {name: form}) if name in problem], (name, form)
    for form in NOT_BOOLEAN:
        found = [problem for problem in role_check(role, {name: form}) if problem.startswith(name + " must be a boolean")]
        assert len(found) == 1, (name, form, role_check(role, {name: form}))
        with pytest.raises(ValueError, match=name):
            as_bool(form, name)


@pytest.mark.parametrize("form", FALSE_FORMS)
def test_allow_insecure_false_as_a_string_still_refuses_insecure_choices(form):
    """Issue 23, item 4: `-e pgbouncer_allow_insecure=false` was read as true by the guard. Milliseconds."""
    found = _validate.problems(dict(PGBOUNCER_BASE, pgbouncer_allow_insecure=form, pgbouncer_auth_type="trust"))
    assert len(found) == 1 and "set pgbouncer_allow_insecure: true" in found[0], (form, found)


@pytest.mark.parametrize("form", TRUE_FORMS)
def test_allow_insecure_true_as_a_string_accepts_them(form):
    """Milliseconds."""
    assert _validate.problems(dict(PGBOUNCER_BASE, pgbouncer_allow_insecure=form, pgbouncer_auth_type="trust")) == []


def test_an_unknown_allow_insecure_is_refused_and_accepts_nothing():
    """Neither true nor false: named, and the insecure choice refused too. Milliseconds."""
    found = _validate.problems(dict(PGBOUNCER_BASE, pgbouncer_allow_insecure="maybe", pgbouncer_auth_type="trust"),
                               role_booleans_list("pgbouncer"))
    assert found[0] == ("pgbouncer_allow_insecure must be a boolean (true/false, yes/no, on/off, 1/0, y/n or t/f), "
                        "not 'maybe'")
    assert len(found) == 2 and "set pgbouncer_allow_insecure: true" in found[1]
