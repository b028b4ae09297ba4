"""Role variable checks argument_specs cannot express (module_utils/_validate.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _validate  # noqa: E402

GOOD = {
    "pgbouncer_listen_addr": "10.129.0.21",
    "pgbouncer_listen_port": 6432,
    "pgbouncer_default_pool_size": 20,
    "pgbouncer_database_wildcard": True,
    "pgbouncer_database_wildcard_host": "10.129.0.21",
    "pgbouncer_databases": [{"name": "appdb_ro", "host": "10.129.0.22", "dbname": "appdb"}],
}


def problems(**changes):
    return _validate.problems(dict(GOOD, **changes))


def test_good_settings_have_no_problems():
    assert problems() == []


def test_role_defaults_pass_apart_from_fact_templates():
    defaults = yaml.safe_load((ROOT / "roles" / "pgbouncer" / "defaults" / "main.yml").read_text())
    plain = {k: v for k, v in defaults.items() if "{{" not in str(v)}
    assert _validate.problems(plain) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pgbouncer_default_pool_size": -1}, "pgbouncer_default_pool_size must be at least 0, not -1"),
        ({"pgbouncer_default_pool_size": "-5"}, "pgbouncer_default_pool_size must be at least 0, not -5"),
        ({"pgbouncer_default_pool_size": "many"}, "pgbouncer_default_pool_size must be a whole number"),
        ({"pgbouncer_default_pool_size": True}, "pgbouncer_default_pool_size must be a whole number"),
        ({"pgbouncer_listen_port": 70000}, "pgbouncer_listen_port must be between 1 and 65535"),
        ({"pgbouncer_listen_addr": "10.129.0.999"}, "pgbouncer_listen_addr must be"),
        ({"pgbouncer_listen_addr": "not an address"}, "pgbouncer_listen_addr must be"),
        ({"pgbouncer_listen_addr": "10.0.0.1,,10.0.0.2"}, "pgbouncer_listen_addr must be"),
        ({"pgbouncer_listen_addr": ""}, "pgbouncer_listen_addr must be"),
        ({"pgbouncer_database_wildcard_host": "bad host!"}, "pgbouncer_database_wildcard_host must be"),
        ({"pgbouncer_databases": [{"name": "a", "host": "h"}, {"name": "a", "host": "h"}]}, "duplicate database name a"),
        ({"pgbouncer_databases": [{"name": "a"}]}, "pgbouncer_databases[0] (a) needs a host"),
        ({"pgbouncer_databases": [{"host": "h"}]}, "pgbouncer_databases[0] needs a name"),
        ({"pgbouncer_databases": [{"name": "*", "host": "h"}]}, "use pgbouncer_database_wildcard"),
        ({"pgbouncer_auth_query_enabled": True, "pgbouncer_auth_user_password": "", "pgbouncer_auth_query": "q($1)"},
         "pgbouncer_auth_user_password is needed with auth_query"),
        ({"pgbouncer_client_tls_sslmode": "require"}, "pgbouncer_client_tls_sslmode require needs pgbouncer_client_tls_key_file"),
        ({"pgbouncer_server_tls_sslmode": "verify-ca"}, "pgbouncer_server_tls_sslmode verify-ca needs pgbouncer_server_tls_ca_file"),
        ({"pgbouncer_extra_settings": {"listen_port": 1}}, "pgbouncer_extra_settings.listen_port: set it with pgbouncer_listen_port"),
        ({"pgbouncer_min_pool_size": 30}, "pgbouncer_min_pool_size 30 is larger than pgbouncer_default_pool_size 20"),
        ({"pgbouncer_users": [{"name": "u", "pool_mode": "x"}]}, "pgbouncer_users[0] (u): pool_mode must be one of"),
    ],
)
def test_each_problem_names_the_variable(changes, message):
    found = problems(**changes)
    assert any(message in text for text in found), found


@pytest.mark.parametrize("text", ["*", "10.0.0.1", "::1", "fe80::1", "db-1.example.com", "localhost"])
def test_listen_addr_accepts_addresses_names_and_star(text):
    assert problems(pgbouncer_listen_addr="%s, 10.0.0.2" % text) == []


def test_wildcard_host_may_be_the_local_socket_directory():
    assert problems(pgbouncer_database_wildcard_host="/var/run/postgresql") == []
    assert problems(pgbouncer_database_wildcard_host="var/run/postgresql") != []


def test_wildcard_host_not_checked_when_wildcard_is_off():
    assert problems(pgbouncer_database_wildcard=False, pgbouncer_database_wildcard_host="bad host!") == []


def test_source_lists_take_any_addresses_and_cidrs():
    assert _validate.source_problems(["10.129.0.31", "10.129.0.0/24", "fd00::/64", "any"], "v") == []
    assert _validate.source_problems(["10.129.0.0/33", "app-host"], "pgbouncer_allowed_sources") == [
        "pgbouncer_allowed_sources: '10.129.0.0/33' is not an IP address or CIDR",
        "pgbouncer_allowed_sources: 'app-host' is not an IP address or CIDR",
    ]
    assert _validate.source_problems("10.0.0.1", "v") == ["v must be a list of IP addresses or CIDRs, not '10.0.0.1'"]


def test_source_lists_by_name_at_once_in_order():
    assert _validate.source_problems({"b": ["any"], "a": ["app-host"], "c": "10.0.0.1"}) == [
        "a: 'app-host' is not an IP address or CIDR",
        "c must be a list of IP addresses or CIDRs, not '10.0.0.1'",
    ]
