#!/usr/bin/python
# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbouncer_config
short_description: Write pgbouncer.ini for each PgBouncer process of the node, checked by a dry start
description:
  - Renders the C(pgbouncer.ini) of every PgBouncer process of the node (one, or O(processes) sharing the port
    with C(so_reuseport)) from O(settings), O(databases), O(users) and O(wildcard), and replaces the files
    whose content, owner or mode differ.
  - Before any file changes, checks what a restart would need and a dry start cannot see, in every changed
    file. Each C(listen_addr) address must be C(*), a wildcard, C(localhost), a loopback address or an address
    of this node; C(listen_port) must be free or held by a C(pgbouncer) process.
  - Then starts the real C(pgbouncer) on a copy of each changed file in a private directory, as the OS user
    O(owner), with the listener moved to a free port on 127.0.0.1 and its socket, pid file and log moved
    there too. A file PgBouncer would refuse (unknown key, bad value, bad C([databases]) line, unreadable
    C(auth_file) or TLS file) is never written; the module fails with PgBouncer's own message, passwords
    masked.
  - Writes each file through a temporary file in the same directory that gets the final O(owner), O(group)
    and O(mode) before it is moved into place.
  - Tells in RV(restart_required) whether PgBouncer must restart rather than reload to apply the change, that
    is whether there is a changed key PgBouncer reads only at start (C(listen_addr), C(listen_port), C(unix_socket_dir), ...,
    for the installed version), a change of C(auth_user), C(auth_query) or C(auth_dbname), or, when the
    running PgBouncer's admin console answers, a changed key its C(SHOW CONFIG) marks C(changeable=no).
version_added: 0.1.0
author: pgbouncer.cluster contributors (@pgbouncer-cluster)
extends_documentation_fragment:
  - ansible.builtin.files
options:
  settings:
    description:
      - The C([pgbouncer]) section, key to value. A value of V(null) leaves the key out, so PgBouncer's own
        default applies. Booleans are written as C(1) and C(0), lists joined with C(, ).
      - Each key must be a setting name, a letter then letters, digits and C(_); the module fails naming any
        other key before it checks or writes anything. No value may hold a line break or other control character.
      - With several O(processes), the limits (C(max_client_conn), C(default_pool_size), ...) are divided
        among them (rounded down, at least 1), and each process gets its own C(logfile), C(pidfile),
        C(unix_socket_dir) and C(so_reuseport=1).
      - The value of a key with C(passw) in its name, or a value that has it (C(auth_ldap_options) with
        C(ldapbindpasswd=)), is hidden in the module's result.
    type: dict
    required: true
  databases:
    description:
      - The C([databases]) entries, in order. Values that need it are quoted as PgBouncer reads them.
      - With several O(processes), pool sizes and caps are divided among them.
    type: list
    elements: dict
    default: []
    suboptions:
      name: {description: Database name clients connect to., type: str, required: true}
      host: {description: 'PostgreSQL host (address, name or socket directory).', type: raw}
      port: {description: PostgreSQL port., type: raw}
      dbname: {description: Database name on the server., type: raw}
      user: {description: Force every connection to this server user., type: raw}
      password: {description: Password of the forced user. Never shown in the result or the diff., type: raw}
      auth_user: {description: auth_user for this database., type: raw}
      auth_query: {description: auth_query for this database., type: raw}
      auth_dbname: {description: auth_dbname for this database., type: raw}
      pool_size: {description: Pool size for this database., type: raw}
      min_pool_size: {description: Minimum pool size for this database., type: raw}
      reserve_pool: {description: Reserve pool size for this database., type: raw}
      reserve_pool_size: {description: Reserve pool size for this database (newer spelling)., type: raw}
      connect_query: {description: Query run on each new server connection., type: raw}
      pool_mode: {description: Pool mode for this database., type: raw}
      max_db_connections: {description: Server connections for this database at most., type: raw}
      server_lifetime: {description: server_lifetime for this database., type: raw}
      client_encoding: {description: Client encoding to set on server connections., type: raw}
      datestyle: {description: DateStyle to set on server connections., type: raw}
      timezone: {description: TimeZone to set on server connections., type: raw}
      application_name: {description: application_name to set on server connections., type: raw}
  users:
    description:
      - The C([users]) entries, in order; no section when empty.
    type: list
    elements: dict
    default: []
    suboptions:
      name: {description: User name., type: str, required: true}
      pool_mode: {description: Pool mode for this user., type: raw}
      max_user_connections: {description: Server connections for this user at most., type: raw}
      pool_size: {description: Pool size for this user., type: raw}
      reserve_pool_size: {description: Reserve pool size for this user., type: raw}
      max_user_client_connections: {description: Client connections for this user at most., type: raw}
  wildcard:
    description:
      - The C(*) entry, written after O(databases), which sends any other database name to O(wildcard.host).
        Omit it for no such entry.
    type: dict
    suboptions:
      host: {description: 'PostgreSQL host (address, name or socket directory).', type: raw}
      port: {description: PostgreSQL port., type: raw}
  processes:
    description:
      - Number of PgBouncer processes on the node. V(1) writes C(pgbouncer.ini) in O(layout.config_dir);
        more write C(pgbouncer-1.ini), C(pgbouncer-2.ini), ... for the instances of a systemd template unit.
    type: int
    default: 1
  layout:
    description: Where the processes live; each process's own paths derive from these.
    type: dict
    default: {}
    suboptions:
      service_name: {description: The distribution's service name., type: str, default: pgbouncer}
      config_dir: {description: Directory of the files., type: path, default: /etc/pgbouncer}
      unix_socket_dir: {description: Socket directory of the single process (several get a subdirectory each)., type: str, default: /var/run/postgresql}
      pidfile: {description: Pid file of the single process (several get a suffix each)., type: str, default: /var/run/postgresql/pgbouncer.pid}
      logfile: {description: Log file of the single process (several get a suffix each)., type: str, default: /var/log/postgresql/pgbouncer.log}
      listen_port: {description: The port the processes share., type: int, default: 6432}
  peering:
    description:
      - With several O(processes), give each a C(peer_id) and the others as C([peers]), so that a cancel
        request reaches the process that owns the query. Needs PgBouncer 1.19.
    type: bool
    default: false
  header:
    description: Comment lines at the top of each file, each written after C(; ).
    type: list
    elements: str
    default: []
  owner:
    description:
      - Owner of the files, and the OS user the dry start runs PgBouncer as (the service's user).
      - The admin console is asked for C(SHOW CONFIG) as this OS user over the unix socket.
    default: postgres
  group:
    default: postgres
  mode:
    default: '0640'
  backup:
    description:
      - Keep a copy of each replaced file next to it as C(<file>.previous), with the file's owner, group and
        mode (RV(backups)), to roll back to.
      - One copy per file, which the next change replaces, so copies do not pile up.
    type: bool
    default: false
  binary:
    description: The pgbouncer program, a path or a name looked up in C(PATH) and C(/usr/sbin).
    type: str
    default: pgbouncer
  timeout:
    description: Seconds the dry start gives PgBouncer to come up.
    type: float
    default: 10
  console_user:
    description: Admin console user for C(SHOW CONFIG), admitted without a password from PgBouncer's OS user.
    type: str
    default: pgbouncer
  connect_timeout:
    description: Seconds to wait for the admin console.
    type: int
    default: 5
attributes:
  check_mode:
    support: full
    description:
      - Renders, checks the addresses and the port, dry-starts PgBouncer on the changed files, shows the diff and
        tells whether a restart would be needed; writes nothing.
      - Without the pgbouncer program (a node where the package is not installed yet) the dry start is skipped
        with a warning.
  diff_mode:
    support: full
    description: A unified diff of each changed file, with the value of every password-like key masked.
notes:
  - Run it as root, so it can write the files, run PgBouncer as O(owner) and see which process holds the port.
  - A secret in O(databases) or O(settings) that also occurs in other text of the result, such as a host
    name, is masked there too.
requirements:
  - psycopg >= 3.0 (Debian package C(python3-psycopg)) for the C(SHOW CONFIG) check; without it the
    module relies on its table of restart-only keys.
seealso:
  - name: PgBouncer configuration
    description: The settings and which of them a reload applies.
    link: https://www.pgbouncer.org/config.html
  - module: pgbouncer.cluster.pgbouncer_admin
"""

EXAMPLES = r"""
- name: Write pgbouncer.ini for one process
  pgbouncer.cluster.pgbouncer_config:
    settings:
      listen_addr: 10.129.0.21,127.0.0.1
      listen_port: 6432
      auth_type: scram-sha-256
      auth_file: /etc/pgbouncer/userlist.txt
      admin_users: pgbouncer
      pool_mode: transaction
    databases:
      - {name: appdb_ro, host: 10.129.0.22, port: 5432, dbname: appdb}
      - {name: reportdb, host: 10.129.0.21, user: report, password: "{{ vault_report_password }}"}
    wildcard: {host: 10.129.0.21, port: 5432}
    header: [Ansible managed]
  register: pgbouncer_ini
  notify: pgbouncer config changed

- name: Restart rather than reload when a key PgBouncer reads only at start changed
  ansible.builtin.systemd_service:
    name: pgbouncer
    state: "{{ 'restarted' if pgbouncer_ini.restart_required else 'reloaded' }}"
  when: pgbouncer_ini is changed

- name: Three processes sharing port 6432, with peering (PgBouncer 1.19+)
  pgbouncer.cluster.pgbouncer_config:
    settings: {listen_addr: "*", listen_port: 6432, max_client_conn: 3000}
    processes: 3
    peering: true
"""

RETURN = r"""
files:
  description: The files whose content, owner or mode changed (or would change, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/etc/pgbouncer/pgbouncer.ini]
backups:
  description:
    - The copies kept of the replaced files (O(backup=true)), each C(<file>.previous), to roll back to.
    - A file that did not exist before has none.
  returned: always
  type: list
  elements: str
  sample: [/etc/pgbouncer/pgbouncer.ini.previous]
restart_required:
  description: Whether PgBouncer must restart, not reload, to apply the change (RV(restart_keys) is not empty).
  returned: always
  type: bool
  sample: false
restart_keys:
  description:
    - The changed C([pgbouncer]) keys a reload does not apply, over all processes, sorted.
    - From the module's table for the installed version, and C(SHOW CONFIG) of the running PgBouncer.
  returned: always
  type: list
  elements: str
  sample: [listen_addr, unix_socket_mode]
version:
  description: The installed PgBouncer version, as C(pgbouncer --version) gives it; null when not installed.
  returned: always
  type: str
  sample: 1.24.1
"""

import os
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pgbouncer.cluster.plugins.module_utils import (
    _check_config,
    _ini,
    _keys,
    _listen,
    _processes,
    _render,
    _version,
)
from ansible_collections.pgbouncer.cluster.plugins.module_utils._connection import (
    APPLICATION_NAME,
    os_identity,
    psycopg,
)
from ansible_collections.pgbouncer.cluster.plugins.module_utils._files import read_current, write_atomically

NOT_INSTALLED = "pgbouncer is not installed yet: the dry start is skipped in check mode"

_DATABASE_OPTIONS = dict(name=dict(type="str", required=True), **{
    key: dict(type="raw", no_log=key == "password") for key in _ini.DATABASE_KEYS})
_USER_OPTIONS = dict(name=dict(type="str", required=True), **{key: dict(type="raw") for key in _ini.USER_KEYS})


def argument_spec():
    return dict(
        settings=dict(type="dict", required=True),
        databases=dict(type="list", elements="dict", default=[], options=_DATABASE_OPTIONS),
        users=dict(type="list", elements="dict", default=[], options=_USER_OPTIONS),
        wildcard=dict(type="dict", options=dict(host=dict(type="raw"), port=dict(type="raw"))),
        processes=dict(type="int", default=1),
        layout=dict(type="dict", default={}, options=dict(
            service_name=dict(type="str", default="pgbouncer"),
            config_dir=dict(type="path", default="/etc/pgbouncer"),
            unix_socket_dir=dict(type="str", default="/var/run/postgresql"),
            pidfile=dict(type="str", default="/var/run/postgresql/pgbouncer.pid"),
            logfile=dict(type="str", default="/var/log/postgresql/pgbouncer.log"),
            listen_port=dict(type="int", default=6432),
        )),
        peering=dict(type="bool", default=False),
        header=dict(type="list", elements="str", default=[]),
        owner=dict(type="str", default="postgres"),
        group=dict(type="str", default="postgres"),
        mode=dict(type="raw", default="0640"),
        backup=dict(type="bool", default=False),
        binary=dict(type="str", default="pgbouncer"),
        timeout=dict(type="float", default=10),
        console_user=dict(type="str", default="pgbouncer"),
        connect_timeout=dict(type="int", default=5),
    )


def check_setting_names(module):
    """Fail naming the first key of `settings` PgBouncer could not take as a setting: the role
    checks its variables, but a play may call the module with any dict, and a key is written
    as it is ({"x = 1\nauth_type": "trust"} would set auth_type)."""
    for key in module.params["settings"]:
        problem = _ini.setting_name_problem(key)
        if problem:
            module.fail_json(msg="settings: %s" % problem, key=key)


def render_all(module, processes):
    """{config file: wanted text} of every process."""
    params = module.params
    try:
        return {
            proc["config_file"]: _render.render(proc, processes, params["settings"], params["databases"], params["users"],
                                                params["wildcard"], params["peering"], params["header"])
            for proc in processes
        }
    except ValueError as exc:
        module.fail_json(msg="cannot write pgbouncer.ini: %s" % exc)


def node_addresses(module):
    """This node's addresses: from `ip -j addr show`, else from /proc."""
    ip = module.get_bin_path("ip", opt_dirs=["/usr/sbin", "/sbin"])
    if ip:
        rc, out, _err = module.run_command([ip, "-j", "addr", "show"])
        if rc == 0:
            try:
                return _listen.addresses_from_ip_json(out)
            except ValueError:
                pass
    return _listen.addresses_from_proc()


def check_listeners(module, texts):
    """Fail, before any file changes, when a candidate asks for an address this node lacks
    or a port another program holds: the dry start moves both out of the way."""
    settings = [_ini.parse(text).get("pgbouncer", {}) for text in texts]
    addresses = None
    for listen_addr in sorted({entry.get("listen_addr", "") for entry in settings}):
        if addresses is None:
            addresses = node_addresses(module)
        foreign = _listen.foreign_addresses(listen_addr, addresses)
        if foreign:
            module.fail_json(
                msg="listen_addr %s: %s not an address of this node, so PgBouncer could not listen there. This node's "
                "addresses: %s. Use one of them, * (every address) or localhost." % (
                    listen_addr, ", ".join(foreign) + (" is" if len(foreign) == 1 else " are"),
                    ", ".join(sorted(addresses)) or "none found"),
                listen_addr=listen_addr, node_addresses=sorted(addresses))
    for port in sorted({entry.get("listen_port", "6432") for entry in settings}):
        if not port.isdigit() or not 0 < int(port) < 65536:
            module.fail_json(msg="listen_port %r is not a TCP port number (1 to 65535)" % port)
        problem = _listen.port_problem(port)
        if problem:
            module.fail_json(msg="listen_port: %s, so PgBouncer could not listen there. Stop that program or choose "
                             "another listen_port." % problem)


def dry_start(module, binary, path, text):
    try:
        problems = _check_config.dry_start(binary, text, module.params["owner"], module.params["timeout"])
    except KeyError:
        module.fail_json(msg="owner %s is not a user of this node: PgBouncer cannot run as it" % module.params["owner"])
    except OSError as exc:
        module.fail_json(msg="cannot run %s for the dry start of %s: %s" % (binary, path, exc))
    if problems:
        module.fail_json(msg="pgbouncer would not start with %s:\n%s" % (path, "\n".join(problems)), problems=problems)


def read_version(module, binary):
    if not binary:
        return None
    rc, out, err = module.run_command([binary, "--version"])
    return _version.version_text(out or err) if rc == 0 else None


def live_changeable(module, current, proc):
    """{key: whether a RELOAD applies it} from SHOW CONFIG of the PgBouncer that runs with the
    `current` file, over its unix socket as the owner OS user; None when it does not answer."""
    if psycopg is None or current is None:
        return None
    live = _ini.parse(current).get("pgbouncer", {})
    socket_dir = live.get("unix_socket_dir", proc["unix_socket_dir"])
    port = live.get("listen_port", proc["port"])
    if not socket_dir or not os.path.exists(os.path.join(socket_dir, ".s.PGSQL.%s" % port)):
        return None
    params = module.params
    try:
        with os_identity(params["owner"]):
            conn = psycopg.connect(host=socket_dir, port=port, user=params["console_user"], dbname="pgbouncer",
                                   connect_timeout=params["connect_timeout"], application_name=APPLICATION_NAME,
                                   passfile=os.devnull, autocommit=True, cursor_factory=psycopg.ClientCursor)
    except (psycopg.Error, KeyError):
        return None
    try:
        cur = conn.cursor()
        cur.execute("SHOW CONFIG")
        columns = [column.name for column in cur.description]
        rows = [dict(zip(columns, row)) for row in cur.fetchall()]
    except psycopg.Error:
        return None
    finally:
        conn.close()
    return _keys.changeable(rows)


def restart_keys(module, version, processes, current, wanted):
    """Sorted changed keys that need a restart, over every process whose file changes."""
    table = _keys.restart_only(version)
    found = set()
    for proc in processes:
        path = proc["config_file"]
        if current[path] == wanted[path]:
            continue
        found.update(_ini.restart_keys(current[path] or "", wanted[path], table))
        changeable = live_changeable(module, current[path], proc)
        if changeable:
            found.update(key for key in _ini.changed_keys(current[path], wanted[path]) if changeable.get(key) is False)
    return sorted(found)


def write(module, path, text, file_args):
    """Replace `path` atomically, never readable by others (_files.write_atomically)."""
    if not os.path.isdir(os.path.dirname(path) or "."):
        module.fail_json(msg="directory %s does not exist: install PgBouncer first" % os.path.dirname(path))
    write_atomically(module, path, text.encode("utf-8"), file_args, prefix=".pgbouncer.ini.")


def keep_previous(module, path):
    """Copy `path` to `path`.previous, with its owner, group and mode, through a private
    temporary file (the copy may hold passwords): the one copy to roll back to."""
    previous = path + ".previous"
    info = os.stat(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".pgbouncer.previous.")
    try:
        with os.fdopen(fd, "wb") as handle, open(path, "rb") as source:
            handle.write(source.read())
        os.chown(tmp, info.st_uid, info.st_gid)
        os.chmod(tmp, stat.S_IMODE(info.st_mode))
        os.rename(tmp, previous)
    except OSError as exc:
        module.fail_json(msg="cannot keep %s as %s: %s" % (path, previous, exc))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return previous


def main():
    module = AnsibleModule(argument_spec=argument_spec(), add_file_common_args=True, supports_check_mode=True)
    params = module.params
    # A password-like setting (a *password* key, auth_ldap_options with ldapbindpasswd=)
    # stays out of the result: its whole value is masked wherever it occurs.
    module.no_log_values.update(str(value) for key, value in params["settings"].items()
                                if value not in (None, "") and (_ini.looks_secret(key) or _ini.looks_secret(value)))

    check_setting_names(module)
    processes = _processes.layout(params["processes"], **params["layout"])
    wanted = render_all(module, processes)
    current = {path: read_current(path) for path in wanted}
    changing = [path for path in wanted if current[path] != wanted[path]]

    binary = module.get_bin_path(params["binary"], opt_dirs=["/usr/sbin"])
    if changing:
        check_listeners(module, [wanted[path] for path in changing])
        if binary:
            for path in changing:
                dry_start(module, binary, path, wanted[path])
        elif module.check_mode:
            module.warn(NOT_INSTALLED)
        else:
            module.fail_json(msg="%s not found on this node: install PgBouncer before writing pgbouncer.ini" % params["binary"])

    version = read_version(module, binary)
    keys = restart_keys(module, version, processes, current, wanted)
    result = dict(changed=False, files=[], backups=[], restart_required=bool(keys), restart_keys=keys, version=version)
    if module._diff:
        result["diff"] = [dict(prepared="\n".join(_ini.masked_diff(current[path], wanted[path], path)) + "\n")
                          for path in changing]

    for path in wanted:
        file_args = module.load_file_common_arguments(params, path=path)
        if path in changing:
            if not module.check_mode:
                if params["backup"] and current[path] is not None:
                    result["backups"].append(keep_previous(module, path))
                write(module, path, wanted[path], file_args)
            result["files"].append(path)
        elif module.set_fs_attributes_if_different(file_args, False):
            result["files"].append(path)
    result["changed"] = bool(result["files"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
