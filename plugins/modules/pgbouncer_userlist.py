#!/usr/bin/python
# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbouncer_userlist
short_description: Write PgBouncer's auth_file (userlist.txt) from PostgreSQL's pg_shadow
description:
  - Reads user names and password secrets from the node's PostgreSQL (C(SELECT usename, passwd FROM pg_shadow)),
    as the manual procedure does, and writes them to PgBouncer's auth_file.
  - SCRAM and md5 secrets are kept exactly as stored; double quotes are escaped by doubling them.
  - The file is replaced atomically and only when its content differs, through a temporary file in the same
    directory that gets the final O(owner), O(group) and O(mode) before it is renamed into place.
  - Roles without a password are left out, since they cannot log in through PgBouncer.
  - Roles whose password has expired (C(VALID UNTIL) in the past) are always left out, and superusers unless
    O(include_superusers=true), as the C(auth_query) lookup does. A role named in O(users) that is left out
    for either reason makes the module fail.
version_added: 0.1.0
author: pgbouncer.cluster contributors (@pgbouncer-cluster)
extends_documentation_fragment:
  - pgbouncer.cluster.connection
  - ansible.builtin.files
options:
  path:
    description: Path of the auth_file to write.
    type: path
    default: /etc/pgbouncer/userlist.txt
  users:
    description:
      - Users to write. Empty means every user with a password.
      - Each named user must exist in pg_shadow with a password, or the module fails.
    type: list
    elements: str
    default: []
  exclude_users:
    description: Users never written, applied after O(users).
    type: list
    elements: str
    default: []
  include_superusers:
    description:
      - Write superusers too. Off by default, so that a copy of a superuser's secret does not sit in a file
        the pooler reads and a superuser cannot log in through the pooler.
    type: bool
    default: false
  passwords:
    description:
      - Plain passwords to write instead of the pg_shadow secret, by user name.
      - For the C(auth_user) of C(auth_query), which PgBouncer logs in as on its own (no client to take SCRAM
        keys from) and so needs the password itself. Each user must also be selected by O(users).
    type: dict
    default: {}
  auth_type:
    description:
      - PgBouncer's C(auth_type), when known. With C(scram-sha-256), users whose secret is md5 are written as
        they are (they cannot log in through PgBouncer either way) and the module warns, on every run, naming
        them and the two fixes; RV(md5_users) lists them.
    type: str
  db:
    description: Database to connect to for reading pg_shadow.
    type: str
    default: postgres
  login_port:
    description: PostgreSQL port.
    type: int
    default: 5432
  login_user:
    description: PostgreSQL superuser that may read pg_shadow.
    type: str
    default: postgres
  owner:
    default: postgres
  group:
    default: postgres
  mode:
    default: '0640'
attributes:
  check_mode:
    support: full
    description: Reads pg_shadow and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: Secrets in the diff are replaced by their kind and a fingerprint that changes with the secret.
notes:
  - Run it as root with O(os_user=postgres) so it can both read pg_shadow by peer authentication and write the
    root-owned C(/etc/pgbouncer) directory.
"""

EXAMPLES = r"""
- name: Write every PostgreSQL user with a password to userlist.txt
  pgbouncer.cluster.pgbouncer_userlist:
    os_user: postgres

- name: Only the application users and the console admin
  pgbouncer.cluster.pgbouncer_userlist:
    users: [app_user, report_user, pgbouncer]
    os_user: postgres

- name: Everybody with a password but the superusers and expired roles, read over TCP with a password
  pgbouncer.cluster.pgbouncer_userlist:
    login_host: 10.129.0.21
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
"""

RETURN = r"""
users:
  description: Names written to the file, sorted.
  returned: always
  type: list
  elements: str
  sample: [app_user, pgbouncer]
md5_users:
  description: Users written with an md5 secret while O(auth_type) is C(scram-sha-256); they cannot log in through
    PgBouncer until their password is set again as SCRAM, or C(auth_type) is C(md5).
  returned: always
  type: list
  elements: str
  sample: [report_user]
path:
  description: The auth_file path.
  returned: always
  type: str
  sample: /etc/pgbouncer/userlist.txt
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _userlist
from ansible_collections.pgbouncer.cluster.plugins.module_utils._connection import (
    connect,
    connection_argument_spec,
)
from ansible_collections.pgbouncer.cluster.plugins.module_utils._files import read_current

# valuntil NULL or 'infinity' never expires.
QUERY = "SELECT usename, passwd, usesuper, COALESCE(valuntil < now(), false) FROM pg_shadow ORDER BY usename"


def read_pg_shadow(module):
    conn = connect(module, module.params["db"])
    try:
        with conn.cursor() as cur:
            cur.execute(QUERY)
            return [tuple(row) for row in cur.fetchall()]
    except Exception as exc:  # psycopg.Error; psycopg may be absent at import time
        module.fail_json(msg="cannot read pg_shadow (is login_user a superuser?): %s" % exc)
    finally:
        conn.close()


def write_atomically(module, path, content, file_args):
    """Write path through a temporary file that has its final owner, group and mode before the rename.

    Not module.atomic_move: for a new file it sets 0666 & ~umask and the module's own uid after
    the rename, and until set_fs_attributes_if_different ran others could read the secrets.
    """
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".userlist.")  # 0600, only we can read it
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        module.set_fs_attributes_if_different(dict(file_args, path=tmp), True)
        os.rename(tmp, path)  # same directory, hence the same filesystem: atomic
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main():
    argument_spec = connection_argument_spec(default_port=5432, default_user="postgres")
    argument_spec.update(
        path=dict(type="path", default="/etc/pgbouncer/userlist.txt"),
        users=dict(type="list", elements="str", default=[]),
        exclude_users=dict(type="list", elements="str", default=[]),
        passwords=dict(type="dict", default={}, no_log=True),
        include_superusers=dict(type="bool", default=False),
        auth_type=dict(type="str"),
        db=dict(type="str", default="postgres"),
        owner=dict(type="str", default="postgres"),
        group=dict(type="str", default="postgres"),
        mode=dict(type="raw", default="0640"),
    )
    module = AnsibleModule(argument_spec=argument_spec, add_file_common_args=True, supports_check_mode=True)
    params = module.params
    path = params["path"]

    rows = read_pg_shadow(module)
    with_secret = {row[0] for row in rows if row[1]}
    missing = sorted(set(params["users"]) - with_secret)
    if missing:
        module.fail_json(
            msg="users not in pg_shadow, or without a password: %s. Create them with a password in PostgreSQL, "
            "or remove them from users." % ", ".join(missing)
        )
    refused = _userlist.left_out(rows, params["include_superusers"])
    named_refused = ["%s is %s" % (name, refused[name]) for name in sorted(set(params["users"]) & set(refused))]
    if named_refused:
        module.fail_json(msg="users that will not be written: %s. Remove them from users, or fix the role in "
                         "PostgreSQL (ALTER ROLE ... VALID UNTIL / NOSUPERUSER)." % "; ".join(named_refused))
    entries = _userlist.select(rows, params["users"], params["exclude_users"], params["include_superusers"])
    passwords = params["passwords"]
    unselected = sorted(set(passwords) - {entry[0] for entry in entries})
    if unselected:
        module.fail_json(msg="passwords given for users that are not written: %s" % ", ".join(unselected))
    entries = [(name, passwords.get(name, secret)) for name, secret in entries]
    try:
        wanted = _userlist.render(entries)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    current = read_current(path)

    changed = current != wanted
    md5_users, md5_message = _userlist.md5_under_scram(entries, params["auth_type"])
    if md5_message:
        module.warn(md5_message)
    result = dict(changed=changed, path=path, users=[entry[0] for entry in entries], md5_users=md5_users)
    if module._diff and changed:
        key = os.urandom(16)
        try:
            before = _userlist.mask(_userlist.parse(current or ""), key)
        except ValueError:
            before = "(current file is not a valid auth_file)\n"
        result["diff"] = dict(before=before, after=_userlist.mask(entries, key), before_header=path, after_header=path)
    file_args = module.load_file_common_arguments(params)
    if changed and not module.check_mode:
        write_atomically(module, path, wanted, file_args)

    if os.path.exists(path):
        result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
