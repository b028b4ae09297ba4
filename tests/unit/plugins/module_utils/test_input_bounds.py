"""Names and secrets PgBouncer could not keep (issue 23, item 7): a role or user name with a
newline, and passwords longer than PgBouncer's MAX_PASSWORD (2048 bytes with the NUL in its
current source). Each is refused naming the variable, the key or the user, never showing the
secret. Pure functions: milliseconds in all."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ini, _userlist, _validate  # noqa: E402

LONG = "pw-" + "x" * 2045  # 2048 bytes: one more than PgBouncer keeps
LONG_UTF8 = "é" * 1024      # 1024 characters, 2048 bytes


@pytest.mark.parametrize("secret", [LONG, LONG_UTF8])
def test_a_password_longer_than_pgbouncer_keeps_is_refused_naming_where(secret):
    found = _validate.problems({"pgbouncer_auth_user_password": secret,
                                "pgbouncer_databases": [{"name": "appdb", "host": "h", "password": secret}]})
    long_ones = [problem for problem in found if "2047 bytes" in problem]
    assert [problem.split(" is ")[0] for problem in long_ones] == ["pgbouncer_auth_user_password",
                                                                   "pgbouncer_databases[0] (appdb).password"]
    assert not any("xxx" in problem or "éé" in problem for problem in found)
    # The agent's login is checked by its own role with the same filter.
    assert _validate.input_problems({"pgbouncer_health_login_password": secret}) == [
        "pgbouncer_health_login_password is longer than the 2047 bytes PgBouncer keeps of a password (MAX_PASSWORD)"]


def test_the_longest_password_pgbouncer_keeps_passes():
    secret = "x" * _ini.MAX_PASSWORD
    assert _validate.input_problems({"pgbouncer_auth_user_password": secret}) == []
    assert _userlist.render([("u", secret)]) == '"u" "%s"\n' % secret
    assert _ini.database_line({"name": "db", "host": "h", "password": secret}).endswith("password=" + secret)


def test_the_module_side_refuses_it_too():
    """pgbouncer_config and pgbouncer_userlist used without the role."""
    with pytest.raises(ValueError, match="database db: password is longer than the 2047 bytes") as raised:
        _ini.database_line({"name": "db", "host": "h", "password": LONG})
    assert "xxx" not in str(raised.value)
    with pytest.raises(ValueError, match="user auth: the password is longer than the 2047 bytes") as raised:
        _userlist.render([("auth", LONG)])
    assert "xxx" not in str(raised.value)
    with pytest.raises(ValueError, match="at most 127 bytes"):
        _userlist.render([("u" * 128, "SCRAM-SHA-256$x")])


@pytest.mark.parametrize("variables, where", [
    ({"pgbouncer_admin_users": ["admin\nauth_type = trust"]}, "pgbouncer_admin_users[0]:"),
    ({"pgbouncer_stats_users": ["stats\u2028x"]}, "pgbouncer_stats_users[0]:"),
    ({"pgbouncer_auth_user": "auth\nx"}, "pgbouncer_auth_user:"),
    ({"pgbouncer_users": [{"name": "app\nx"}]}, "pgbouncer_users[0] (app\nx):"),
])
def test_a_role_or_user_name_with_a_newline_is_refused(variables, where):
    assert any(problem.startswith(where) for problem in _validate.problems(variables)), _validate.problems(variables)
