"""The collection tarball: what `ansible-galaxy collection build` puts in, and leaves out."""

from __future__ import annotations

import json
import os
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
    "docs/bench/",
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
    for key in ("description", "license", "authors", "repository", "documentation", "issues", "tags"):
        assert info[key], "galaxy.yml: %s is empty" % key
    assert info["dependencies"] == {}


def test_runtime_requires_ansible():
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    assert runtime["requires_ansible"].startswith(">=")
