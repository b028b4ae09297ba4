"""Insecure choices of the pgbouncer role need pgbouncer_allow_insecure (issue 15, item 10):
the role's validation (module_utils/_validate.py, tasks/validate.yml) refuses them otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _validate  # noqa: E402

DEFAULTS = yaml.safe_load((ROOT / "roles" / "pgbouncer" / "defaults" / "main.yml").read_text())
BASE = dict({k: v for k, v in DEFAULTS.items() if "{{" not in str(v)}, pgbouncer_listen_addr="10.129.0.21")


def problems(**changes):
    return _validate.problems(dict(BASE, **changes))


def test_the_role_defaults_are_secure():
    assert DEFAULTS["pgbouncer_allow_insecure"] is False
    assert problems() == []


@pytest.mark.parametrize("changes, says", [
    (dict(pgbouncer_auth_type="trust"), "pgbouncer_auth_type trust with pgbouncer_listen_addr 10.129.0.21"),
    (dict(pgbouncer_auth_type="any", pgbouncer_listen_addr="*"), "without a password"),
    (dict(pgbouncer_auth_type="plain", pgbouncer_listen_addr="127.0.0.1,10.129.0.21"), "in clear text"),
    (dict(pgbouncer_auth_type="trust", pgbouncer_listen_addr="pg-srv1.example.com"), "pgbouncer_auth_type trust"),
    (dict(pgbouncer_unix_socket_mode="0777"), "pgbouncer_unix_socket_mode 0777 lets every local user connect"),
    (dict(pgbouncer_unix_socket_mode="0666"), "pgbouncer_unix_socket_mode 0666"),
    (dict(pgbouncer_config_mode="0644"), "pgbouncer_config_mode 0644 gives other users access to pgbouncer.ini"),
    (dict(pgbouncer_userlist_mode="0604"), "pgbouncer_userlist_mode 0604 gives other users access to the auth_file"),
    (dict(pgbouncer_userlist_mode=0o644), "pgbouncer_userlist_mode 420 (0644)"),  # an unquoted YAML 0644
])
def test_insecure_choice_is_refused_unless_opted_in(changes, says):
    found = problems(**changes)
    assert len(found) == 1 and says in found[0] and "set pgbouncer_allow_insecure: true" in found[0], found
    assert problems(pgbouncer_allow_insecure=True, **changes) == []


@pytest.mark.parametrize("changes", [
    dict(pgbouncer_auth_type="trust", pgbouncer_listen_addr="127.0.0.1"),
    dict(pgbouncer_auth_type="trust", pgbouncer_listen_addr="127.0.0.1,::1,localhost"),
    dict(pgbouncer_auth_type="md5", pgbouncer_listen_addr="*"),
    dict(pgbouncer_unix_socket_mode="0777", pgbouncer_unix_socket_dir=""),  # no socket at all
    dict(pgbouncer_unix_socket_mode="0700", pgbouncer_config_mode="0600", pgbouncer_userlist_mode="0600"),
    dict(pgbouncer_config_mode="u=rw,g=r,o="),                           # symbolic, read as the file module does
    dict(pgbouncer_config_mode="u=rw,g=r,o-rwx", pgbouncer_userlist_mode="0o600"),
    dict(pgbouncer_config_mode="00640", pgbouncer_userlist_mode="600"),
])
def test_choices_that_expose_nothing_pass(changes):
    assert problems(**changes) == []


# Issue 23, item 6: every spelling of 0644 gives it; the guard read only 3-4 octal digits and let the rest pass.
@pytest.mark.parametrize("mode, shown", [
    ("u=rw,g=r,o=r", "u=rw,g=r,o=r (0644)"),
    ("a+r", "a+r (0777)"),            # added to whatever the file has: all of it counts
    ("0o644", "0o644 (0644)"),
    ("00644", "00644 (0644)"),
    ("u=rw,g=r", "u=rw,g=r (0647)"),  # others keep what the file has: any of it counts
    ("o+r", "o+r (0777)"),
])
def test_every_spelling_of_a_mode_is_read_as_the_file_module_reads_it(mode, shown):
    """The old guard passed each of these. Milliseconds (Ansible's own symbolic-mode parser)."""
    for name in ("pgbouncer_config_mode", "pgbouncer_userlist_mode"):
        found = problems(**{name: mode})
        assert len(found) == 1 and found[0].startswith("%s %s gives other users access" % (name, shown)), found


@pytest.mark.parametrize("mode", ["u=rwx,g=rwx,o=rwx", "a+w", "0o777", "00777", "u=rwx,g=rwx"])
def test_every_spelling_of_a_world_writable_socket_is_refused(mode):
    """Milliseconds."""
    found = problems(pgbouncer_unix_socket_mode=mode)
    assert len(found) == 1 and "lets every local user connect" in found[0], found


@pytest.mark.parametrize("mode", ["u=banana", "rw-r--r--", "", "0999", True])
def test_a_mode_that_is_none_is_refused(mode):
    """Not a mode at all: said so, naming the variable, not passed as harmless. Milliseconds."""
    found = problems(pgbouncer_config_mode=mode)
    assert found == ["pgbouncer_config_mode must be a file mode (octal such as 0640, or symbolic such as u=rw,g=r,o=), "
                     "not %r" % mode]
