# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by the modules that talk to PgBouncer or PostgreSQL."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host to connect to over TCP.
      - When empty, the module connects over the unix socket in O(login_unix_socket).
    type: str
    default: ''
  login_unix_socket:
    description:
      - Directory of the unix socket, used when O(login_host) is empty.
    type: str
    default: /var/run/postgresql
  login_user:
    description:
      - User to log in as.
    type: str
  login_password:
    description:
      - Password of O(login_user). Not needed over the unix socket when O(os_user) gives the identity.
    type: str
    default: ''
  connect_timeout:
    description:
      - Seconds to wait for the connection before giving up.
    type: int
    default: 10
  os_user:
    description:
      - Local OS user whose identity (effective uid and gid) the module takes while it
        connects over the unix socket, then drops again. This lets a module running as
        root log in by PostgreSQL C(peer) authentication, or as the C(pgbouncer) console
        user that PgBouncer admits without a password from its own OS user.
      - Only used when the module runs as root and O(login_host) is empty.
    type: str
requirements:
  - psycopg >= 3.0 (Debian package C(python3-psycopg)) on the managed node
"""
