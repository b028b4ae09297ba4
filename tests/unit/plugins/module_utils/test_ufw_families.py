"""ufw address families (issue 15, item 4): 0.0.0.0/0 and ::/0 are "any" of one family only,
so narrowing a rule to one of them removes the other family's tagged twin, and deleting one
leaves the other alone. On the recorded lab state (tests/unit/fixtures/ufw/lab), whose SSH rule
is in both files."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ufw  # noqa: E402

FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "ufw"
TAG = "pgbouncer.cluster"


def lab_state():
    return (_ufw.parse_rules_file((FIXTURES / "lab" / "user.rules").read_text(), 4)
            + _ufw.parse_rules_file((FIXTURES / "lab" / "user6.rules").read_text(), 6))


def rule(**options):
    return _ufw.make_rule(dict(proto="tcp", **options), TAG, True)[0]


def texts(commands):
    return [_ufw.command_text(argv) for argv, _reason in commands]


def ssh_tuples(tuples):
    return [(item.family, item.src) for item in tuples if item.dport == "22"]


def test_narrowing_any_to_ipv4_in_exclusive_mode_removes_the_tagged_ipv6_rule():
    wanted = [rule(src="0.0.0.0/0", port=22, comment="ssh")]
    commands, added, removed = _ufw.plan(wanted, [], lab_state(), TAG, True, _ufw.scope_of(wanted))
    assert added == []
    assert texts(commands) == ["ufw delete allow in proto tcp from ::/0 to any port 22"]
    assert ssh_tuples(removed) == [(6, "::/0")]
    after = _ufw.predict(lab_state(), added, removed)
    assert ssh_tuples(after) == [(4, "0.0.0.0/0")]
    assert _ufw.plan(wanted, [], after, TAG, True, _ufw.scope_of(wanted))[0] == []


def test_narrowing_any_to_ipv6_removes_the_tagged_ipv4_rule():
    wanted = [rule(src="::/0", port=22, comment="ssh")]
    commands, _added, removed = _ufw.plan(wanted, [], lab_state(), TAG, True, _ufw.scope_of(wanted))
    assert texts(commands) == ["ufw delete allow in proto tcp from 0.0.0.0/0 to any port 22"]
    assert ssh_tuples(removed) == [(4, "0.0.0.0/0")]


def test_absent_ipv4_any_deletes_the_ipv4_rule_only():
    commands, _added, removed = _ufw.plan([], [rule(src="0.0.0.0/0", port=22)], lab_state(), TAG, False, ())
    assert texts(commands) == ["ufw delete allow in proto tcp from 0.0.0.0/0 to any port 22"]
    assert ssh_tuples(removed) == [(4, "0.0.0.0/0")]


def test_absent_ipv6_any_deletes_the_ipv6_rule_only():
    commands, _added, removed = _ufw.plan([], [rule(src="::/0", port=22)], lab_state(), TAG, False, ())
    assert texts(commands) == ["ufw delete allow in proto tcp from ::/0 to any port 22"]
    assert ssh_tuples(removed) == [(6, "::/0")]


def test_absent_any_still_deletes_both_with_one_command():
    commands, _added, removed = _ufw.plan([], [rule(src="any", port=22)], lab_state(), TAG, False, ())
    assert texts(commands) == ["ufw delete allow in proto tcp from any to any port 22"]
    assert sorted(ssh_tuples(removed)) == [(4, "0.0.0.0/0"), (6, "::/0")]
