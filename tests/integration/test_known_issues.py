"""CVE-2026-107349 on the lab (issue 23, item 0): one unauthenticated connection whose `options`
PgBouncer cannot parse ("-c=") spins PgBouncer 1.20-1.26.0 when ignore_startup_parameters is
not empty and lacks `options`. The role's defaults keep every pooler answering; an open
configuration is refused before any change unless accepted by name; and the packet really
stops a pooler so configured on an affected version (what the refusal protects against)."""

from __future__ import annotations

import json

import pytest
from test_config_surface import NODE, refusals

from conftest import APP, APP_DB, APP_PASSWORD, APP_USER, NODES, cluster_roles, ssh, wait_until

CVE = "CVE-2026-107349"
# Upstream versions with the flaw: [first, fixed).
AFFECTED = ((1, 20, 0), (1, 26, 1))
OPEN_TO_IT = {"pgbouncer_ignore_startup_parameters": ["extra_float_digits"]}
INI = "/etc/pgbouncer/pgbouncer.ini"

# From the app node: the packet (a user that does not exist, a wrong password, options "-c="),
# then a real login; prints the real login's exit status (0: it answered within 3 s).
PACKET_THEN_LOGIN = """
PGOPTIONS='-c=' PGPASSWORD=wrong timeout 8 psql "host=$1 port=6432 user=no_such_user dbname=%(db)s connect_timeout=3" \
  -Atc 'SELECT 1' > /dev/null 2>&1
PGPASSWORD='%(password)s' timeout 8 psql "host=$1 port=6432 user=%(user)s dbname=%(db)s connect_timeout=3" -Atc 'SELECT 1' \
  > /dev/null 2>&1
echo $?
""" % {"db": APP_DB, "user": APP_USER, "password": APP_PASSWORD}

# On a node: CPU time (clock ticks, 100 a second) the pooler used over 2 s.
POOLER_TICKS = r"""
pid=$(systemctl show -p MainPID --value pgbouncer)
a=$(awk '{print $14 + $15}' /proc/$pid/stat); sleep 2; b=$(awk '{print $14 + $15}' /proc/$pid/stat)
echo $((b - a))
"""


def version(ip):
    return tuple(int(part) for part in ssh(ip, "pgbouncer --version").stdout.split()[1].split("."))


def affected(ip):
    return AFFECTED[0] <= version(ip) < AFFECTED[1]


def packet_then_login(ip):
    """The real login's exit status after the packet (0: the pooler still answers)."""
    return int(ssh(APP, "bash -s %s" % ip, input=PACKET_THEN_LOGIN, timeout=60).stdout.strip())


def pooler_ticks(ip):
    return int(ssh(ip, POOLER_TICKS).stdout.strip())


@pytest.mark.version_dependent
def test_the_packet_leaves_every_pooler_answering_with_the_role_defaults():
    """About 15 s: the packet and a login per node, then 2 s of CPU per node."""
    assert {name: packet_then_login(ip) for name, ip in NODES.items()} == dict.fromkeys(NODES, 0)
    # Not spinning: well under a tenth of a core over 2 s.
    ticks = {name: pooler_ticks(ip) for name, ip in NODES.items()}
    assert all(value < 20 for value in ticks.values()), ticks


@pytest.mark.version_dependent
def test_configurations_with_a_known_issue_are_refused_unless_accepted(tmp_path):
    """Both suites, in one dry run (--check) on one node, about 30 s:
    - CVE-2026-107349: refused on an affected version, naming the issue and the fix; never on
      another; accepted by name, never refused;
    - pgbouncer-1612 (issue 23, item 11): a [databases] entry with user= and password= cannot log
      in for SCRAM clients before PgBouncer 1.26.0; refused there, naming the upstream fix,
      never the password."""
    accepted = dict(OPEN_TO_IT, pgbouncer_known_issues_accepted=[CVE])
    entry = {"name": "pw_db", "host": NODES[NODE], "port": 5432, "dbname": APP_DB, "user": "pw_user", "password": "a'b\\c=d e"}
    lab_entries = [{"name": "appdb_ro", "host": "10.129.0.22", "port": 5432, "dbname": APP_DB, "max_db_connections": 5}]
    cases = [("open", OPEN_TO_IT, ""), ("accepted", accepted, ""), ("forced", {"pgbouncer_databases": [*lab_entries, entry]}, "")]
    messages, _stats = refusals(cases, tmp_path, "--check")
    installed = version(NODES[NODE])
    if affected(NODES[NODE]):
        assert "%s on PgBouncer %s: " % (CVE, ".".join(map(str, installed))) in messages["open"], messages
        assert "pgbouncer_ignore_startup_parameters" in messages["open"]
        assert "pgbouncer_known_issues_accepted: [%s]" % CVE in messages["open"]
    else:
        assert messages["open"] == "NOT REFUSED", messages
    assert messages["accepted"] == "NOT REFUSED", messages
    if installed < (1, 26, 0):
        assert "pgbouncer-1612 on PgBouncer" in messages["forced"] and "pull request 1612" in messages["forced"], messages
        assert "a'b" not in messages["forced"]
    else:
        assert messages["forced"] == "NOT REFUSED", messages


@pytest.mark.version_dependent
def test_the_packet_stops_a_pooler_open_to_it_on_an_affected_version_only():
    """What the refusal guards against, on the real binary: a replica's pooler with `options`
    left out of ignore_startup_parameters (set by hand, then restored and restarted). Affected
    versions stop answering and spin; others refuse the packet and answer. About 15 s."""
    node = cluster_roles()["replicas"][0]
    ip = NODES[node]
    ssh(ip, f"cp -p {INI} /root/pgbouncer.ini.cve && sed -i 's/^ignore_startup_parameters = .*/ignore_startup_parameters = "
            f"extra_float_digits/' {INI} && systemctl reload pgbouncer")
    try:
        wait_until("the reload took effect", lambda: "options" not in ssh(
            ip, "runuser -u postgres -- psql -XAt -h /var/run/postgresql -p 6432 -U pgbouncer pgbouncer "
                "-c 'SHOW CONFIG'").stdout.split("ignore_startup_parameters", 1)[1].splitlines()[0], within=10)
        status, ticks = packet_then_login(ip), pooler_ticks(ip)
    finally:
        # SIGKILL: a spinning PgBouncer never handles the SIGTERM of a restart, which would wait
        # out systemd's stop timeout (90 s).
        ssh(ip, f"cp -p /root/pgbouncer.ini.cve {INI} && rm /root/pgbouncer.ini.cve && systemctl kill -s KILL pgbouncer "
                "&& systemctl reset-failed pgbouncer; systemctl start pgbouncer")
        wait_until("%s's pooler answers again" % node, lambda: ssh(
            APP, "PGPASSWORD=%s psql -XAt 'host=%s port=6432 user=%s dbname=%s connect_timeout=3' -c 'SELECT 1'"
            % (json.dumps(APP_PASSWORD), ip, APP_USER, APP_DB), check=False).returncode == 0, within=30)
    if affected(ip):
        assert status != 0 and ticks > 100, "expected the spin on %s: login status %d, %d ticks in 2 s" % (version(ip), status, ticks)
    else:
        assert status == 0 and ticks < 20, "not expected on %s: login status %d, %d ticks in 2 s" % (version(ip), status, ticks)
