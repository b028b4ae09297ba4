# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""File helpers shared by the modules that write files on the node.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import os
import tempfile


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
