"""The firewall's source lists against hosts without ansible_host (issue 23, item 8): the
decision function alone, in-process (milliseconds). The role's use of it, on a names-only
inventory: tests/unit/playbooks/test_site_checks.py."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.module_utils._firewall import unaddressed_problems  # noqa: E402

PATRONI = {"firewall_patroni_allowed_sources": {"port": "8008", "in_use": True, "hosts": ["db2", "db3"]}}


def test_names_only_is_refused_naming_the_variable_the_port_and_the_hosts():
    [message] = unaddressed_problems(PATRONI, {}, {"firewall_patroni_allowed_sources": []})
    assert message.startswith("firewall_patroni_allowed_sources is required for port 8008: db2, db3 have no ansible_host")
    assert "(the list is empty)" in message
    assert "set ansible_host" in message and "or set firewall_patroni_allowed_sources" in message


def test_one_host_without_an_address_is_refused_too():
    [message] = unaddressed_problems(PATRONI, {"db2": "10.0.0.2"}, {"firewall_patroni_allowed_sources": ["10.0.0.2"]})
    assert "db3 has no ansible_host" in message and "empty" not in message


def test_every_host_with_an_address_passes():
    assert unaddressed_problems(PATRONI, {"db2": "10.0.0.2", "db3": "10.0.0.3"},
                                {"firewall_patroni_allowed_sources": ["10.0.0.2", "10.0.0.3"]}) == []


def test_a_list_the_user_set_is_the_users_choice():
    assert unaddressed_problems(PATRONI, {}, {"firewall_patroni_allowed_sources": ["10.0.0.0/24"]}) == []
    assert unaddressed_problems(PATRONI, {"db2": "10.0.0.2"}, {"firewall_patroni_allowed_sources": ["10.0.0.2", "10.0.0.3"]}) == []


def test_a_port_not_opened_here_or_without_peers_is_not_checked():
    closed = {"firewall_patroni_allowed_sources": dict(PATRONI["firewall_patroni_allowed_sources"], in_use=False)}
    assert unaddressed_problems(closed, {}, {"firewall_patroni_allowed_sources": []}) == []
    alone = {"firewall_patroni_allowed_sources": dict(PATRONI["firewall_patroni_allowed_sources"], hosts=[])}
    assert unaddressed_problems(alone, {}, {"firewall_patroni_allowed_sources": []}) == []


def test_an_empty_list_is_refused_even_when_every_host_has_an_address():
    """The item's own words: an empty list for a port the inventory says is in use."""
    [message] = unaddressed_problems(PATRONI, {"db2": "10.0.0.2", "db3": "10.0.0.3"}, {"firewall_patroni_allowed_sources": []})
    assert message.startswith("firewall_patroni_allowed_sources is required for port 8008: it is empty")
    assert "db2, db3" in message
