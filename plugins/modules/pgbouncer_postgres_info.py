#!/usr/bin/python
# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbouncer_postgres_info
short_description: Read what PgBouncer's sizing and auth checks need from PostgreSQL
description:
  - Reads, without changing anything, the PostgreSQL settings and objects that decide whether a PgBouncer
    configuration fits the server behind it
  - C(max_connections), C(superuser_reserved_connections) and (PostgreSQL 16+) C(reserved_connections);
    the databases clients can connect to; the login roles that have a password; the server version.
  - Whether the server is in recovery and, on a primary, its streaming replicas with their replay lag.
  - The C(local) lines of C(pg_hba.conf) (C(pg_hba_file_rules), which reads the file as it is on disk, not
    necessarily as loaded); when that view cannot be read, RV(hba_read_error) says why and nothing fails.
  - The pgbouncer role uses it to check pool sizing across all poolers and that console users are in the
    auth_file, before it changes anything; the switchover playbook to check that the candidate streams.
  - With the C(local) lines the role also checks, when a [databases] host it writes is a socket directory, that
    PostgreSQL accepts PgBouncer's logins there with a password (the pgbouncer_socket_hba_check filter).
version_added: 0.1.0
author: pgbouncer.cluster contributors (@pgbouncer-cluster)
extends_documentation_fragment:
  - pgbouncer.cluster.connection
options:
  db:
    description: Database to connect to.
    type: str
    default: postgres
  login_port:
    description: PostgreSQL port.
    type: int
    default: 5432
  login_user:
    description: PostgreSQL superuser (the list of roles with a password comes from pg_shadow).
    type: str
    default: postgres
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: It only reads, so there is no diff.
"""

EXAMPLES = r"""
- name: What does the local PostgreSQL allow?
  pgbouncer.cluster.pgbouncer_postgres_info:
    os_user: postgres
  register: backend

- name: Show the connection budget
  ansible.builtin.debug:
    msg: "{{ backend.max_connections - backend.superuser_reserved_connections }} connections for poolers"
"""

RETURN = r"""
server_version_num:
  description: PostgreSQL's server_version_num.
  returned: always
  type: int
  sample: 150018
max_connections:
  description: The server's max_connections.
  returned: always
  type: int
  sample: 100
superuser_reserved_connections:
  description: The server's superuser_reserved_connections.
  returned: always
  type: int
  sample: 3
reserved_connections:
  description: The server's reserved_connections (PostgreSQL 16 and later; 0 before).
  returned: always
  type: int
  sample: 0
databases:
  description: Databases that accept connections (templates left out), sorted.
  returned: always
  type: list
  elements: str
  sample: [appdb, postgres]
users_with_password:
  description: Login roles that have a password, sorted; the roles that can log in through PgBouncer.
  returned: always
  type: list
  elements: str
  sample: [app_user, pgbouncer]
superusers:
  description: The superusers among RV(users_with_password), sorted; pgbouncer_userlist leaves them out by default.
  returned: always
  type: list
  elements: str
  sample: [postgres]
expired_users:
  description: Roles of RV(users_with_password) whose C(VALID UNTIL) has passed, sorted; pgbouncer_userlist leaves
    them out.
  returned: always
  type: list
  elements: str
  sample: []
md5_users:
  description: Roles of RV(users_with_password) whose stored secret is md5, not SCRAM, sorted.
  returned: always
  type: list
  elements: str
  sample: [report_user]
in_recovery:
  description: Whether the server is a standby (C(pg_is_in_recovery())).
  returned: always
  type: bool
  sample: false
replication:
  description:
    - On a primary, one entry per WAL sender to a standby (C(pg_stat_replication)), sorted by C(application_name);
      empty on a standby. Patroni names each standby's connection after its member name.
  returned: always
  type: list
  elements: dict
  contains:
    application_name:
      description: The standby's C(application_name).
      type: str
    client_addr:
      description: The standby's address.
      type: str
    state:
      description: C(streaming), C(catchup), C(startup), C(backup) or C(stopping).
      type: str
    replay_lag_bytes:
      description: Bytes of WAL written on the primary that the standby has not replayed yet.
      type: int
  sample: [{application_name: pg-srv2, client_addr: 10.129.0.22, state: streaming, replay_lag_bytes: 0}]
hba_local_rules:
  description:
    - The C(local) lines of C(pg_hba.conf) in the order PostgreSQL tries them (first match decides), from
      C(pg_hba_file_rules), plus any line PostgreSQL cannot parse (with C(error) set). Empty when
      RV(hba_read_error) is set.
  returned: always
  type: list
  elements: dict
  contains:
    line_number:
      description: Line number in its file.
      type: int
    file_name:
      description: The file that holds the line (PostgreSQL 16 and later, which allow include files; null before).
      type: str
    database:
      description: The database list as written (keywords such as C(all), C(sameuser), C(replication) as they are).
      type: list
      elements: str
    user_name:
      description: The user list as written (C(all), C(+role), names).
      type: list
      elements: str
    auth_method:
      description: The method, such as C(peer), C(scram-sha-256), C(md5), C(trust).
      type: str
    options:
      description: The method's options, such as C(map=name); null when none.
      type: list
      elements: str
    error:
      description: Why PostgreSQL cannot use the line; null for a valid line.
      type: str
  sample: [{line_number: 118, file_name: /etc/postgresql/17/main/pg_hba.conf, database: [all], user_name: [postgres],
            auth_method: peer, options: null, error: null}]
hba_read_error:
  description: Why C(pg_hba_file_rules) could not be read (for example, login_user is not allowed to); empty when it
    was read.
  returned: always
  type: str
  sample: ""
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pgbouncer.cluster.plugins.module_utils._connection import (
    connect,
    connection_argument_spec,
)

SETTINGS = "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)"
DATABASES = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"
USERS = ("SELECT usename, usesuper, COALESCE(valuntil < now(), false), passwd LIKE 'md5%' FROM pg_shadow "
         "WHERE passwd IS NOT NULL ORDER BY usename")
REPLICATION = ("SELECT application_name, host(client_addr), state, "
               "COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint "
               "FROM pg_stat_replication WHERE NOT pg_is_in_recovery() ORDER BY application_name")
# Every column, so that it works before PostgreSQL 16 (no file_name there) and after.
HBA = "SELECT to_jsonb(r) FROM pg_hba_file_rules r"
HBA_FIELDS = ("line_number", "file_name", "database", "user_name", "auth_method", "options", "error")
NUMERIC = ("server_version_num", "max_connections", "superuser_reserved_connections", "reserved_connections")


def local_rules(rows):
    """The local lines (and lines with an error) of pg_hba_file_rules rows, in the view's order."""
    return [{field: row.get(field) for field in HBA_FIELDS} for row in rows
            if row.get("type") == "local" or row.get("error")]


def read_hba(conn):
    """(local rules, "") or ([], why not): a pg_hba.conf that cannot be read fails nothing."""
    try:
        return local_rules([row[0] for row in conn.execute(HBA).fetchall()]), ""
    except Exception as exc:  # psycopg.Error: no privilege on the view, or no such view
        return [], str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def main():
    argument_spec = connection_argument_spec(default_port=5432, default_user="postgres")
    argument_spec.update(db=dict(type="str", default="postgres"))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    conn = connect(module, module.params["db"])
    try:
        settings = {name: int(value) for name, value in conn.execute(SETTINGS, [list(NUMERIC)]).fetchall()}
        databases = [row[0] for row in conn.execute(DATABASES).fetchall()]
        user_rows = conn.execute(USERS).fetchall()
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        replication = [dict(application_name=row[0], client_addr=row[1], state=row[2], replay_lag_bytes=int(row[3]))
                       for row in conn.execute(REPLICATION).fetchall()]
        hba_local_rules, hba_read_error = read_hba(conn)
    except Exception as exc:  # psycopg.Error
        module.fail_json(msg="cannot read settings, databases, pg_shadow and pg_stat_replication (is login_user a superuser?): %s" % exc)
    finally:
        conn.close()
    result = {name: settings.get(name, 0) for name in NUMERIC}
    module.exit_json(changed=False, databases=databases, users_with_password=[row[0] for row in user_rows],
                     superusers=[row[0] for row in user_rows if row[1]],
                     expired_users=[row[0] for row in user_rows if row[2]], md5_users=[row[0] for row in user_rows if row[3]],
                     in_recovery=in_recovery,
                     replication=replication, hba_local_rules=hba_local_rules, hba_read_error=hba_read_error,
                     **result)


if __name__ == "__main__":
    main()
