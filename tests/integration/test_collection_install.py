"""Install the built tarball like a user does, and deploy the lab from the installed copy.

The tarball goes into an empty collections path; ansible-playbook then runs with a config
that knows only that path (not the checkout's .ansible link nor ./roles), from a directory
outside the checkout, so `pgbouncer.cluster.site` and the role come from the install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import INVENTORY, NODES, ROOT, recap

BIN = Path(sys.executable).parent
DEV_ONLY = (
    "lab/",
    "molecule/",
    "tests/",
    "scripts/",
    "inventories/",
    "playbooks/lab/",
    ".lab/",
    ".venv/",
    ".ansible/",
    "build/",
    "bench/",
    "bench-results/",
    ".config/",
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(collections path, run) after building and installing; run() sees only that path."""
    work = tmp_path_factory.mktemp("install")
    config = work / "ansible.cfg"
    config.write_text(
        "[defaults]\n"
        "collections_path = %s\n"
        "collections_scan_sys_path = false\n"
        "forks = 10\n"
        "interpreter_python = auto_silent\n"
        "retry_files_enabled = false\n"
        "[ssh_connection]\n"
        "pipelining = true\n"
        "ssh_args = -o ControlMaster=auto -o ControlPersist=120s\n" % (work / "collections")
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(config), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")

    def run(*args, timeout=300):
        return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=work, env=env, capture_output=True, text=True, timeout=timeout, check=False)

    built = run("ansible-galaxy", "collection", "build", "--output-path", str(work / "dist"), str(ROOT))
    assert built.returncode == 0, built.stdout + built.stderr
    (tarball,) = (work / "dist").glob("pgbouncer-cluster-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = [member.name for member in tar.getmembers()]
    assert [name for name in names if name.startswith(DEV_ONLY)] == []
    assert "roles/pgbouncer/tasks/main.yml" in names
    # What the README links ships with it (issue 29): the published bench figures, the examples.
    assert "docs/bench/README.md" in names and "examples/inventory/hosts.yml" in names

    done = run("ansible-galaxy", "collection", "install", "--no-deps", "-p", str(work / "collections"), str(tarball))
    assert done.returncode == 0, done.stdout + done.stderr
    return work / "collections", run


def test_installed_copy_is_the_one_ansible_finds(installed):
    collections, run = installed
    listed = run("ansible-galaxy", "collection", "list", "pgbouncer.cluster", "--format", "json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    paths = list(json.loads(listed.stdout))
    assert paths == [str(collections / "ansible_collections")]
    installed_copy = collections / "ansible_collections" / "pgbouncer" / "cluster"
    assert not installed_copy.is_symlink()
    assert not (installed_copy / "lab").exists()
    assert not (installed_copy / "tests").exists()


def test_site_from_the_installed_collection_converges_the_lab(installed):
    """The installed copy runs site.yml without failure and finds the lab converged.

    The lab was converged by `make lab` / Molecule's converge from the checkout, so the
    installed copy should change nothing. Tests that ran before (password changes, PAUSE,
    firewall rules) may have left something for site.yml to put back: then a second run,
    still from the installed copy, must report changed=0. Every run must succeed.
    """
    run = installed[1]
    outputs = []
    for _attempt in range(2):
        result = run("ansible-playbook", "pgbouncer.cluster.site", "-i", str(INVENTORY), timeout=900)
        output = result.stdout + result.stderr
        outputs.append(output)
        assert result.returncode == 0, output
        stats = recap(output)
        assert set(stats) == set(NODES), output
        for host, counts in stats.items():
            assert counts["failed"] == 0 and counts["unreachable"] == 0, "%s: %s\n%s" % (host, counts, output)
        if all(counts["changed"] == 0 for counts in stats.values()):
            return
    pytest.fail("site.yml from the installed collection still changed something on a second run:\n%s" % "\n".join(outputs))
