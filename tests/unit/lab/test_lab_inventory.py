"""The lab inventory names no host like a group (issue 15): host `app` in group `app` made
every lab run print "Found both group and host with same name: app". The host is `app1`
(lab/lab.sh still names the container `app`; Ansible reaches it by ansible_host), and the
Molecule platforms list the same host names. About 2 s (one ansible-inventory run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
INVENTORY = ROOT / "inventories" / "lab"


def inventory():
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    result = subprocess.run([str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(INVENTORY), "--list"], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=120, check=True)
    return json.loads(result.stdout), result.stderr


def test_no_host_is_named_like_a_group_and_ansible_does_not_warn():
    data, stderr = inventory()
    groups = set(data) - {"_meta"}
    hosts = set(data["_meta"]["hostvars"])
    assert hosts & groups == set()
    assert "Found both group and host with same name" not in stderr
    assert data["app"]["hosts"] == ["app1"]
    assert data["_meta"]["hostvars"]["app1"]["ansible_host"] == "10.129.0.31"


def test_molecule_platforms_are_the_lab_inventory_hosts():
    data, _stderr = inventory()
    platforms = yaml.safe_load((ROOT / ".config" / "molecule" / "config.yml").read_text())["platforms"]
    lab_hosts = set(data["_meta"]["hostvars"]) - {"localhost"}
    assert {platform["name"] for platform in platforms} == lab_hosts
