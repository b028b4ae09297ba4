# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an interrupted runbook can leave on a node, read from what the node shows: the pure
parts of the pgbouncer_leftovers module.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import re

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _haproxy, _switchover
from ansible_collections.pgbouncer.cluster.plugins.module_utils._deadman import PREFIX


def block_markers(text, markers):
    """The BEGIN lines of the runbooks' marked blocks (markers: templates with {mark}) found in text."""
    begins = {_switchover.markers(marker)[0] for marker in markers}
    return [line.rstrip("\r\n") for line in text.splitlines() if line.rstrip("\r\n") in begins]


def without_blocks(text, markers):
    """text without any of the marked blocks (both marker lines included)."""
    for marker in markers:
        text = _switchover.without_block(text, marker)
    return text


def armed_timers(list_units_output):
    """Base unit names (without .timer) of the armed undo timers in `systemctl list-units --all
    --plain --no-legend 'pgbouncer-cluster-undo-*.timer'` output (UNIT LOAD ACTIVE SUB ...)."""
    timers = []
    for line in list_units_output.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0].startswith(PREFIX) and fields[0].endswith(".timer") and fields[2] == "active":
            timers.append(fields[0][: -len(".timer")])
    return timers


def describe_timer(unit):
    """What an undo timer undoes, from its name (_deadman.unit_name's escapes read back):
    pgbouncer-cluster-undo-pause-_2fvar_2frun_2fpostgresql-6432-appdb -> pause-/var/run/postgresql-6432-appdb."""
    body = unit[len(PREFIX):] if unit.startswith(PREFIX) else unit
    body = re.sub(r"(?:_[0-9a-f]{2})+", lambda match: bytes.fromhex(match.group(0).replace("_", "")).decode("utf-8", "replace"), body)
    return body


def paused_databases(database_rows):
    """Names of the databases SHOW DATABASES lists as paused (the console's own excepted)."""
    return [row["name"] for row in database_rows
            if str(row.get("paused", "0")) not in ("0", "", "None") and row.get("name") != "pgbouncer"]


def server_leftovers(status):
    """(leftovers, deliberate) of one server's status (haproxy_server's view), each a list of what
    differs from haproxy.cfg. A health check turned off is only ever a runbook's (and what its
    dead man's switch undoes); a drain, a maintenance or a weight may be an operator's choice
    (drain.yml), so they are told apart."""
    leftovers, deliberate = [], []
    if status.get("health") == "disabled":
        leftovers.append("health check off%s" % (", forced %s" % status["operational"].upper() if status.get("operational") else ""))
    if int(status.get("admin_state_bits", 0)) & (_haproxy.FMAINT | _haproxy.FDRAIN):
        deliberate.append("forced %s" % status["admin_state"])
    if status.get("weight") != status.get("initial_weight"):
        deliberate.append("weight %s instead of %s" % (status.get("weight"), status.get("initial_weight")))
    return leftovers, deliberate


def settled(status):
    """Whether HAProxy's view of a server agrees with its last check (a server whose check was
    just turned back on may still be UP on a failing check for a few intervals)."""
    if status.get("health") != "enabled":
        return True
    passing = str(status.get("check_status", "")).startswith("L7OK")
    return status.get("operational") == ("up" if passing else "down")
