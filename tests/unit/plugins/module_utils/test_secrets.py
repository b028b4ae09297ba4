"""No secret of pgbouncer.ini in Ansible's output: the masked --diff, no_log on the passwords
of [databases] entries, and no_log where the entries pass through a task result."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _check_config, _ini  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.modules import pgbouncer_config  # noqa: E402

TASKS = ROOT / "roles" / "pgbouncer" / "tasks"
TOKEN = "S3cr"  # in every secret below, so a leak of any part of one is seen
PASSWORDS = [TOKEN + tail for tail in ("", "it's", "back\\slash", 'dq"', "a b", "a=b", "' host=other connect_query='", "'")]


def task(file, name):
    tasks = yaml.safe_load((TASKS / file).read_text())
    return next(item for item in tasks if item["name"] == name)


@pytest.mark.parametrize("password", PASSWORDS)
def test_masked_lines_hold_no_part_of_the_password(password):
    line = _ini.database_line({"name": "appdb", "host": "10.129.0.21", "password": password, "pool_size": 5})
    masked = _ini.mask_secrets("[databases]\n" + line + "\n")
    assert TOKEN not in masked
    # A backslash may be the escaping of earlier versions: masked to the end of the line then.
    tail = "" if "\\" in password else " pool_size=5"
    assert "appdb = host=10.129.0.21 password=********%s\n" % tail in masked


@pytest.mark.parametrize(
    "line",
    [
        # What earlier versions wrote (backslash escaping): where the value ends is unsure.
        "appdb = host=a password='S3cr\\' host=b' pool_size=1",
        "appdb = host=a password='S3cr\\\\x' pool_size=1",
        "appdb = host=a password='S3cr never closed",
        "auth_ldap_options = ldapserver=x ldapbindpasswd=S3cr",
        "ldap_password = S3cr",
        "[databases] appdb = host=a password=S3cr",
        "; password=S3cr",
        "password",
    ],
)
def test_lines_not_read_as_written_are_masked_to_the_end(line):
    assert TOKEN not in _ini.mask_secrets(line)


def test_lines_without_secrets_are_unchanged():
    text = "[databases]\nappdb_ro = host=10.129.0.22 port=5432 dbname=appdb\n[pgbouncer]\nlisten_port = 6432\n"
    assert _ini.mask_secrets(text) == text


def test_masked_diff_shows_a_changed_password_without_it():
    old = "[databases]\nappdb = host=a password=S3cr-old pool_size=1\n[pgbouncer]\nlisten_port = 6432\n"
    new = old.replace("S3cr-old", "'S3cr new'").replace("6432", "6433")
    diff = _ini.masked_diff(old, new, "/etc/pgbouncer/pgbouncer.ini")
    assert TOKEN not in "\n".join(diff)
    assert diff[:2] == ["--- before: /etc/pgbouncer/pgbouncer.ini", "+++ after: /etc/pgbouncer/pgbouncer.ini"]
    assert "-appdb = host=a password=******** pool_size=1" in diff
    assert "+appdb = host=a password=******** pool_size=1" in diff
    assert "+listen_port = 6433" in diff
    assert _ini.masked_diff(old, old) == []
    assert TOKEN not in "\n".join(_ini.masked_diff("", new))  # first run: no file yet


def test_the_ini_is_written_by_one_module_call_that_never_prints_the_file():
    """No task of the role reads the live file (a slurp result, or a loop item, is printed
    with -v): the module reads it on the node and returns only a masked diff."""
    tasks = yaml.safe_load((TASKS / "configure.yml").read_text())
    assert not [item["name"] for item in tasks if "ansible.builtin.slurp" in item or "loop" in item and "ini" in item["name"]]
    write = task("configure.yml", "Write pgbouncer.ini")
    assert "loop" not in write and write["register"] == "__pgbouncer_config"
    assert write["pgbouncer.cluster.pgbouncer_config"]["databases"] == "{{ pgbouncer_databases }}"


def test_database_passwords_are_a_no_log_option():
    spec = pgbouncer_config.argument_spec()
    assert spec["databases"]["options"]["password"]["no_log"] is True
    # Only the password: no_log on the whole list would mask every host and port in the diff.
    assert [key for key, option in spec["databases"]["options"].items() if option.get("no_log")] == ["password"]


def test_the_pooler_description_with_the_databases_is_set_under_no_log():
    assert task("preflight.yml", "Describe this pooler for the sizing check").get("no_log") is True


def test_the_dry_start_hides_passwords_in_what_pgbouncer_logs():
    line = "2026-01-01 00:00:00 UTC [1] ERROR invalid value \"host=a password='S3cr'' x' pool_size=1\" for parameter appdb"
    assert _check_config.masked(line) == "2026-01-01 00:00:00 UTC [1] ERROR invalid value \"host=a password=********"
    assert _check_config.masked("FATAL cannot load config file") == "FATAL cannot load config file"
