"""keepalived_virtual_router_id defaults to a value derived from keepalived_vip, not
keepalived's sample 51 (issue 15, item 12): rendered with Ansible's own templating, in a
child process (the controller's templating changes global state the module tests rely on)."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "roles" / "keepalived" / "defaults" / "main.yml").read_text())
SPECS = yaml.safe_load((ROOT / "roles" / "keepalived" / "meta" / "argument_specs.yml").read_text())


VIPS = ["10.129.0.20", "10.129.0.21", "10.0.0.1", "192.168.7.255", "10.1.2.051", "10.129.0.0", "fd00::20", "2001:db8::1"]
RENDER = """
import json, sys
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
expression, vips = json.load(sys.stdin)
print(json.dumps({vip: int(Templar(loader=DataLoader(), variables={"keepalived_vip": vip})
                           .template(trust_as_template(expression))) for vip in vips}))
"""


@functools.cache
def rendered():
    run = subprocess.run([sys.executable, "-c", RENDER], input=json.dumps([DEFAULTS["keepalived_virtual_router_id"], VIPS]),
                         capture_output=True, text=True, check=True, timeout=60)
    return json.loads(run.stdout)


def vrid(vip):
    return rendered()[vip]


def test_default_is_derived_from_the_vip_not_51():
    assert "keepalived_vip" in DEFAULTS["keepalived_virtual_router_id"]
    spec = SPECS["argument_specs"]["main"]["options"]["keepalived_virtual_router_id"]
    assert "default" not in spec and "keepalived_vip" in " ".join(spec["description"])


@pytest.mark.parametrize("vip, expected", [("10.129.0.20", 20), ("10.0.0.1", 1), ("192.168.7.255", 255), ("10.1.2.051", 51)])
def test_ipv4_vip_gives_its_last_octet(vip, expected):
    assert vrid(vip) == expected


@pytest.mark.parametrize("vip", ["10.129.0.0", "fd00::20", "2001:db8::1"])
def test_other_vips_give_a_hash_in_range(vip):
    expected = int(hashlib.md5(vip.encode()).hexdigest()[:8], 16) % 255 + 1
    assert vrid(vip) == expected and 1 <= expected <= 255


def test_two_vips_of_one_segment_get_two_ids():
    assert vrid("10.129.0.20") != vrid("10.129.0.21")
