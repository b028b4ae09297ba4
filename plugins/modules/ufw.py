#!/usr/bin/python
# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ufw
short_description: Manage ufw rules declaratively, with an exclusive mode per port
description:
  - Adds and removes ufw rules given as a list, IPv4 and IPv6, and optionally enables ufw with a
    default incoming policy, allowing the SSH port first.
  - Every rule the module writes carries a comment that starts with O(tag). In O(exclusive) mode,
    every other rule carrying that tag on the same ports is removed, so that dropping a host from
    a source list also closes the port to it. Rules without the tag are never removed that way.
  - "The current rules are read from ufw's own files, the C(### tuple ###) lines of
    C(/etc/ufw/user.rules) and C(/etc/ufw/user6.rules); the default policy from
    C(/etc/default/ufw); whether ufw runs from C(/etc/ufw/ufw.conf) and the first line of
    C(ufw status). Nothing else of ufw's display output is read."
  - Every rule is validated (addresses, CIDRs, ports, ranges, protocols, comments) before any
    command runs; one message lists all problems.
  - Changes are made with the C(ufw) command line only, without a shell. New rules are added
    before stale ones are removed, so that replacing a rule never leaves a gap.
version_added: 0.1.0
author: pgbouncer.cluster contributors (@pgbouncer-cluster)
options:
  rules:
    description: Rules to add or remove.
    type: list
    elements: dict
    default: []
    suboptions:
      action:
        description: What ufw does with matching packets.
        type: str
        choices: [allow, deny, reject, limit]
        default: allow
      src:
        description:
          - Source addresses; each an IPv4 or IPv6 address, a CIDR, or C(any). One ufw rule is made
            per address, all alike otherwise.
          - An empty list makes no rule, yet its ports still count for O(exclusive), so that every
            tagged rule on them is removed.
          - C(0.0.0.0/0) and C(::/0) mean any, for that IP version only, so a rule with one of them neither keeps
            (in exclusive mode) nor deletes (with O(rules[].state=absent)) the other version's rule.
          - Host names are not accepted (ufw does not resolve them).
        type: list
        elements: str
        default: [any]
        aliases: [from_ip]
      dest:
        description: Destination address, as O(rules[].src).
        type: str
        default: any
        aliases: [to_ip]
      port:
        description:
          - Destination port or ports; an integer, a string such as V(6432), V(80,443), V(7000:7010),
            or a list of those. Omitted means every port.
          - More than one port, or a range, needs O(rules[].proto=tcp) or O(rules[].proto=udp); at most
            15 ports in one rule, a range counting as two.
        type: raw
      proto:
        description: Protocol. Ports only go with V(any), V(tcp) and V(udp).
        type: str
        choices: [any, tcp, udp, esp, ah, gre, ipv6, igmp, vrrp]
        default: any
      direction:
        description: Incoming or outgoing traffic.
        type: str
        choices: [in, out]
        default: in
      comment:
        description:
          - 'Written after O(tag) and a colon in the rule''s ufw comment, as in C(pgbouncer.cluster: pgbouncer).
            Single quotes and control characters are refused (ufw does not take them).'
        type: str
        default: ''
      state:
        description: V(absent) removes the rule whatever its comment.
        type: str
        choices: [present, absent]
        default: present
  exclusive:
    description:
      - Remove every rule carrying O(tag) whose destination ports touch a port of a rule in
        O(rules) (same direction) or in O(exclusive_ports) (incoming), unless it is one of the
        present O(rules). A rule for all ports touches every port; routed rules are left alone.
      - Also remove, whatever its port, every rule whose comment is that of a rule in O(rules)
        (O(tag), a colon, then O(rules[].comment); same direction) unless it is one of the present
        O(rules), so that a rule left on a port that moved (comment V(pgbouncer) on 6433 after the
        port went back to 6432) is closed. Not for the SSH rule's comment V(ssh) nor for a rule
        with no O(rules[].comment).
      - Untagged rules on those ports are kept and reported in a warning.
    type: bool
    default: false
  exclusive_ports:
    description:
      - Further ports for O(exclusive), for when no rule is left for a port (an empty source list
        then closes it).
    type: list
    elements: raw
    default: []
  tag:
    description: Comment prefix the module owns; it marks the rules O(exclusive) may remove.
    type: str
    default: pgbouncer.cluster
  enabled:
    description:
      - V(true) allows the SSH port(s) (tcp, from any), sets the default incoming policy, then enables ufw.
      - V(false) disables ufw; its rules stay. Omitted leaves ufw as it is.
    type: bool
  default_incoming:
    description:
      - Default policy for incoming traffic. When O(enabled=true) and this is omitted, V(deny).
    type: str
    choices: [allow, deny, reject]
  ssh_port:
    description:
      - SSH port allowed (tcp, from any, with the comment O(tag) then C(ssh)) before anything else,
        so that the controller is not locked out. Used when O(ssh_ports) is empty.
      - The rule is added whenever the incoming policy after the run is V(deny) or V(reject)
        (given by O(default_incoming), implied by O(enabled=true), or already set), also when
        O(enabled) is omitted; not with O(enabled=false).
    type: int
    default: 22
  ssh_ports:
    description:
      - The ports sshd listens on, each allowed as O(ssh_port) is; replaces O(ssh_port) when not empty.
      - The firewall role reads them on the node from C(sshd -T) (else C(ss -ltnp)), which is right
        even where the controller reaches SSH through a forwarded port.
    type: list
    elements: int
    default: []
attributes:
  check_mode:
    support: full
    description:
      - Reads the state and reports in RV(commands) what it would run; runs nothing that changes.
      - Where ufw is not installed yet, reports what it would run on a fresh install.
  diff_mode:
    support: full
    description: The rules (one ufw command line each), status and incoming policy, before and after.
notes:
  - Needs root and the C(ufw) package. Rules are appended in ufw's order (first match wins).
  - For ufw, two rules that differ only in action, logging or comment are the same rule, and adding
    one replaces the other in place. So the module refuses such a pair in O(rules), and a wanted
    rule replaces an existing one rather than being added next to it.
  - Rules with interfaces, logging, source ports, application profiles and routed rules are
    read and, if tagged and O(exclusive) applies to them, removed; they cannot be added.
seealso:
  - name: ufw manual
    description: The ufw(8) manual page.
    link: https://manpages.debian.org/bookworm/ufw/ufw.8.en.html
"""

EXAMPLES = r"""
- name: Open PgBouncer to the application hosts only, enable ufw
  pgbouncer.cluster.ufw:
    rules:
      - {src: [10.129.0.31, "2001:db8:1::/64"], port: 6432, proto: tcp, comment: pgbouncer}
    exclusive: true
    enabled: true
    ssh_port: "{{ ansible_port | default(22) }}"

- name: Close a port to one host, keep every other rule
  pgbouncer.cluster.ufw:
    rules:
      - {src: 10.129.0.41, port: 6432, proto: tcp, state: absent}

- name: Close 6432 to every host the module let in (no source left)
  pgbouncer.cluster.ufw:
    rules:
      - {src: [], port: 6432, proto: tcp}
    exclusive: true

- name: Reject a port range over udp, log nothing, leave ufw's status alone
  pgbouncer.cluster.ufw:
    rules:
      - {action: reject, src: 192.168.0.0/16, port: "5000:5010", proto: udp, comment: legacy}
"""

RETURN = r"""
commands:
  description: The ufw command lines run, or that would run in check mode, in order.
  returned: always
  type: list
  elements: str
  sample: ["ufw allow in proto tcp from 10.129.0.31 to any port 6432 comment 'pgbouncer.cluster: pgbouncer'"]
rules:
  description: The rules after the change (predicted in check mode), one ufw command line each, v6 ones marked.
  returned: always
  type: list
  elements: str
  sample: ["ufw allow in proto tcp from any to any port 22 comment 'pgbouncer.cluster: ssh'"]
removed:
  description: The rules removed (or to remove), as in RV(rules).
  returned: always
  type: list
  elements: str
active:
  description: Whether ufw runs after the change (predicted in check mode).
  returned: always
  type: bool
default_incoming:
  description: Default incoming policy after the change (predicted in check mode).
  returned: always
  type: str
  sample: deny
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ssh, _ufw

USER_RULES = {4: "/etc/ufw/user.rules", 6: "/etc/ufw/user6.rules"}
DEFAULTS = "/etc/default/ufw"
CONF = "/etc/ufw/ufw.conf"
C_LOCALE = {"LC_ALL": "C", "LANG": "C"}


def read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


class Ufw:
    def __init__(self, module):
        self.module = module
        # In check mode a node without ufw yet (a role installs it in the same run) is
        # reported as having no rules and ufw inactive; otherwise ufw is required.
        self.binary = module.get_bin_path("ufw", required=not module.check_mode)

    def run(self, argv):
        return self.module.run_command([self.binary] + argv[1:], check_rc=False, environ_update=C_LOCALE)

    def state(self):
        """(tuples, active, policy, ipv6) read from ufw's files and `ufw status`."""
        defaults = _ufw.parse_defaults(read_text(DEFAULTS))
        tuples = []
        for family, path in sorted(USER_RULES.items()):
            if family == 6 and not os.path.exists(path):
                continue
            try:
                tuples.extend(_ufw.parse_rules_file(read_text(path), family))
            except ValueError as exc:
                self.module.fail_json(msg="cannot read %s: %s" % (path, exc))
        if self.binary is None:
            return tuples, False, _ufw.incoming_policy(defaults), defaults.get("IPV6", "yes").lower() == "yes"
        rc, out, err = self.run(["ufw", "status"])
        if rc != 0:
            self.module.fail_json(msg="ufw status failed (is this run as root?)", rc=rc, stdout=out, stderr=err)
        try:
            running = _ufw.parse_status(out)
        except ValueError as exc:
            self.module.fail_json(msg=str(exc))
        enabled_at_boot = _ufw.parse_defaults(read_text(CONF)).get("ENABLED", "no").lower() == "yes"
        ipv6 = defaults.get("IPV6", "yes").lower() == "yes"
        return tuples, running and enabled_at_boot, _ufw.incoming_policy(defaults), ipv6


def wanted_rules(module, ipv6, policy=None):
    """(present, absent, (scope, comments), warnings) from the parameters; fails listing every
    problem. scope and comments as _ufw.plan takes them."""
    params = module.params
    tag = params["tag"]
    problems = []
    warnings = []
    problem = _ufw.check_text("tag", tag)
    if problem:
        problems.append(problem)
    if not tag.strip():
        problems.append("tag must not be empty")
    ssh_ports = params["ssh_ports"] or [params["ssh_port"]]
    for port in ssh_ports:
        if not 1 <= port <= 65535:
            problems.append("ssh_port(s) must be between 1 and 65535, not %d" % port)
    present, absent = [], []
    # Exclusive mode covers the ports of the given rules, even those with no source left
    # (not the SSH rule's port, unless given).
    given = []
    for index, options in enumerate(params["rules"]):
        for number, src in enumerate(options["src"] or []):
            where = "rules[%d]" % index if len(options["src"]) == 1 else "rules[%d] src[%d]" % (index, number)
            try:
                rule, state, notes = _ufw.make_rule(dict(options, src=src), tag, ipv6, where)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            warnings.extend(notes)
            target = present if state == "present" else absent
            if rule not in target:
                target.append(rule)
        try:
            scope_rule = _ufw.make_rule(dict(options, src=_ufw.ANY, dest=_ufw.ANY), tag, ipv6, "rules[%d]" % index)[0]
            given.append(scope_rule)
        except ValueError as exc:
            if not options["src"]:
                problems.append(str(exc))  # otherwise already reported for each source
    # Whenever the resulting policy denies, not only with enabled=true: a deny applied to a
    # running ufw without the SSH rule locks the controller out.
    if _ssh.needs_ssh_rule(params["enabled"], params["default_incoming"], policy) and not problems:
        for index, port in enumerate(ssh_ports):
            ssh = _ufw.make_rule(dict(port=port, proto="tcp", comment="ssh"), tag, ipv6, "ssh_port")[0]
            if ssh not in present:
                present.insert(index, ssh)
    extra = []
    for index, port in enumerate(params["exclusive_ports"]):
        try:
            items = _ufw.port_items(port)
        except ValueError as exc:
            problems.append("exclusive_ports[%d]: %s" % (index, exc))
            continue
        if not items:
            problems.append("exclusive_ports[%d]: give a port, not %r" % (index, port))
        extra.extend(items)
    problems.extend(_ufw.conflicts(present, absent))
    if problems:
        module.fail_json(msg="invalid ufw parameters, nothing changed: %s" % " | ".join(problems), problems=problems)
    comments = _ufw.comment_scope(given, tag)
    return present, absent, (_ufw.scope_of(given, extra), comments), warnings


def main():
    rule_options = dict(
        action=dict(type="str", choices=list(_ufw.ACTIONS), default="allow"),
        src=dict(type="list", elements="str", default=["any"], aliases=["from_ip"]),
        dest=dict(type="str", default="any", aliases=["to_ip"]),
        port=dict(type="raw"),
        proto=dict(type="str", choices=list(_ufw.PROTOS), default="any"),
        direction=dict(type="str", choices=list(_ufw.DIRECTIONS), default="in"),
        comment=dict(type="str", default=""),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    module = AnsibleModule(
        argument_spec=dict(
            rules=dict(type="list", elements="dict", default=[], options=rule_options),
            exclusive=dict(type="bool", default=False),
            exclusive_ports=dict(type="list", elements="raw", default=[]),
            tag=dict(type="str", default="pgbouncer.cluster"),
            enabled=dict(type="bool"),
            default_incoming=dict(type="str", choices=["allow", "deny", "reject"]),
            ssh_port=dict(type="int", default=22),
            ssh_ports=dict(type="list", elements="int", default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    ufw = Ufw(module)
    tuples, active, policy, ipv6 = ufw.state()
    present, absent, (scope, comments), warnings = wanted_rules(module, ipv6, policy)
    for warning in warnings:
        module.warn(warning)

    commands, added, removed = _ufw.plan(present, absent, tuples, params["tag"], params["exclusive"], scope, comments)
    if params["exclusive"]:
        kept = [item for item in _ufw.unmanaged_on_ports(tuples, params["tag"], scope) if item not in removed]
        if kept:
            module.warn("exclusive mode keeps these rules on its ports, which do not carry the tag %r: %s"
                        % (params["tag"], "; ".join(_ufw.show_line(item) for item in kept)))
    wanted_policy = params["default_incoming"] or ("deny" if params["enabled"] else None)
    if wanted_policy and wanted_policy != policy:
        commands.append((["ufw", "default", wanted_policy, "incoming"], "policy"))
    if params["enabled"] is True and not active:
        commands.append((["ufw", "--force", "enable"], "enable"))
    elif params["enabled"] is False and active:
        commands.append((["ufw", "disable"], "disable"))

    after_active = active if params["enabled"] is None else params["enabled"]
    after_policy = wanted_policy or policy
    after = _ufw.predict(tuples, added, removed)
    done = []
    if commands and not module.check_mode:
        for argv in [command[0] for command in commands]:
            rc, out, err = ufw.run(argv)
            if rc != 0:
                module.fail_json(
                    msg="%s failed (rc %d): %s" % (_ufw.command_text(argv), rc, (err or out).strip()),
                    rc=rc, stdout=out, stderr=err, commands=done + [_ufw.command_text(argv)],
                )
            done.append(_ufw.command_text(argv))
        after, after_active, after_policy = ufw.state()[:3]
        # Idempotence check: what ufw wrote must be what was asked for.
        left = _ufw.plan(present, absent, after, params["tag"], params["exclusive"], scope, comments)[0]
        if left or (params["enabled"] is not None and after_active != params["enabled"]) or (wanted_policy and after_policy != wanted_policy):
            module.fail_json(
                msg="ufw did not reach the wanted state; still to do: %s"
                % ("; ".join(_ufw.command_text(argv) for argv in [command[0] for command in left]) or "status or policy"),
                commands=done,
            )

    result = dict(
        changed=bool(commands),
        commands=[_ufw.command_text(command[0]) for command in commands],
        rules=[_ufw.show_line(item) for item in after],
        removed=[_ufw.show_line(item) for item in removed],
        active=after_active,
        default_incoming=after_policy,
    )
    if module._diff:
        result["diff"] = dict(
            before=_ufw.render_state(tuples, active, policy),
            after=_ufw.render_state(after, after_active, after_policy),
            before_header="ufw",
            after_header="ufw",
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
