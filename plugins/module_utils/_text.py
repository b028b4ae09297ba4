# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small text helpers shared by the modules and filters. Pure functions.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations


def double_quoted(text):
    """`text` in double quotes with each " doubled: a SQL identifier, a console WORD, a field
    of PgBouncer's auth_file all read it this way."""
    return '"' + text.replace('"', '""') + '"'


def as_int(value, default=0):
    """A whole number from an int or its decimal text (templated variables give either);
    `default` for none, "" or anything that is not one."""
    try:
        return int(str(value), 10)
    except ValueError:
        return default


def unit_base(name):
    """A systemd unit name without its .service suffix ("pgbouncer.service" -> "pgbouncer")."""
    name = str(name)
    return name[: -len(".service")] if name.endswith(".service") else name
