"""The collection tarball: what `ansible-galaxy collection build` puts in, and leaves out."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# Development-only paths (top-level names or prefixes) that must not reach users.
LEFT_OUT = (
    ".ansible/",
    ".lab/",
    ".venv/",
    ".git/",
    ".ci/",
    ".config/",
    "build/",
    "bench/",
    "bench-results/",
    "lab/",
    "molecule/",
    "tests/",
    "scripts/",
    "inventories/",
    "playbooks/lab/",
    "changelogs/fragments/",
    "ansible.cfg",
    "Makefile",
    ".yamllint",
    ".ansible-lint",
    "ruff.toml",
)
# What users need from an installed collection.
REQUIRED = ("MANIFEST.json", "FILES.json", "README.md", "LICENSE", "meta/runtime.yml", "playbooks/site.yml", "changelogs/changelog.yaml",
            "CHANGELOG.md", "docs/bench/README.md", "examples/inventory/hosts.yml", "examples/tls.yml",
            # What monitoring users copy into Prometheus and Grafana (issue 28).
            "monitoring/prometheus/pgbouncer-cluster.rules.yml", "monitoring/grafana/pgbouncer-cluster.json")


def build(output):
    """Build the tarball into `output`; return its path."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-galaxy")), "collection", "build", "--force", "--output-path", str(output), str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tarballs = list(Path(output).glob("pgbouncer-cluster-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    return tarballs[0]


def members(tarball):
    with tarfile.open(tarball) as tar:
        return sorted(member.name.removeprefix("./") for member in tar.getmembers() if member.isfile())


def misplaced(names):
    """Names in the tarball that are development-only or local state."""
    return [name for name in names if name.startswith(LEFT_OUT) or name in LEFT_OUT or "__pycache__" in name or name.endswith((".pyc", ".tar.gz", ".retry"))]


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    return build(tmp_path_factory.mktemp("build"))


def test_tarball_leaves_out_lab_and_test_artifacts(tarball):
    assert misplaced(members(tarball)) == []


def test_tarball_has_the_runtime_content(tarball):
    names = members(tarball)
    for name in REQUIRED:
        assert name in names
    for module in (ROOT / "plugins" / "modules").glob("*.py"):
        assert "plugins/modules/%s" % module.name in names
    for spec in (ROOT / "roles").glob("*/meta/argument_specs.yml"):
        assert str(spec.relative_to(ROOT)) in names


def test_manifest_metadata(tarball):
    with tarfile.open(tarball) as tar:
        info = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert (info["namespace"], info["name"], info["version"]) == (galaxy["namespace"], galaxy["name"], galaxy["version"])
    for key in ("description", "license", "authors", "tags"):
        assert info[key], "galaxy.yml: %s is empty" % key
    # No placeholder URL: a key is a real address or left out (None in MANIFEST.json).
    for key in ("repository", "documentation", "homepage", "issues"):
        assert not info[key] or (info[key].startswith("https://") and ".invalid" not in info[key]), (key, info[key])
    # Authors as Ansible writes them: a name and a GitHub handle.
    assert all(re.search(r"\(@[\w-]+\)$", author) for author in info["authors"]), info["authors"]
    assert info["dependencies"] == {}


def test_runtime_requires_ansible():
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    assert runtime["requires_ansible"].startswith(">=")


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)|<(?:img|a)\s[^>]*(?:src|href)=\"([^\"]+)\"")


def anchors(markdown):
    """The anchors GitHub gives a Markdown file's headings (and its explicit <a id=...>)."""
    found, seen, fence = set(re.findall(r"<a id=\"([^\"]+)\"", markdown)), {}, False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        heading = re.match(r"#{1,6} (.*)", line)
        if heading and not fence:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            found.add(slug if slug not in seen else "%s-%d" % (slug, seen[slug]))
            seen[slug] = seen.get(slug, 0) + 1
    return found


def broken_links(root):
    """Relative links of the Markdown files under `root` that do not resolve inside it:
    a missing file, a path that leaves root, or a #anchor no heading of the target has."""
    broken = []
    for page in sorted(root.rglob("*.md")):
        text = page.read_text()
        for match in LINK.finditer(re.sub(r"```.*?```", "", text, flags=re.DOTALL)):
            target = match.group(1) or match.group(2)
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto: ...
            path, _hash, fragment = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            where = "%s: %s" % (page.relative_to(root), target)
            if not resolved.is_relative_to(root.resolve()) or not resolved.exists():
                broken.append(where + " (no such file in the collection)")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved.read_text()):
                broken.append(where + " (no such heading)")
    return broken


def test_every_link_of_the_installed_collection_resolves(tarball, tmp_path):
    """Installed into an empty collections path, every relative link (and image) of every
    Markdown file the tarball ships points at a file of the installed collection, and every
    #anchor at a heading there: what the README links ships (issue 29: docs/bench was left
    out, five dead links and the plot). Cost: the tarball is the module's; the install about
    3 s, the scan well under 1 s."""
    # A clean path: no ansible.cfg (the checkout's links itself as the collection, and
    # ansible-galaxy would find it installed already), no ANSIBLE_* from the caller.
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(config), ANSIBLE_COLLECTIONS_PATH=str(tmp_path), ANSIBLE_NOCOLOR="1", PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-galaxy")), "collection", "install", "--offline", "-p", str(tmp_path), str(tarball)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    installed = tmp_path / "ansible_collections" / "pgbouncer" / "cluster"
    pages = sorted(installed.rglob("*.md"))
    assert installed / "README.md" in pages and installed / "docs" / "bench" / "README.md" in pages, pages
    assert broken_links(installed) == []


def test_the_link_check_finds_a_dead_link(tmp_path):
    """Guards the test above against a check that passes everything. Cost: milliseconds."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## Some `code` here\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/a.md#some-code-here) [gone](docs/b.md) [out](../x.md) ![img](docs/c.png) [anchor](docs/a.md#nope) [web](https://x.invalid/)\n")
    assert broken_links(tmp_path) == [
        "README.md: docs/b.md (no such file in the collection)", "README.md: ../x.md (no such file in the collection)",
        "README.md: docs/c.png (no such file in the collection)", "README.md: docs/a.md#nope (no such heading)"]
