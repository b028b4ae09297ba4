"""The known-issue advisor: version ranges, Debian builds, triggers, acceptance. Milliseconds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.filter.pgbouncer import known_issues  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _known_issues  # noqa: E402

CVE = "CVE-2026-107349"
DEFAULTS = {"ignore_startup_parameters": "extra_float_digits, options"}
WITHOUT_OPTIONS = {"ignore_startup_parameters": "extra_float_digits"}


@pytest.mark.parametrize(
    ("version", "settings", "affected"),
    [
        ("1.18.0", WITHOUT_OPTIONS, False),  # before options parsing: not affected
        ("1.20.0", WITHOUT_OPTIONS, True),
        ("1.24.1", WITHOUT_OPTIONS, True),  # Debian 13
        ("1.26.0", WITHOUT_OPTIONS, True),
        ("1.26.1", WITHOUT_OPTIONS, False),  # fixed upstream
        ("1.24.1", DEFAULTS, False),  # the role's default closes it
        ("1.24.1", {"ignore_startup_parameters": "Options , extra_float_digits"}, False),
        ("1.24.1", {"ignore_startup_parameters": ""}, False),  # empty: not triggered
        ("1.24.1", {"ignore_startup_parameters": None}, False),
        ("1.24.1", {}, False),
    ],
)
def test_cve_2026_107349_range_and_trigger(version, settings, affected):
    found = [issue["id"] for issue in _known_issues.advise(settings, version, "")]
    assert (CVE in found) is affected


def test_debian_13_package_is_named_and_refused_with_the_fix():
    advice = known_issues(WITHOUT_OPTIONS, "1.24.1", "1.24.1-1+deb13u2", [])
    assert [issue["id"] for issue in advice["issues"]] == [CVE]
    (message,) = advice["problems"]
    assert message.startswith("CVE-2026-107349 on PgBouncer 1.24.1: ")
    assert "does not contain options" in message and "pgbouncer_ignore_startup_parameters" in message
    assert "pgbouncer_known_issues_accepted: [CVE-2026-107349]" in message
    assert advice["accepted"] == []


def test_an_accepted_issue_is_reported_not_refused():
    advice = known_issues(WITHOUT_OPTIONS, "1.24.1", "1.24.1-1+deb13u2", [CVE])
    assert advice["problems"] == []
    assert len(advice["accepted"]) == 1 and "accepted by pgbouncer_known_issues_accepted" in advice["accepted"][0]


def test_an_unknown_accepted_id_is_refused():
    advice = known_issues(DEFAULTS, "1.26.1", "", ["CVE-2026-10734"])
    assert advice["problems"] == [
        "pgbouncer_known_issues_accepted: CVE-2026-10734 is not a known issue of this collection (README, Known issues)"
    ]


def test_nothing_for_1_26_1_and_the_defaults_everywhere():
    for version in ("1.18.0", "1.24.1", "1.26.1"):
        assert known_issues(DEFAULTS, version, "", []) == {"issues": [], "problems": [], "accepted": []}


def test_a_debian_build_that_carries_the_fix_is_recognised(monkeypatch):
    issue = dict(_known_issues.KNOWN_ISSUES[0], debian_fixed=("1.24.1-1+deb13u3",))
    monkeypatch.setattr(_known_issues, "KNOWN_ISSUES", (issue,))
    assert _known_issues.in_range(issue, "1.24.1", "1.24.1-1+deb13u2")
    assert not _known_issues.in_range(issue, "1.24.1", "1.24.1-1+deb13u3")
    assert not _known_issues.in_range(issue, "1.24.1", "1.24.1-1+deb13u10")
    # Another upstream release is not covered by a fix listed for 1.24.1.
    assert _known_issues.in_range(issue, "1.22.1", "1.22.1-1+deb13u5")
    # Unknown package version: the upstream range decides.
    assert _known_issues.in_range(issue, "1.24.1", "")


@pytest.mark.parametrize(
    ("first", "second", "order"),
    [
        ("1.24.1-1+deb13u2", "1.24.1-1+deb13u3", -1),
        ("1.24.1-1+deb13u10", "1.24.1-1+deb13u3", 1),
        ("1.24.1-1", "1.24.1-1+deb13u1", -1),
        ("1.26.1~rc1-1", "1.26.1-1", -1),
        ("1:1.18.0-1", "1.26.1-1", 1),
        ("1.18.0-1", "1.18.0-1", 0),
        ("1.18.0-1a", "1.18.0-1+b1", -1),
    ],
)
def test_dpkg_order(first, second, order):
    assert _known_issues.dpkg_compare(first, second) == order
    assert _known_issues.dpkg_compare(second, first) == -order


FORCED = [{"name": "pw_db", "host": "10.129.0.22", "user": "pw_user", "password": "a'b\\c=d e"}]


@pytest.mark.parametrize(
    ("version", "auth_type", "databases", "affected"),
    [
        ("1.18.0", "scram-sha-256", FORCED, True),  # Debian 12
        ("1.24.1", "scram-sha-256", FORCED, True),  # Debian 13
        ("1.24.1", "md5", FORCED, True),  # SCRAM secrets still log in with SCRAM
        ("1.26.0", "scram-sha-256", FORCED, False),  # fixed by pull request 1612
        ("1.24.1", "trust", FORCED, False),
        ("1.24.1", "scram-sha-256", [dict(FORCED[0], password="")], False),  # the auth_file's secret is used
        ("1.24.1", "scram-sha-256", [{"name": "appdb", "host": "10.129.0.22"}], False),
        ("1.24.1", "scram-sha-256", None, False),
        # PostgreSQL asks an md5 forced user for MD5, answered from the entry's password.
        ("1.24.1", "scram-sha-256", [dict(FORCED[0], user="md5_user")], False),
    ],
)
def test_forced_user_with_a_password_under_scram(version, auth_type, databases, affected):
    settings = dict(DEFAULTS, auth_type=auth_type)
    found = [issue["id"] for issue in _known_issues.advise(settings, version, "", databases=databases, md5_users=["md5_user"])]
    assert ("pgbouncer-1612" in found) is affected


def test_the_forced_user_message_names_the_upstream_issue_and_the_fix_never_the_password():
    advice = known_issues(dict(DEFAULTS, auth_type="scram-sha-256"), "1.18.0", "1.18.0-1", [], FORCED)
    (message,) = advice["problems"]
    assert "pgbouncer-1612 on PgBouncer 1.18.0" in message and "pull request 1612" in message
    assert "drop password from the entry" in message and "pgbouncer_known_issues_accepted: [pgbouncer-1612]" in message
    assert "a'b" not in message
