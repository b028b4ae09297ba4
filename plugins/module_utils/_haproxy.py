# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAProxy's runtime API (the admin-level stats socket): read a server's state, decide what
to change, send one command. Parsing and decisions are pure functions; runtime_command()
is the only I/O. plugins/modules/haproxy_server.py puts them together.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import csv
import io
import re
import socket

# srv_op_state of `show servers state` (enum srv_state in HAProxy's source).
OPERATIONAL = {0: "down", 1: "starting", 2: "up", 3: "stopping"}
# srv_admin_state bits (enum srv_admin): forced, inherited, config, resolver, hostname.
FMAINT, IMAINT, CMAINT, FDRAIN, IDRAIN, RMAINT, HMAINT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40
MAINT_BITS = FMAINT | IMAINT | CMAINT | RMAINT | HMAINT
DRAIN_BITS = FDRAIN | IDRAIN
STATES = ("ready", "drain", "maint")
# srv_check_state bits of `show servers state` (CHK_ST_* in HAProxy's source): a check is
# configured, and enabled (`disable health` clears it: the server keeps its last state).
CHECK_CONFIGURED, CHECK_ENABLED = 0x02, 0x04
HEALTH = ("enabled", "disabled", "forced_up")
WAIT_FOR = ("up", "down", "no_sessions")
MAX_WEIGHT = 256
# HAProxy's own rule for proxy and server names (invalid_char() in its source): letters, digits
# and - _ . : only. Names go into runtime API command lines, where ';' or a newline would chain
# further commands, so anything else is refused before the socket is touched.
NAME_RE = re.compile(r"[A-Za-z0-9_.:-]+\Z")


class RuntimeApiError(Exception):
    """The socket could not be used, or HAProxy refused a command; the message says why."""


# --- parsing --------------------------------------------------------------------------


def parse_servers_state(text):
    """{server name: {column: value}} of `show servers state <backend>` (format version 1)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line for line in lines if line.startswith("# ")), None)
    if not lines or lines[0].strip() != "1" or header is None:
        raise RuntimeApiError("unexpected answer to show servers state: %s" % (text.strip()[:200] or "(nothing)"))
    columns = header[2:].split()
    servers = {}
    for line in lines:
        if line.startswith("#") or line.strip() == "1":
            continue
        row = dict(zip(columns, line.split()))
        servers[row["srv_name"]] = row
    return servers


def parse_stat(text):
    """Rows of `show stat` (CSV whose header line starts with "# "), as dicts."""
    if not text.startswith("# pxname,"):
        raise RuntimeApiError("unexpected answer to show stat: %s" % (text.strip()[:200] or "(nothing)"))
    reader = csv.DictReader(io.StringIO(text[2:]))
    return [row for row in reader if row.get("pxname")]


def admin_state(bits):
    """ready, drain or maint from srv_admin_state (maintenance wins over drain)."""
    if bits & MAINT_BITS:
        return "maint"
    if bits & DRAIN_BITS:
        return "drain"
    return "ready"


def health_state(check_bits):
    """enabled, disabled (by `disable health`) or none (no check configured)."""
    if not check_bits & CHECK_CONFIGURED:
        return "none"
    return "enabled" if check_bits & CHECK_ENABLED else "disabled"


def server_status(state_row, stat_row):
    """One server's state from its `show servers state` and `show stat` rows."""
    bits = int(state_row["srv_admin_state"])
    check_bits = int(state_row.get("srv_check_state") or 0)
    return {
        "weight": int(state_row["srv_uweight"]),
        "initial_weight": int(state_row["srv_iweight"]),
        "admin_state": admin_state(bits),
        "admin_state_bits": bits,
        "operational": OPERATIONAL.get(int(state_row["srv_op_state"]), "unknown"),
        "health": health_state(check_bits),
        "check_state_bits": check_bits,
        "status": stat_row.get("status", "") if stat_row else "",
        "check_status": stat_row.get("check_status", "") if stat_row else "",
        "sessions": int(stat_row.get("scur") or 0) if stat_row else 0,
        "address": state_row.get("srv_addr", ""),
    }


def find_server(servers_state, stat_rows, backend, server):
    """server_status() of backend/server, or RuntimeApiError naming the servers there are."""
    if server not in servers_state:
        raise RuntimeApiError("backend %s has no server %s; its servers: %s" % (
            backend, server, ", ".join(sorted(servers_state)) or "none"))
    stat_row = next((row for row in stat_rows if row["pxname"] == backend and row["svname"] == server), None)
    return server_status(servers_state[server], stat_row)


# --- decisions ------------------------------------------------------------------------


def _state_reached(current, state):
    """Whether the forced admin state already is `state` (what `set server ... state` sets)."""
    bits = current["admin_state_bits"]
    if state == "maint":
        return bool(bits & FMAINT)
    if state == "drain":
        return bool(bits & FDRAIN) and not bits & FMAINT
    return not bits & (FMAINT | FDRAIN)


def plan(backend, server, current, weight=None, state=None, health=None):
    """Runtime API commands that bring the server to the wanted state/weight/health check
    ([] = nothing to do)."""
    target = "%s/%s" % (backend, server)
    commands = []
    check = "disabled" if health == "forced_up" else health
    if check is not None and current.get("health") != check:
        commands.append("%s health %s" % ("enable" if check == "enabled" else "disable", target))
    # With its check off, a server forced UP stays UP, whatever the check would say.
    if health == "forced_up" and current["operational"] != "up":
        commands.append("set server %s health up" % target)
    if state is not None and not _state_reached(current, state):
        commands.append("set server %s state %s" % (target, state))
    if weight is not None and current["weight"] != weight:
        commands.append("set server %s weight %d" % (target, weight))
    return commands


def restore_plan(backend, server, current):
    """Commands that take the server back to its configured state: ready, its initial weight
    (haproxy.cfg's), its health check on when it has one. [] when it is there already."""
    health = "enabled" if current.get("health", "none") != "none" else None
    return plan(backend, server, current, weight=current["initial_weight"], state="ready", health=health)


def predict(current, weight=None, state=None, health=None):
    """What check mode reports as `after`: the current status with the wanted values."""
    after = dict(current)
    if health is not None:
        after["health"] = "disabled" if health == "forced_up" else health
    if health == "forced_up":
        after["operational"] = "up"
    if weight is not None:
        after["weight"] = weight
    if state is not None:
        after["admin_state"] = state
        bits = current["admin_state_bits"] & ~(FMAINT | FDRAIN)
        after["admin_state_bits"] = bits | {"ready": 0, "drain": FDRAIN, "maint": FMAINT}[state]
    return after


def wait_reached(status, wait_for):
    """Whether the server is where wait_for wants it: operationally UP or DOWN, or without sessions."""
    if wait_for in ("up", "down"):
        return status["operational"] == wait_for
    if wait_for == "no_sessions":
        return status["sessions"] == 0
    return True


def name_problem(option, value):
    """Why value cannot be a backend/server name in a runtime API command (None = fine)."""
    if value is not None and not NAME_RE.match(value):
        return ("%s %r is not an HAProxy name: use only letters, digits and - _ . : (no spaces, ';' or "
                "newlines, which the runtime API would read as further commands)" % (option, value))
    return None


def check_request(weight=None, state=None, wait_for=None, backend=None, server=None, health=None, current=None):
    """Problems with the module's options, as messages ([] = fine); `current`, once read,
    tells whether the server has a health check to enable or disable."""
    problems = [problem for problem in (name_problem("backend", backend), name_problem("server", server)) if problem]
    if weight is not None and not 0 <= weight <= MAX_WEIGHT:
        problems.append("weight must be between 0 and %d, not %d" % (MAX_WEIGHT, weight))
    if wait_for == "up" and state == "maint":
        problems.append("wait_for=up cannot be reached with state=maint: a server in maintenance is not checked")
    if health is not None and current is not None and current.get("health") == "none":
        problems.append("health=%s: the server has no health check in haproxy.cfg (add 'check')" % health)
    return problems


def diff_view(status):
    """The part of a status that the module changes, for --diff."""
    return "weight: %s\nadmin_state: %s\nhealth: %s\n" % (status["weight"], status["admin_state"], status.get("health", "none"))


# --- talking --------------------------------------------------------------------------

def refusal(answer):
    """HAProxy answers nothing when a `set` command worked; any text is why it did not."""
    text = answer.strip()
    return text.splitlines()[0] if text else None


def runtime_command(path, command, timeout=10.0):
    """Send one command to the runtime API socket; its whole answer (the socket closes after it)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise RuntimeApiError("no HAProxy runtime API socket at %s: is haproxy running, with "
                                  "'stats socket %s level admin' in haproxy.cfg?" % (path, path)) from None
        except PermissionError:
            raise RuntimeApiError("no permission to use %s: run the task with become (root or group haproxy)" % path) from None
        except ConnectionRefusedError:
            raise RuntimeApiError("%s refuses connections: is haproxy running?" % path) from None
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except TimeoutError:
        raise RuntimeApiError("no complete answer from %s within %ss to: %s" % (path, timeout, command)) from None
    except OSError as exc:
        raise RuntimeApiError("cannot use %s: %s" % (path, exc)) from None
    finally:
        sock.close()
    return b"".join(chunks).decode("utf-8", "replace")
