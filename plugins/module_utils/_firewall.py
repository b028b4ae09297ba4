# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The firewall's source lists against the inventory: pure functions, no I/O.

The firewall role's default source lists are the `ansible_host` of the hosts of some groups
(the cluster's members, the HAProxy hosts, the keepalived peers). A host without
`ansible_host` has no address the controller knows, so the default leaves it out, and ufw then
denies that host the port: a names-only inventory cuts the cluster's own traffic.

The role refuses that instead of guessing the address from facts: the address a peer's packets
come from is chosen by the peer's routing, which the default route's address
(ansible_default_ipv4) does not know on a host with a separate cluster network, and facts exist
only for the hosts of the play, so `--limit` would give other rules than a full run (and
exclusive mode would remove the peers' rules). A wrong guess would pass every check and still
cut the cluster; the refusal names the variable and the hosts, and says what to set.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations


def _sources(value):
    if isinstance(value, (list, tuple)):
        return sorted({str(item).strip() for item in value})
    return None


def _them(hosts, one, many):
    return one if len(hosts) == 1 else many


def unaddressed_problems(lists, addresses, values):
    """Messages for the firewall source lists that would deny the port to hosts it exists for.

    lists: {variable: {"port": text, "in_use": bool, "hosts": [inventory hosts the default is
    drawn from, this host left out]}}. addresses: {host: ansible_host} (a host without one is
    not in it). values: {variable: its value}. Only a list whose port is opened on this host
    (in_use) and that has hosts is checked. It is refused when it is empty (then ufw denies the
    port to every one of those hosts), or when one of the hosts has no address and the list is
    what the inventory's addresses give (the default, or the same set written out), which leaves
    that host out. Any other value (a CIDR, the addresses written out) is the user's choice.
    """
    found = []
    for variable, spec in lists.items():
        hosts = list(dict.fromkeys(spec.get("hosts") or []))
        if not spec.get("in_use") or not hosts:
            continue
        port = spec.get("port")
        value = _sources(values.get(variable))
        missing = [host for host in hosts if not addresses.get(host)]
        given = sorted({str(addresses[host]).strip() for host in hosts if addresses.get(host)})
        if missing and (value is None or value == given):
            found.append(
                "%s is required for port %s: %s %s no ansible_host, so the default leaves %s out%s and ufw would deny %s "
                "port %s; set ansible_host (the address the host connects from) for %s, or set %s"
                % (variable, port, ", ".join(missing), _them(missing, "has", "have"), _them(missing, "it", "them"),
                   " (the list is empty)" if not value else "", _them(missing, "it", "them"), port,
                   _them(missing, "it", "each"), variable)
            )
        elif value == []:
            found.append(
                "%s is required for port %s: it is empty, so ufw would deny port %s to %s, which the inventory's groups say "
                "use it; leave it unset (the default is their ansible_host) or list their addresses"
                % (variable, port, port, ", ".join(hosts))
            )
    return found
