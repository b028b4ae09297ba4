"""What the dry start cannot check, since it moves the listener (module_utils/_listen.py):
listen_addr must be this node's, listen_port free or PgBouncer's. /proc is faked in a
temporary directory."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _listen  # noqa: E402

NODE = {"10.129.0.21", "fe80::1", "127.0.0.1", "::1"}
NAMES = {"pg-srv1.example": ["10.129.0.21"], "elsewhere.example": ["10.129.0.99"], "both.example": ["10.129.0.21", "10.0.0.9"]}


@pytest.mark.parametrize(("listen_addr", "foreign"), [
    ("10.129.0.21,127.0.0.1", []),
    ("*", []),
    ("0.0.0.0, ::", []),
    ("localhost,::1,127.0.0.2", []),
    ("fe80::1%eth0", []),
    ("pg-srv1.example", []),
    ("10.129.0.22,127.0.0.1", ["10.129.0.22"]),
    ("elsewhere.example, nowhere.invalid", ["elsewhere.example", "nowhere.invalid"]),
    ("both.example", ["both.example"]),  # PgBouncer binds every address a name resolves to
])
def test_foreign_addresses(listen_addr, foreign):
    assert _listen.foreign_addresses(listen_addr, NODE, resolve=lambda name: set(NAMES.get(name, []))) == foreign


def test_addresses_from_ip_json():
    text = json.dumps([{"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1"}, {"family": "inet6", "local": "::1"}]},
                       {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.129.0.21", "prefixlen": 24}]},
                       {"ifname": "eth1"}])
    assert _listen.addresses_from_ip_json(text) == {"127.0.0.1", "::1", "10.129.0.21"}


def test_addresses_from_proc(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "fib_trie").write_text(
        "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n"
        "     |-- 10.129.0.0\n        /24 link UNICAST\n     |-- 10.129.0.21\n        /32 host LOCAL\n"
        "     |-- 127.0.0.1\n        /32 host LOCAL\n")
    (tmp_path / "net" / "if_inet6").write_text(
        "00000000000000000000000000000001 01 80 10 80       lo\nfe800000000000000000000000000001 02 40 20 80     eth0\n")
    assert _listen.addresses_from_proc(str(tmp_path)) == {"10.129.0.21", "127.0.0.1", "::1", "fe80::1"}


def fake_proc(root, listeners, processes):
    """/proc with TCP `listeners` [(port, inode)] and `processes` {pid: (comm, [inode])}."""
    (root / "net").mkdir()
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    rows = ["   %d: 00000000:%04X 00000000:0000 0A 00000000:00000000 00:00000000 00000000   105        0 %d 1 0 100 0 0 10 0"
            % (index, port, inode) for index, (port, inode) in enumerate(listeners)]
    # An established connection from the port is not a listener.
    rows.append("   9: 0100007F:1920 0100007F:D431 01 00000000:00000000 00:00000000 00000000   105        0 999 1 0 20 4 30 10 -1")
    (root / "net" / "tcp").write_text(head + "\n".join(rows) + "\n")
    (root / "net" / "tcp6").write_text(head)
    for pid, (comm, inodes) in processes.items():
        (root / str(pid) / "fd").mkdir(parents=True)
        (root / str(pid) / "comm").write_text(comm + "\n")
        for fd, inode in enumerate(inodes, start=3):
            os.symlink("socket:[%d]" % inode, root / str(pid) / "fd" / str(fd))
    return str(root)


def test_a_free_port_and_pgbouncers_port_are_fine(tmp_path):
    proc = fake_proc(tmp_path, [(6432, 101), (6432, 102)], {40: ("pgbouncer", [101]), 41: ("pgbouncer", [102])})
    assert _listen.port_problem(6432, proc) is None
    assert _listen.port_problem(6433, proc) is None
    assert _listen.port_problem("6432", proc) is None


def test_a_port_another_program_holds(tmp_path):
    proc = fake_proc(tmp_path, [(5000, 201)], {7: ("haproxy", [201])})
    assert _listen.port_problem(5000, proc) == "port 5000 is in use by haproxy (pid 7)"


def test_a_holder_this_process_cannot_see(tmp_path):
    proc = fake_proc(tmp_path, [(6432, 301)], {})
    assert "cannot see" in _listen.port_problem(6432, proc)
