# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure parts of the pgbouncer_switchover module: Patroni's answers read, the redirect
block written the way ansible.builtin.blockinfile writes it (so that the runbook's hand-back
removes it with blockinfile), the phases' timings summed up.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import os
import tempfile

from ansible_collections.pgbouncer.cluster.plugins.module_utils._ini import redirect_databases

LEADER_ROLES = ("leader", "master", "primary")


def leader(cluster):
    """The member of Patroni's GET /cluster answer that holds the leader lock and runs, or None."""
    for member in (cluster or {}).get("members", []):
        if member.get("role") in LEADER_ROLES and member.get("state") == "running":
            return member
    return None


def new_leader(cluster, old_name):
    """The running leader of GET /cluster when it is not old_name, else None."""
    member = leader(cluster)
    if member is None or member.get("name") == old_name:
        return None
    return member


def api_base(member, fallback_port=8008):
    """The REST API's base URL of a /cluster member (its api_url without the /patroni path)."""
    url = member.get("api_url") or "http://%s:%s/patroni" % (member.get("host"), fallback_port)
    return url[: -len("/patroni")] if url.endswith("/patroni") else url.rstrip("/")


def markers(marker):
    return marker.replace("{mark}", "BEGIN"), marker.replace("{mark}", "END")


def without_block(text, marker):
    """text without the lines from the BEGIN marker to the END marker (both included)."""
    begin, end = markers(marker)
    out, inside = [], False
    for line in text.splitlines(True):
        bare = line.rstrip("\r\n")
        if bare == begin:
            inside = True
            continue
        if inside:
            if bare == end:
                inside = False
            continue
        out.append(line)
    return "".join(out)


def with_block(text, marker, block):
    """text with block between the markers at its end, as blockinfile (insertafter=EOF) writes it."""
    begin, end = markers(marker)
    base = without_block(text, marker)
    if base and not base.endswith("\n"):
        base += "\n"
    return base + "\n".join([begin] + block.splitlines() + [end]) + "\n"


def redirected(text, marker, from_host, to_host, keep=()):
    """The pgbouncer.ini text with its own-PostgreSQL entries sent to to_host, or None when the
    file has no entry with host=from_host (nothing to hand over)."""
    block = redirect_databases(without_block(text, marker), from_host, to_host, keep=keep)
    return with_block(text, marker, block) if block else None


def rounded(phases):
    """The phases' durations in seconds, rounded to milliseconds."""
    return {name: round(seconds, 3) for name, seconds in phases.items()}


def write_like(path, text):
    """Replace path with text atomically, keeping its owner, group and mode."""
    status = os.stat(path)
    handle, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".pgbouncer-switchover-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chown(tmp, status.st_uid, status.st_gid)
        os.chmod(tmp, status.st_mode & 0o7777)
        os.rename(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
