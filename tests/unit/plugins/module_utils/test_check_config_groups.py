"""The dry start (module_utils/_check_config.py) runs PgBouncer as its OS user with that user's supplementary groups
(issue 15, item 11): a TLS key readable through a group (ssl-cert, mode 0640) is readable
by the service, so the dry start must not refuse the config. Runs as root (as here and in CI)
with a user of this machine that has a supplementary group (postgres in ssl-cert on a node),
else nobody with a made-up one.
Under a second."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _check_config  # noqa: E402


def checker():
    return _check_config


def user_with_a_supplementary_group():
    """(pwd entry, group entry) of an existing user listed as a member of a group other than its
    primary one; None when the machine has none."""
    for group in sorted(grp.getgrall(), key=lambda item: item.gr_name):
        for name in sorted(group.gr_mem):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            if entry.pw_uid != 0 and entry.pw_gid != group.gr_gid:
                return entry, group
    return None


def test_privileges_name_the_users_own_groups(monkeypatch):
    module = checker()
    calls = []
    monkeypatch.setattr(module.os, "geteuid", lambda: 0)
    monkeypatch.setattr(module.os, "getgrouplist", lambda name, gid: calls.append((name, gid)) or [gid, 103])
    entry = pwd.struct_passwd(("postgres", "x", 105, 111, "", "/var/lib/postgresql", "/bin/bash"))
    assert module.privileges(entry) == dict(user=105, group=111, extra_groups=[111, 103])
    assert calls == [("postgres", 111)]
    monkeypatch.setattr(module.os, "geteuid", lambda: 1000)
    assert module.privileges(entry) == {}


def test_a_key_readable_through_a_group_is_accepted(monkeypatch):
    """A stand-in pgbouncer that, like the real one, comes up only if it can read the key."""
    if os.geteuid() != 0:
        pytest.fail("runs as root (it switches to another user)")
    module = checker()
    found = user_with_a_supplementary_group()
    if found is not None:
        entry, gid = found[0], found[1].gr_gid
    else:
        # No such user on this machine: nobody, with a group that only /etc/group would give
        # it, answered by getgrouplist as /etc/group would. The switch itself is still real.
        entry, gid = pwd.getpwnam("nobody"), 54321
        monkeypatch.setattr(module.os, "getgrouplist", lambda name, base: [base, gid] if name == "nobody" else [base])
    directory = tempfile.mkdtemp(prefix="check-config-groups-")
    try:
        os.chmod(directory, 0o755)
        key = Path(directory, "server.key")
        key.write_text("not a real key\n")
        os.chown(key, 0, gid)
        os.chmod(key, 0o640)
        fake = Path(directory, "pgbouncer")
        fake.write_text("#!/bin/sh\nif cat %s >/dev/null 2>&1; then echo 'LOG process up'; exec sleep 30; fi\n"
                        "echo 'FATAL could not load key file: Permission denied'; exit 1\n" % key)
        os.chmod(fake, 0o755)
        text = "[databases]\n[pgbouncer]\nclient_tls_key_file = %s\n" % key
        assert module.dry_start(str(fake), text, entry.pw_name, timeout=5) is None
        # The same without the group: refused, with PgBouncer's own words.
        os.chown(key, 0, 0)
        assert module.dry_start(str(fake), text, entry.pw_name, timeout=5) == [
            "FATAL could not load key file: Permission denied"]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
