"""Documentation: ansible-doc renders every plugin and role entry point; README is fresh.

Runs ansible-doc against a private collections path that links to this checkout, so it
needs neither `scripts/install-deps`' link nor the lab.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COLLECTION = "pgbouncer.cluster"
MODULES = sorted(path.stem for path in (ROOT / "plugins" / "modules").glob("*.py") if path.stem != "__init__")
FILTER_DOCS = sorted(path.stem for path in (ROOT / "plugins" / "filter").glob("*.yml"))
ROLE_ENTRY_POINTS = sorted(
    (spec.parents[1].name, entry_point)
    for spec in (ROOT / "roles").glob("*/meta/argument_specs.yml")
    for entry_point in yaml.safe_load(spec.read_text())["argument_specs"]
)


@pytest.fixture(scope="module")
def doc_env(tmp_path_factory):
    """Environment in which ansible-doc finds this checkout as pgbouncer.cluster."""
    base = tmp_path_factory.mktemp("collections")
    link = base / "ansible_collections" / "pgbouncer" / "cluster"
    link.parent.mkdir(parents=True)
    link.symlink_to(ROOT)
    config = base / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(base), ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(config))
    return env


def ansible_doc(env, *args):
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-doc")), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    problems = result.stderr if "[WARNING]" in result.stderr or "[ERROR]" in result.stderr else ""
    assert result.returncode == 0 and not problems, "ansible-doc %s:\n%s%s" % (" ".join(args), result.stdout, result.stderr)
    return result.stdout


def test_there_is_something_to_document():
    assert MODULES
    assert ROLE_ENTRY_POINTS


@pytest.mark.parametrize("module", MODULES)
def test_module_renders(doc_env, module):
    text = ansible_doc(doc_env, "%s.%s" % (COLLECTION, module))
    assert "EXAMPLES" in text
    assert "RETURN VALUES" in text or "RETURN" in text


def test_module_docs_are_complete(doc_env):
    """Every module has a short description, examples and a RETURN section (one ansible-doc run)."""
    data = json.loads(ansible_doc(doc_env, "--json", *("%s.%s" % (COLLECTION, module) for module in MODULES)))
    for module in MODULES:
        doc = data["%s.%s" % (COLLECTION, module)]
        assert doc["doc"]["short_description"], module
        assert (doc.get("examples") or "").strip(), "module %s has no EXAMPLES" % module
        assert doc.get("return") is not None, "module %s has no RETURN" % module


def test_every_module_is_listed(doc_env):
    listed = json.loads(ansible_doc(doc_env, "--list", "--json", COLLECTION))
    assert sorted(name.split(".")[-1] for name in listed) == MODULES


@pytest.mark.parametrize(("role", "entry_point"), ROLE_ENTRY_POINTS)
def test_role_entry_point_renders(doc_env, role, entry_point):
    text = ansible_doc(doc_env, "-t", "role", "-e", entry_point, "%s.%s" % (COLLECTION, role))
    assert "ENTRY POINT: *%s*" % entry_point in text


def test_every_filter_is_documented(doc_env):
    """Each filter a FilterModule exports has a plugins/filter/<name>.yml that renders."""
    listed = json.loads(ansible_doc(doc_env, "-t", "filter", "--list", "--json", COLLECTION))
    exported = sorted(name.split(".")[-1] for name in listed)
    assert exported == FILTER_DOCS
    text = ansible_doc(doc_env, "-t", "filter", *("%s.%s" % (COLLECTION, name) for name in exported))
    for name in exported:
        assert "%s.%s" % (COLLECTION, name) in text


def test_readme_variable_reference_is_fresh():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-docs"), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr + "(run `make docs` and commit the READMEs)"


def test_sanity_ignore_files_are_empty():
    for path in (ROOT / "tests" / "sanity").glob("ignore-*.txt"):
        assert not path.read_text().strip(), "%s must stay empty: fix the findings instead" % path.relative_to(ROOT)
