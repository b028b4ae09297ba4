"""The dry start (module_utils/_check_config.py) never lets the service's user steer root to a
file of its choice (issue 23, item 1). On the old code a process running as postgres (what a
PostgreSQL superuser reaches with COPY ... TO PROGRAM) planted pgbouncer.ini and output.log as
symlinks in the directory handed to it, and root wrote, chowned and truncated through them.

The race is made deterministic: before every file-system call and process start of the dry
start, an attacker process, really running as nobody, plants symlinks to a root-only file
under every name the dry start uses, in every directory it can write to. Then root's file
must be untouched and nothing of it may come back in the dry start's output.
Runs as root (as here and in CI). About a second (an attacker process per call).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _check_config  # noqa: E402

SECRET = "root-only secret line\n"
# Every name the dry start writes or reads, planted in every directory the attacker may write to.
ATTACK = r"""
for dir in "$1"/*/ "$1"/*/*/; do
  for name in pgbouncer.ini output.log pgbouncer.pid; do
    ln -sfn "$2" "$dir$name" 2>/dev/null && echo "$dir$name"
  done
done
exit 0
"""
# A stand-in pgbouncer that, like the real one, comes up only if it can read its config.
STARTS = "#!/bin/sh\nif cat \"$1\" >/dev/null 2>&1; then echo 'LOG process up'; exec sleep 30; fi\necho 'FATAL cannot read the config'; exit 1\n"
REFUSES = "#!/bin/sh\necho 'FATAL invalid value for parameter'; exit 1\n"


def racing(call, attack):
    """`call`, run after `attack`."""
    def raced(*args, **kwargs):
        attack()
        return call(*args, **kwargs)

    return raced


class Racing:
    """Stands in for a module (os, subprocess) in _check_config: runs `attack` before each call."""

    def __init__(self, real, attack):
        self._real, self._attack = real, attack

    def __getattr__(self, name):
        value = getattr(self._real, name)
        if not callable(value) or isinstance(value, type) and issubclass(value, BaseException):
            return value
        return racing(value, self._attack)


@pytest.fixture
def attacked(monkeypatch):
    """(parent directory of the dry start's directories, root's file, planted symlinks)."""
    if os.geteuid() != 0:
        pytest.fail("runs as root (the attacker is another user)")
    nobody = pwd.getpwnam("nobody")
    parent = tempfile.mkdtemp(prefix="check-config-race-")
    vault = tempfile.mkdtemp(prefix="check-config-vault-")  # 0700, root's
    target = os.path.join(vault, "secret")
    Path(target).write_text(SECRET)
    os.chmod(target, 0o600)
    os.chmod(parent, 0o755)
    planted = []

    def attack():
        done = subprocess.run(["/bin/sh", "-c", ATTACK, "attack", parent, target], capture_output=True, text=True,
                              user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[], timeout=5, check=True)
        planted.extend(done.stdout.split())

    monkeypatch.setattr(tempfile, "tempdir", parent)
    monkeypatch.setattr(_check_config, "os", Racing(os, attack))
    monkeypatch.setattr(_check_config, "subprocess", Racing(subprocess, attack))
    monkeypatch.setattr(_check_config, "open", racing(open, attack), raising=False)
    try:
        yield parent, target, planted
    finally:
        shutil.rmtree(parent, ignore_errors=True)
        shutil.rmtree(vault, ignore_errors=True)


@pytest.mark.parametrize(("fake", "expected"), [(STARTS, None), (REFUSES, ["FATAL invalid value for parameter"])])
def test_symlinks_planted_by_the_service_user_never_reach_roots_file(attacked, fake, expected):
    parent, target, planted = attacked
    binary = os.path.join(parent, "pgbouncer")
    Path(binary).write_text(fake)
    os.chmod(binary, 0o755)
    result = _check_config.dry_start(binary, "[databases]\n[pgbouncer]\n", "nobody", timeout=5)
    info = os.stat(target)
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (0, 0, 0o600)
    assert Path(target).read_text() == SECRET
    assert result == expected  # and the service still reads its config
    # The attacker could plant only where root never goes: the service's run directory.
    assert all(Path(path).parent.name == "run" for path in planted), planted
