# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small text helpers shared by the modules and filters. Pure functions.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

from ansible.module_utils.parsing.convert_bool import boolean

BOOLEAN_FORMS = "true/false, yes/no, on/off, 1/0, y/n or t/f"


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


def flag(value, name="the value"):
    """Boolean variable `name` read as Ansible reads a module's bool option (boolean():
    true/yes/on/1/y/t and false/no/off/0/n/f, in any case). `-e name=false` and an INI
    inventory give the string "false", which Python and a Jinja `if` read as true; and
    Jinja's own `bool` filter reads "y" and "t" as false. Raises ValueError naming `name`
    for anything else, rather than guessing."""
    try:
        return boolean(value, strict=True)
    except TypeError:
        raise ValueError("%s must be a boolean (%s), not %r" % (name, BOOLEAN_FORMS, value)) from None
