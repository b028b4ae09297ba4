"""The pgbouncer.ini renderer (module_utils/_render.py) writes byte for byte what the role's
Jinja template wrote: tests/unit/fixtures/pgbouncer_ini holds the template's output for
each case of cases.yml (single process, several with and without peers, wildcard on and
off, a [users] section, passwords that need quoting, extra settings, 1.18 and 1.24)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _processes, _render  # noqa: E402

FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "pgbouncer_ini"
CASES = yaml.safe_load((FIXTURES / "cases.yml").read_text())["cases"]
TEMPLATE = ROOT / "roles" / "pgbouncer" / "templates" / "pgbouncer.ini.j2"


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


def test_the_template_renders_the_golden_files(tmp_path):
    """Through Ansible's own templating (the template lookup the role used), about 5 s."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    subprocess.run(
        ["ansible-playbook", "-i", "localhost,", str(FIXTURES / "render_template.yml"),
         "-e", "ansible_python_interpreter=%s" % sys.executable, "-e", "cases_file=%s" % (FIXTURES / "cases.yml"),
         "-e", "template_file=%s" % TEMPLATE, "-e", "out_dir=%s" % tmp_path],
        check=True, capture_output=True, timeout=300, cwd=ROOT, env=env)
    for path in sorted(tmp_path.glob("*.ini")):
        assert path.read_bytes() == (FIXTURES / path.name).read_bytes(), path.name
    assert len(list(tmp_path.glob("*.ini"))) == len(list(FIXTURES.glob("*.ini")))
