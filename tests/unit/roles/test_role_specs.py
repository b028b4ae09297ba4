"""Each role's meta/argument_specs.yml is in step with its defaults/main.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLES = sorted(path.parent.parent.name for path in ROOT.glob("roles/*/meta/argument_specs.yml"))
TYPES = {bool: "bool", int: "int", str: "str", list: "list", dict: "dict"}


def load(role):
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    defaults_file = ROOT / "roles" / role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
    return specs["argument_specs"]["main"]["options"], defaults or {}


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_specified_and_every_option_has_a_default(role):
    options, defaults = load(role)
    assert sorted(set(defaults) - set(options)) == [], "defaults without a spec"
    optional = {name for name, spec in options.items() if not spec.get("required")}
    assert sorted(optional - set(defaults)) == [], "specified options without a default"


@pytest.mark.parametrize("role", ROLES)
def test_spec_types_and_documented_defaults_match_the_defaults(role):
    options, defaults = load(role)
    for name, value in defaults.items():
        spec = options[name]
        assert spec.get("description"), name
        if "{{" in str(value):
            continue  # templated: documented in the description, resolved at run time
        assert spec["type"] == TYPES[type(value)] or (spec["type"] in ("raw", "path") and isinstance(value, str)), name
        assert spec.get("default") == value, name
        if "choices" in spec:
            assert value in spec["choices"], name


@pytest.mark.parametrize("role", ROLES)
def test_variables_are_prefixed_with_the_role_name(role):
    options, defaults = load(role)
    prefix = role + "_"
    assert [name for name in options if not name.startswith(prefix)] == []
