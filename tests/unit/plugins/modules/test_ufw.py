"""ufw rules (module_utils/_ufw.py) and the ufw module's logic, against recorded real ufw
0.36 files and outputs (tests/unit/fixtures/ufw, see its README)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ufw  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.modules import ufw as ufw_module  # noqa: E402

from conftest import module_result  # noqa: E402

FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "ufw"
TAG = "pgbouncer.cluster"


def fixture(name, filename):
    return (FIXTURES / name / filename).read_text(encoding="utf-8")


def state(name):
    """All tuples of a recorded state, v4 file then v6 file."""
    return _ufw.parse_rules_file(fixture(name, "user.rules"), 4) + _ufw.parse_rules_file(fixture(name, "user6.rules"), 6)


def show_added(name):
    return [line for line in fixture(name, "show_added.txt").splitlines()[1:] if line.startswith("ufw ")]


def texts(commands):
    """The command lines of plan()'s (argv, reason) pairs."""
    return [_ufw.command_text(command[0]) for command in commands]


def reasons(commands):
    return [command[1] for command in commands]


def rule(tag=TAG, ipv6=True, **options):
    return _ufw.make_rule(options, tag, ipv6)[0]


# --- parsing recorded state ------------------------------------------------------------------


def test_fresh_install_has_no_rules_and_is_inactive_with_deny():
    assert state("fresh") == []
    defaults = _ufw.parse_defaults(fixture("fresh", "default_ufw"))
    assert defaults["IPV6"] == "yes"
    assert _ufw.incoming_policy(defaults) == "deny"
    assert _ufw.parse_defaults(fixture("fresh", "ufw.conf"))["ENABLED"] == "no"
    assert _ufw.parse_status(fixture("fresh", "status_verbose.txt")) is False
    assert show_added("fresh") == []


def test_status_reads_the_first_line_only_and_refuses_anything_else():
    assert _ufw.parse_status(fixture("mixed", "status_verbose.txt")) is True
    assert _ufw.parse_status(fixture("lab", "status_verbose.txt")) is True
    for text in ["", "ERROR: You need to be root to run this script\n", "Statut : actif\n"]:
        with pytest.raises(ValueError):
            _ufw.parse_status(text)


def test_mixed_state_parses_every_tuple_shape():
    tuples = state("mixed")
    assert len([t for t in tuples if t.family == 4]) == 16
    assert len([t for t in tuples if t.family == 6]) == 8
    by_line = {(t.family, t.action, t.log, t.route, t.proto, t.dport, t.dst, t.sport, t.src, t.dapp, t.sapp, t.direction): t.comment
               for t in tuples}
    assert by_line[(4, "allow", "", False, "tcp", "22", "0.0.0.0/0", "any", "0.0.0.0/0", "-", "-", "in")] == "pgbouncer.cluster: ssh"
    assert (4, "deny", "", False, "udp", "5000:5010", "0.0.0.0/0", "any", "192.168.0.0/16", "-", "-", "in") in by_line
    assert (4, "reject", "", False, "tcp", "80,443", "0.0.0.0/0", "any", "0.0.0.0/0", "-", "-", "in") in by_line
    assert (4, "limit", "", False, "tcp", "2222", "10.129.0.21", "any", "10.0.0.1", "-", "-", "in") in by_line
    assert (4, "allow", "", False, "tcp", "5432", "10.129.0.22", "any", "0.0.0.0/0", "-", "-", "out") in by_line
    assert (4, "allow", "", False, "any", "any", "0.0.0.0/0", "any", "10.129.0.41", "-", "-", "in") in by_line
    assert (4, "allow", "", False, "tcp", "9999", "0.0.0.0/0", "any", "0.0.0.0/0", "-", "-", "in_eth0") in by_line
    assert (4, "allow", "log", False, "tcp", "8080", "0.0.0.0/0", "any", "0.0.0.0/0", "-", "-", "in") in by_line
    assert (4, "allow", "log-all", False, "tcp", "1234", "0.0.0.0/0", "any", "10.9.9.9", "-", "-", "in") in by_line
    assert (4, "allow", "", True, "tcp", "443", "10.2.0.0/24", "any", "10.1.0.0/24", "-", "-", "in") in by_line
    assert (4, "allow", "", True, "any", "any", "0.0.0.0/0", "any", "10.1.0.0/24", "-", "-", "in_eth0!out_eth1") in by_line
    assert (4, "allow", "", False, "tcp", "22", "0.0.0.0/0", "any", "0.0.0.0/0", "OpenSSH", "-", "in") in by_line
    assert (4, "allow", "", False, "udp", "2000", "0.0.0.0/0", "1000", "10.5.0.0/16", "-", "-", "in") in by_line
    assert (4, "allow", "", False, "tcp", "5432,6432,7000:7010", "0.0.0.0/0", "any", "10.129.0.0/24", "-", "-", "in") in by_line
    assert by_line[(6, "allow", "", False, "tcp", "6432", "::/0", "any", "2001:db8::/64", "-", "-", "in")] == (
        "pgbouncer.cluster: pgbouncer_port")
    assert (6, "deny", "", False, "tcp", "any", "::/0", "22", "2001:db8::1", "-", "OpenSSH", "in_eth0") in by_line


@pytest.mark.parametrize("name", ["mixed", "managed", "lab"])
def test_one_logical_rule_per_line_of_ufw_show_added(name):
    """A rule for any source and destination is in both files but is one rule for ufw."""
    idents = {_ufw.tuple_ident(item) for item in state(name)}
    assert len(idents) == len(show_added(name))


def test_lab_state_is_what_the_firewall_role_writes():
    assert [_ufw.show_line(item) for item in state("lab")] == [
        "ufw allow in proto tcp from any to any port 22 comment 'pgbouncer.cluster: ssh'",
        "ufw allow in proto tcp from 10.129.0.31 to any port 6432 comment 'pgbouncer.cluster: pgbouncer'",
        "ufw allow in proto tcp from 10.129.0.21 to any port 5432 comment 'pgbouncer.cluster: postgres'",
        "ufw allow in proto tcp from 10.129.0.22 to any port 5432 comment 'pgbouncer.cluster: postgres'",
        "ufw allow in proto tcp from 10.129.0.23 to any port 5432 comment 'pgbouncer.cluster: postgres'",
        "ufw allow in proto tcp from 10.129.0.31 to any port 5432 comment 'pgbouncer.cluster: postgres'",
        "ufw allow in proto tcp from any to any port 22 comment 'pgbouncer.cluster: ssh' (v6)",
    ]


def test_malformed_tuple_line_is_an_error():
    with pytest.raises(ValueError, match="unexpected ufw tuple"):
        _ufw.parse_rules_file("### tuple ### allow tcp 22\n", 4)


def test_comment_that_is_not_hex_is_kept_as_it_is():
    item = _ufw.parse_tuple("### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=zz", 4)
    assert item.comment == "zz"


# --- commands from recorded tuples -----------------------------------------------------------

# Tuple (as recorded in mixed/) -> the argv that deletes it. Each was run against ufw 0.36.
DELETES = [
    ("allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in", "ufw delete allow in proto tcp from any to any port 22"),
    ("deny udp 5000:5010 0.0.0.0/0 any 192.168.0.0/16 in", "ufw delete deny in proto udp from 192.168.0.0/16 to any port 5000:5010"),
    ("reject tcp 80,443 0.0.0.0/0 any 0.0.0.0/0 in", "ufw delete reject in proto tcp from any to any port 80,443"),
    ("limit tcp 2222 10.129.0.21 any 10.0.0.1 in", "ufw delete limit in proto tcp from 10.0.0.1 to 10.129.0.21 port 2222"),
    ("allow tcp 5432 10.129.0.22 any 0.0.0.0/0 out", "ufw delete allow out proto tcp from any to 10.129.0.22 port 5432"),
    ("allow any any 0.0.0.0/0 any 10.129.0.41 in", "ufw delete allow in from 10.129.0.41 to any"),
    ("allow tcp 9999 0.0.0.0/0 any 0.0.0.0/0 in_eth0", "ufw delete allow in on eth0 proto tcp from any to any port 9999"),
    ("allow_log tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in", "ufw delete allow in log proto tcp from any to any port 8080"),
    ("allow_log-all tcp 1234 0.0.0.0/0 any 10.9.9.9 in", "ufw delete allow in log-all proto tcp from 10.9.9.9 to any port 1234"),
    ("route:allow tcp 443 10.2.0.0/24 any 10.1.0.0/24 in",
     "ufw route delete allow in proto tcp from 10.1.0.0/24 to 10.2.0.0/24 port 443"),
    ("route:allow any any 0.0.0.0/0 any 10.1.0.0/24 in_eth0!out_eth1",
     "ufw route delete allow in on eth0 out on eth1 from 10.1.0.0/24 to any"),
    ("allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 OpenSSH - in", "ufw delete allow in from any to any app OpenSSH"),
    ("allow udp 2000 0.0.0.0/0 1000 10.5.0.0/16 in", "ufw delete allow in proto udp from 10.5.0.0/16 port 1000 to any port 2000"),
    ("allow tcp 5432,6432,7000:7010 0.0.0.0/0 any 10.129.0.0/24 in",
     "ufw delete allow in proto tcp from 10.129.0.0/24 to any port 5432,6432,7000:7010"),
]


@pytest.mark.parametrize("body, expected", DELETES)
def test_delete_command_of_a_recorded_tuple(body, expected):
    line = next(text for text in fixture("mixed", "user.rules").splitlines()
                if text.startswith("### tuple ### " + body + " ") or text == "### tuple ### " + body)
    item = _ufw.parse_tuple(line, 4)
    assert _ufw.command_text(_ufw.tuple_argv(item)) == expected


def test_delete_never_carries_the_comment_and_add_keeps_it():
    item = next(t for t in state("mixed") if t.comment == "pgbouncer.cluster: pgbouncer_port")
    assert _ufw.tuple_argv(item) == ["ufw", "delete", "allow", "in", "proto", "tcp", "from", "2001:db8::/64", "to", "any", "port", "6432"]
    assert _ufw.tuple_argv(item, delete=False)[-2:] == ["comment", "pgbouncer.cluster: pgbouncer_port"]


def test_v6_application_source_rule():
    item = next(t for t in state("mixed") if t.sapp == "OpenSSH")
    assert _ufw.command_text(_ufw.tuple_argv(item)) == "ufw delete deny in on eth0 from 2001:db8::1 app OpenSSH to any"


def test_rule_argv_adds_with_the_tagged_comment():
    assert _ufw.rule_argv(rule(src="10.129.0.31", port=6432, proto="tcp", comment="pgbouncer")) == [
        "ufw", "allow", "in", "proto", "tcp", "from", "10.129.0.31", "to", "any", "port", "6432",
        "comment", "pgbouncer.cluster: pgbouncer"]
    assert _ufw.rule_argv(rule(action="limit", port=22, proto="tcp")) == [
        "ufw", "limit", "in", "proto", "tcp", "from", "any", "to", "any", "port", "22", "comment", "pgbouncer.cluster"]
    assert _ufw.rule_argv(rule(src="10.0.0.0/8", proto="any"), delete=True) == [
        "ufw", "delete", "allow", "in", "from", "10.0.0.0/8", "to", "any"]


def test_rule_argv_keeps_a_one_family_any_to_its_family():
    assert _ufw.rule_argv(rule(src="0.0.0.0/0", port=80, proto="tcp"))[5:9] == ["from", "0.0.0.0/0", "to", "any"]
    assert _ufw.rule_argv(rule(src="::/0", port=80, proto="tcp"))[5:9] == ["from", "::/0", "to", "any"]


def test_command_text_quotes_only_what_needs_it():
    assert _ufw.command_text(["ufw", "allow", "comment", "it is"]) == "ufw allow comment 'it is'"


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("any", ("any", None)),
    ("ANY", ("any", None)),
    ("10.129.0.31", ("10.129.0.31", 4)),
    ("10.1.1.1/32", ("10.1.1.1", 4)),
    ("10.129.0.5/24", ("10.129.0.0/24", 4)),  # as ufw: "Rule changed after normalization"
    ("0.0.0.0/0", ("any", 4)),
    ("::/0", ("any", 6)),
    ("2001:DB8:0:0::0001", ("2001:db8::1", 6)),  # as recorded: ::/0 any 2001:db8::1
    ("2001:db8::5/128", ("2001:db8::5", 6)),
    ("2001:0db8:0000::/48", ("2001:db8::/48", 6)),
])
def test_canonical_address(text, expected):
    assert _ufw.canonical_address(text) == expected


@pytest.mark.parametrize("text", ["10.129.0.300", "10.129.0.0/33", "db.example", "", "10.0.0.1 ", "10.0.0.1 10.0.0.2", "1.2.3"])
def test_bad_addresses(text):
    if text == "10.0.0.1 ":  # surrounding blanks are trimmed, as YAML would
        assert _ufw.canonical_address(text) == ("10.0.0.1", 4)
        return
    with pytest.raises(ValueError, match="not an IP address"):
        _ufw.canonical_address(text)


@pytest.mark.parametrize("value, expected", [
    (6432, "6432"),
    ("6432,5432", "5432,6432"),  # recorded: ufw sorts the ports
    ("9000,7000:7010,80", "80,7000:7010,9000"),  # recorded order
    ("443,80,8000:8010,22,1000:1005", "22,80,443,1000:1005,8000:8010"),  # recorded order
    ([22, "22", "80"], "22,80"),
    (None, "any"),
    ("any", "any"),
    ("", "any"),
])
def test_canonical_ports(value, expected):
    assert _ufw.canonical_ports(value) == expected


@pytest.mark.parametrize("value, message", [
    ("70000", "not between 1 and 65535"),
    (0, "not between 1 and 65535"),
    ("7010:7000", "first port must be lower"),
    ("80:80", "first port must be lower"),
    ("http", "not a port number"),
    ("80,,443", "not a port number"),
    (True, "not a port number"),
])
def test_bad_ports(value, message):
    with pytest.raises(ValueError, match=message):
        _ufw.port_items(value)


@pytest.mark.parametrize("options, message", [
    (dict(src="10.129.0.300"), "rule: src: '10.129.0.300' is not an IP address"),
    (dict(dest="host.example"), "dest: 'host.example' is not an IP address"),
    (dict(src="10.0.0.1", dest="2001:db8::1"), "mix IPv4 and IPv6"),
    (dict(port="80,443"), "a port list or range needs proto tcp or udp, not any"),
    (dict(port="7000:7010"), "a port list or range needs proto tcp or udp"),
    (dict(port=22, proto="esp"), "proto esp takes no port"),
    (dict(port=",".join(str(p) for p in range(1, 17)), proto="tcp"), "at most 15 ports"),
    (dict(port="1,2,3,4,5,6,7,8,9,10,11,12,13,14,20:30", proto="tcp"), "at most 15 ports"),
    (dict(comment="it's"), "single quotes"),
    (dict(comment="two\nlines"), "control characters"),
    (dict(action="accept"), "action 'accept' is not one of"),
    (dict(proto="icmp"), "proto 'icmp' is not one of"),
    (dict(direction="both"), "direction 'both'"),
    (dict(src="2001:db8::1"), "IPV6 is not yes"),
])
def test_make_rule_problems(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        _ufw.make_rule(options, TAG, ipv6="IPV6" not in message)


def test_make_rule_reports_every_problem_at_once():
    with pytest.raises(ValueError) as raised:
        _ufw.make_rule(dict(src="nope", port="0", comment="it's"), TAG, True, "rules[3]")
    text = str(raised.value)
    assert text.startswith("rules[3]: ")
    assert "src" in text and "port" in text and "single quotes" in text


def test_make_rule_families_and_warnings():
    made, state_, warnings = _ufw.make_rule(dict(src="10.129.0.5/24", port=6432, proto="tcp"), TAG, True, "rules[0]")
    assert made.families == {4} and made.src == "10.129.0.0/24" and state_ == "present"
    assert warnings == ["rules[0]: src 10.129.0.5/24 is written as 10.129.0.0/24 (host bits dropped)"]
    assert rule(port=22, proto="tcp").families == {4, 6}
    assert rule(port=22, proto="tcp", ipv6=False).families == {4}
    assert rule(src="fd00::31").families == {6}
    assert rule(dest="10.129.0.21").families == {4}


def test_15_ports_with_a_range_counting_as_two_is_accepted():
    assert rule(port="1,2,3,4,5,6,7,8,9,10,11,12,13,20:30", proto="tcp").port == "1,2,3,4,5,6,7,8,9,10,11,12,13,20:30"


def test_tag_and_comment():
    assert _ufw.full_comment(TAG, "") == TAG
    assert _ufw.full_comment(TAG, "ssh") == "pgbouncer.cluster: ssh"
    assert _ufw.is_tagged("pgbouncer.cluster: ssh", TAG)
    assert _ufw.is_tagged("pgbouncer.cluster", TAG)
    assert not _ufw.is_tagged("pgbouncer.clusterx: ssh", TAG)
    assert not _ufw.is_tagged("", TAG)


# --- planning ----------------------------------------------------------------------------------

LAB_RULES = [
    rule(port=22, proto="tcp", comment="ssh"),
    rule(src="10.129.0.31", port=6432, proto="tcp", comment="pgbouncer"),
] + [rule(src="10.129.0.%d" % host, port=5432, proto="tcp", comment="postgres") for host in (21, 22, 23, 31)]


def lab_scope(rules=LAB_RULES[1:]):
    return _ufw.scope_of(rules, [(6432, 6432), (5432, 5432)])


def test_lab_state_needs_nothing():
    commands, added, removed = _ufw.plan(LAB_RULES, [], state("lab"), TAG, True, lab_scope())
    assert (commands, added, removed) == ([], [], [])


def test_fresh_state_gets_ssh_first_then_the_rules():
    commands, added = _ufw.plan(LAB_RULES, [], state("fresh"), TAG, True, lab_scope())[:2]
    lines = texts(commands)
    assert lines[0] == "ufw allow in proto tcp from any to any port 22 comment 'pgbouncer.cluster: ssh'"
    assert lines[1] == "ufw allow in proto tcp from 10.129.0.31 to any port 6432 comment 'pgbouncer.cluster: pgbouncer'"
    assert len(lines) == 6 and added == LAB_RULES
    # What ufw then writes (predicted) is the recorded lab state.
    assert _ufw.predict(state("fresh"), added, []) == state("lab")


def test_removing_the_app_host_deletes_its_rule_only():
    wanted = [item for item in LAB_RULES if item.port != "6432"]
    commands, added, removed = _ufw.plan(wanted, [], state("lab"), TAG, True, lab_scope(wanted[1:]))
    assert texts(commands) == ["ufw delete allow in proto tcp from 10.129.0.31 to any port 6432"]
    assert added == [] and [item.src for item in removed] == ["10.129.0.31"]
    assert _ufw.plan(wanted, [], _ufw.predict(state("lab"), added, removed), TAG, True, lab_scope(wanted[1:]))[0] == []


def test_without_exclusive_nothing_is_removed():
    wanted = [item for item in LAB_RULES if item.port != "6432"]
    assert _ufw.plan(wanted, [], state("lab"), TAG, False, lab_scope(wanted[1:]))[0] == []


def test_replacing_a_source_adds_before_it_deletes():
    wanted = [rule(src="10.129.0.32", port=6432, proto="tcp", comment="pgbouncer")]
    commands = _ufw.plan(wanted, [], state("lab"), TAG, True, _ufw.scope_of(wanted))[0]
    assert reasons(commands) == ["add", "exclusive"]


def test_exclusive_removes_tagged_rules_of_any_shape_on_its_ports_and_keeps_the_rest():
    wanted = [rule(src="10.129.0.31", port=6432, proto="tcp", comment="pgbouncer")]
    commands, added, removed = _ufw.plan(wanted, [], state("mixed"), TAG, True, _ufw.scope_of(wanted))
    assert added == wanted
    assert [_ufw.show_line(item) for item in removed] == [
        "ufw allow in proto tcp from 2001:db8::/64 to any port 6432 comment 'pgbouncer.cluster: pgbouncer_port' (v6)"]
    assert texts(commands)[-1] == "ufw delete allow in proto tcp from 2001:db8::/64 to any port 6432"
    kept = _ufw.unmanaged_on_ports(state("mixed"), TAG, _ufw.scope_of(wanted))
    assert [_ufw.show_line(item) for item in kept] == [
        "ufw allow in from 10.129.0.41 to any",  # every port, so 6432 as well
        "ufw allow in proto tcp from 10.129.0.0/24 to any port 5432,6432,7000:7010",
        "ufw allow in proto tcp from 10.129.0.0/24 to any port 6432",
        "ufw deny in on eth0 from 2001:db8::1 app OpenSSH to any (v6)",
    ]


def test_exclusive_ignores_other_ports_directions_and_routed_rules():
    tuples = state("mixed")
    ssh = next(t for t in tuples if t.dport == "22" and t.family == 4 and t.dapp == "-")
    assert not _ufw._in_scope(ssh, _ufw.scope_of([], [(6432, 6432)]))
    out = next(t for t in tuples if t.direction == "out")
    assert not _ufw._in_scope(out, _ufw.scope_of([], [(5432, 5432)]))
    assert _ufw._in_scope(out, _ufw.scope_of([rule(direction="out", dest="10.0.0.1", port=5432, proto="tcp")]))
    routed = next(t for t in tuples if t.route and t.dport == "443")
    assert not _ufw._in_scope(routed, _ufw.scope_of([], [(443, 443)]))
    multi = next(t for t in tuples if t.dport == "5432,6432,7000:7010")
    assert _ufw._in_scope(multi, _ufw.scope_of([], [(7005, 7005)]))


def test_an_any_any_rule_is_deleted_once_for_both_files():
    wanted = []
    scope = _ufw.scope_of([], [(22, 22)])
    commands, added, removed = _ufw.plan(wanted, [], state("lab"), TAG, True, scope)
    assert added == []
    assert texts(commands) == ["ufw delete allow in proto tcp from any to any port 22"]
    assert len(removed) == 2


def test_comment_change_updates_in_place():
    wanted = [rule(src="10.129.0.31", port=6432, proto="tcp", comment="renamed")]
    commands, added, removed = _ufw.plan(wanted, [], state("lab"), TAG, True, _ufw.scope_of(wanted))
    assert reasons(commands) == ["update"] and removed == []
    after = _ufw.predict(state("lab"), added, removed)
    assert [t.comment for t in after if t.dport == "6432"] == ["pgbouncer.cluster: renamed"]
    assert len(after) == len(state("lab"))


def test_action_change_replaces_without_deleting_the_replaced_rule():
    """Recorded: `ufw deny` of an allowed rule says "Rule updated" and replaces it; deleting
    the old one afterwards would fail (delete needs the action) or hit the new one."""
    wanted = [rule(action="deny", src="10.129.0.31", port=6432, proto="tcp", comment="pgbouncer")]
    commands, added, removed = _ufw.plan(wanted, [], state("lab"), TAG, True, _ufw.scope_of(wanted))
    assert added == wanted
    assert texts(commands) == [
        "ufw deny in proto tcp from 10.129.0.31 to any port 6432 comment 'pgbouncer.cluster: pgbouncer'"]
    assert removed == []


def test_absent_needs_the_same_action_and_ignores_the_comment():
    absent = [rule(src="10.129.0.22", port=5432, proto="tcp", comment="whatever")]
    commands = _ufw.plan(LAB_RULES[:2], absent, state("lab"), TAG, False, ())[0]
    assert texts(commands) == ["ufw delete allow in proto tcp from 10.129.0.22 to any port 5432"]
    other_action = [rule(action="deny", src="10.129.0.22", port=5432, proto="tcp")]
    assert _ufw.plan([], other_action, state("lab"), TAG, False, ())[0] == []


def test_untagged_equal_rule_gets_the_tag_instead_of_a_duplicate():
    """The rule of the manual setup's firewall step (`ufw allow from <app host> to any port 6432`)
    has no comment: the module's add tags it (ufw updates in place)."""
    manual = _ufw.parse_tuple("### tuple ### allow tcp 6432 0.0.0.0/0 any 10.129.0.31 in", 4)
    wanted = [rule(src="10.129.0.31", port=6432, proto="tcp", comment="pgbouncer")]
    commands, added = _ufw.plan(wanted, [], [manual], TAG, True, _ufw.scope_of(wanted))[:2]
    assert reasons(commands) == ["update"]
    assert _ufw.predict([manual], added, []) == _ufw.rule_tuples(wanted[0])


def test_conflicts():
    allow = rule(src="10.0.0.1", port=22, proto="tcp")
    deny = rule(action="deny", src="10.0.0.1", port=22, proto="tcp")
    other_comment = rule(src="10.0.0.1", port=22, proto="tcp", comment="x")
    assert _ufw.conflicts([allow, allow], []) == []
    assert "another action or comment" in _ufw.conflicts([allow, deny], [])[0]
    assert "another action or comment" in _ufw.conflicts([allow, other_comment], [])[0]
    assert "both present and absent" in _ufw.conflicts([allow], [allow])[0]
    assert _ufw.conflicts([allow], [deny]) == []


def test_render_state_for_the_diff():
    text = _ufw.render_state(state("lab"), True, "deny")
    assert text.splitlines()[:3] == [
        "# status: active", "# default incoming: deny", "ufw allow in proto tcp from any to any port 22 comment 'pgbouncer.cluster: ssh'"]
    assert text.splitlines()[-1].endswith("(v6)")


# --- the module, with ufw's files from fixtures and its command line faked -----------------------


class FakeUfw:
    """Stands in for run_command: answers `ufw status` from a fixture, records the rest."""

    def __init__(self, status, fail=None):
        self.status = status
        self.fail = fail
        self.calls = []

    def __call__(self, module, argv):
        self.calls.append(argv)
        if argv[1:] == ["status"]:
            return 0, self.status, ""
        if self.fail and self.fail in argv:
            return 1, "", "ERROR: Bad port"
        return 0, "Rules updated\n", ""


def run_module(monkeypatch, name, fake, check_mode=False, diff=False, **args):
    monkeypatch.setattr(ufw_module, "USER_RULES", {4: str(FIXTURES / name / "user.rules"), 6: str(FIXTURES / name / "user6.rules")})
    monkeypatch.setattr(ufw_module, "DEFAULTS", str(FIXTURES / name / "default_ufw"))
    monkeypatch.setattr(ufw_module, "CONF", str(FIXTURES / name / "ufw.conf"))
    monkeypatch.setattr(ufw_module.AnsibleModule, "get_bin_path", lambda self, name, required=False: "/usr/sbin/ufw")
    monkeypatch.setattr(ufw_module.Ufw, "run", lambda self, argv: fake(self.module, argv))
    return module_result(ufw_module.main, args, check_mode, diff)


LAB_ARGS = dict(
    rules=[
        dict(src=["10.129.0.31"], port=6432, proto="tcp", comment="pgbouncer"),
        dict(src=["10.129.0.21", "10.129.0.22", "10.129.0.23", "10.129.0.31"], port=5432, proto="tcp", comment="postgres"),
    ],
    exclusive=True,
    enabled=True,
    default_incoming="deny",
    ssh_port=22,
)


def test_module_lab_state_is_unchanged(monkeypatch):
    fake = FakeUfw(fixture("lab", "status_verbose.txt"))
    result = run_module(monkeypatch, "lab", fake, **LAB_ARGS)
    assert result["changed"] is False and result["commands"] == []
    assert fake.calls == [["ufw", "status"]]
    assert result["active"] is True and result["default_incoming"] == "deny"


def test_module_check_mode_on_a_fresh_install_reports_and_runs_nothing(monkeypatch):
    fake = FakeUfw(fixture("fresh", "status_verbose.txt"))
    result = run_module(monkeypatch, "fresh", fake, check_mode=True, diff=True, **LAB_ARGS)
    assert result["changed"] is True
    assert result["commands"][0] == "ufw allow in proto tcp from any to any port 22 comment 'pgbouncer.cluster: ssh'"
    assert result["commands"][-1] == "ufw --force enable"
    assert "ufw default deny incoming" not in result["commands"]  # already deny in the file
    assert fake.calls == [["ufw", "status"]]
    assert result["diff"]["before"] == "# status: inactive\n# default incoming: deny\n"
    assert result["diff"]["after"] == _ufw.render_state(state("lab"), True, "deny")
    assert result["rules"] == [_ufw.show_line(item) for item in state("lab")]


def test_module_empty_source_list_closes_the_port(monkeypatch):
    fake = FakeUfw(fixture("lab", "status_verbose.txt"))
    args = {**LAB_ARGS, "rules": [{**LAB_ARGS["rules"][0], "src": []}, LAB_ARGS["rules"][1]]}
    result = run_module(monkeypatch, "lab", fake, check_mode=True, **args)
    assert result["commands"] == ["ufw delete allow in proto tcp from 10.129.0.31 to any port 6432"]


def test_module_validates_everything_before_running_anything(monkeypatch):
    fake = FakeUfw(fixture("lab", "status_verbose.txt"))
    args = {**LAB_ARGS, "rules": [dict(src=["10.129.0.31", "app.example"], port="6432,5432"), dict(src=[], port=70000)]}
    result = run_module(monkeypatch, "lab", fake, **args)
    assert result["failed"] is True
    assert result["msg"].startswith("invalid ufw parameters, nothing changed: ")
    assert "rules[0] src[1]: src: 'app.example' is not an IP address" in result["msg"]
    assert "rules[0] src[0]: a port list or range needs proto tcp or udp" in result["msg"]
    assert "rules[1]: port 70000" in result["msg"]
    assert fake.calls == [["ufw", "status"]]


def test_module_reports_a_failing_command_and_what_ran_before(monkeypatch):
    fake = FakeUfw(fixture("fresh", "status_verbose.txt"), fail="6432")
    result = run_module(monkeypatch, "fresh", fake, **LAB_ARGS)
    assert result["failed"] is True
    assert result["msg"].startswith("ufw allow in proto tcp from 10.129.0.31 to any port 6432")
    assert result["commands"][0].startswith("ufw allow in proto tcp from any to any port 22")
    assert ["/usr/sbin/ufw", "--force", "enable"] not in fake.calls and ["ufw", "--force", "enable"] not in fake.calls


def test_module_notices_when_ufw_did_not_do_what_it_said(monkeypatch):
    """The files do not change under the fake: the module's own re-read must catch that."""
    fake = FakeUfw(fixture("fresh", "status_verbose.txt"))
    result = run_module(monkeypatch, "fresh", fake, **LAB_ARGS)
    assert result["failed"] is True and "did not reach the wanted state" in result["msg"]


def test_module_disable(monkeypatch):
    fake = FakeUfw(fixture("lab", "status_verbose.txt"))
    result = run_module(monkeypatch, "lab", fake, check_mode=True, enabled=False)
    assert result["commands"] == ["ufw disable"] and result["active"] is False


def test_module_warns_about_untagged_rules_on_exclusive_ports(monkeypatch):
    fake = FakeUfw(fixture("mixed", "status_verbose.txt"))
    result = run_module(monkeypatch, "mixed", fake, check_mode=True, rules=[dict(src=["10.129.0.31"], port=6432, proto="tcp")],
                        exclusive=True)
    warnings = " ".join(str(item) for item in result.get("warnings", []))
    assert "do not carry the tag" in warnings and "10.129.0.0/24" in warnings


def test_module_check_mode_without_ufw_installed_reports_a_fresh_install(monkeypatch, tmp_path):
    fake = FakeUfw("")
    monkeypatch.setattr(ufw_module, "USER_RULES", {4: str(tmp_path / "user.rules"), 6: str(tmp_path / "user6.rules")})
    monkeypatch.setattr(ufw_module, "DEFAULTS", str(tmp_path / "default_ufw"))
    monkeypatch.setattr(ufw_module, "CONF", str(tmp_path / "ufw.conf"))
    monkeypatch.setattr(ufw_module.AnsibleModule, "get_bin_path", lambda self, name, required=False: None)
    monkeypatch.setattr(ufw_module.Ufw, "run", lambda self, argv: fake(self.module, argv))
    result = module_result(ufw_module.main, LAB_ARGS, check_mode=True)
    assert result["changed"] is True and fake.calls == []
    assert result["commands"][0].startswith("ufw allow in proto tcp from any to any port 22")
    assert result["commands"][-1] == "ufw --force enable"
