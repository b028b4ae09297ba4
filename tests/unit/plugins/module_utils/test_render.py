"""The pgbouncer.ini renderer (module_utils/_render.py) writes byte for byte what the role's
former Jinja template wrote: tests/unit/fixtures/pgbouncer_ini holds the template's output
for each case of cases.yml (single process, several with and without peers, wildcard on
and off, a [users] section, passwords that need quoting, extra settings, 1.18 and 1.24),
rendered through Ansible's template lookup before the template was removed (the commit
that added these files checked the template against them)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _processes, _render  # noqa: E402

FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "pgbouncer_ini"
CASES = yaml.safe_load((FIXTURES / "cases.yml").read_text())["cases"]


def merged(dicts):
    out = {}
    for item in dicts:
        out.update(item)
    return out


def rendered(case):
    """{file name: text} the renderer writes for `case`."""
    processes = _processes.layout(case["processes"], **merged(case["layout"]))
    return {
        "%s-%s" % (case["name"], os.path.basename(proc["config_file"])): _render.render(
            proc, processes, merged(case["settings"]), case["databases"], case["users"], case["wildcard"],
            case["peering"], case["header"])
        for proc in processes
    }


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_the_renderer_writes_the_golden_files(case):
    files = rendered(case)
    assert len(files) == case["processes"]
    for name, text in files.items():
        assert text == (FIXTURES / name).read_text(), name


def test_every_golden_file_is_a_case():
    expected = {name for case in CASES for name in rendered(case)}
    assert {path.name for path in FIXTURES.glob("*.ini")} == expected
