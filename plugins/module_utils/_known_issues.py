# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PgBouncer's known vulnerabilities and bugs that a configuration can trigger, by version.

One table for the role's advisor (the pgbouncer_known_issues filter) and for the README's
table (scripts/gen-docs). An entry affects a node when its upstream version is in the
entry's range, its Debian package does not carry the fix, and the configuration triggers it.
Pure functions. Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import re

from ansible_collections.pgbouncer.cluster.plugins.module_utils._version import parse_version


def _listed(value):
    """A comma-separated pgbouncer.ini list (or a list) as lower-case names."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    return [str(item).strip().lower() for item in items if str(item).strip()]


def _options_not_ignored(settings, _databases, _md5_users):
    ignored = _listed(settings.get("ignore_startup_parameters"))
    return bool(ignored) and "options" not in ignored


def _forced_user_with_scram_clients(settings, databases, md5_users):
    # auth_type md5 lets a client whose auth_file secret is SCRAM log in with SCRAM too. PostgreSQL
    # asks a forced user whose stored secret is md5 for MD5, which PgBouncer answers from the
    # entry's password: only a SCRAM (or unknown) secret meets the bug.
    scram_clients = str(settings.get("auth_type") or "").lower() in ("scram-sha-256", "md5")
    return scram_clients and any(entry.get("user") and entry.get("password") and entry["user"] not in (md5_users or [])
                                 for entry in databases or [])


# id -> what it is, the upstream versions it affects [first, fixed), the Debian package
# versions that carry the fix before that (per upstream release), what triggers it (a
# predicate on the [pgbouncer] settings and its wording) and what to do.
KNOWN_ISSUES = (
    {
        "id": "CVE-2026-107349",
        "summary": "one unauthenticated connection whose options startup parameter PgBouncer cannot parse makes it "
                   "spin at 100 % of a core and stop answering every later login until it is restarted",
        "affected": ("1.20.0", "1.26.1"),
        "debian_fixed": (),
        "trigger": _options_not_ignored,
        "trigger_text": "ignore_startup_parameters is not empty and does not contain options",
        "fix": "keep options in pgbouncer_ignore_startup_parameters (the role's default), or install PgBouncer 1.26.1 or later",
        "severity": "critical",
    },
    {
        "id": "pgbouncer-1612",
        "summary": "a [databases] entry with user= and password= cannot log in to PostgreSQL for a client that logged in "
                   "to PgBouncer with SCRAM: the client's SCRAM keys replace the forced user's (PgBouncer issues 944, 1461 "
                   "and 1610, fixed by pull request 1612), so every such login fails with \"password authentication failed\"",
        "affected": ("1.0.0", "1.26.0"),
        "debian_fixed": (),
        "trigger": _forced_user_with_scram_clients,
        "trigger_text": "a pgbouncer_databases entry has both user and password, that user's secret in PostgreSQL is "
                        "SCRAM (or not known here), and clients log in with SCRAM (auth_type scram-sha-256, or md5 with "
                        "SCRAM secrets)",
        "fix": "drop password from the entry and let PgBouncer log in as the forced user with that user's secret from the "
               "auth_file (pgbouncer_userlist_users must include it), or install PgBouncer 1.26.0 or later",
        "severity": "bug",
    },
)


def _dpkg_part_order(char):
    # dpkg's ordering of non-digits: "~" before everything, even the end; letters before the rest.
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _dpkg_compare_part(left, right):
    """Compare two upstream or revision strings by dpkg's rules; -1, 0 or 1."""
    while left or right:
        left_text = re.match(r"[^0-9]*", left).group(0)
        right_text = re.match(r"[^0-9]*", right).group(0)
        for index in range(max(len(left_text), len(right_text))):
            a = _dpkg_part_order(left_text[index]) if index < len(left_text) else 0
            b = _dpkg_part_order(right_text[index]) if index < len(right_text) else 0
            if a != b:
                return -1 if a < b else 1
        left, right = left[len(left_text):], right[len(right_text):]
        left_digits = re.match(r"[0-9]*", left).group(0)
        right_digits = re.match(r"[0-9]*", right).group(0)
        a, b = int(left_digits or 0), int(right_digits or 0)
        if a != b:
            return -1 if a < b else 1
        left, right = left[len(left_digits):], right[len(right_digits):]
    return 0


def dpkg_compare(left, right):
    """Compare two Debian package versions ("[epoch:]upstream[-revision]") as dpkg does; -1, 0 or 1."""
    def split(version):
        epoch, rest = version.split(":", 1) if ":" in version else ("0", version)
        upstream, revision = rest.rsplit("-", 1) if "-" in rest else (rest, "")
        return int(epoch or 0), upstream, revision

    left_epoch, left_upstream, left_revision = split(str(left).strip())
    right_epoch, right_upstream, right_revision = split(str(right).strip())
    if left_epoch != right_epoch:
        return -1 if left_epoch < right_epoch else 1
    return _dpkg_compare_part(left_upstream, right_upstream) or _dpkg_compare_part(left_revision, right_revision)


def _debian_carries_fix(issue, package_version):
    """Whether the installed Debian package is a build that carries the issue's fix: one listed
    for the same upstream release, at that revision or later."""
    if not package_version:
        return False

    def upstream_of(version):
        return str(version).rsplit(":", maxsplit=1)[-1].rsplit("-", maxsplit=1)[0]

    return any(
        upstream_of(fixed) == upstream_of(package_version) and dpkg_compare(package_version, fixed) >= 0
        for fixed in issue["debian_fixed"]
    )


def in_range(issue, version, package_version=""):
    """Whether PgBouncer `version` (upstream) with Debian package `package_version` has the issue."""
    first, fixed = (parse_version(bound) for bound in issue["affected"])
    return first <= parse_version(version) < fixed and not _debian_carries_fix(issue, package_version)


def advise(settings, version, package_version="", accepted=None, databases=None, md5_users=None):
    """The known issues that affect this node, each {id, severity, summary, trigger, fix, accepted}.

    `settings` is the [pgbouncer] section about to be written, `databases` the [databases]
    entries (pgbouncer_databases), `md5_users` the roles whose PostgreSQL secret is md5;
    `accepted` the ids the user lets the role leave in place (pgbouncer_known_issues_accepted)."""
    accepted = set(accepted or [])
    return [
        {
            "id": issue["id"],
            "severity": issue["severity"],
            "summary": issue["summary"],
            "trigger": issue["trigger_text"],
            "fix": issue["fix"],
            "accepted": issue["id"] in accepted,
        }
        for issue in KNOWN_ISSUES
        if in_range(issue, version, package_version) and issue["trigger"](settings, databases, md5_users)
    ]


def messages(found, version):
    """One line per issue of `found` (advise()'s answer): what it is, why it applies here, the fix."""
    return [
        "%s on PgBouncer %s: %s, and here %s. Fix: %s; %s"
        % (issue["id"], version, issue["summary"], issue["trigger"], issue["fix"],
           "accepted by pgbouncer_known_issues_accepted" if issue["accepted"]
           else "or accept it with pgbouncer_known_issues_accepted: [%s]" % issue["id"])
        for issue in found
    ]


def unknown_ids(accepted):
    """Ids in pgbouncer_known_issues_accepted that the table does not have (a typo accepts nothing)."""
    known = {issue["id"] for issue in KNOWN_ISSUES}
    return [name for name in accepted or [] if name not in known]
