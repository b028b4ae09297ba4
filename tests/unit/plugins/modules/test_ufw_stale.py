"""Stale ufw rules (issue 15, item 6): pgbouncer_listen_port changed from 6432 to 6433 and
back left `6433/tcp ALLOW 10.129.0.31 # pgbouncer.cluster: pgbouncer`. In exclusive mode a
tagged rule whose comment is that of a given rule is removed whatever its port, unless it is
wanted; the SSH rule's comment never counts. On the recorded lab state
(tests/unit/fixtures/ufw/lab), with the 6433 rule ufw itself writes (rule_tuples) appended."""

from __future__ import annotations

import io
import json
import shutil
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ufw  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.modules import ufw as ufw_module  # noqa: E402

FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "ufw"
TAG = "pgbouncer.cluster"
APP = "10.129.0.31"
POSTGRES = ["10.129.0.21", "10.129.0.22", "10.129.0.23", APP]


def lab_state():
    return (_ufw.parse_rules_file((FIXTURES / "lab" / "user.rules").read_text(), 4)
            + _ufw.parse_rules_file((FIXTURES / "lab" / "user6.rules").read_text(), 6))


def rule(**options):
    return _ufw.make_rule(dict(proto="tcp", **options), TAG, True)[0]


def role_rules(pgbouncer_port):
    """What the firewall role passes for the lab's pg-srv nodes (no SSH rule: the module adds it)."""
    return [rule(src=APP, port=pgbouncer_port, comment="pgbouncer")] + [
        rule(src=src, port=5432, comment="postgres") for src in POSTGRES]


def plan(wanted, tuples):
    return _ufw.plan(wanted, [], tuples, TAG, True, _ufw.scope_of(wanted), _ufw.comment_scope(wanted, TAG))


def texts(commands):
    return [_ufw.command_text(argv) for argv, _reason in commands]


def ports(tuples, comment):
    return sorted(item.dport for item in tuples if item.comment == comment)


def test_moving_the_port_removes_the_rule_on_the_old_port():
    wanted = role_rules(6433)
    commands, added, removed = plan(wanted, lab_state())
    assert texts(commands) == [
        "ufw allow in proto tcp from 10.129.0.31 to any port 6433 comment 'pgbouncer.cluster: pgbouncer'",
        "ufw delete allow in proto tcp from 10.129.0.31 to any port 6432",
    ]
    after = _ufw.predict(lab_state(), added, removed)
    assert ports(after, "pgbouncer.cluster: pgbouncer") == ["6433"]
    assert plan(wanted, after)[0] == []


def test_moving_the_port_back_removes_the_stale_rule():
    """The state the old code left: both ports open. Back to the defaults closes 6433."""
    stale = lab_state() + _ufw.rule_tuples(rule(src=APP, port=6433, comment="pgbouncer"))
    wanted = role_rules(6432)
    commands, added, removed = plan(wanted, stale)
    assert texts(commands) == ["ufw delete allow in proto tcp from 10.129.0.31 to any port 6433"]
    assert [(item.dport, item.src) for item in removed] == [("6433", APP)]
    assert _ufw.predict(stale, added, removed) == lab_state()


def test_the_ssh_rule_is_never_removed_by_its_comment():
    """sshd moved to 2222: the rule for 22 (comment `ssh`) stays, even when a rule with the
    comment ssh is given; and a rule without a comment of its own keys nothing."""
    wanted = [rule(port=2222, comment="ssh"), rule(src=APP, port=7000)]
    assert _ufw.comment_scope(wanted, TAG) == []
    commands, _added, removed = plan(wanted, lab_state())
    assert [item.dport for item in removed] == []
    assert all(not line.startswith("ufw delete") for line in texts(commands))


def test_other_comments_directions_and_untagged_rules_are_left_alone():
    foreign = _ufw.parse_tuple("### tuple ### allow tcp 6433 0.0.0.0/0 any 10.129.0.31 in comment=%s"
                               % b"pgbouncer".hex(), 4)
    other_tag = _ufw.rule_tuples(_ufw.make_rule(dict(src=APP, port=6433, proto="tcp", comment="pgbouncer"), "other", True)[0])
    outgoing = _ufw.rule_tuples(rule(direction="out", dest=APP, port=6433, comment="pgbouncer"))
    tuples = lab_state() + [foreign] + other_tag + outgoing
    assert plan(role_rules(6432), tuples)[0] == []


def test_without_exclusive_the_stale_rule_stays():
    stale = lab_state() + _ufw.rule_tuples(rule(src=APP, port=6433, comment="pgbouncer"))
    wanted = role_rules(6432)
    assert _ufw.plan(wanted, [], stale, TAG, False, _ufw.scope_of(wanted), _ufw.comment_scope(wanted, TAG))[0] == []


# --- the module, as the firewall role calls it, on a copy of the lab files plus the 6433 rule ---


def run_module(monkeypatch, directory, **args):
    calls = []

    def fake(_self, argv):
        calls.append(argv)
        return (0, (FIXTURES / "lab" / "status_verbose.txt").read_text(), "") if argv[1:] == ["status"] else (0, "", "")

    monkeypatch.setattr(ufw_module, "USER_RULES", {4: str(directory / "user.rules"), 6: str(directory / "user6.rules")})
    monkeypatch.setattr(ufw_module, "DEFAULTS", str(directory / "default_ufw"))
    monkeypatch.setattr(ufw_module, "CONF", str(directory / "ufw.conf"))
    monkeypatch.setattr(ufw_module.AnsibleModule, "get_bin_path", lambda self, name, required=False: "/usr/sbin/ufw")
    monkeypatch.setattr(ufw_module.Ufw, "run", fake)
    out = io.StringIO()
    with patch_module_args(dict(args, _ansible_check_mode=True)), redirect_stdout(out), pytest.raises(SystemExit):
        ufw_module.main()
    return json.loads(out.getvalue()), calls


def test_module_closes_the_port_that_moved_back(monkeypatch, tmp_path):
    directory = tmp_path / "ufw"
    shutil.copytree(FIXTURES / "lab", directory)
    text = (directory / "user.rules").read_text()
    line = ("### tuple ### allow tcp 6433 0.0.0.0/0 any 10.129.0.31 in comment=%s\n"
            "-A ufw-user-input -p tcp --dport 6433 -s 10.129.0.31 -j ACCEPT\n\n"
            % b"pgbouncer.cluster: pgbouncer".hex())
    (directory / "user.rules").write_text(text.replace("### END RULES ###", line + "### END RULES ###"))
    result, calls = run_module(
        monkeypatch, directory, exclusive=True, enabled=True, default_incoming="deny", ssh_ports=[22],
        rules=[dict(src=[APP], port=6432, proto="tcp", comment="pgbouncer"),
               dict(src=POSTGRES, port=5432, proto="tcp", comment="postgres")])
    assert result["commands"] == ["ufw delete allow in proto tcp from 10.129.0.31 to any port 6433"]
    assert result["removed"] == ["ufw allow in proto tcp from 10.129.0.31 to any port 6433 comment 'pgbouncer.cluster: pgbouncer'"]
    assert calls == [["ufw", "status"]]  # check mode
