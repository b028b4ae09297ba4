"""Boolean variables given as strings on the command line (`-e name=true`), as ansible-core
2.19 reads them: site.yml with every boolean of the roles at the value the lab runs (its
default unless the lab inventory sets it), in string form,
runs through and changes nothing. (auth_query turned on with a string: test_config_surface's
test_auth_query_replaces_the_full_userlist, which sets it so.)"""

from __future__ import annotations

from pathlib import Path

import yaml

from conftest import INVENTORY, ansible_playbook, recap

ROOT = Path(__file__).resolve().parents[2]
NODE = "pg-srv3"


def lab_values():
    """The variables the lab inventory's group_vars set (they win over the roles' defaults)."""
    values = {}
    for path in sorted((INVENTORY / "group_vars").glob("*.yml")):
        values.update(yaml.safe_load(path.read_text()) or {})
    return values


def string_defaults():
    """name=true|false for every boolean role variable whose default is a plain boolean, at the
    value the lab runs (its default, unless the lab inventory sets another boolean: a string of
    the default would then change the lab, which is not what this test is about)."""
    lab = lab_values()
    pairs = []
    for spec in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        defaults = yaml.safe_load((spec.parent.parent / "defaults" / "main.yml").read_text()) or {}
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            for name, option in entry.get("options", {}).items():
                if option.get("type") == "bool" and isinstance(defaults.get(name), bool):
                    value = lab[name] if isinstance(lab.get(name), bool) else defaults[name]
                    pairs.append("%s=%s" % (name, str(value).lower()))
    return pairs


def test_every_boolean_at_its_default_as_a_string_changes_nothing():
    pairs = string_defaults()
    assert "pgbouncer_auth_query_enabled=false" in pairs
    args = [arg for pair in pairs for arg in ("-e", pair)]
    result = ansible_playbook("playbooks/site.yml", "--limit", NODE, *args)
    output = result.stdout + result.stderr
    assert "Conditional result" not in output, output[-3000:]
    assert result.returncode == 0, output[-3000:]
    assert recap(result.stdout)[NODE]["changed"] == 0, recap(result.stdout)
