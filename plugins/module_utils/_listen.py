# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the dry start of a candidate pgbouncer.ini cannot check, since it moves the listener
out of the live one's way: whether this node has every listen_addr address, and whether
listen_port is free or PgBouncer's. PgBouncer would otherwise load the file, then fail to
bind at the restart. Reads /proc and `ip -j addr` output; no psutil.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket

# listen_addr entries every node has: the wildcards and the loopback name.
ANYWHERE = frozenset(("*", "0.0.0.0", "::", "localhost"))
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def entries(listen_addr):
    return [entry.strip() for entry in str(listen_addr or "").split(",") if entry.strip()]


def addresses_from_ip_json(text):
    """Addresses in `ip -j addr show` output."""
    found = set()
    for link in json.loads(text or "[]"):
        for info in link.get("addr_info", []):
            if info.get("local"):
                found.add(info["local"])
    return found


def addresses_from_proc(proc="/proc"):
    """Addresses in /proc (for a node without iproute2): IPv4 from the local routes of
    net/fib_trie ("|-- A" followed by "/32 host LOCAL"), IPv6 from net/if_inet6."""
    found = set()
    try:
        with open(os.path.join(proc, "net", "fib_trie"), encoding="ascii") as handle:
            last = None
            for line in handle:
                words = line.split()
                if line.lstrip().startswith("|--") and len(words) == 2:
                    last = words[1]
                elif "/32 host LOCAL" in line and last:
                    found.add(last)
    except OSError:
        pass
    try:
        with open(os.path.join(proc, "net", "if_inet6"), encoding="ascii") as handle:
            for line in handle:
                raw = line.split()[0]
                found.add(str(ipaddress.IPv6Address(int(raw, 16))))
    except (OSError, IndexError, ValueError):
        pass
    return found


def _resolve(name):
    """The addresses a host name stands for; () when it does not resolve."""
    try:
        return {info[4][0] for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError):
        return set()


def foreign_addresses(listen_addr, node_addresses, resolve=_resolve):
    """listen_addr entries this node cannot listen on: neither a wildcard, localhost, a
    loopback address nor one of `node_addresses` (for a name: not all it resolves to, since
    PgBouncer binds each)."""
    mine = {_normal(address) for address in node_addresses}
    bad = []
    for entry in entries(listen_addr):
        if entry.lower() in ANYWHERE:
            continue
        try:
            candidates = {_normal(entry)}
        except ValueError:
            candidates = {_normal(address) for address in resolve(entry)}
        if not candidates or not all(address in mine or _everywhere(address) for address in candidates):
            bad.append(entry)
    return bad


def _everywhere(address):
    """A loopback address, or a wildcard spelt another way (0:0::0)."""
    parsed = ipaddress.ip_address(address)
    return parsed.is_loopback or parsed.is_unspecified


def _normal(address):
    """The canonical text of an address, without an IPv6 zone (fe80::1%eth0)."""
    return str(ipaddress.ip_address(str(address).split("%", 1)[0]))


def listening_inodes(port, proc="/proc"):
    """Socket inodes of TCP listeners on `port` (any address, IPv4 and IPv6)."""
    inodes = set()
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, "net", name), encoding="ascii") as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == int(port):
                        inodes.add(fields[9])
        except OSError:
            continue
    return inodes


def holders(inodes, proc="/proc"):
    """{inode: (pid, command name)} of the processes holding those sockets that this process
    may look at (all of them as root)."""
    found = {}
    wanted = {"socket:[%s]" % inode: inode for inode in inodes}
    for pid in (entry for entry in os.listdir(proc) if entry.isdigit()):
        fd_dir = os.path.join(proc, pid, "fd")
        try:
            links = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in links:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target in wanted:
                found[wanted[target]] = (int(pid), _comm(proc, pid))
    return found


def _comm(proc, pid):
    try:
        with open(os.path.join(proc, pid, "comm"), encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return "?"


def port_problem(port, proc="/proc", command="pgbouncer"):
    """Why `port` cannot be PgBouncer's listen_port (taken by another program), or None."""
    inodes = listening_inodes(port, proc)
    if not inodes:
        return None
    found = holders(inodes, proc)
    others = sorted({"%s (pid %d)" % (name, pid) for pid, name in found.values() if name != command})
    if others:
        return "port %s is in use by %s" % (port, ", ".join(others))
    if len(found) < len(inodes):
        return "port %s is in use by a process this module cannot see (run it as root)" % port
    return None
