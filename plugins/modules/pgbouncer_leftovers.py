#!/usr/bin/python
# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbouncer_leftovers
short_description: Find, and repair, what an interrupted runbook left on a node
description:
  - Reads, in one call on the node, what the collection's runbooks change for a while and undo afterwards; a
    runbook that was killed, or whose controller lost the node, may leave any of it behind.
  - The undo timers still armed (C(pgbouncer-cluster-undo-*), the dead man's switches of the runbooks). While one
    is armed, a runbook is running, or died less than its deadline ago.
  - HAProxy servers (O(haproxy_socket), every server of O(haproxy_backends)) with their health check off (only a
    runbook does that); those drained, in maintenance or with another weight than C(haproxy.cfg)'s, which may be
    an operator's choice, are listed apart (RV(deliberate)).
  - Databases PAUSEd in any PgBouncer process of O(consoles); marked redirect blocks (O(markers)) in their
    C(pgbouncer.ini); the keepalived hold file (O(hold_file)).
  - With O(repair=true), undoes what it found in the order the runbooks' own hand-back uses, HAProxy servers back
    to C(haproxy.cfg)'s state, then a wait (up to O(settle_timeout) seconds) until HAProxy's view agrees with the
    checks (a demoted primary's pooler DOWN, its sessions cut), then the redirect blocks removed and C(RELOAD),
    C(RESUME), the hold file removed, the timers disarmed. A play that repairs several nodes runs the HAProxy
    hosts first (O(parts)).
  - Check mode reports what a repair would do and changes nothing.
version_added: 0.2.0
author: pgbouncer.cluster contributors (@pgbouncer-cluster)
options:
  parts:
    description:
      - What to read and repair on this node, V(haproxy) (the servers of O(haproxy_backends)) and V(node)
        (timers, consoles, blocks, hold file).
    type: list
    elements: str
    choices: [haproxy, node]
    default: [haproxy, node]
  consoles:
    description:
      - This node's PgBouncer processes, as the P(pgbouncer.cluster.pgbouncer_processes#filter) filter lists them
        (C(unix_socket_dir), C(port), C(config_file)).
    type: list
    elements: dict
    default: []
  os_user:
    description:
      - OS user whose identity the module takes to log in to the consoles over their unix sockets.
    type: str
    default: postgres
  login_user:
    description:
      - Console user.
    type: str
    default: pgbouncer
  connect_timeout:
    description:
      - Seconds each console login may take.
    type: int
    default: 5
  markers:
    description:
      - The runbooks' redirect block markers (C({mark}) for C(BEGIN) and C(END)).
    type: list
    elements: str
    default: []
  hold_file:
    description:
      - keepalived's hold file; empty when this node has none.
    type: str
    default: ''
  haproxy_socket:
    description:
      - HAProxy's runtime API socket; empty when this node runs no HAProxy.
    type: str
    default: ''
  haproxy_backends:
    description:
      - The backends whose servers the runbooks change.
    type: list
    elements: str
    default: []
  repair:
    description:
      - Undo what was found (see the description for the order).
    type: bool
    default: false
  settle_timeout:
    description:
      - Seconds a repair waits for HAProxy's view of the repaired servers to agree with their checks.
    type: float
    default: 15
"""

EXAMPLES = r"""
- name: Find what an interrupted runbook left
  pgbouncer.cluster.pgbouncer_leftovers:
    consoles: "{{ pgbouncer_processes | pgbouncer.cluster.pgbouncer_processes(service_name='pgbouncer') }}"
    markers: ["; {mark} pgbouncer.cluster switchover: this pooler's clients are served by the new primary until they leave"]
    hold_file: /run/pgbouncer-cluster/vip-hold
    haproxy_socket: /run/haproxy/admin.sock
    haproxy_backends: [pgbouncer, pgbouncer_ro]
  register: leftovers

- name: Repair it
  pgbouncer.cluster.pgbouncer_leftovers:
    consoles: "{{ pgbouncer_processes | pgbouncer.cluster.pgbouncer_processes(service_name='pgbouncer') }}"
    haproxy_socket: /run/haproxy/admin.sock
    haproxy_backends: [pgbouncer, pgbouncer_ro]
    repair: true
  when: leftovers.found | length > 0
"""

RETURN = r"""
found:
  description: What differs from the state the runbooks leave when they end, one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["HAProxy pgbouncer/pg-srv2: health check off", "appdb paused on port 6432"]
deliberate:
  description: >-
    HAProxy servers drained, in maintenance or weighted otherwise than C(haproxy.cfg) says, with their health check
    on: what C(drain.yml) does on purpose, so not counted in RV(found). O(repair=true) restores them too.
  returned: always
  type: list
  elements: str
timers:
  description: The armed undo timers (their units); while one is armed a runbook runs or died less than its deadline ago.
  returned: always
  type: list
  elements: str
repaired:
  description: What the repair did (in check mode, what it would do).
  returned: always
  type: list
  elements: str
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _admin, _deadman, _haproxy, _leftovers
from ansible_collections.pgbouncer.cluster.plugins.module_utils._console import (
    ConnectionLost,
    Console,
    ConsoleError,
    ConsoleTimeout,
    process_login,
)
from ansible_collections.pgbouncer.cluster.plugins.module_utils._switchover import write_like


class Leftovers:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.found, self.deliberate, self.timers, self.repaired = [], [], [], []

    def act(self, what, action):
        """Record `what`; run action() unless in check mode."""
        if not self.module.check_mode:
            action()
        self.repaired.append(what)

    # --- HAProxy ------------------------------------------------------------------------------
    def servers(self):
        """{(backend, server): status} of every server of the backends."""
        path = self.params["haproxy_socket"]
        stats = _haproxy.parse_stat(_haproxy.runtime_command(path, "show stat"))
        out = {}
        for backend in self.params["haproxy_backends"]:
            states = _haproxy.parse_servers_state(_haproxy.runtime_command(path, "show servers state %s" % backend))
            for server in states:
                out[(backend, server)] = _haproxy.find_server(states, stats, backend, server)
        return out

    def haproxy(self):
        path = self.params["haproxy_socket"]
        if not os.path.exists(path):
            return  # no HAProxy running here (not installed yet, or stopped): no runtime state to leave
        try:
            servers = self.servers()
        except _haproxy.RuntimeApiError as exc:
            self.module.fail_json(msg=str(exc))
        fixed = []
        for (backend, server), status in sorted(servers.items()):
            leftovers, deliberate = _leftovers.server_leftovers(status)
            if not leftovers and not deliberate:
                continue
            if leftovers:
                self.found.append("HAProxy %s/%s: %s" % (backend, server, ", ".join(leftovers + deliberate)))
            else:
                self.deliberate.append("HAProxy %s/%s: %s" % (backend, server, ", ".join(deliberate)))
            if self.params["repair"]:
                for command in _haproxy.restore_plan(backend, server, status):
                    self.act("HAProxy: %s" % command, lambda command=command: self.runtime(path, command))
                fixed.append((backend, server))
        if fixed and not self.module.check_mode:
            self.wait_settled(fixed)

    def runtime(self, path, command):
        answer = _haproxy.refusal(_haproxy.runtime_command(path, command))
        if answer:
            self.module.fail_json(msg="HAProxy refused %s: %s" % (command, answer), repaired=self.repaired)

    def wait_settled(self, fixed):
        deadline = time.monotonic() + self.params["settle_timeout"]
        while True:
            servers = self.servers()
            waiting = [key for key in fixed if not _leftovers.settled(servers[key])]
            if not waiting:
                return
            if time.monotonic() > deadline:
                self.module.fail_json(msg="HAProxy's view of %s did not agree with the checks within settle_timeout=%ss; "
                                          "nothing on the poolers was repaired yet" % (
                                              ", ".join("%s/%s" % key for key in waiting), self.params["settle_timeout"]),
                                      found=self.found, repaired=self.repaired)
            time.sleep(0.5)

    # --- the node -----------------------------------------------------------------------------
    def console_params(self, console):
        return process_login(console, self.params["login_user"], self.params["connect_timeout"], self.params["os_user"])

    def console(self, console, command, reading=False):
        """Run a console command; with reading, a pooler that cannot be reached (not installed yet,
        stopped) reads as nothing: a stopped pooler holds no PAUSE."""
        try:
            try:
                conn = Console(self.module, self.console_params(console), raise_errors=True)
            except ConnectionLost:
                if reading:
                    return []
                raise
            with conn:
                if command.startswith("SHOW "):
                    return conn.show(command[5:])
                conn.run(command, self.params["connect_timeout"])
            return []
        except ConsoleError as exc:
            if _admin.means_already_done(command.split()[0], str(exc)):
                return []
            self.module.fail_json(msg="%s on port %s: %s" % (command, console["port"], exc), found=self.found, repaired=self.repaired)
        except (ConsoleTimeout, ConnectionLost) as exc:
            self.module.fail_json(msg="%s on port %s: %s" % (command, console["port"], exc), found=self.found, repaired=self.repaired)
        return []

    def node(self):
        params = self.params
        rc, out, err = self.module.run_command(["systemctl", "list-units", "--all", "--plain", "--no-legend",
                                                _deadman.PREFIX + "*.timer"])
        if rc != 0:
            self.module.fail_json(msg="systemctl list-units failed: %s" % (err or out).strip())
        self.timers = _leftovers.armed_timers(out)
        if self.timers:
            self.found.append("undo timers armed (a runbook runs, or died less than its deadline ago): %s"
                              % ", ".join(_leftovers.describe_timer(unit) for unit in self.timers))
        for console in params["consoles"]:
            path = console["config_file"]
            if not os.path.exists(path):
                continue  # PgBouncer not configured here yet
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            blocks = _leftovers.block_markers(text, params["markers"])
            if blocks:
                self.found.append("%s holds a runbook's redirect block (%s)" % (path, blocks[0].lstrip("; ")))
                if params["repair"]:
                    self.act("removed the redirect block from %s and RELOADed" % path,
                             lambda path=path, text=text, console=console: self.unblock(path, text, console))
            paused = _leftovers.paused_databases(self.console(console, "SHOW DATABASES", reading=True))
            for db in paused:
                self.found.append("%s paused on port %s" % (db, console["port"]))
                if params["repair"]:
                    command = _admin.build_command("RESUME", db=db)
                    self.act("%s on port %s" % (command, console["port"]), lambda console=console, command=command: self.console(console, command))
        hold = params["hold_file"]
        if hold and os.path.exists(hold):
            self.found.append("the VIP hold file %s exists (keepalived's check skips the health agent)" % hold)
            if params["repair"]:
                self.act("removed %s" % hold, lambda: os.unlink(hold))
        if params["repair"]:
            for unit in self.timers:
                self.act("disarmed %s" % unit, lambda unit=unit: _deadman.disarm(self.module, unit))

    def unblock(self, path, text, console):
        write_like(path, _leftovers.without_blocks(text, self.params["markers"]))
        self.console(console, "RELOAD")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            parts=dict(type="list", elements="str", choices=["haproxy", "node"], default=["haproxy", "node"]),
            consoles=dict(type="list", elements="dict", default=[]),
            os_user=dict(type="str", default="postgres"),
            login_user=dict(type="str", default="pgbouncer"),
            connect_timeout=dict(type="int", default=5),
            markers=dict(type="list", elements="str", default=[]),
            hold_file=dict(type="str", default=""),
            haproxy_socket=dict(type="str", default=""),
            haproxy_backends=dict(type="list", elements="str", default=[]),
            repair=dict(type="bool", default=False),
            settle_timeout=dict(type="float", default=15),
        ),
        supports_check_mode=True,
    )
    leftovers = Leftovers(module)
    if "haproxy" in module.params["parts"] and module.params["haproxy_socket"]:
        leftovers.haproxy()
    if "node" in module.params["parts"]:
        leftovers.node()
    module.exit_json(changed=bool(leftovers.repaired), found=leftovers.found, deliberate=leftovers.deliberate,
                     timers=leftovers.timers, repaired=leftovers.repaired)


if __name__ == "__main__":
    main()
