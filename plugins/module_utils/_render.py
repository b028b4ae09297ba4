# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The text of one PgBouncer process's pgbouncer.ini. Pure functions.

The one renderer of the file (the pgbouncer_config module calls it). Its output is byte for
byte what the role's former Jinja template wrote, so that upgrading the collection changes
no file and restarts nothing: tests/unit/plugins/module_utils/test_render.py holds that output as fixtures.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ini, _processes
from ansible_collections.pgbouncer.cluster.plugins.module_utils._text import CONTROL_MESSAGE, has_control_char


def _sort_key(item):
    # The template sorted with Jinja's dictsort, which ignores case; the order of the
    # [pgbouncer] keys must not move when a user key has capitals.
    key = item[0]
    return key.lower() if isinstance(key, str) else key


def header_lines(header):
    """"; line" for each line of `header`. A line break would start an uncommented line."""
    lines = []
    for line in header:
        if has_control_char(line):
            raise ValueError("a header line cannot hold %s: %r" % (CONTROL_MESSAGE, line))
        lines.append("; %s" % line)
    return lines


def render(proc, processes, settings, databases=(), users=(), wildcard=None, peering=False, header=()):
    """pgbouncer.ini of `proc`, one of `processes` (the _processes.layout() list).

    `wildcard` is the {host, port} of the `*` entry, or None for none; `header` the comment
    lines at the top. Raises ValueError for what PgBouncer could not read (see _ini).
    """
    config = _processes.process_config(proc, processes, settings, databases, users, peering)
    lines = header_lines(header)
    if len(processes) > 1:
        lines.append("; Process %s of %d (%s), sharing the port" % (proc["index"], len(processes), proc["unit"]))
        lines.append("; with so_reuseport: each limit below is this process's share of pgbouncer_* (rounded down).")
    lines += ["", "[databases]"]
    lines += [_ini.database_line(entry) for entry in config["databases"]]
    if wildcard is not None:
        lines.append(_ini.database_line({"name": "*", "host": wildcard.get("host"), "port": wildcard.get("port")}))
    lines.append("")
    if config["users"]:
        lines.append("[users]")
        lines += [_ini.user_line(entry) for entry in config["users"]]
        lines.append("")
    lines.append("[pgbouncer]")
    for key, value in sorted(config["settings"].items(), key=_sort_key):
        if _ini.setting_name_problem(key):
            raise ValueError("settings: %s" % _ini.setting_name_problem(key))
        text = _ini.format_value(value, "setting %s" % key)
        if text is not None:
            lines.append("%s = %s" % (key, text))
    if config["peers"]:
        lines += ["", "; The other processes, so that a cancel request reaches the process that owns the query.", "[peers]"]
        lines += [_ini.peer_line(peer) for peer in config["peers"]]
    return "\n".join(lines) + "\n"
