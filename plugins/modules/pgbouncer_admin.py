#!/usr/bin/python
# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbouncer_admin
short_description: Run a PgBouncer admin console command (SHOW, PAUSE, RESUME, RELOAD, SET, ...)
description:
  - Connects to the admin console (the virtual database C(pgbouncer)) with psycopg 3, in autocommit and over
    the simple query protocol, the only one the console speaks, and runs one console command.
  - Builds the command from validated options, quoting database names and values; anything that is not a
    console command is refused before it is sent.
  - Reads the running version with C(SHOW VERSION) first and refuses commands that version lacks, such as
    C(SHOW STATE) before 1.19, C(SHUTDOWN WAIT_FOR_SERVERS) before 1.23 and C(KILL_CLIENT) before 1.24.
  - Idempotent where PgBouncer shows the state. C(PAUSE), C(RESUME), C(DISABLE) and C(ENABLE) of a database
    read its C(paused) and C(disabled) columns in C(SHOW DATABASES); C(PAUSE), C(RESUME) and C(SUSPEND) of the
    whole pooler read C(SHOW STATE) (1.19 and later) or, before 1.19, take the console's "already paused" and
    "not paused" answers as "nothing to do". C(SET) compares with C(SHOW CONFIG). C(RELOAD), C(RECONNECT),
    C(KILL), C(KILL_CLIENT) and C(SHUTDOWN) always report a change; C(SHOW) and C(WAIT_CLOSE) never do.
  - C(SHOW) results are returned as a list of dicts keyed by column name, since the columns differ between
    PgBouncer versions (for example 1.18 and 1.24).
version_added: 0.1.0
author: pgbouncer.cluster contributors (@pgbouncer-cluster)
extends_documentation_fragment:
  - pgbouncer.cluster.connection
options:
  command:
    description:
      - The console command word, case-insensitive.
      - V(SHOW) may carry its subcommand, as in V(SHOW POOLS); otherwise give it in O(show).
      - Other arguments go in O(db), O(client_id), O(shutdown_mode), O(key) and O(value), never in O(command).
      - One of SHOW, PAUSE, RESUME, DISABLE, ENABLE, RECONNECT, KILL, KILL_CLIENT, SUSPEND, SHUTDOWN, RELOAD,
        WAIT_CLOSE, SET. Anything else fails with RV(error_kind=unknown_command) before anything is sent.
    type: str
    required: true
  show:
    description:
      - What V(SHOW) shows.
      - One of POOLS, STATS, STATS_TOTALS, STATS_AVERAGES, TOTALS, DATABASES, CLIENTS, SERVERS, USERS, CONFIG,
        LISTS, MEM, SOCKETS, ACTIVE_SOCKETS, DNS_HOSTS, DNS_ZONES, VERSION, STATE (1.19+), PEERS (1.19+),
        PEER_POOLS (1.19+), FDS. Case-insensitive.
    type: str
  db:
    description:
      - Database the command acts on, as named in PgBouncer's C([databases]) section (not the console
        database). Required by V(DISABLE), V(ENABLE) and V(KILL); without it V(PAUSE), V(RESUME),
        V(RECONNECT) and V(WAIT_CLOSE) act on every database.
    type: str
  auto_database:
    description:
      - With a C(*) fallback entry, PgBouncer creates a database for any name it is given, so a misspelt
        O(db) would quietly pause or disable a database nobody uses.
      - When V(false), the module fails unless PgBouncer already knows O(db) (it appears in
        C(SHOW DATABASES) or C(SHOW STATS)). Set V(true) to act on a database that no client has used since
        PgBouncer started.
    type: bool
    default: false
  client_id:
    description: Client to disconnect with V(KILL_CLIENT), the C(id) column of C(SHOW CLIENTS).
    type: int
  shutdown_mode:
    description:
      - How V(SHUTDOWN) stops PgBouncer. V(wait_for_servers) and V(wait_for_clients) need PgBouncer 1.23.
    type: str
    choices: [immediate, wait_for_servers, wait_for_clients]
  key:
    description: Setting to change with V(SET), as listed by C(SHOW CONFIG).
    type: str
  value:
    description:
      - New value of O(key) for V(SET). Booleans may be given as true/false, yes/no, on/off or 1/0.
      - A setting that cannot change at runtime (C(SHOW CONFIG) C(changeable=no)) makes the module fail,
        where PgBouncer would ignore the C(SET).
    type: raw
  timeout:
    description:
      - Seconds to wait for a command to finish. V(PAUSE) waits for server connections to be released,
        V(WAIT_CLOSE) for them to close and V(SUSPEND) for buffers to flush.
      - On timeout the module fails with RV(timed_out=true); see O(resume_on_timeout).
      - V(0) waits as long as it takes.
    type: float
    default: 60
  resume_on_timeout:
    description:
      - After a V(PAUSE) or V(SUSPEND) times out, PgBouncer keeps pausing and holds new clients. With V(true) the
        module sends V(RESUME) (for O(db) if given) so that nothing stays paused, then fails.
    type: bool
    default: true
  resume_deadline:
    description:
      - With V(PAUSE), seconds after which the node itself sends V(RESUME) for O(db) (all databases without O(db)),
        whatever happens to the controller meanwhile (a lost SSH session, a killed C(ansible-playbook)). Before
        pausing, the module arms a transient systemd timer on the node (C(pgbouncer-cluster-undo-pause-*)), which
        logs in over the unix socket as O(os_user), like the module; a later V(RESUME) of the same database through
        this module disarms it. Nothing is paused when the timer cannot be armed.
      - Needs the unix socket (no O(login_host)) and O(os_user), since the timer has no password.
      - V(0) (the default) arms nothing. Only a pause this call makes is armed; one already in effect is left alone.
    type: float
    default: 0
  login_port:
    description: PgBouncer port.
    type: int
    default: 6432
  login_user:
    description: Console user, listed in C(admin_users) (any command) or C(stats_users) (SHOW only).
    type: str
    default: pgbouncer
attributes:
  check_mode:
    support: full
    description: Reads the version and the state, reports the command that would run and whether it would change
      anything; sends no command but C(SHOW) (not even C(WAIT_CLOSE)). C(SHOW) runs in check mode too. Fails with
      RV(error_kind=admin_access_needed) when O(login_user) is not in C(admin_users), as the real run would.
  diff_mode:
    support: none
    description: No diff; RV(before) and RV(after) show what SET changed.
notes:
  - V(SHUTDOWN) stops PgBouncer; whether it starts again is up to the service manager.
  - V(KILL) leaves the database paused until V(RESUME), as PgBouncer does.
  - The C(cancel) (the cancel key), C(password) and C(scram_*_key) columns of C(SHOW FDS) are returned as
    C(********).
seealso:
  - name: PgBouncer admin console
    description: The commands and the columns of their results.
    link: https://www.pgbouncer.org/usage.html#admin-console
"""

EXAMPLES = r"""
- name: Read the pools (as the service's OS user over the unix socket, no password)
  pgbouncer.cluster.pgbouncer_admin:
    command: SHOW POOLS
    os_user: postgres
  register: pools

- name: Clients waiting for a server connection in appdb
  ansible.builtin.debug:
    msg: "{{ pools.rows | selectattr('database', 'equalto', 'appdb') | map(attribute='cl_waiting') | sum }}"

- name: Pause appdb before restarting PostgreSQL; resume it if it does not pause within 30 seconds
  pgbouncer.cluster.pgbouncer_admin:
    command: PAUSE
    db: appdb
    timeout: 30
    os_user: postgres

- name: Pause appdb, and let the node resume it after 60 seconds even if this play dies meanwhile
  pgbouncer.cluster.pgbouncer_admin:
    command: PAUSE
    db: appdb
    resume_deadline: 60
    os_user: postgres

- name: Resume appdb
  pgbouncer.cluster.pgbouncer_admin:
    command: RESUME
    db: appdb
    os_user: postgres

- name: Stop new connections to reportdb
  pgbouncer.cluster.pgbouncer_admin:
    command: DISABLE
    db: reportdb
    login_host: 10.129.0.21
    login_user: pgbouncer
    login_password: "{{ pgbouncer_admin_password }}"

- name: Change a setting at runtime (changed only if it differs)
  pgbouncer.cluster.pgbouncer_admin:
    command: SET
    key: server_check_query
    value: select 1
    os_user: postgres

- name: Reload pgbouncer.ini and the auth_file
  pgbouncer.cluster.pgbouncer_admin:
    command: RELOAD
    os_user: postgres
"""

RETURN = r"""
command:
  description: The console command as sent, or as it would be sent in check mode.
  returned: always
  type: str
  sample: PAUSE "appdb"
state_known:
  description:
    - V(false) in check mode when the database's paused or disabled state could not be read (an idle
      auto-database, which only C(WAIT_CLOSE) would list again); C(changed) then says the command would be sent,
      and a warning says the real run may find nothing to do.
  returned: in check mode, for PAUSE, RESUME, DISABLE and ENABLE of such a database
  type: bool
  sample: false
executed:
  description: Whether the command was sent to PgBouncer (false in check mode and when nothing was to do).
  returned: always
  type: bool
  sample: true
version:
  description: PgBouncer's version, from SHOW VERSION.
  returned: always
  type: str
  sample: 1.18.0
status:
  description: PgBouncer's answer (the command tag), such as C(PAUSE) or C(SHOW); empty when not executed.
  returned: always
  type: str
  sample: PAUSE
columns:
  description: Column names of a SHOW result, in PgBouncer's order.
  returned: always
  type: list
  elements: str
  sample: [database, user, cl_active, cl_waiting]
rows:
  description:
    - Rows of a SHOW result, each a dict keyed by column name; empty for other commands.
    - Integer and numeric columns are numbers, NULL is null, the rest strings. The columns depend on the SHOW
      subcommand and on the PgBouncer version; see the PgBouncer usage documentation.
    - "SHOW POOLS: database, user, cl_active, cl_waiting, sv_active, sv_idle, sv_used, ..., maxwait, pool_mode."
    - "SHOW DATABASES: name, host, port, database, force_user, pool_size, ..., paused, disabled
      (1.18 names the reserve column reserve_pool, 1.24 reserve_pool_size)."
    - "SHOW STATS, STATS_TOTALS, STATS_AVERAGES: database and counters such as total_xact_count."
    - "SHOW CLIENTS, SERVERS, SOCKETS, ACTIVE_SOCKETS: type, user, database, state, addr, port, ...
      (1.24 adds id, used by KILL_CLIENT)."
    - "SHOW USERS: name, pool_mode (1.24 adds connection columns)."
    - "SHOW CONFIG: key, value, default, changeable."
    - "SHOW LISTS: list, items. SHOW MEM: name, size, used, free, memtotal."
    - "SHOW DNS_HOSTS: hostname, ttl, addrs. SHOW DNS_ZONES: zonename, serial, count."
    - "SHOW VERSION: version. SHOW STATE: key (active, paused, suspended), value (yes or no)."
    - "SHOW PEERS: peer_id, host, port, pool_size. SHOW PEER_POOLS: peer_id and counters."
    - "SHOW FDS: fd, task, user, database, addr, port, cancel, link, ... with secrets replaced by ********."
  returned: always
  type: list
  elements: dict
  sample: [{database: appdb, user: app_user, cl_active: 3, cl_waiting: 0, sv_active: 1, pool_mode: transaction}]
before:
  description: Value of O(key) before V(SET), as SHOW CONFIG reports it.
  returned: when command is SET
  type: str
  sample: select 1
after:
  description: Value of O(key) after V(SET) (the same as RV(before) in check mode or when nothing changed).
  returned: when command is SET
  type: str
  sample: select 2
timed_out:
  description: The command did not finish within O(timeout).
  returned: on failure of a blocking command
  type: bool
  sample: true
resumed:
  description: After a timeout, whether the module sent RESUME so that nothing stays paused.
  returned: on timeout of PAUSE or SUSPEND
  type: bool
  sample: true
undo_timer:
  description:
    - The systemd timer that resumes the database at the deadline (O(resume_deadline)); with V(RESUME), the
      timer this call disarmed. Empty when none.
  returned: for PAUSE and RESUME
  type: str
  sample: pgbouncer-cluster-undo-pause-_2fvar_2frun_2fpostgresql-6432-appdb
error_kind:
  description:
    - Machine-readable reason of a failure, e.g. connection_refused, authentication_failed,
      admin_access_needed, not_allowed, unknown_command, unknown_database, unsupported_version,
      not_changeable, timeout.
  returned: on failure
  type: str
  sample: admin_access_needed
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _admin, _deadman
from ansible_collections.pgbouncer.cluster.plugins.module_utils._connection import (
    classify_error,
    connection_argument_spec,
)
from ansible_collections.pgbouncer.cluster.plugins.module_utils._console import (
    ConnectionLost,
    Console,
    ConsoleError,
    ConsoleTimeout,
)


class AdminCommand:
    """Plans and runs one console command for the module's parameters."""

    def __init__(self, module, verb, show, text):
        self.module = module
        self.params = module.params
        self.verb, self.show_name, self.text = verb, show, text
        self.console = Console(module)
        self.result = dict(changed=False, command=text, executed=False, status="", columns=[], rows=[])

    def fail(self, msg, kind, **extra):
        self.result.update(extra)
        self.module.fail_json(msg=msg, error_kind=kind, **self.result)

    def fail_console(self, what, message):
        kind, msg = classify_error(message, self.params)
        self.fail("%s failed: %s" % (what, msg), kind)

    def read_version(self):
        try:
            rows = self.console.show("VERSION")
            version = _admin.parse_version(rows[0]["version"] if rows else "")
        except ConsoleError as exc:
            self.fail_console("SHOW VERSION", str(exc))
        except _admin.AdminError as exc:
            self.fail(str(exc), exc.kind)
        self.result["version"] = _admin.version_text(version)
        problem = _admin.version_problem(version, self.verb, self.show_name, self.params["shutdown_mode"])
        if problem:
            self.fail(problem, "unsupported_version")
        return version

    def already_done(self, version):
        """Read what PgBouncer shows of the state and decide whether the command has nothing to do."""
        db = self.params["db"]
        if self.verb == "SET":
            return self._set_already_done()
        # Every command that names a database checks it first, so that a misspelt KILL fails too.
        row = self._known_database(db, version) if db is not None else None
        state = None
        if db is None and self.verb in ("PAUSE", "RESUME", "SUSPEND") and version >= _admin.SHOW_SUBCOMMANDS["STATE"]:
            state = _admin.state_flags(self._show("STATE"))
        return _admin.already_done(self.verb, db, row, state)

    def _show(self, name):
        try:
            return self.console.show(name)
        except ConsoleError as exc:
            self.fail_console("SHOW %s" % name, str(exc))

    def _known_database(self, db, version):
        """The db's SHOW DATABASES row, or None if only the server can tell; fail if PgBouncer does not know db."""
        row = _admin.find_row(self._show("DATABASES"), "name", db)
        if row is not None:
            return row
        # An auto-database without connections moves to an idle list that SHOW DATABASES leaves out
        # (paused or not); SHOW STATS still lists it.
        if _admin.find_row(self._show("STATS"), "database", db) is not None:
            return self._revive(db, version)
        if not self.params["auto_database"]:
            self.fail("PgBouncer does not know database %r (not in SHOW DATABASES or SHOW STATS): check db; to act on a "
                      "database that no client has used since PgBouncer started, set auto_database=true" % db,
                      "unknown_database")
        return None

    def _revive(self, db, version):
        """SHOW DATABASES row of an idle auto-database, after WAIT_CLOSE brings it back to the list.

        WAIT_CLOSE changes nothing and returns at once for a database without server connections.
        Check mode sends no command but SHOW, so there only the server could tell.
        """
        if self.module.check_mode:
            if self.verb in ("PAUSE", "RESUME", "DISABLE", "ENABLE"):
                self.result["state_known"] = False
            return None
        if self.verb not in ("PAUSE", "RESUME", "DISABLE", "ENABLE") or version < _admin.COMMANDS["WAIT_CLOSE"][1]:
            return None
        try:
            self.console.run("WAIT_CLOSE %s" % _admin.quote_ident(db), self.params["connect_timeout"])
        except (ConsoleError, ConsoleTimeout):  # e.g. a stats user: then only the server can tell
            self.console.close()
            self.console = Console(self.module)
            return None
        return _admin.find_row(self._show("DATABASES"), "name", db)

    def check_admin_rights(self):
        """Check mode: fail as the real run would when the login user may only run SHOW."""
        params = self.params
        unix_socket = not params["login_host"] or params["login_host"].startswith("/")
        if _admin.admin_rights(params["login_user"], self._show("CONFIG"), unix_socket) is False:
            self.fail("check mode: %s would fail: user %s is not in admin_users, so PgBouncer lets it run SHOW "
                      "commands only; add it to admin_users (pgbouncer_admin_users) or log in as an admin user"
                      % (self.text, params["login_user"]), "admin_access_needed")

    def _set_already_done(self):
        key, value = _admin.validate_key(self.params["key"]), _set_value(self.params["value"])
        try:
            entry = _admin.config_entry(self._show("CONFIG"), key)
        except _admin.AdminError as exc:
            self.fail(str(exc), exc.kind)
        self.result["before"] = self.result["after"] = entry["value"]
        return _admin.same_setting(entry["value"], value)

    def execute(self):
        started = time.monotonic()
        timeout = self.params["timeout"] if self.verb in _admin.BLOCKING else self.params["connect_timeout"]
        try:
            status, columns, types, raw_rows = self.console.run(self.text, timeout)
        except ConsoleTimeout:
            self.on_timeout()
        except ConnectionLost as exc:
            if self.verb != "SHUTDOWN":
                self.fail("PgBouncer closed the connection during %s: %s" % (self.text, exc), "connection_lost")
            status, columns, types, raw_rows = "SHUTDOWN", [], [], []
        except ConsoleError as exc:
            if _admin.means_already_done(self.verb, str(exc)):
                return False
            self.fail_console(self.text, str(exc))
        self.result.update(executed=True, status=status, columns=columns,
                           rows=_admin.rows_to_dicts(columns, raw_rows, types, self.show_name))
        if self.verb == "PAUSE":
            self.wait_until_paused(started)
        return self.verb not in _admin.READ_ONLY

    def wait_until_paused(self, started):
        """Return once no server connection of the paused pools is busy.

        PgBouncer (seen with 1.18) may answer a PAUSE that still waits for a transaction with the
        WAIT_CLOSE tag of another waiter, so the answer alone does not prove the pause is complete.
        """
        timeout = self.params["timeout"]
        while True:
            busy = _admin.busy_server_connections(self._show("POOLS"), self.params["db"])
            if not busy:
                return
            if timeout and time.monotonic() - started >= timeout:
                self.on_timeout("%d server connection(s) still busy" % busy)
            time.sleep(0.2)

    def on_timeout(self, why=""):
        # Dropping the connection does not undo a PAUSE in progress: PgBouncer keeps holding new clients.
        self.console.close()
        msg = "%s did not finish within timeout=%ss" % (self.text, self.params["timeout"])
        if why:
            msg += " (%s)" % why
        if self.verb not in _admin.RESUMABLE:
            self.fail(msg, "timeout", timed_out=True, executed=True)
        if not self.params["resume_on_timeout"]:
            self.fail(msg + "; PgBouncer is still pausing (resume_on_timeout=false): send RESUME yourself",
                      "timeout", timed_out=True, resumed=False, executed=True)
        resume = "RESUME" if self.params["db"] is None else "RESUME %s" % _admin.quote_ident(self.params["db"])
        console = Console(self.module)
        try:
            console.run(resume, self.params["connect_timeout"])
        except ConsoleError as exc:
            if not _admin.means_already_done("RESUME", str(exc)):
                self.fail("%s, and %s failed too: %s" % (msg, resume, exc), "timeout", timed_out=True, resumed=False)
        except (ConsoleTimeout, ConnectionLost) as exc:
            self.fail("%s, and %s did not answer: %s" % (msg, resume, exc), "timeout", timed_out=True, resumed=False)
        finally:
            console.close()
        self.disarm_resume()
        self.fail(msg + "; sent %s so nothing stays paused" % resume, "timeout", timed_out=True, resumed=True,
                  executed=True)

    def socket_dir(self):
        """The socket directory the module logs in through (a login_host that is a path wins, as in conninfo)."""
        return self.params["login_host"] or self.params["login_unix_socket"]

    def resume_unit(self):
        params = self.params
        return _deadman.unit_name("pause", self.socket_dir(), params["login_port"], params["db"] or "all")

    def check_resume_deadline(self):
        """resume_deadline needs a login the timer can repeat without a password."""
        params = self.params
        if not params["resume_deadline"]:
            return
        if self.verb != "PAUSE":
            self.fail("resume_deadline is only for PAUSE", "invalid_argument")
        if params["login_host"] and not params["login_host"].startswith("/"):
            self.fail("resume_deadline needs the unix socket (login_unix_socket, no login_host): the timer that resumes "
                      "logs in without a password", "invalid_argument")
        if not params["os_user"]:
            self.fail("resume_deadline needs os_user, the OS user the timer logs in as over the unix socket",
                      "invalid_argument")

    def arm_resume(self):
        """Before a PAUSE: the node resumes by itself at the deadline, whatever the controller does."""
        params = self.params
        resume = _admin.build_command("RESUME", db=params["db"])
        unit = _deadman.arm(
            self.module, self.resume_unit(), params["resume_deadline"],
            _deadman.console_undo_argv(self.socket_dir(), params["login_port"], params["login_user"], resume),
            "pgbouncer.cluster: %s on port %s at the runbook's deadline" % (resume, params["login_port"]),
            user=params["os_user"])
        self.result["undo_timer"] = unit

    def disarm_resume(self):
        unit = self.resume_unit()
        if _deadman.disarm(self.module, unit):
            self.result["undo_timer"] = unit

    def read_setting_after(self):
        entry = _admin.find_row(self._show("CONFIG"), "key", _admin.validate_key(self.params["key"]))
        if entry is not None:
            self.result["after"] = entry["value"]


def _set_value(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)


def parse_request(params):
    """(verb, show subcommand, console text) or raise AdminError."""
    verb, show = _admin.normalize_command(params["command"])
    if verb == "SHOW":
        show = show or params["show"]
    elif params["show"] is not None:
        raise _admin.AdminError("invalid_argument", "show is only for the SHOW command")
    text = _admin.build_command(
        verb,
        show=show,
        db=params["db"],
        client_id=params["client_id"],
        shutdown_mode=params["shutdown_mode"],
        key=params["key"],
        value=_set_value(params["value"]) if verb == "SET" else None,
    )
    if verb == "SHOW":
        show = text.split(" ", 1)[1]
    if verb != "SET" and params["value"] is not None:
        raise _admin.AdminError("invalid_argument", "value is only for the SET command")
    return verb, show, text


def argument_spec():
    spec = connection_argument_spec(default_port=6432, default_user="pgbouncer")
    spec.update(
        command=dict(type="str", required=True),
        show=dict(type="str"),
        db=dict(type="str"),
        auto_database=dict(type="bool", default=False),
        client_id=dict(type="int"),
        shutdown_mode=dict(type="str", choices=["immediate", "wait_for_servers", "wait_for_clients"]),
        key=dict(type="str", no_log=False),
        value=dict(type="raw"),
        timeout=dict(type="float", default=60),
        resume_on_timeout=dict(type="bool", default=True),
        resume_deadline=dict(type="float", default=0),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        verb, show, text = parse_request(module.params)
    except _admin.AdminError as exc:
        module.fail_json(msg=str(exc), error_kind=exc.kind, command=module.params["command"])
    command = AdminCommand(module, verb, show, text)
    try:
        command.check_resume_deadline()
        version = command.read_version()
        if verb == "SHOW":
            command.execute()
            module.exit_json(**command.result)
        if verb in ("PAUSE", "RESUME"):
            command.result["undo_timer"] = ""
        done = command.already_done(version)
        if done:
            if verb == "RESUME" and not module.check_mode:
                command.disarm_resume()
            module.exit_json(msg="nothing to do: %s is already in effect" % text, **command.result)
        if module.check_mode:
            command.check_admin_rights()
            if command.result.get("state_known") is False:
                module.warn("check mode cannot read whether %s is paused or disabled: it is an idle auto-database that only "
                            "WAIT_CLOSE would list again, and check mode sends nothing but SHOW; the real run reads it "
                            "and may find nothing to do" % module.params["db"])
            command.result["changed"] = verb not in _admin.READ_ONLY
            module.exit_json(msg="check mode: would run %s" % text, **command.result)
        if verb == "PAUSE" and module.params["resume_deadline"]:
            command.arm_resume()
        command.result["changed"] = command.execute()
        if verb == "RESUME":
            command.disarm_resume()
        if verb == "SET" and command.result["changed"]:
            command.read_setting_after()
        module.exit_json(**command.result)
    finally:
        command.console.close()


if __name__ == "__main__":
    main()
