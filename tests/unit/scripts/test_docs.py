"""Documentation: ansible-doc renders every plugin and role entry point; README is fresh.

Runs ansible-doc against a private collections path that links to this checkout, so it
needs neither `scripts/install-deps`' link nor the lab. Each ansible-doc run costs about
0.7 s: the modules render in one run, the roles in one run per entry point name, and each
test reads its own part. About 6 s in all.
"""

from __future__ import annotations

import json
import os
import re
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


def sections(text, header):
    """{name: its part of the text} of a multi-plugin ansible-doc text output, each part starting
    at a line `header` matches (its group 1 is the name)."""
    found = {}
    parts = re.split(header, text, flags=re.MULTILINE)
    for name, part in zip(parts[1::2], parts[2::2]):
        assert name not in found, "%s rendered twice" % name
        found[name] = part
    return found


@pytest.fixture(scope="module")
def module_docs(doc_env):
    """{module: its ansible-doc text}, every module rendered by one ansible-doc run (any warning
    or error fails it, naming the module in ansible-doc's own words)."""
    text = ansible_doc(doc_env, *("%s.%s" % (COLLECTION, module) for module in MODULES))
    return sections(text, r"^> MODULE %s\.(\S+) " % re.escape(COLLECTION))


@pytest.fixture(scope="module")
def role_docs(doc_env):
    """{(role, entry point): its ansible-doc text}, one ansible-doc run per entry point name for
    every role that has it."""
    found = {}
    for entry_point in sorted({entry for _role, entry in ROLE_ENTRY_POINTS}):
        roles = [role for role, entry in ROLE_ENTRY_POINTS if entry == entry_point]
        text = ansible_doc(doc_env, "-t", "role", "-e", entry_point, *("%s.%s" % (COLLECTION, role) for role in roles))
        for role, part in sections(text, r"^> ROLE: \*%s\.(\S+)\* " % re.escape(COLLECTION)).items():
            found[(role, entry_point)] = part
    return found


@pytest.mark.parametrize("module", MODULES)
def test_module_renders(module_docs, module):
    text = module_docs[module]
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
def test_role_entry_point_renders(role_docs, role, entry_point):
    text = role_docs[(role, entry_point)]
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
