# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""File helpers shared by the modules that write files on the node.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import functools
import operator
import os
import stat
import tempfile
from types import SimpleNamespace

from ansible.module_utils.basic import AnsibleModule


def read_current(path):
    """The text of `path`, or None when it does not exist yet."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomically(module, path, data, file_args, prefix):
    """Replace `path` with `data` (bytes) through a temporary file in its directory that has the
    final owner, group and mode before the move: the file is never readable by others, nor half
    written. The directory must exist."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix)  # 0600, only we can read it
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        module.set_fs_attributes_if_different(dict(file_args, path=tmp), True)
        # atomic_move gives a file it creates 0666 & ~umask and our uid: a strict umask keeps
        # it private until the attributes are set again below.
        umask = os.umask(0o077)
        try:
            module.atomic_move(tmp, path, keep_dest_attrs=False)
        finally:
            os.umask(umask)
        module.set_fs_attributes_if_different(file_args, True)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def mode_bits(value):
    """The permission bits a file gets from `value` as Ansible's file arguments (mode=) read it,
    for a check before any file exists: an int as it is (an unquoted YAML 0640); text as an
    octal number when int(text, 8) takes it, as Ansible tries first ("640", "0640", "00640",
    "0o640"); else a symbolic mode ("u=rw,g=r,o=", "a+r"), which Ansible applies to the file's
    current mode. That mode is not known here, so the bits are those it gives to a file with
    none (0000) or with all (0777), together: what a mode leaves as it was counts as given.
    Raises ValueError for a value that is none of these."""
    if isinstance(value, bool) or not str(value).strip():
        raise ValueError("not a file mode: %r" % value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 8)
    except ValueError:
        pass
    # The same parser the file arguments use on the node (AnsibleModule.set_mode_if_different).
    return functools.reduce(operator.or_, (
        AnsibleModule._symbolic_mode_to_octal(SimpleNamespace(st_mode=stat.S_IFREG | current), str(value))
        for current in (0o000, 0o777)))
