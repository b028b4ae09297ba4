#!/usr/bin/python
# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_server
short_description: Drain, weight or put in maintenance an HAProxy server through the runtime API
description:
  - Talks to HAProxy's runtime API over its admin-level unix socket (C(stats socket ... level admin)), with the
    Python standard library only.
  - Reads the server's state with C(show servers state) (weight, administrative state, operational state) and
    C(show stat) (current sessions, check status), then sends C(set server <backend>/<server> state ...) and
    C(set server <backend>/<server> weight ...) and C(enable health) / C(disable health) only for what differs.
  - Optionally waits, up to O(timeout) seconds, until the server is operationally up (its health check passes) or
    has no sessions left, and fails with the last state read when it does not get there.
  - Changes made here live in the running HAProxy only; a reload or restart goes back to haproxy.cfg. For a drain
    that lasts, use the haproxy role's C(haproxy_drained_hosts).
version_added: 0.1.0
author: pgbouncer.cluster contributors (@pgbouncer-cluster)
options:
  socket:
    description: Path of the runtime API socket.
    type: path
    default: /run/haproxy/admin.sock
  backend:
    description:
      - Backend the server belongs to.
      - Only letters, digits and C(-), C(_), C(.), C(:) (HAProxy's name charset); anything else is refused
        before the socket is used.
    type: str
    default: pgbouncer
  server:
    description:
      - Server name in the backend (the haproxy role names them after inventory_hostname).
      - The same charset as O(backend).
    type: str
    required: true
  weight:
    description:
      - Weight to set, 0 to 256. V(0) sends no new sessions to the server; sessions it has stay.
    type: int
  state:
    description:
      - Administrative state to set. V(ready) takes the server back into load balancing, V(drain) stops new
        sessions but keeps checking it, V(maint) stops new sessions and its health checks.
    type: str
    choices: [ready, drain, maint]
  health:
    description:
      - Turn the server's health check on or off (C(enable health) / C(disable health)). While it is
        V(disabled) HAProxy keeps the server in the state it had, UP or DOWN, whatever the check would say.
      - The switchover playbook disables the check of the old primary's pooler so that HAProxy does not mark it
        down, and cut its sessions, while that pooler hands its clients over to the new primary.
      - V(forced_up) turns the check off and marks the server UP (C(set server ... health up)) whatever its check
        says. The rolling restart uses it for a replica's pooler that it has pointed at the primary, so that it takes
        the writes while the primary's pooler restarts; V(enabled) gives the check back its say.
    type: str
    choices: [enabled, disabled, forced_up]
  wait_for:
    description:
      - After any change, wait until the server is operationally V(up) (its health check passes; not with
        O(state=maint)), V(down), or has V(no_sessions) left (C(scur) of C(show stat) is 0).
      - Not in check mode.
    type: str
    choices: [up, down, no_sessions]
  timeout:
    description: Seconds O(wait_for) waits at most.
    type: float
    default: 30
  restore_after:
    description:
      - Seconds after which the HAProxy node itself takes the server back to its configured state (C(ready), its
        initial weight, its health check on), whatever happens to the controller meanwhile (a lost SSH session, a
        killed C(ansible-playbook)). Before changing anything, the module arms a transient systemd timer on the
        HAProxy node (C(pgbouncer-cluster-undo-haproxy-*)); a later call with another O(restore_after) re-arms it,
        and a call that leaves the server in its configured state disarms it. Nothing is changed when the timer
        cannot be armed.
      - V(0) (the default) arms nothing.
    type: float
    default: 0
attributes:
  check_mode:
    support: full
    description: Reads the state and reports the commands it would send and the state it would set; sends nothing
      that changes HAProxy and does not wait.
  diff_mode:
    support: full
    description: Shows the weight, administrative state and health check before and after.
notes:
  - The task needs access to the socket, typically C(become) (the socket is mode 660, owner root, group haproxy).
  - Without O(weight), O(state), O(health) and O(wait_for) the module only reads the server's state.
seealso:
  - name: HAProxy management guide
    description: The runtime API and its C(set server) and C(show stat) commands.
    link: https://docs.haproxy.org/2.6/management.html
"""

EXAMPLES = r"""
- name: Drain pg-srv2 on every HAProxy and wait until its last client left
  pgbouncer.cluster.haproxy_server:
    server: pg-srv2
    weight: 0
    wait_for: no_sessions
    timeout: 300
  become: true

- name: Take pg-srv2 back and wait until its health check passes
  pgbouncer.cluster.haproxy_server:
    server: pg-srv2
    weight: 100
    state: ready
    wait_for: up
  become: true

- name: Read its state
  pgbouncer.cluster.haproxy_server:
    server: pg-srv2
  become: true
  register: srv2
"""

RETURN = r"""
before:
  description: The server's state before any change.
  returned: success
  type: dict
  contains:
    weight:
      description: Current weight (set by the runtime API or haproxy.cfg).
      type: int
    initial_weight:
      description: Weight haproxy.cfg gave it.
      type: int
    admin_state:
      description: ready, drain or maint.
      type: str
    admin_state_bits:
      description: srv_admin_state of C(show servers state) (bit 0x01 forced maintenance, 0x08 forced drain).
      type: int
    operational:
      description: up, down, starting or stopping (srv_op_state).
      type: str
    health:
      description: The health check, V(enabled), V(disabled) or V(none) (not configured), from srv_check_state.
      type: str
    check_state_bits:
      description: srv_check_state of C(show servers state) (bit 0x02 configured, 0x04 enabled).
      type: int
    status:
      description: Status column of C(show stat), such as C(UP), C(DOWN), C(DRAIN), C(MAINT), C(UP 1/2).
      type: str
    check_status:
      description: Last health check result of C(show stat), such as C(L7OK) or C(L7STS).
      type: str
    sessions:
      description: Current sessions (C(scur)).
      type: int
    address:
      description: Server address.
      type: str
  sample:
    weight: 100
    initial_weight: 100
    admin_state: ready
    admin_state_bits: 0
    operational: up
    health: enabled
    check_state_bits: 6
    status: UP
    check_status: L7OK
    sessions: 3
    address: 10.129.0.22
after:
  description: The server's state after the change and any wait (in check mode, what it would be).
  returned: success
  type: dict
  sample: {weight: 0, admin_state: ready, operational: up, status: UP, sessions: 0}
commands:
  description: Runtime API commands sent (in check mode, that would be sent).
  returned: success
  type: list
  elements: str
  sample: ["set server pgbouncer/pg-srv2 weight 0"]
undo_timer:
  description: The systemd timer armed by this call (O(restore_after)); empty when none.
  returned: success
  type: str
  sample: pgbouncer-cluster-undo-haproxy-_2frun_2fhaproxy_2fadmin_2esock-pgbouncer_2drw-pg-srv1
waited:
  description: Seconds spent waiting for O(wait_for).
  returned: success
  type: float
  sample: 2.5
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _deadman, _haproxy

POLL_INTERVAL = 0.5


def read_status(module):
    params = module.params
    socket_path, backend = params["socket"], params["backend"]
    try:
        states = _haproxy.parse_servers_state(_haproxy.runtime_command(socket_path, "show servers state %s" % backend))
        stats = _haproxy.parse_stat(_haproxy.runtime_command(socket_path, "show stat"))
        return _haproxy.find_server(states, stats, backend, params["server"])
    except _haproxy.RuntimeApiError as exc:
        module.fail_json(msg=str(exc))


def wait(module, wait_for, timeout):
    """Poll until wait_for is reached; fail with the last state when the timeout passes."""
    started = time.monotonic()
    while True:
        status = read_status(module)
        waited = round(time.monotonic() - started, 1)
        if _haproxy.wait_reached(status, wait_for):
            return status, waited
        if waited >= timeout:
            module.fail_json(msg="%s/%s did not reach %s within %ss: operational %s, status %s, %d sessions" % (
                module.params["backend"], module.params["server"], wait_for, timeout, status["operational"],
                status["status"], status["sessions"]), after=status, timed_out=True)
        time.sleep(POLL_INTERVAL)


def guard(module, planned):
    """Before the change: arm the timer that takes the server back to its configured state
    (restore_after), or disarm it when the change itself goes back there. The timer's name when
    one is armed now."""
    params = module.params
    unit = _deadman.unit_name("haproxy", params["socket"], params["backend"], params["server"])
    undo = _haproxy.restore_plan(params["backend"], params["server"], planned)
    if not undo:
        _deadman.disarm(module, unit)
        return ""
    if not params["restore_after"]:
        return ""
    return _deadman.arm(module, unit, params["restore_after"], _deadman.haproxy_undo_argv(params["socket"], undo),
                        "pgbouncer.cluster: %s/%s back to its configured state at the runbook's deadline"
                        % (params["backend"], params["server"]))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", default="/run/haproxy/admin.sock"),
            backend=dict(type="str", default="pgbouncer"),
            server=dict(type="str", required=True),
            weight=dict(type="int"),
            state=dict(type="str", choices=list(_haproxy.STATES)),
            health=dict(type="str", choices=list(_haproxy.HEALTH)),
            wait_for=dict(type="str", choices=list(_haproxy.WAIT_FOR)),
            timeout=dict(type="float", default=30),
            restore_after=dict(type="float", default=0),
        ),
        supports_check_mode=True,
    )
    params = module.params
    # Before any socket I/O, in check mode too: the names go into runtime API command lines.
    problems = _haproxy.check_request(params["weight"], params["state"], params["wait_for"],
                                      backend=params["backend"], server=params["server"])
    if problems:
        module.fail_json(msg="; ".join(problems))

    before = read_status(module)
    problems = _haproxy.check_request(health=params["health"], current=before)
    if problems:
        module.fail_json(msg="; ".join(problems), before=before)
    commands = _haproxy.plan(params["backend"], params["server"], before, params["weight"], params["state"], params["health"])
    waited = 0.0
    undo_timer = ""
    if module.check_mode:
        after = _haproxy.predict(before, params["weight"], params["state"], params["health"])
    else:
        undo_timer = guard(module, _haproxy.predict(before, params["weight"], params["state"], params["health"]))
        for command in commands:
            try:
                refused = _haproxy.refusal(_haproxy.runtime_command(params["socket"], command))
            except _haproxy.RuntimeApiError as exc:
                module.fail_json(msg=str(exc), before=before)
            if refused:
                module.fail_json(msg="HAProxy refused '%s': %s" % (command, refused), before=before)
        after = read_status(module) if commands else before
        if params["wait_for"]:
            after, waited = wait(module, params["wait_for"], params["timeout"])

    result = dict(changed=bool(commands), before=before, after=after, commands=commands, waited=waited, undo_timer=undo_timer)
    if module._diff:
        result["diff"] = dict(before=_haproxy.diff_view(before), after=_haproxy.diff_view(after))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
