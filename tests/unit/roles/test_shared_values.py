"""One source for values shared between roles and playbooks (issue 14).

A playbook or a role that needs another role's setting reads that role's variable, with the
owning role's defaults loaded in the play (`ansible.builtin.import_role` with
`tasks_from: defaults.yml`, which runs no task). It does not write
`pgbouncer_listen_port | default(6432)`: such a literal restates the owner's default and
silently drifts from it. This test scans every YAML file of playbooks/ and roles/ for
`<variable> | default(<literal>)` where the variable belongs to another role's prefix, and
checks that the roles' no-op defaults entry points exist and stay no-ops.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "defaults" / "main.yml").exists())

# Longest prefix first: pgbouncer_health_port is the pgbouncer_health role's, not pgbouncer's.
PREFIXES = sorted(((role + "_", role) for role in ROLES), key=lambda item: -len(item[0]))

# A bare variable name (not an attribute, item or string), then `| default(` and a literal:
# a number, a quoted string, true/false/none, or an empty or literal list/dict.
LITERAL = r"""(?:-?\d+(?:\.\d+)?|'[^']*'|"[^"]*"|true|false|True|False|none|None|\[[^\]\[(){}]*\]|\{[^{}()]*\})"""
PATTERN = re.compile(r"(?<![\w.'\"])([A-Za-z_]\w*)\s*\|\s*default\(\s*" + LITERAL + r"\s*[,)]")

# (file, variable): why that literal default is not a restatement of the owner's default.
ALLOWED: dict[tuple[str, str], str] = {}


def owner(variable):
    """Role whose prefix the variable has, or None."""
    for prefix, role in PREFIXES:
        if variable.startswith(prefix):
            return role
    return None


def scanned_files():
    for base in ("playbooks", "roles"):
        yield from sorted((ROOT / base).rglob("*.yml"))


def role_of(path):
    """Role a file belongs to (roles/<role>/...), or None for playbooks."""
    relative = path.relative_to(ROOT).parts
    return relative[1] if relative[0] == "roles" else None


def restatements(text, file_role):
    """(line, variable, match) for each literal default of another role's variable."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in PATTERN.finditer(line):
            variable = match.group(1)
            role = owner(variable)
            if role is not None and role != file_role:
                found.append((number, variable, match.group(0)))
    return found


def test_no_file_restates_another_roles_default():
    found = []
    used = set()
    for path in scanned_files():
        relative = str(path.relative_to(ROOT))
        for number, variable, text in restatements(path.read_text(), role_of(path)):
            if (relative, variable) in ALLOWED:
                used.add((relative, variable))
                continue
            found.append(f"{relative}:{number}: {text} restates the {owner(variable)} role's default")
    assert found == [], (
        "read the owning role's variable with its defaults loaded in the play "
        "(ansible.builtin.import_role, tasks_from: defaults.yml) instead:\n" + "\n".join(found)
    )
    assert sorted(set(ALLOWED) - used) == [], "allow-list entries that no longer match anything"


def test_allow_list_entries_say_why():
    assert all(reason.strip() for reason in ALLOWED.values())


@pytest.mark.parametrize(
    ("line", "file_role", "expected"),
    [
        ("port: \"{{ pgbouncer_listen_port | default(6432) }}\"", None, ["pgbouncer_listen_port"]),
        ("port: \"{{ pgbouncer_health_port | default(6480) }}\"", "haproxy", ["pgbouncer_health_port"]),
        ("x: \"{{ groups[keepalived_group | default('keepalived')] }}\"", "firewall", ["keepalived_group"]),
        ("u: \"{{ pgbouncer_stats_users | default([]) | first }}\"", "pgbouncer_health", ["pgbouncer_stats_users"]),
        ("f: \"{{ keepalived_check_hold_file | default('/run/x') }}\"", None, ["keepalived_check_hold_file"]),
        # The role's own variable, a registered result, another variable, not a role's prefix:
        ("p: \"{{ pgbouncer_health_port | default(6480) }}\"", "pgbouncer_health", []),
        ("p: \"{{ __switchover_leader.port | default(5432) }}\"", None, []),
        ("p: \"{{ maintenance_pgbouncer_port | default(pgbouncer_listen_port) }}\"", None, []),
        ("h: \"{{ maintenance_hosts | default('pgbouncer') }}\"", None, []),
        ("u: \"{{ pgbouncer_stats_users | first | default('') }}\"", "pgbouncer_health", []),
        ("a: \"{{ hostvars[x]['pgbouncer_listen_port'] | default(6432) }}\"", None, []),
    ],
)
def test_the_scan_finds_restatements_and_only_those(line, file_role, expected):
    assert [found[1] for found in restatements(line, file_role)] == expected


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_a_defaults_entry_point_that_runs_nothing(role):
    path = ROOT / "roles" / role / "tasks" / "defaults.yml"
    assert yaml.safe_load(path.read_text()) == [], f"{path} must stay an empty task list"


def test_playbooks_load_role_defaults_without_running_the_role():
    """Every import of tasks_from: defaults.yml is an import (static), so the defaults reach the play."""
    for path in sorted((ROOT / "playbooks").rglob("*.yml")):
        text = path.read_text()
        for match in re.finditer(r"(\w+(?:\.\w+)*):\n(\s+)name: [\w.]+\n\2tasks_from: defaults\.yml", text):
            assert match.group(1) == "ansible.builtin.import_role", f"{path}: {match.group(0)}"
