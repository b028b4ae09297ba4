#!/usr/bin/python
# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbouncer_switchover
short_description: Switch the Patroni primary over with this node's poolers paused, in one step on the node
description:
  - Runs on the node of the current Patroni leader the section of a switchover that clients wait through, as
    one process with its own deadline instead of a chain of Ansible tasks, each a round trip from the controller.
  - In order, CHECKPOINT on the local PostgreSQL (so that Patroni's demotion has little to write); PAUSE of
    O(databases) in every PgBouncer process of O(consoles) (clients' next transactions wait inside PgBouncer);
    C(POST /switchover) to Patroni's REST API; a wait until the new leader's C(GET /primary) answers 200 (it holds
    the leader lock) and O(primary_check_url) does too (its PostgreSQL is out of recovery); the redirect block appended to each
    C(pgbouncer.ini) (the entries whose C(host=) is O(leader_host) pointed at the new leader, as
    M(ansible.builtin.blockinfile) would write it with O(marker)) and C(RELOAD); C(RESUME). The waiting clients'
    transactions then run on the new primary.
  - The replicas' poolers are not paused; they carry no writes (see the README's switchover section for the
    measurement behind that).
  - Whatever happens after the PAUSE (Patroni refuses, the new leader does not come within O(deadline), a file
    cannot be written), the module RESUMEs before it returns. When a new leader is known by then, the redirect
    goes first. With O(resume_deadline), a transient systemd timer armed before the PAUSE resumes each database
    even if the module itself dies.
  - Check mode reads the files and Patroni's cluster and reports what would happen; it changes nothing.
version_added: 0.2.0
author: pgbouncer.cluster contributors (@pgbouncer-cluster)
options:
  consoles:
    description:
      - This node's PgBouncer processes, as the P(pgbouncer.cluster.pgbouncer_processes#filter) filter lists them.
        Each needs C(unix_socket_dir), C(port) and C(config_file).
    type: list
    elements: dict
    required: true
  databases:
    description:
      - The databases to pause and hand over, as PgBouncer names them.
    type: list
    elements: str
    required: true
  os_user:
    description:
      - OS user whose identity the module takes to log in to the consoles over their unix sockets (the
        service's user, which the console admits without a password), and that the resume timers run as.
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
  leader:
    description:
      - Patroni's name of the current leader, which must be this node's member. The module refuses when
        Patroni's leader is another member.
    type: str
    required: true
  leader_host:
    description:
      - The address the C([databases]) entries of this node's own PostgreSQL use in C(host=), which the
        redirect block points at the new leader.
    type: str
    required: true
  candidate:
    description:
      - Patroni member to promote. Empty lets Patroni choose among its healthy replicas.
    type: str
    default: ''
  keep:
    description:
      - Databases whose entries stay on this node's PostgreSQL, such as the health agent's, whose checks then
        keep telling HAProxy the truth about this node.
    type: list
    elements: str
    default: []
  marker:
    description:
      - The redirect block's marker line; C({mark}) becomes C(BEGIN) and C(END), as in
        M(ansible.builtin.blockinfile).
    type: str
    required: true
  primary_check_url:
    description:
      - A URL that answers 200 only once the new leader's PostgreSQL is out of recovery, C({host}) standing for
        the new leader's address as Patroni lists it; the P(pgbouncer.cluster.pgbouncer_health#role) agent's
        C(/primary) (a real C(pg_is_in_recovery()) through that node's pooler) is made for it. The clients resume
        only after it answers 200.
      - Empty waits for Patroni's C(GET /primary) alone. Patroni 4.0 answers 200 there as soon as it has asked
        PostgreSQL to promote, about 0.3 s before the promotion ends (measured on the lab), so a transaction that
        resumes in that window fails with C(cannot execute INSERT in a read-only transaction).
    type: str
    default: ''
  patroni_url:
    description:
      - Base URL of this node's Patroni REST API.
    type: str
    default: http://127.0.0.1:8008
  patroni_user:
    description:
      - User of Patroni's C(restapi.authentication), when the API asks for one.
    type: str
    default: ''
  patroni_password:
    description:
      - Password of O(patroni_user).
    type: str
    default: ''
  validate_certs:
    description:
      - Whether to validate the REST API's TLS certificate (an C(https) O(patroni_url)).
    type: bool
    default: true
  checkpoint:
    description:
      - Run C(CHECKPOINT) on the local PostgreSQL before the PAUSE, as O(postgres_os_user) over the unix socket.
        Patroni checkpoints again when it demotes the leader; after this one that takes milliseconds, inside
        the window clients wait through.
    type: bool
    default: true
  postgres_os_user:
    description:
      - OS user that logs in to the local PostgreSQL by peer authentication for O(checkpoint).
    type: str
    default: postgres
  postgres_unix_socket:
    description:
      - Directory of the local PostgreSQL's unix socket.
    type: str
    default: /var/run/postgresql
  postgres_port:
    description:
      - Port of the local PostgreSQL.
    type: int
    default: 5432
  pause_timeout:
    description:
      - Seconds the PAUSE may take (the transactions in flight to finish); after that nothing else is done and
        every console is resumed.
    type: float
    default: 10
  deadline:
    description:
      - Seconds from the PAUSE after which the module RESUMEs, whatever Patroni has done by then.
    type: float
    default: 30
  resume_deadline:
    description:
      - Seconds after which each paused database is resumed by a transient systemd timer
        (C(pgbouncer-cluster-undo-pause-*)) armed before the PAUSE, should this module not get to it (the
        controller or the SSH session died, the module was killed). Disarmed on RESUME. V(0) arms nothing.
      - Longer than O(deadline).
    type: float
    default: 0
notes:
  - Patroni's REST API must accept C(POST /switchover) from this node (its C(restapi) settings), and the
    new leader's C(GET /primary) must be reachable from it.
seealso:
  - module: pgbouncer.cluster.pgbouncer_admin
  - name: Patroni REST API
    description: The switchover and health check endpoints.
    link: https://patroni.readthedocs.io/en/latest/rest_api.html
requirements:
  - psycopg >= 3.0 (Debian package C(python3-psycopg)) on the managed node
"""

EXAMPLES = r"""
- name: Switch over from this node, its poolers paused
  pgbouncer.cluster.pgbouncer_switchover:
    consoles: "{{ pgbouncer_processes | pgbouncer.cluster.pgbouncer_processes(service_name='pgbouncer') }}"
    databases: [appdb]
    leader: pg-srv1
    leader_host: 10.129.0.21
    keep: [pgbouncer_health]
    marker: "; {mark} switchover: served by the new primary"
    deadline: 30
    resume_deadline: 35
  register: switched

- name: Show how long clients waited
  ansible.builtin.debug:
    msg: "{{ switched.new_leader.name }} took over; clients waited {{ switched.paused_seconds }} s"
"""

RETURN = r"""
new_leader:
  description: The new leader as Patroni's C(GET /cluster) lists it (C(name), C(host), C(port), ...).
  returned: success
  type: dict
  sample: {"name": "pg-srv2", "host": "10.129.0.22", "port": 5432, "role": "leader", "state": "running"}
paused_seconds:
  description: Seconds from the start of the PAUSE to the end of the RESUME, measured on the node.
  returned: when the PAUSE was sent
  type: float
  sample: 1.62
phases:
  description: Seconds per phase (C(prepare) before the PAUSE, then C(pause), C(switchover), C(promote), C(redirect), C(resume)).
  returned: when the PAUSE was sent
  type: dict
  sample: {"prepare": 0.21, "pause": 0.01, "switchover": 1.1, "promote": 0.3, "redirect": 0.05, "resume": 0.02}
redirected:
  description: The configuration files the redirect block was written to.
  returned: success
  type: list
  elements: str
undo_timers:
  description: The systemd timers armed before the PAUSE (O(resume_deadline)); disarmed again on success.
  returned: always
  type: list
  elements: str
"""

import json
import os
import threading
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _admin, _deadman, _switchover
from ansible_collections.pgbouncer.cluster.plugins.module_utils._connection import os_identity, psycopg
from ansible_collections.pgbouncer.cluster.plugins.module_utils._console import (
    ConnectionLost,
    Console,
    ConsoleError,
    ConsoleTimeout,
    process_login,
)

POLL = 0.05  # seconds between two looks at Patroni while clients wait


class SwitchoverError(Exception):
    """A step failed; the message says which and why."""


class Patroni:
    """Patroni's REST API, through ansible's open_url (TLS and basic auth as the module's options say)."""

    def __init__(self, params):
        self.params = params

    def request(self, url, method="GET", body=None, timeout=2.0):
        """(status, text); an HTTP error status is an answer, not an exception."""
        data = json.dumps(body).encode() if body is not None else None
        try:
            response = open_url(
                url, method=method, data=data, timeout=max(timeout, 0.2),
                headers={"Content-Type": "application/json"} if data else None,
                url_username=self.params["patroni_user"] or None,
                url_password=self.params["patroni_password"] or None,
                force_basic_auth=bool(self.params["patroni_user"]),
                validate_certs=self.params["validate_certs"])
            return response.getcode(), response.read().decode("utf-8", "replace")
        except Exception as exc:  # pylint: disable=broad-except  # HTTPError carries a status; others mean "no answer"
            code = getattr(exc, "code", None)
            if code is not None:
                return code, exc.read().decode("utf-8", "replace") if hasattr(exc, "read") else str(exc)
            return None, str(exc)

    def cluster(self, timeout=2.0):
        status, text = self.request(self.params["patroni_url"].rstrip("/") + "/cluster", timeout=timeout)
        if status != 200:
            raise SwitchoverError("Patroni's GET /cluster at %s answered %s: %s" % (self.params["patroni_url"], status, text[:300]))
        return json.loads(text)


class Switchover:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.patroni = Patroni(module.params)
        self.result = dict(changed=False, undo_timers=[], redirected=[])
        self.phases = {}
        self.texts = {}
        self.paused = []  # (console params, database) pairs paused by this run
        self.new = None

    # --- before anything changes ---------------------------------------------------------------
    def check(self):
        """Read the files and Patroni; fail, having changed nothing, when the switchover cannot go well."""
        params = self.params
        if params["resume_deadline"] and params["resume_deadline"] <= params["deadline"]:
            self.module.fail_json(msg="resume_deadline (%s) must be longer than deadline (%s): the timer is for when the "
                                      "module cannot resume itself" % (params["resume_deadline"], params["deadline"]))
        for console in params["consoles"]:
            path = console.get("config_file")
            try:
                with open(path, encoding="utf-8") as handle:
                    self.texts[path] = handle.read()
            except (OSError, TypeError) as exc:
                self.module.fail_json(msg="cannot read %s, the pgbouncer.ini of %s: %s; nothing was changed"
                                          % (path, console.get("unit", "a process"), exc))
            if _switchover.redirected(self.texts[path], params["marker"], params["leader_host"], "new-primary",
                                      params["keep"]) is None:
                self.module.fail_json(msg="no [databases] entry of %s has host=%s (the address of this node's PostgreSQL), so "
                                          "its clients could not be handed over to the new primary; nothing was changed"
                                          % (path, params["leader_host"]))
        try:
            current = _switchover.leader(self.patroni.cluster())
        except (SwitchoverError, ValueError) as exc:
            self.module.fail_json(msg="%s; nothing was changed" % exc)
        if current is None or current.get("name") != params["leader"]:
            self.module.fail_json(msg="Patroni's running leader is %s, not %s; nothing was changed"
                                      % (current.get("name") if current else "nobody", params["leader"]))

    def console_params(self, console):
        return process_login(console, self.params["login_user"], self.params["connect_timeout"], self.params["os_user"])

    def checkpoint(self):
        params = self.params
        login = dict(host=params["postgres_unix_socket"], port=params["postgres_port"], user=params["postgres_os_user"],
                     dbname="postgres", autocommit=True, connect_timeout=params["connect_timeout"], passfile=os.devnull,
                     application_name="ansible-pgbouncer.cluster")
        try:
            with os_identity(params["postgres_os_user"]), psycopg.connect(**login) as conn:
                conn.execute("CHECKPOINT")
        except (psycopg.Error, KeyError) as exc:
            self.module.fail_json(msg="CHECKPOINT on the local PostgreSQL (port %s, as %s) failed: %s; nothing was changed"
                                      % (params["postgres_port"], params["postgres_os_user"], str(exc).strip()))

    def arm(self):
        """The dead man's switches: each database resumes by itself at resume_deadline."""
        if not self.params["resume_deadline"]:
            return
        for console in self.params["consoles"]:
            for db in self.params["databases"]:
                resume = _admin.build_command("RESUME", db=db)
                unit = _deadman.unit_name("pause", console["unix_socket_dir"], console["port"], db)
                _deadman.arm(self.module, unit, self.params["resume_deadline"],
                             _deadman.console_undo_argv(console["unix_socket_dir"], console["port"],
                                                        self.params["login_user"], resume),
                             "pgbouncer.cluster: %s on port %s at the switchover's deadline" % (resume, console["port"]),
                             user=self.params["os_user"])
                self.result["undo_timers"].append(unit)

    # --- the window clients wait through --------------------------------------------------------
    def pause(self, deadline):
        for console in self.params["consoles"]:
            cparams = self.console_params(console)
            for db in self.params["databases"]:
                try:
                    with Console(self.module, cparams, raise_errors=True) as conn:
                        try:
                            conn.run(_admin.build_command("PAUSE", db=db), self.params["pause_timeout"])
                        except ConsoleError as exc:
                            if not _admin.means_already_done("PAUSE", str(exc)):
                                raise SwitchoverError("PAUSE %s on port %s failed: %s" % (db, console["port"], exc)) from exc
                        self.paused.append((cparams, db))
                        while _admin.busy_server_connections(conn.show("POOLS"), db):
                            if time.monotonic() > deadline:
                                raise SwitchoverError("PAUSE %s on port %s did not finish within pause_timeout=%ss"
                                                      % (db, console["port"], self.params["pause_timeout"]))
                            time.sleep(0.02)
                except ConsoleTimeout as exc:
                    self.paused.append((cparams, db))
                    raise SwitchoverError("PAUSE %s on port %s did not finish within pause_timeout=%ss"
                                          % (db, console["port"], self.params["pause_timeout"])) from exc
                except ConnectionLost as exc:
                    raise SwitchoverError("PAUSE %s on port %s: %s" % (db, console["port"], exc)) from exc

    def switch(self, deadline):
        """POST /switchover (in a thread: Patroni answers only once it is done) and wait for the new
        leader's GET /primary to answer 200, polling every POLL seconds until deadline."""
        body = {"leader": self.params["leader"]}
        if self.params["candidate"]:
            body["candidate"] = self.params["candidate"]
        answer = {}

        def post():
            answer["status"], answer["text"] = self.patroni.request(
                self.params["patroni_url"].rstrip("/") + "/switchover", "POST", body, timeout=deadline - time.monotonic())

        thread = threading.Thread(target=post, daemon=True)
        started = time.monotonic()
        thread.start()
        member = None
        while time.monotonic() < deadline:
            if "status" in answer and answer["status"] != 200 and member is None:
                raise SwitchoverError("Patroni refused the switchover (%s): %s" % (answer["status"], answer["text"].strip()[:300]))
            if member is None:
                try:
                    member = _switchover.new_leader(self.patroni.cluster(timeout=1.0), self.params["leader"])
                except (SwitchoverError, ValueError):
                    member = None  # Patroni's API may not answer while this node demotes
                if member is not None:
                    self.phases["switchover"] = time.monotonic() - started
                    started = time.monotonic()
            if member is not None and self.promoted(member):
                self.phases["promote"] = time.monotonic() - started
                self.new = member
                return
            time.sleep(POLL)
        if member is not None:
            self.new = member  # the lock moved; its PostgreSQL may still be promoting
        raise SwitchoverError("no new leader ran as primary within deadline=%ss (Patroni: %s)"
                              % (self.params["deadline"], answer.get("text", "no answer yet").strip()[:300]))

    def promoted(self, member):
        """Whether the new leader's Patroni says it is the primary and, with primary_check_url, its
        PostgreSQL is out of recovery."""
        status, _text = self.patroni.request(_switchover.api_base(member) + "/primary", timeout=1.0)
        if status != 200:
            return False
        if not self.params["primary_check_url"]:
            return True
        status, _text = self.patroni.request(self.params["primary_check_url"].replace("{host}", member["host"]), timeout=1.0)
        return status == 200

    def redirect(self):
        params = self.params
        for console in params["consoles"]:
            path = console["config_file"]
            text = _switchover.redirected(self.texts[path], params["marker"], params["leader_host"],
                                          self.new["host"], params["keep"])
            _switchover.write_like(path, text)
            self.result["redirected"].append(path)
            try:
                with Console(self.module, self.console_params(console), raise_errors=True) as conn:
                    conn.run("RELOAD", params["connect_timeout"])
            except (ConsoleError, ConsoleTimeout, ConnectionLost) as exc:
                raise SwitchoverError("RELOAD on port %s failed after the redirect was written: %s" % (console["port"], exc)) from exc

    def resume(self):
        """RESUME what this run paused; returns the failures (a list of messages)."""
        problems = []
        for cparams, db in self.paused:
            try:
                with Console(self.module, cparams, raise_errors=True) as conn:
                    conn.run(_admin.build_command("RESUME", db=db), cparams["connect_timeout"])
            except ConsoleError as exc:
                if not _admin.means_already_done("RESUME", str(exc)):
                    problems.append("RESUME %s on port %s: %s" % (db, cparams["login_port"], exc))
            except (ConsoleTimeout, ConnectionLost) as exc:  # ConnectionLost: no login either
                problems.append("RESUME %s on port %s: %s" % (db, cparams["login_port"], exc))
        if not problems:
            for unit in self.result["undo_timers"]:
                _deadman.disarm(self.module, unit)
        return problems

    def run(self):
        started = time.monotonic()
        if self.params["checkpoint"]:
            self.checkpoint()
        self.arm()
        self.phases["prepare"] = time.monotonic() - started
        self.result["changed"] = True
        paused_at = time.monotonic()
        deadline = paused_at + self.params["deadline"]
        error = None
        try:
            self.pause(min(deadline, paused_at + self.params["pause_timeout"]))
            self.phases["pause"] = time.monotonic() - paused_at
            self.switch(deadline)
        except SwitchoverError as exc:
            error = str(exc)
        if self.new is not None:
            mark = time.monotonic()
            try:
                self.redirect()
            except (SwitchoverError, OSError) as exc:
                error = "%s%s" % (error + "; " if error else "", exc)
            self.phases["redirect"] = time.monotonic() - mark
        mark = time.monotonic()
        problems = self.resume()
        self.phases["resume"] = time.monotonic() - mark
        self.result["phases"] = _switchover.rounded(self.phases)
        self.result["paused_seconds"] = round(time.monotonic() - paused_at, 3)
        self.result["new_leader"] = self.new or {}
        if problems:
            error = "%s%s; the resume timers stay armed" % (error + "; " if error else "", "; ".join(problems))
        if error:
            self.module.fail_json(msg="%s; %s" % (error, "the poolers were resumed" if not problems else "see above"),
                                  **self.result)
        self.module.exit_json(msg="%s is the primary; %s's clients waited %.2f s" % (
            self.new["name"], self.params["leader"], self.result["paused_seconds"]), **self.result)


def argument_spec():
    return dict(
        consoles=dict(type="list", elements="dict", required=True),
        databases=dict(type="list", elements="str", required=True),
        os_user=dict(type="str", default="postgres"),
        login_user=dict(type="str", default="pgbouncer"),
        connect_timeout=dict(type="int", default=5),
        leader=dict(type="str", required=True),
        leader_host=dict(type="str", required=True),
        candidate=dict(type="str", default=""),
        primary_check_url=dict(type="str", default=""),
        keep=dict(type="list", elements="str", default=[], no_log=False),
        marker=dict(type="str", required=True),
        patroni_url=dict(type="str", default="http://127.0.0.1:8008"),
        patroni_user=dict(type="str", default=""),
        patroni_password=dict(type="str", default="", no_log=True),
        validate_certs=dict(type="bool", default=True),
        checkpoint=dict(type="bool", default=True),
        postgres_os_user=dict(type="str", default="postgres"),
        postgres_unix_socket=dict(type="str", default="/var/run/postgresql"),
        postgres_port=dict(type="int", default=5432),
        pause_timeout=dict(type="float", default=10),
        deadline=dict(type="float", default=30),
        resume_deadline=dict(type="float", default=0),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if psycopg is None:
        from ansible.module_utils.basic import missing_required_lib

        module.fail_json(msg=missing_required_lib("psycopg (python3-psycopg)"))
    if not module.params["databases"]:
        module.fail_json(msg="databases is empty: name the databases whose clients must not notice the switchover")
    switchover = Switchover(module)
    switchover.check()
    if module.check_mode:
        what = (", ".join(module.params["databases"]), len(module.params["consoles"]), module.params["leader"])
        module.exit_json(changed=True, msg="check mode: would pause %s on %d process(es), switch over from %s and hand the "
                                           "clients over" % what, undo_timers=[], redirected=[])
    switchover.run()


if __name__ == "__main__":
    main()
