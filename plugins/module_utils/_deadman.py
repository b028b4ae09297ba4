# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dead man's switches: a change made for a runbook (a PAUSE, an HAProxy server's health check
turned off) that must not outlive its deadline, even when the controller dies, the SSH session
drops or ansible-playbook is killed.

Before the change, the module arms a transient systemd timer on the node that undoes it at the
deadline; when the runbook undoes the change itself, the module disarms the timer. Nothing
needs the controller afterwards: the node heals itself. An undo that finds nothing to undo does
nothing. Every timer is named pgbouncer-cluster-undo-*, so `systemctl list-timers
'pgbouncer-cluster-undo-*'` lists what is armed on a node.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import re
import sys

PREFIX = "pgbouncer-cluster-undo-"

# Run by the timer's service with the module's own interpreter (python3-psycopg is a runtime
# requirement of the nodes): one console command over the unix socket as the service's user,
# which logs in without a password. Arguments: socket directory, port, console user, command.
# An error is printed and ends the service as failed (the journal keeps it); "not paused"
# means there was nothing to undo. No "%" or "$" in these scripts: systemd may expand them in
# a transient unit's command line.
CONSOLE_UNDO = (
    "import sys\n"
    "import psycopg\n"
    "host, port, user, command = sys.argv[1:5]\n"
    "try:\n"
    "    with psycopg.connect(host=host, port=int(port), user=user, dbname='pgbouncer', autocommit=True,\n"
    "                         connect_timeout=5, cursor_factory=psycopg.ClientCursor,\n"
    "                         application_name='pgbouncer-cluster-undo') as conn:\n"
    "        conn.execute(command)\n"
    "    print('sent ' + command)\n"
    "except psycopg.Error as exc:\n"
    "    if 'not paused' in str(exc):\n"
    "        print('nothing to undo: ' + str(exc).strip())\n"
    "    else:\n"
    "        sys.exit(command + ' failed: ' + str(exc))\n"
)

# The same for HAProxy's runtime API: each argument after the socket path is one command.
HAPROXY_UNDO = (
    "import socket, sys\n"
    "path, commands = sys.argv[1], sys.argv[2:]\n"
    "for command in commands:\n"
    "    conn = socket.socket(socket.AF_UNIX)\n"
    "    conn.settimeout(5)\n"
    "    conn.connect(path)\n"
    "    conn.sendall(command.encode() + b'\\n')\n"
    "    answer = b''\n"
    "    while True:\n"
    "        chunk = conn.recv(65536)\n"
    "        if not chunk:\n"
    "            break\n"
    "        answer += chunk\n"
    "    conn.close()\n"
    "    print('sent ' + command + ': ' + (answer.decode(errors='replace').strip() or 'done'))\n"
)


def unit_name(kind, *parts):
    """A timer/service base name for one change: PREFIX + kind + its parts, with every byte
    that is not a letter, digit or '-' written as _XX (names are unique and need no quoting)."""
    def escape(text):
        return re.sub(r"[^A-Za-z0-9-]", lambda match: "".join("_%02x" % byte for byte in match.group(0).encode()), str(text))

    return PREFIX + "-".join([kind] + [escape(part) for part in parts])


def console_undo_argv(socket_dir, port, user, command):
    return [sys.executable, "-c", CONSOLE_UNDO, socket_dir, str(port), user, command]


def haproxy_undo_argv(socket_path, commands):
    return [sys.executable, "-c", HAPROXY_UNDO, socket_path] + list(commands)


def disarm(module, unit):
    """Stop the timer (a transient unit then goes away) and forget a failed earlier undo.

    Returns whether a timer was armed."""
    rc, out, _err = module.run_command(["systemctl", "is-active", unit + ".timer"])
    armed = rc == 0 and out.strip() == "active"
    module.run_command(["systemctl", "stop", unit + ".timer"])
    module.run_command(["systemctl", "reset-failed", unit + ".timer", unit + ".service"])
    return armed


def arm(module, unit, seconds, argv, description, user=None):
    """Arm (or re-arm) the timer that runs `argv` in `seconds` from now, as `user`.

    Fails the module when systemd cannot arm it: the change must not be made without its undo."""
    disarm(module, unit)
    command = ["systemd-run", "--quiet", "--unit", unit, "--description", description,
               "--on-active", "%dms" % int(round(float(seconds) * 1000)),
               "--timer-property=AccuracySec=100ms", "--property=Type=oneshot"]
    if user:
        command.append("--property=User=%s" % user)
    rc, out, err = module.run_command(command + ["--"] + list(argv))
    if rc != 0:
        module.fail_json(msg="could not arm the undo timer %s with systemd-run, so nothing was changed: %s"
                             % (unit, (err or out).strip()), unit=unit)
    return unit
