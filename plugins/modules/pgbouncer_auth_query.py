#!/usr/bin/python
# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbouncer_auth_query
short_description: Create the SECURITY DEFINER lookup function PgBouncer's auth_query calls
description:
  - With C(auth_query), PgBouncer logs in to PostgreSQL as O(auth_user) and asks it for the secret of each
    connecting user, instead of reading every secret from its auth_file.
  - This module creates, in each of O(databases), the function C(<schema>.<function>(text)) that returns
    C(usename) and C(passwd) from C(pg_shadow) for one login role. It runs as its owner (SECURITY DEFINER)
    with a fixed C(search_path), so O(auth_user) needs no access to C(pg_shadow) itself; EXECUTE is revoked
    from PUBLIC and granted to O(auth_user) only. Superusers are never returned, so nobody logs in as a
    superuser through the pooler.
  - Reports changed only when a database lacked the function, had a different definition, or had other grants.
version_added: 0.1.0
author: pgbouncer.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - pgbouncer.cluster.connection
options:
  databases:
    description: Databases to create the function in (auth_query runs in the client's database, or in auth_dbname).
    type: list
    elements: str
    required: true
  auth_user:
    description: The role PgBouncer's auth_user logs in as; it gets EXECUTE on the function.
    type: str
    required: true
  schema:
    description: Schema of the function; created when missing.
    type: str
    default: pgbouncer
  function:
    description: Name of the function.
    type: str
    default: user_lookup
  state:
    description: C(present) creates or corrects the function, C(absent) drops it.
    type: str
    choices: [present, absent]
    default: present
  login_port:
    description: PostgreSQL port.
    type: int
    default: 5432
  login_user:
    description: PostgreSQL superuser that owns the function.
    type: str
    default: postgres
attributes:
  check_mode:
    support: full
    description: Reports the databases that would change and the SQL that would run there.
  diff_mode:
    support: none
    description: No diff; C(changed) says whether the function was created or replaced.
"""

EXAMPLES = r"""
- name: Lookup function for auth_query in the application databases
  pgbouncer.cluster.pgbouncer_auth_query:
    databases: [appdb, reportdb]
    auth_user: pgbouncer_auth
    os_user: postgres
"""

RETURN = r"""
changed_databases:
  description: Databases where the function was (or in check mode would be) created, corrected or dropped.
  returned: always
  type: list
  elements: str
  sample: [appdb]
queries:
  description: The SQL run (or that would run) in each changed database, with identifiers quoted.
  returned: always
  type: dict
  sample: {appdb: ["CREATE SCHEMA IF NOT EXISTS \"pgbouncer\"", "..."]}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pgbouncer.cluster.plugins.module_utils._connection import (
    connect,
    connection_argument_spec,
)
from ansible_collections.pgbouncer.cluster.plugins.module_utils._text import double_quoted as ident

# An expired password (VALID UNTIL in the past) yields no secret, as PgBouncer 1.24.1's own
# default auth_query does since CVE-2025-2291.
BODY = (
    "SELECT usename, CASE WHEN valuntil < pg_catalog.now() THEN NULL ELSE passwd END "
    "FROM pg_catalog.pg_shadow WHERE usename = i_username AND NOT usesuper"
)

STATE = """
SELECT p.prosrc, p.prosecdef, p.proconfig,
       has_function_privilege(%(auth_user)s, p.oid, 'EXECUTE') AS auth_user_can,
       EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
               WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_can,
       has_schema_privilege(%(auth_user)s, n.oid, 'USAGE') AS schema_usage
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s AND p.proname = %(function)s
  AND p.proargtypes = '25'::oidvector
"""


def wanted_sql(schema, function, auth_user):
    qualified = "%s.%s(text)" % (ident(schema), ident(function))
    return [
        "CREATE SCHEMA IF NOT EXISTS %s" % ident(schema),
        "CREATE OR REPLACE FUNCTION %s.%s(i_username text, OUT usename name, OUT passwd text) RETURNS record "
        "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $lookup$%s$lookup$"
        % (ident(schema), ident(function), BODY),
        "REVOKE ALL ON FUNCTION %s FROM PUBLIC" % qualified,
        "GRANT USAGE ON SCHEMA %s TO %s" % (ident(schema), ident(auth_user)),
        "GRANT EXECUTE ON FUNCTION %s TO %s" % (qualified, ident(auth_user)),
    ]


def is_current(row):
    if row is None:
        return False
    prosrc, secdef, config, auth_user_can, public_can, schema_usage = row
    return (
        prosrc.strip() == BODY
        and secdef
        and (config or []) == ["search_path=pg_catalog, pg_temp"]
        and auth_user_can
        and not public_can
        and schema_usage
    )


def plan(conn, params):
    """SQL to run in this database, or [] when it is as wanted."""
    row = conn.execute(STATE, dict(auth_user=params["auth_user"], schema=params["schema"], function=params["function"])).fetchone()
    if params["state"] == "absent":
        return [] if row is None else ["DROP FUNCTION %s.%s(text)" % (ident(params["schema"]), ident(params["function"]))]
    return [] if is_current(row) else wanted_sql(params["schema"], params["function"], params["auth_user"])


def main():
    argument_spec = connection_argument_spec(default_port=5432, default_user="postgres")
    argument_spec.update(
        databases=dict(type="list", elements="str", required=True),
        auth_user=dict(type="str", required=True),
        schema=dict(type="str", default="pgbouncer"),
        function=dict(type="str", default="user_lookup"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    queries = {}
    for database in params["databases"]:
        conn = connect(module, database, autocommit=False)
        try:
            role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [params["auth_user"]]).fetchone()
            if role is None and params["state"] == "present":
                module.fail_json(msg="auth_user %s does not exist in PostgreSQL: create it with a password first" % params["auth_user"])
            statements = plan(conn, params)
            if statements:
                queries[database] = statements
                if not module.check_mode:
                    for statement in statements:
                        conn.execute(statement)
            conn.commit()
        except Exception as exc:  # psycopg.Error
            conn.rollback()
            module.fail_json(msg="cannot set up the auth_query function in database %s: %s" % (database, exc))
        finally:
            conn.close()
    module.exit_json(changed=bool(queries), changed_databases=sorted(queries), queries=queries)


if __name__ == "__main__":
    main()
