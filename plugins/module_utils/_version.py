# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PgBouncer's version, from `pgbouncer --version` or the console's SHOW VERSION.

The one reader of a version for the modules, the filters and the role. Pure functions.
Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import re

# The first "major.minor" or "major.minor.patch", e.g. in "PgBouncer 1.18.0".
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def version_text(text):
    """The version as written in `text` ("1.18.0", or "1.18" without a patch level), or None."""
    match = _VERSION.search(str(text or ""))
    return match.group(0) if match else None


def parse_version(text):
    """(major, minor, patch) of the version in `text`; a missing patch is 0.

    Raises ValueError when `text` holds no version.
    """
    match = _VERSION.search(str(text or ""))
    if not match:
        raise ValueError("not a PgBouncer version: %r" % text)
    return tuple(int(part or 0) for part in match.groups())
