# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ufw rules for the pgbouncer.cluster.ufw module: pure functions, no I/O.

Three parts:

* validation: rule options given to the module become `Rule`s, or a list of problems;
* state: the `### tuple ###` lines of /etc/ufw/user.rules and user6.rules become `Tuple`s;
* planning: compare the two and build the ufw command lines (argv lists) that close the gap.

A tuple line, as ufw 0.36 writes it:

    ### tuple ### ACTION PROTO DPORT DST SPORT SRC [DAPP SAPP] DIRECTION [comment=HEX]

ACTION is allow|deny|reject|limit, with `_log` or `_log-all` appended when the rule logs and
`route:` prepended for a routed rule; DIRECTION is `in`, `out`, `in_IFACE`, `out_IFACE`, or
both joined by `!` for a routed rule; any address is 0.0.0.0/0 or ::/0; the comment is the
hex of its UTF-8 text. A rule whose source and destination are both any is written to both
files (when IPv6 is on); any other rule to the file of its addresses' family.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import binascii
import ipaddress
import re
from collections import namedtuple

ACTIONS = ("allow", "deny", "reject", "limit")
DIRECTIONS = ("in", "out")
# What ufw 0.36 accepts after `proto` (icmp is refused by ufw itself).
PROTOS = ("any", "tcp", "udp", "esp", "ah", "gre", "ipv6", "igmp", "vrrp")
PORT_PROTOS = ("any", "tcp", "udp")
# iptables multiport takes at most 15 ports; a range counts as two.
MAX_MULTIPORT = 15
TAG_SEPARATOR = ": "
POLICIES = {"DROP": "deny", "REJECT": "reject", "ACCEPT": "allow"}
ANY = "any"
ANY_NETS = {"0.0.0.0/0": 4, "::/0": 6}
TUPLE_MARK = "### tuple ###"

# A rule the module manages: addresses and port in canonical form (see canonical_address and
# canonical_ports). `families` is the set of ufw files (4, 6) the rule belongs in.
Rule = namedtuple("Rule", "action direction proto src dest port comment families")

# A rule read from a rules file, fields as written there, plus the file's family (4 or 6).
Tuple = namedtuple("Tuple", "action log route proto dport dst sport src dapp sapp direction comment family")


# --- Validation --------------------------------------------------------------------------


def canonical_address(text):
    """(canonical text, family or None) of "any", an IPv4/IPv6 address or a CIDR.

    A host is written without prefix length, a network as its network address and prefix
    (10.129.0.5/24 becomes 10.129.0.0/24, as ufw itself normalises it). "any" has family None;
    0.0.0.0/0 and ::/0 are "any" limited to one family. Raises ValueError with a message.
    """
    value = str(text).strip()
    if value.lower() == ANY:
        return ANY, None
    if not value or any(char.isspace() for char in value):
        raise ValueError("%r is not an IP address, a CIDR or any" % text)
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError("%r is not an IP address, a CIDR or any (host names are not resolved)" % text) from None
    if network.prefixlen == 0:
        return ANY, network.version
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address), network.version
    return str(network), network.version


def _port_number(text, original):
    if not re.fullmatch(r"[0-9]{1,5}", text):
        raise ValueError("port %r: %r is not a port number" % (original, text))
    number = int(text)
    if not 1 <= number <= 65535:
        raise ValueError("port %r: %d is not between 1 and 65535" % (original, number))
    return number


def port_items(value):
    """Sorted unique [(first, last), ...] of a port spec; [] for any (all ports).

    The spec is an int, a string such as "6432", "80,443", "7000:7010" or "80,7000:7010",
    or a list of those. Raises ValueError with a message.
    """
    if value is None:
        return []
    if isinstance(value, bool):
        raise ValueError("port %r is not a port number" % (value,))
    if isinstance(value, (list, tuple)):
        parts = []
        for item in value:
            parts.extend(str(item).split(","))
    else:
        text = str(value).strip()
        if text == "" or text.lower() == ANY:
            return []
        parts = text.split(",")
    items = set()
    for part in parts:
        part = part.strip()
        if ":" in part:
            first, last = part.split(":", 1)
            low, high = _port_number(first.strip(), value), _port_number(last.strip(), value)
            if low >= high:
                raise ValueError("port range %r: the first port must be lower than the last" % part)
            items.add((low, high))
        else:
            number = _port_number(part, value)
            items.add((number, number))
    if not items:
        raise ValueError("port %r names no port" % (value,))
    return sorted(items)


def render_ports(items):
    """ufw's text of [(first, last), ...]: "any", "6432", "80,443,7000:7010" (ufw's own order)."""
    if not items:
        return ANY
    return ",".join(str(low) if low == high else "%d:%d" % (low, high) for low, high in sorted(items))


def canonical_ports(text):
    """ufw's canonical text of a port spec (e.g. "6432,5432" -> "5432,6432")."""
    return render_ports(port_items(text))


def _multiport_count(items):
    return sum(1 if low == high else 2 for low, high in items)


def check_text(name, value):
    """Problem with a comment or tag ufw would refuse or mangle, or None."""
    if "'" in value:
        return "%s %r: ufw refuses single quotes in comments" % (name, value)
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        return "%s %r: control characters (newline, tab, ...) are not allowed" % (name, value)
    return None


def full_comment(tag, comment):
    """The comment written to ufw: the tag, then ": " and the rule's own comment if any."""
    return tag + TAG_SEPARATOR + comment if comment else tag


def is_tagged(comment, tag):
    return comment == tag or comment.startswith(tag + TAG_SEPARATOR)


def make_rule(options, tag, ipv6=True, where="rule"):
    """(Rule, state, warnings) from one rule's options (action, src, dest, port, proto,
    direction, comment, state). Raises ValueError naming `where` for every problem found."""
    problems = []
    warnings = []
    action = options.get("action") or "allow"
    direction = options.get("direction") or "in"
    proto = options.get("proto") or ANY
    state = options.get("state") or "present"
    if action not in ACTIONS:
        problems.append("action %r is not one of %s" % (action, ", ".join(ACTIONS)))
    if direction not in DIRECTIONS:
        problems.append("direction %r is not one of %s" % (direction, ", ".join(DIRECTIONS)))
    if proto not in PROTOS:
        problems.append("proto %r is not one of %s" % (proto, ", ".join(PROTOS)))
    addresses = {}
    for key in ("src", "dest"):
        raw = options.get(key)
        raw = ANY if raw is None else raw
        try:
            addresses[key] = canonical_address(raw)
        except ValueError as exc:
            problems.append("%s: %s" % (key, exc))
            continue
        value = addresses[key][0]
        if value != ANY and "/" in str(raw) and str(raw).strip() != value:
            warnings.append("%s: %s %s is written as %s (host bits dropped)" % (where, key, raw, value))
    families = {pair[1] for pair in addresses.values() if pair[1]}
    if len(families) > 1:
        problems.append("src and dest mix IPv4 and IPv6 (%s, %s)" % (options.get("src"), options.get("dest")))
    if not families:
        families = {4, 6} if ipv6 else {4}
    elif 6 in families and not ipv6:
        problems.append("IPv6 address given but IPV6 is not yes in /etc/default/ufw")
    try:
        items = port_items(options.get("port"))
    except ValueError as exc:
        problems.append(str(exc))
        items = []
    if items and proto not in PORT_PROTOS:
        problems.append("proto %s takes no port; use tcp, udp or any" % proto)
    elif (len(items) > 1 or any(low != high for low, high in items)) and proto not in ("tcp", "udp"):
        problems.append("a port list or range needs proto tcp or udp, not %s" % proto)
    if _multiport_count(items) > MAX_MULTIPORT:
        problems.append("port %r: at most %d ports in one rule (a range counts as two)" % (options.get("port"), MAX_MULTIPORT))
    comment = options.get("comment") or ""
    problem = check_text("comment", comment)
    if problem:
        problems.append(problem)
    if state not in ("present", "absent"):
        problems.append("state %r is not present or absent" % state)
    if problems:
        raise ValueError("%s: %s" % (where, "; ".join(problems)))
    rule = Rule(
        action=action,
        direction=direction,
        proto=proto,
        src=addresses["src"][0],
        dest=addresses["dest"][0],
        port=render_ports(items),
        comment=full_comment(tag, comment),
        families=frozenset(families),
    )
    return rule, state, warnings


def rule_ident(rule):
    """What makes two rules the same rule for ufw. The action, logging and comment do not:
    adding a rule that differs from an existing one only in those replaces it in place
    ("Rule updated"), so ufw never holds two rules with the same ident."""
    return (False, rule.direction, rule.proto, rule.src, rule.dest, rule.port, ANY, "", "")


# --- State -------------------------------------------------------------------------------


def decode_comment(text):
    try:
        return binascii.unhexlify(text).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return text


def parse_tuple(line, family):
    """Tuple from one `### tuple ###` line of a rules file; ValueError if malformed."""
    body = line.strip()[len(TUPLE_MARK):].split()
    comment = ""
    if body and body[-1].startswith("comment="):
        comment = decode_comment(body.pop()[len("comment="):])
    if len(body) == 7:
        action, proto, dport, dst, sport, src, direction = body
        dapp = sapp = "-"
    elif len(body) == 9:
        action, proto, dport, dst, sport, src, dapp, sapp, direction = body
    else:
        raise ValueError("unexpected ufw tuple line: %r" % line)
    route = action.startswith("route:")
    if route:
        action = action[len("route:"):]
    action, log = (action.split("_", 1) + [""])[:2]
    return Tuple(action, log, route, proto, dport, dst, sport, src, dapp, sapp, direction, comment, family)


def parse_rules_file(text, family):
    """[Tuple, ...] of a user.rules (family 4) or user6.rules (family 6) text, in file order."""
    return [parse_tuple(line, family) for line in text.splitlines() if line.startswith(TUPLE_MARK)]


def parse_defaults(text):
    """{KEY: value} of /etc/default/ufw or /etc/ufw/ufw.conf (shell KEY=value lines)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip().strip("\"'")
    return values


def incoming_policy(defaults):
    """allow, deny or reject from /etc/default/ufw values."""
    return POLICIES.get(defaults.get("DEFAULT_INPUT_POLICY", "DROP").upper(), defaults.get("DEFAULT_INPUT_POLICY"))


def parse_status(stdout):
    """True/False from the first line of `ufw status` (LC_ALL=C): exactly Status: active or
    Status: inactive, nothing else is read. ValueError for anything else."""
    first = (stdout.splitlines() or [""])[0].strip()
    if first == "Status: active":
        return True
    if first == "Status: inactive":
        return False
    raise ValueError("unexpected first line of `ufw status`: %r" % first)


def _tuple_address(text):
    if text in ANY_NETS:
        return ANY
    try:
        return canonical_address(text)[0]
    except ValueError:
        return text


def _tuple_ports(text):
    try:
        return canonical_ports(text)
    except ValueError:
        return text


def tuple_ident(item):
    """Same shape as rule_ident, so that a managed rule and a file tuple compare."""
    return (
        item.route,
        item.direction,
        item.proto,
        _tuple_address(item.src),
        _tuple_address(item.dst),
        _tuple_ports(item.dport),
        _tuple_ports(item.sport),
        "" if item.dapp == "-" else item.dapp,
        "" if item.sapp == "-" else item.sapp,
    )


def tuple_port_items(item):
    try:
        return port_items(item.dport)
    except ValueError:
        return None


# --- Commands ----------------------------------------------------------------------------


def rule_argv(rule, delete=False):
    """ufw argv that adds (or deletes) a managed Rule. Deleting leaves the comment out: ufw
    matches a rule without one whatever its comment, and refuses a different one."""
    argv = ["ufw"] + (["delete"] if delete else []) + [rule.action, rule.direction]
    if rule.proto != ANY:
        argv += ["proto", rule.proto]
    src, dest = rule.src, rule.dest
    if len(rule.families) == 1 and src == ANY and dest == ANY:
        # any limited to one family (0.0.0.0/0 or ::/0): say so, or ufw uses both files.
        src = "0.0.0.0/0" if 4 in rule.families else "::/0"
    argv += ["from", src, "to", dest]
    if rule.port != ANY:
        argv += ["port", rule.port]
    if rule.comment and not delete:
        argv += ["comment", rule.comment]
    return argv


def _unescape_app(name):
    return name.replace("%20", " ")


def tuple_argv(item, delete=True, one_family=False):
    """ufw argv that deletes (or re-adds) a rule exactly as read from a rules file, including
    logging, interfaces, source port, application profiles and routed rules.

    one_family: for a tuple whose source and destination are both any, name its family's
    any-net as the source, so that ufw touches that file only and not the other family's twin."""
    argv = ["ufw"] + (["route"] if item.route else []) + (["delete"] if delete else []) + [item.action]
    for part in item.direction.split("!"):
        direction, interface = (part.split("_", 1) + [""])[:2]
        argv.append(direction)
        if interface:
            argv += ["on", interface]
    if item.log:
        argv.append(item.log)
    if item.proto != ANY and item.dapp == "-" and item.sapp == "-":
        argv += ["proto", item.proto]
    # 0.0.0.0/0 and ::/0 are written as any, as ufw shows them: next to an address, the
    # address gives the family; both any means both files (where ufw keeps such a rule).
    src = ANY if item.src in ANY_NETS else item.src
    dst = ANY if item.dst in ANY_NETS else item.dst
    if one_family and src == ANY and dst == ANY:
        src = item.src
    argv += ["from", src]
    if item.sapp != "-":
        argv += ["app", _unescape_app(item.sapp)]
    elif item.sport != ANY:
        argv += ["port", item.sport]
    argv += ["to", dst]
    if item.dapp != "-":
        argv += ["app", _unescape_app(item.dapp)]
    elif item.dport != ANY:
        argv += ["port", item.dport]
    if item.comment and not delete:
        argv += ["comment", item.comment]
    return argv


def command_text(argv):
    """A shell-quoted line of argv, for reports only (the module never runs a shell)."""
    return " ".join(arg if re.fullmatch(r"[A-Za-z0-9_./:,=@%+-]+", arg) else "'%s'" % arg.replace("'", "'\\''") for arg in argv)


def show_line(item):
    """One line per file tuple, for diffs: the ufw command that adds it, and (v6) for IPv6."""
    return command_text(tuple_argv(item, delete=False)) + (" (v6)" if item.family == 6 else "")


# --- Planning ----------------------------------------------------------------------------


def _in_scope(item, scope):
    """Whether a file tuple's destination ports touch `scope`, a collection of
    (direction, first, last): same direction, overlapping ports. A tuple for all ports
    touches every port; a routed rule is never in scope."""
    if item.route:
        return False
    items = tuple_port_items(item)
    if items is None:
        return False
    direction = item.direction.partition("_")[0]
    ports = [(low, high) for where, low, high in scope if where == direction]
    if not items:
        return bool(ports)
    return any(low <= s_high and s_low <= high for low, high in items for s_low, s_high in ports)


def scope_of(rules, extra_ports=()):
    """Exclusive scope of managed Rules plus port items for incoming traffic."""
    scope = set()
    for rule in rules:
        if rule.port != ANY:
            scope.update((rule.direction, low, high) for low, high in port_items(rule.port))
    scope.update(("in", low, high) for low, high in extra_ports)
    return sorted(scope)


def comment_scope(rules, tag, keep=("ssh",)):
    """Exclusive scope by comment: the (direction, full comment) of each managed Rule whose
    comment names something after the tag (e.g. "pgbouncer.cluster: pgbouncer"). A tagged rule
    with that comment on another port is stale: the port it served moved (issue 15, item 6).
    The bare tag and the comments in `keep` (the SSH rule's) never count, so that a changed
    sshd port never removes the rule that lets the controller in."""
    kept = {tag} | {full_comment(tag, comment) for comment in keep}
    return sorted({(rule.direction, rule.comment) for rule in rules if rule.comment not in kept})


def _named(item, comments):
    """Whether a file tuple carries one of `comments` (see comment_scope), same direction;
    a routed rule never does."""
    return not item.route and (item.direction.partition("_")[0], item.comment) in comments


def plan(present, absent, tuples, tag, exclusive=False, scope=(), comments=()):
    """Commands that bring `tuples` (the current state) to the wanted rules.

    present: [Rule] to have, in order; absent: [Rule] to remove. With `exclusive`, every tuple
    tagged with `tag` whose ports touch `scope` (see scope_of), or whose comment and direction
    are in `comments` (see comment_scope) whatever its port, and that is not in `present` is
    removed as well. Returns (commands, added, removed): commands is a list of
    (argv, reason) with additions first (so that a replaced rule never leaves a gap), then
    deletions; added lists the Rules added (or whose comment is updated), removed the Tuples
    the deletions remove.
    """
    by_ident = {}
    for item in tuples:
        by_ident.setdefault(tuple_ident(item), []).append(item)
    commands = []
    added = []
    for rule in present:
        have = by_ident.get(rule_ident(rule), [])
        exact = {item.family for item in have if (item.action, item.log, item.comment) == (rule.action, "", rule.comment)}
        if not rule.families <= exact:
            complete = rule.families <= {item.family for item in have}
            commands.append((rule_argv(rule), "update" if complete else "add"))
            added.append(rule)
    # A tuple with a wanted ident in its family is never deleted: adding the wanted rule
    # replaced it in place. Both sets hold the family: 0.0.0.0/0 and ::/0 share the ident of
    # "any", yet src 0.0.0.0/0 neither keeps nor removes the ::/0 rule.
    wanted = {(rule_ident(rule), family) for rule in present for family in rule.families}
    unwanted = {(rule_ident(rule), rule.action, family) for rule in absent for family in rule.families}
    removed, reasons = [], []
    for item in tuples:
        ident = tuple_ident(item)
        if (ident, item.family) in wanted:
            continue
        if (ident, item.action, item.family) in unwanted:
            reasons.append("absent")
        elif exclusive and is_tagged(item.comment, tag) and (_in_scope(item, scope) or _named(item, comments)):
            reasons.append("exclusive")
        else:
            continue
        removed.append(item)
    seen = set()
    for item, reason in zip(removed, reasons):
        # "from any to any" deletes from both files: fine when both tuples go, else name the family.
        twin_goes = any(other.family != item.family and tuple_ident(other) == tuple_ident(item)
                        and other.action == item.action for other in removed)
        argv = tuple_argv(item, one_family=not twin_goes)
        if tuple(argv) not in seen:
            seen.add(tuple(argv))
            commands.append((argv, reason))
    return commands, added, removed


def rule_tuples(rule):
    """The file tuples ufw writes for a managed Rule, one per family."""
    result = []
    for family in sorted(rule.families):
        anynet = "0.0.0.0/0" if family == 4 else "::/0"
        result.append(Tuple(
            action=rule.action, log="", route=False, proto=rule.proto, dport=rule.port,
            dst=anynet if rule.dest == ANY else rule.dest, sport=ANY,
            src=anynet if rule.src == ANY else rule.src, dapp="-", sapp="-",
            direction=rule.direction, comment=rule.comment, family=family,
        ))
    return result


def predict(tuples, added, removed):
    """The tuples after `plan`'s commands: removed ones gone, added ones appended, or put in
    the place of the rule with the same ident, as ufw does."""
    result = [item for item in tuples if item not in removed]
    for rule in added:
        for new in rule_tuples(rule):
            for index, item in enumerate(result):
                if item.family == new.family and tuple_ident(item) == tuple_ident(new):
                    result[index] = new
                    break
            else:
                result.append(new)
    # As in the files: IPv4 rules (user.rules) before IPv6 ones (user6.rules), each in order.
    return sorted(result, key=lambda item: item.family)


def render_state(tuples, active=None, policy=None):
    """Text for a diff: status, incoming policy, then one line per rule (v4 file, then v6)."""
    lines = []
    if active is not None:
        lines.append("# status: %s" % ("active" if active else "inactive"))
    if policy is not None:
        lines.append("# default incoming: %s" % policy)
    ordered = [item for item in tuples if item.family == 4] + [item for item in tuples if item.family == 6]
    lines.extend(show_line(item) for item in ordered)
    return "\n".join(lines) + "\n"


def unmanaged_on_ports(tuples, tag, scope):
    """Untagged tuples whose ports touch `scope`: exclusive mode leaves them alone."""
    return [item for item in tuples if not is_tagged(item.comment, tag) and _in_scope(item, scope)]


def conflicts(present, absent):
    """Problems: the same rule (same ident) wanted twice with another action or comment, since
    ufw keeps one of them only; or a rule both present and absent."""
    problems = []
    seen = {}
    for rule in present:
        ident = rule_ident(rule)
        if ident in seen and seen[ident] != (rule.action, rule.comment):
            problems.append("the same rule is given twice with another action or comment (ufw keeps one only): %s"
                            % command_text(rule_argv(rule, delete=True)[3:]))
        seen[ident] = (rule.action, rule.comment)
    for rule in absent:
        if seen.get(rule_ident(rule), (None,))[0] == rule.action:
            problems.append("rule both present and absent: %s" % command_text(rule_argv(rule, delete=True)[2:]))
    return problems
