"""The SSH rule of the ufw module and the firewall role (issue 15, item 5): kept whenever the
incoming policy after the run denies, on the ports sshd really listens on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ssh  # noqa: E402
from test_ufw import LAB_ARGS, FakeUfw, fixture, run_module  # noqa: E402

# sshd -T of Debian 12's openssh-server with its default config (abridged), and with
# "ListenAddress 10.129.0.21:2222" and "ListenAddress [::1]:22" added.
SSHD_T_DEFAULT = "port 22\naddressfamily any\nlistenaddress [::]:22\nlistenaddress 0.0.0.0:22\nusepam yes\n"
SSHD_T_LISTEN = "port 22\nlistenaddress 10.129.0.21:2222\nlistenaddress [::1]:22\n"
SSHD_T_PORTS_ONLY = "port 2200\nport 22\nx11forwarding yes\n"
SS = (
    'LISTEN 0      128          0.0.0.0:2222      0.0.0.0:*    users:(("sshd",pid=301,fd=3))\n'
    'LISTEN 0      244      10.129.0.21:5432      0.0.0.0:*    users:(("postgres",pid=88,fd=6))\n'
    'LISTEN 0      128             [::]:2222         [::]:*    users:(("sshd",pid=301,fd=4))\n'
    'LISTEN 0      4096               *:8008            *:*    users:(("python3",pid=99,fd=3))\n'
)


@pytest.mark.parametrize("text, ports", [
    (SSHD_T_DEFAULT, [22]),
    (SSHD_T_LISTEN, [22, 2222]),
    (SSHD_T_PORTS_ONLY, [22, 2200]),
    ("", []),
    ("\n\nport\n", []),
    ("sshd: no hostkeys available -- exiting.\n", []),
])
def test_ports_from_sshd_t(text, ports):
    assert _ssh.ports_from_sshd_t(text) == ports


def test_ports_from_ss_takes_sshd_sockets_only():
    assert _ssh.ports_from_ss(SS) == [2222]


def test_ssh_ports_prefers_sshd_then_ss_and_says_when_it_falls_back():
    assert _ssh.ssh_ports(SSHD_T_LISTEN, SS, 22) == ([22, 2222], "sshd -T")
    assert _ssh.ssh_ports("", SS, 22) == ([2222], "ss -ltnp")
    ports, source = _ssh.ssh_ports("", "", 2022)
    assert ports == [2022] and "allowing port 2022" in source and "neither sshd -T nor ss" in source


@pytest.mark.parametrize("enabled, default_incoming, policy, needed", [
    (True, None, "allow", True),       # enabled=true implies deny
    (None, "deny", "allow", True),     # enabled omitted, deny applied: the lockout of the review
    (None, None, "deny", True),        # a running deny policy stays: keep SSH
    (None, "reject", "deny", True),
    (None, None, "allow", False),
    (True, "allow", "deny", False),
    (False, "deny", "deny", False),    # ufw is being disabled
])
def test_needs_ssh_rule(enabled, default_incoming, policy, needed):
    assert _ssh.needs_ssh_rule(enabled, default_incoming, policy) is needed


SSH_2200 = "ufw allow in proto tcp from any to any port 2200 comment 'pgbouncer.cluster: ssh'"


def test_module_keeps_ssh_when_enabled_is_omitted_and_the_policy_denies(monkeypatch):
    args = {key: value for key, value in LAB_ARGS.items() if key != "enabled"}
    args.update(ssh_port=2200)
    result = run_module(monkeypatch, "lab", FakeUfw(fixture("lab", "status_verbose.txt")), check_mode=True, **args)
    assert result["commands"] == [SSH_2200]


def test_module_allows_every_port_of_ssh_ports_first(monkeypatch):
    args = dict(LAB_ARGS, ssh_ports=[2200, 22])
    result = run_module(monkeypatch, "fresh", FakeUfw(fixture("fresh", "status_verbose.txt")), check_mode=True, **args)
    assert result["commands"][:2] == [
        SSH_2200, "ufw allow in proto tcp from any to any port 22 comment 'pgbouncer.cluster: ssh'"]
