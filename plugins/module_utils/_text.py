# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small text helpers shared by the modules and filters. Pure functions.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import re

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


# What no value of a file the roles write may hold: the control characters but tab (C0, DEL,
# C1 with U+0085) and Unicode's line and paragraph separators. PgBouncer (and HAProxy,
# keepalived, systemd) end a line at LF only, a CR or NUL cuts it, and Python's splitlines()
# also splits at VT, FF, U+001C-U+001E, U+0085, U+2028 and U+2029: a value holding one is
# another number of lines to each reader. So they are refused, and files are split with lines().
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
CONTROL_MESSAGE = "a line break or other control character (CR, LF, NUL, VT, FF, U+0085, U+2028, ...)"


def has_control_char(text):
    """True when `text` holds a character of _CONTROL, which no line of a written file may carry."""
    return bool(_CONTROL.search(str(text)))


def lines(text):
    """The lines of a file's `text` as PgBouncer reads them: split at LF only (a CR before it
    dropped), unlike str.splitlines(). No empty last line for a final LF."""
    found = (text or "").split("\n")
    if found[-1] == "":
        found.pop()
    return [line[:-1] if line.endswith("\r") else line for line in found]
