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
  - "The schema and the function must belong to O(login_user), the role that creates them, and no other role may
    create objects in the schema or execute the function. A schema or function another role owns is refused with
    a message, never taken over: its owner could swap in a lookup that hands out any secret."
  - "On a hot standby (a replica) the module never runs DDL, which would fail there: it waits, at most
    O(standby_timeout) seconds, until the function the primary created has arrived by replication, and fails if it
    has not. Run it on every node of a cluster at once (as the pgbouncer role does): the primary creates the
    function while the standbys wait for it."
version_added: 0.1.0
author: pgbouncer.cluster contributors (@pgbouncer-cluster)
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
    description: PostgreSQL superuser that owns the schema and the function.
    type: str
    default: postgres
  standby_timeout:
    description: On a hot standby, seconds to wait at most for the function to arrive by replication.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    description: "Reports the databases that would change and the SQL that would run there; on a standby, the
      databases that still wait for the primary's function (nothing runs there either way)."
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
standby:
  description: Whether PostgreSQL on this node is a hot standby (no DDL ran here).
  returned: always
  type: bool
  sample: false
waited_for:
  description: On a standby, the databases whose function was (or in check mode still is) awaited from the primary.
  returned: always
  type: list
  elements: str
  sample: []
"""

import time

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

# Who owns the schema, and who besides its owner may create objects in it (an overload of
# the lookup function there could answer PgBouncer's call instead).
SCHEMA_STATE = """
SELECT n.nspowner::regrole::text,
       ARRAY(SELECT a.grantee::regrole::text FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
             WHERE a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner ORDER BY 1)
FROM pg_catalog.pg_namespace n WHERE n.nspname = %(schema)s
"""

FUNCTION_STATE = """
SELECT p.prosrc, p.prosecdef, p.proconfig, p.proowner::regrole::text AS owner,
       has_function_privilege(%(auth_user)s, p.oid, 'EXECUTE') AS auth_user_can,
       EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
               WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_can,
       has_schema_privilege(%(auth_user)s, n.oid, 'USAGE') AS schema_usage,
       ARRAY(SELECT a.grantee::regrole::text FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
             WHERE a.privilege_type = 'EXECUTE' AND a.grantee NOT IN (0, p.proowner)
               AND a.grantee <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %(auth_user)s) ORDER BY 1) AS others
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s AND p.proname = %(function)s
  AND p.proargtypes = '25'::oidvector
"""


def wanted_sql(schema, function, auth_user, others=()):
    qualified = "%s.%s(text)" % (ident(schema), ident(function))
    return [
        "CREATE SCHEMA IF NOT EXISTS %s" % ident(schema),
        "CREATE OR REPLACE FUNCTION %s.%s(i_username text, OUT usename name, OUT passwd text) RETURNS record "
        "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $lookup$%s$lookup$"
        % (ident(schema), ident(function), BODY),
        "REVOKE ALL ON FUNCTION %s FROM PUBLIC" % qualified,
        "GRANT USAGE ON SCHEMA %s TO %s" % (ident(schema), ident(auth_user)),
        "GRANT EXECUTE ON FUNCTION %s TO %s" % (qualified, ident(auth_user)),
    ] + ["REVOKE ALL ON FUNCTION %s FROM %s" % (qualified, ident(other)) for other in others]


def is_current(row):
    if row is None:
        return False
    prosrc, secdef, config, _owner, auth_user_can, public_can, schema_usage, others = row
    return (
        prosrc.strip() == BODY
        and secdef
        and (config or []) == ["search_path=pg_catalog, pg_temp"]
        and auth_user_can
        and not public_can
        and schema_usage
        and not others
    )


def ownership_problem(database, params, owner, schema_row, function_row):
    """Why the schema or function cannot be trusted (another role owns it or may create in
    the schema), or None."""
    schema = params["schema"]
    if schema_row is not None:
        schema_owner, creators = schema_row
        if schema_owner != owner:
            return ("schema %s in database %s is owned by %s, not %s: another role created it first and could replace the "
                    "lookup function. Drop it, or ALTER SCHEMA %s OWNER TO %s after checking its contents, then run again."
                    % (ident(schema), database, schema_owner, owner, ident(schema), ident(owner)))
        if creators:
            return ("schema %s in database %s lets %s create objects in it: an overload there could answer PgBouncer's "
                    "lookup. REVOKE CREATE ON SCHEMA %s FROM them, then run again." % (ident(schema), database, ", ".join(creators), ident(schema)))
    if function_row is not None and function_row[3] != owner:
        return ("function %s.%s(text) in database %s is owned by %s, not %s: drop it (after checking who made it), then run again."
                % (ident(schema), ident(params["function"]), database, function_row[3], owner))
    return None


def plan(conn, database, params):
    """SQL to run in this database, or [] when it is as wanted; fails on a schema or function
    that another role controls."""
    args = dict(auth_user=params["auth_user"], schema=params["schema"], function=params["function"])
    function_row = conn.execute(FUNCTION_STATE, args).fetchone()
    if params["state"] == "absent":
        return [] if function_row is None else ["DROP FUNCTION %s.%s(text)" % (ident(params["schema"]), ident(params["function"]))]
    owner = conn.execute("SELECT current_user").fetchone()[0]
    problem = ownership_problem(database, params, owner, conn.execute(SCHEMA_STATE, args).fetchone(), function_row)
    if problem:
        raise OwnershipError(problem)
    if is_current(function_row):
        return []
    return wanted_sql(params["schema"], params["function"], params["auth_user"], function_row[7] if function_row else ())


class OwnershipError(Exception):
    """The schema or function belongs to, or can be changed by, a role that must not."""


def main():
    argument_spec = connection_argument_spec(default_port=5432, default_user="postgres")
    argument_spec.update(
        standby_timeout=dict(type="int", default=30),
        databases=dict(type="list", elements="str", required=True),
        auth_user=dict(type="str", required=True),
        schema=dict(type="str", default="pgbouncer"),
        function=dict(type="str", default="user_lookup"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    queries, waited, standby = {}, [], False
    for database in params["databases"]:
        conn = connect(module, database, autocommit=True)
        try:
            standby = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            if standby:
                if wait_for_replica(module, conn, database, params):
                    waited.append(database)
                continue
            conn.autocommit = False
            role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [params["auth_user"]]).fetchone()
            if role is None and params["state"] == "present":
                module.fail_json(msg="auth_user %s does not exist in PostgreSQL: create it with a password first" % params["auth_user"])
            statements = plan(conn, database, params)
            if statements:
                queries[database] = statements
                if not module.check_mode:
                    for statement in statements:
                        conn.execute(statement)
            conn.commit()
        except OwnershipError as exc:
            conn.rollback()
            module.fail_json(msg=str(exc))
        except Exception as exc:  # psycopg.Error
            conn.rollback()
            module.fail_json(msg="cannot set up the auth_query function in database %s: %s" % (database, exc))
        finally:
            conn.close()
    module.exit_json(changed=bool(queries), changed_databases=sorted(queries), queries=queries, standby=standby, waited_for=waited)


def wait_for_replica(module, conn, database, params):
    """On a standby: wait until the primary's function has replayed here (no DDL ever runs on
    a standby). True when it had to wait (or, in check mode, would). A schema or function
    another role controls is refused here as on the primary."""
    deadline = time.monotonic() + params["standby_timeout"]
    waited = False
    while True:
        pending = plan(conn, database, params)
        if not pending:
            return waited
        if module.check_mode:
            return True
        if time.monotonic() >= deadline:
            module.fail_json(msg="database %s on this standby still lacks the auth_query function as wanted after %ss: the primary "
                                 "creates it (run this on the primary too, or raise standby_timeout)" % (database, params["standby_timeout"]))
        waited = True
        time.sleep(0.5)


if __name__ == "__main__":
    main()
