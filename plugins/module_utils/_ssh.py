# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SSH ports a firewall must keep open, and when: pure functions, no I/O.

The ports come from the node's sshd (`sshd -T`, else `ss -Hltnp`), not from ansible_port: a
port forwarded by NAT or a second ListenAddress would otherwise be shut by the firewall.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import re

DENYING = ("deny", "reject")
_SS_SSHD = re.compile(r'users:\(\("sshd[",]')


def _port(text):
    """Port at the end of host:port, [v6]:port or a bare port, or None."""
    match = re.search(r"(?:^|:)([0-9]{1,5})$", text.strip())
    if not match:
        return None
    number = int(match.group(1))
    return number if 1 <= number <= 65535 else None


def ports_from_sshd_t(text):
    """Sorted ports of `sshd -T` output. Its listenaddress lines (host:port, one per address
    sshd binds) are what it listens on; the port lines count only when there are none."""
    listen, port = set(), set()
    for line in (text or "").splitlines():
        key, value = (line.split(None, 1) + ["", ""])[:2]
        if key == "listenaddress":
            listen.add(_port(value))
        elif key == "port":
            port.add(_port(value))
    return sorted((listen or port) - {None})


def ports_from_ss(text):
    """Sorted local ports of `ss -Hltnp` lines whose process is sshd."""
    ports = set()
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) >= 4 and _SS_SSHD.search(line):
            ports.add(_port(fields[3]))
    return sorted(ports - {None})


def ssh_ports(sshd_t=None, ss=None, fallback=22):
    """(ports, how they were found): `sshd -T`, else `ss`, else [fallback] with a note saying so."""
    ports = ports_from_sshd_t(sshd_t)
    if ports:
        return ports, "sshd -T"
    ports = ports_from_ss(ss)
    if ports:
        return ports, "ss -ltnp"
    return [int(fallback)], ("neither sshd -T nor ss showed the port sshd listens on: allowing port %s "
                             "(ansible_port or 22) instead" % fallback)


def needs_ssh_rule(enabled, default_incoming, policy):
    """Whether the SSH allow rule must be there: whenever the incoming policy after the run
    denies, whatever `enabled` says (omitted keeps a running ufw running), unless ufw is
    being disabled. A rule in an inactive ufw is harmless and keeps a later enable safe."""
    if enabled is False:
        return False
    resulting = default_incoming or ("deny" if enabled else None) or policy
    return resulting in DENYING
