#!/usr/bin/python
# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbouncer_ping
short_description: Check that PgBouncer answers, with a real login and query
description:
  - Logs in to PgBouncer as a client would and runs one query.
  - For a pooled database it runs C(SELECT current_database(), current_user, inet_server_addr()), which goes
    through a server connection to PostgreSQL.
  - For the admin console database C(pgbouncer) it runs C(SHOW VERSION).
  - Fails with a message that says what to fix when the login or the query fails.
version_added: 0.1.0
author: pgbouncer.cluster contributors (@pgbouncer-cluster)
extends_documentation_fragment:
  - pgbouncer.cluster.connection
options:
  db:
    description: Database to connect to; C(pgbouncer) is the admin console.
    type: str
    default: pgbouncer
  login_port:
    description: PgBouncer port.
    type: int
    default: 6432
  login_user:
    description: User to log in as.
    type: str
    default: pgbouncer
attributes:
  check_mode:
    support: full
    description: Runs in check mode too; it changes nothing.
  diff_mode:
    support: none
    description: It changes nothing, so there is no diff.
"""

EXAMPLES = r"""
- name: A real query through the pooler
  pgbouncer.cluster.pgbouncer_ping:
    login_host: 10.129.0.21
    login_user: app_user
    login_password: "{{ app_password }}"
    db: appdb

- name: The console, as the service's OS user over the unix socket (no password)
  pgbouncer.cluster.pgbouncer_ping:
    os_user: postgres
"""

RETURN = r"""
row:
  description: The query's one row, keyed by column name.
  returned: success
  type: dict
  sample: {current_database: appdb, current_user: app_user, inet_server_addr: 10.129.0.21}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pgbouncer.cluster.plugins.module_utils._connection import (
    classify_error,
    connect,
    connection_argument_spec,
)

CONSOLE_QUERY = "SHOW VERSION"
POOLED_QUERY = "SELECT current_database(), current_user, inet_server_addr()::text AS inet_server_addr"


def main():
    argument_spec = connection_argument_spec(default_port=6432, default_user="pgbouncer")
    argument_spec.update(db=dict(type="str", default="pgbouncer"))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    db = module.params["db"]
    conn = connect(module, db)
    try:
        # The console speaks only the simple query protocol.
        cur = conn.cursor()
        cur.execute(CONSOLE_QUERY if db == "pgbouncer" else POOLED_QUERY)
        columns = [column.name for column in cur.description]
        row = dict(zip(columns, [str(value) if value is not None else None for value in cur.fetchone()]))
    except Exception as exc:  # psycopg.Error
        module.fail_json(msg="logged in, but the query failed: %s" % classify_error(str(exc), module.params)[1])
    finally:
        conn.close()
    module.exit_json(changed=False, row=row)


if __name__ == "__main__":
    main()
