"""Issue 5 on the lab: [databases]/[users] entries, TLS, version-gated keys, the dry start
before apply, pool sizing, auth_query, and bad input refused before any node changes."""

from __future__ import annotations

import json

import pytest

from conftest import APP_DB, APP_PASSWORD, APP_USER, NODES, ansible_playbook, app_python, psql, recap, ssh

NODE = "pg-srv3"
IP = NODES[NODE]

CONNECT = r"""
import json, sys
import psycopg
host, db, sslmode = sys.argv[1:4]
try:
    with psycopg.connect(host=host, port=6432, dbname=db, user=sys.argv[4], password=sys.argv[5], sslmode=sslmode,
                         sslrootcert="/root/lab-ca.crt", connect_timeout=10) as conn:
        row = conn.execute("SELECT current_database(), inet_server_addr()::text").fetchone()
        print(json.dumps({"ok": True, "db": row[0], "server": row[1].split("/")[0]}))
except Exception as exc:
    print(json.dumps({"ok": False, "error": str(exc)}))
"""


def connect(host, db=APP_DB, sslmode="disable", user=APP_USER, password=APP_PASSWORD):
    return app_python(CONNECT, host, db, sslmode, user, password)


def version(ip=IP):
    return tuple(int(part) for part in ssh(ip, "pgbouncer --version").stdout.split()[1].split(".")[:2])


def console(ip, command):
    """Rows of a console SHOW as dicts: the columns differ between PgBouncer versions."""
    out = ssh(ip, "runuser -u postgres -- psql -XA -P footer=off -F '|' -h /var/run/postgresql -p 6432 -U pgbouncer pgbouncer -c %s"
              % json.dumps(command)).stdout
    header, *rows = [line.split("|") for line in out.splitlines()]
    return [dict(zip(header, row)) for row in rows]


def state(ip=IP):
    """What must not move when input is refused: config files and the process."""
    files = ssh(ip, "sha256sum /etc/pgbouncer/pgbouncer.ini /etc/pgbouncer/userlist.txt").stdout
    return files, ssh(ip, "systemctl show -p MainPID --value pgbouncer").stdout.strip()


def converge(*extra, limit=NODE):
    result = ansible_playbook("playbooks/site.yml", "--limit", limit, *extra)
    assert result.returncode == 0, result.stdout[-4000:]
    return result


def restore(limit):
    """The pgbouncer role with the lab's settings on `limit`: `--tags pgbouncer`, since only that
    role reads the settings these tests change (auth_query, the wildcard's host); then every
    pgbouncer.ini there is back to the lab's (no auth_user, the wildcard over TCP) and the
    auth_file lists app_user again."""
    converge("--tags", "pgbouncer", limit=limit)
    for name in (NODES if limit == "pgbouncer" else [limit]):
        ini = ssh(NODES[name], "cat /etc/pgbouncer/pgbouncer.ini").stdout
        keys = [line.split("=", 1)[0].strip() for line in ini.splitlines() if "=" in line]
        assert "auth_user" not in keys and "host=%s" % SOCKET_DIR not in ini, name
        assert '"%s"' % APP_USER in ssh(NODES[name], "cat /etc/pgbouncer/userlist.txt").stdout, name


@pytest.fixture
def restore_node():
    yield
    restore(NODE)


@pytest.fixture
def restore_cluster():
    yield
    restore("pgbouncer")


@pytest.mark.version_dependent
@pytest.mark.parametrize("name", sorted(NODES))
def test_clients_connect_with_verify_full(name):
    result = connect(NODES[name], sslmode="verify-full")
    assert result == {"ok": True, "db": APP_DB, "server": NODES[name]}


def test_plain_client_still_connects_with_tls_prefer_on_the_pooler():
    assert connect(NODES["pg-srv1"], sslmode="disable")["ok"]


def test_read_only_alias_goes_to_another_node():
    result = connect(NODES["pg-srv1"], db="appdb_ro")
    assert result == {"ok": True, "db": APP_DB, "server": NODES["pg-srv2"]}


@pytest.mark.version_dependent
def test_users_section_sets_a_per_user_pool_mode():
    users = {row["name"]: row for row in console(IP, "SHOW USERS")}
    assert users["report_user"]["pool_mode"] == "session"


@pytest.mark.version_dependent
def test_defaults_only_newer_versions_know_are_written_only_for_them():
    ini = ssh(IP, "cat /etc/pgbouncer/pgbouncer.ini").stdout
    assert ("max_prepared_statements = 200" in ini) == (version() >= (1, 21))


@pytest.mark.version_dependent
def test_a_config_pgbouncer_refuses_never_reaches_the_node():
    """Known key, bad value: only the dry start of the real pgbouncer can tell."""
    before = state()
    result = ansible_playbook("playbooks/site.yml", "--limit", NODE, "-e", json.dumps({"pgbouncer_extra_settings": {"tcp_keepidle": "soon"}}))
    assert result.returncode != 0
    assert "pgbouncer would not start" in result.stdout and "for parameter tcp_keepidle" in result.stdout
    assert state() == before
    assert connect(IP)["ok"]


@pytest.mark.version_dependent
def test_auth_query_replaces_the_full_userlist(restore_cluster):
    """About 60-75 s: site.yml on the three nodes with auth_query on, then restore_cluster's run
    of the pgbouncer role on them with the lab's settings."""
    # Every node at once: the primary creates the lookup function, the replicas wait for it
    # to arrive by replication (DDL cannot run on a hot standby).
    # Turned on as `-e name=true` gives it, a string: ansible-core 2.19 refused "Conditional
    # result (True) was derived from value of type 'str'" before every read went through | bool.
    extra = {"pgbouncer_auth_dbname": "postgres"} if version() >= (1, 20) else {}
    result = converge("-e", "pgbouncer_auth_query_enabled=true", "-e", json.dumps(extra), limit="pgbouncer")
    assert "Conditional result" not in result.stdout + result.stderr
    assert "auth_user = pgbouncer_auth" in ssh(IP, "cat /etc/pgbouncer/pgbouncer.ini").stdout
    userlist = ssh(IP, "cat /etc/pgbouncer/userlist.txt").stdout
    assert sorted(line.split('" ')[0].strip('"') for line in userlist.splitlines()) == ["pgbouncer", "pgbouncer_auth", "stats_user"]
    # app_user is not in the auth_file, yet logs in: PgBouncer asked PostgreSQL.
    assert connect(IP) == {"ok": True, "db": APP_DB, "server": IP}
    lookup_db = "postgres" if extra else APP_DB
    rows = psql(IP, """SELECT p.prosecdef, array_to_string(p.proconfig, ';'),
       has_function_privilege('app_user', p.oid, 'EXECUTE'), has_function_privilege('pgbouncer_auth', p.oid, 'EXECUTE')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pgbouncer' AND p.proname = 'user_lookup'""", db=lookup_db)
    assert rows == [["t", "search_path=pg_catalog, pg_temp", "f", "t"]]
    # A superuser is never looked up, so it cannot log in through the pooler this way.
    assert psql(IP, "SELECT count(*) FROM pgbouncer.user_lookup('postgres') WHERE passwd IS NOT NULL", db=lookup_db) == [["0"]]


BAD_INPUTS = [
    ("pool-mode-enum", {"pgbouncer_pool_mode": "transactoin"}, "pgbouncer_pool_mode"),
    ("auth-type-enum", {"pgbouncer_auth_type": "scram"}, "pgbouncer_auth_type"),
    ("tls-mode-enum", {"pgbouncer_client_tls_sslmode": "on"}, "pgbouncer_client_tls_sslmode"),
    ("negative-pool-size", {"pgbouncer_default_pool_size": -5}, "pgbouncer_default_pool_size must be at least 0"),
    # site.yml checks the firewall input first; its port defaults to pgbouncer_listen_port.
    ("port-range", {"pgbouncer_listen_port": 70000}, "firewall_pgbouncer_port must be a port between 1 and 65535, not 70000"),
    ("bad-ipv4", {"pgbouncer_listen_addr": "10.129.0.999"}, "pgbouncer_listen_addr must be"),
    ("not-an-address", {"pgbouncer_listen_addr": "my pooler"}, "pgbouncer_listen_addr must be"),
    # A good address, but not one of the node's: pgbouncer_config refuses it before it writes.
    ("address-not-on-node", {"pgbouncer_listen_addr": "10.129.0.99"}, "10.129.0.99 is not an address of this node"),
    ("bad-wildcard-host", {"pgbouncer_database_wildcard_host": "db host!"}, "pgbouncer_database_wildcard_host must be"),
    ("bad-cidr", {"firewall_pgbouncer_allowed_sources": ["10.129.0.0/33"]}, "firewall_pgbouncer_allowed_sources"),
    ("duplicate-database", {"pgbouncer_databases": [{"name": "a", "host": "10.129.0.21"}, {"name": "a", "host": "10.129.0.22"}]},
     "duplicate database name a"),
    ("database-without-host", {"pgbouncer_databases": [{"name": "a", "dbname": "appdb"}]}, "pgbouncer_databases"),
    ("database-pool-mode", {"pgbouncer_databases": [{"name": "a", "host": "10.129.0.21", "pool_mode": "sesion"}]}, "pgbouncer_databases"),
    ("database-port", {"pgbouncer_databases": [{"name": "a", "host": "10.129.0.21", "port": 0}]}, "pgbouncer_databases[0] (a): port"),
    ("duplicate-user", {"pgbouncer_users": [{"name": "u"}, {"name": "u"}]}, "pgbouncer_users[1] (u): duplicate user name"),
    ("tls-without-files", {"pgbouncer_client_tls_sslmode": "require", "pgbouncer_client_tls_key_file": "", "pgbouncer_client_tls_cert_file": ""},
     "pgbouncer_client_tls_sslmode require needs pgbouncer_client_tls_key_file"),
    ("verify-without-ca", {"pgbouncer_server_tls_sslmode": "verify-full"}, "pgbouncer_server_tls_sslmode verify-full needs pgbouncer_server_tls_ca_file"),
    ("key-without-cert", {"pgbouncer_server_tls_key_file": "/etc/ssl/private/x.key"},
     "pgbouncer_server_tls_key_file and pgbouncer_server_tls_cert_file go together"),
    ("min-over-default", {"pgbouncer_min_pool_size": 30}, "pgbouncer_min_pool_size 30 is larger than pgbouncer_default_pool_size 20"),
    ("nofile-below-clients", {"pgbouncer_limit_nofile": 500}, "pgbouncer_limit_nofile 500 leaves no file descriptors"),
    ("extra-duplicates-a-variable", {"pgbouncer_extra_settings": {"pool_mode": "session"}},
     "pgbouncer_extra_settings.pool_mode: set it with pgbouncer_pool_mode"),
    ("auth-query-without-param", {"pgbouncer_auth_query_enabled": True, "pgbouncer_auth_query": "SELECT usename, passwd FROM pg_shadow"},
     "pgbouncer_auth_query must take the user name as $1"),
    ("auth-query-without-password", {"pgbouncer_auth_query_enabled": True, "pgbouncer_auth_user_password": ""},
     "pgbouncer_auth_user_password is needed with auth_query"),
    ("key-unknown-to-version", {"pgbouncer_extra_settings": {"not_a_pgbouncer_key": 1}},
     "pgbouncer_extra_settings.not_a_pgbouncer_key: PgBouncer 1."),
    ("admin-not-in-userlist", {"pgbouncer_admin_users": ["pgbouncer", "nobody_here"]}, "pgbouncer_admin_users: nobody_here will not be in the auth_file"),
    ("pool-over-max-connections", {"pgbouncer_max_db_connections": 0}, "pool sizing: the poolers can open"),
    # Nothing escapes a line break in pgbouncer.ini: a value with one would add lines of its own.
    ("newline-in-extra-settings", {"pgbouncer_extra_settings": {"application_name_add_host": "1\nlisten_addr = *"}},
     "pgbouncer_extra_settings.application_name_add_host: a line break"),
    ("cr-in-setting", {"pgbouncer_server_reset_query": "DISCARD ALL\r"}, "pgbouncer_server_reset_query: a line break"),
    ("newline-in-password", {"pgbouncer_databases": [{"name": "x", "host": "10.129.0.23", "password": "a\nb"}]},
     "pgbouncer_databases[0] (x).password: a line break"),
    ("space-in-database-name", {"pgbouncer_databases": [{"name": "my db", "host": "10.129.0.23"}]},
     "pgbouncer_databases[0] (my db): PgBouncer takes only letters"),
    # Issue 23, item 10: the other roles' input, checked by site.yml's first check play too.
    ("keepalived-vip-missing", {"keepalived_vip": None}, "keepalived_vip is required"),
    ("keepalived-auth-pass-missing", {"keepalived_auth_pass": ""}, "keepalived_auth_pass is required"),
    ("health-password-missing", {"pgbouncer_health_login_password": ""}, "pgbouncer_health_login_password is required"),
    ("haproxy-unknown-backend", {"haproxy_backend_hosts": ["pg-srv1", "pg-srv9"]}, "haproxy_backend_hosts must name inventory hosts"),
    # Issue 23, item 8: an empty list for a port the inventory says is in use.
    ("patroni-sources-empty", {"firewall_patroni_allowed_sources": []},
     "firewall_patroni_allowed_sources is required for port 8008: it is empty"),
    ("etcd-peer-sources-empty", {"firewall_etcd_peer_allowed_sources": []},
     "firewall_etcd_peer_allowed_sources is required for port 2380: it is empty"),
    # Issue 23, item 9: the hosts still on 5432 are addresses too.
    ("migration-source-name", {"firewall_postgres_migration_sources": ["app-server-1"]},
     "firewall_postgres_migration_sources: 'app-server-1' is not an IP address or CIDR"),
]


# Cases whose refusal depends on the PgBouncer version (its table of known keys).
VERSION_DEPENDENT = {"key-unknown-to-version"}
# Cases refused on the node, from what the node's PgBouncer and PostgreSQL say (the role's
# preflight and the pgbouncer_config module): the addresses the node has (the module), the
# auth_file users read from PostgreSQL, and the pool sizing against PostgreSQL's max_connections,
# superuser_reserved_connections and (PostgreSQL 16 and later) reserved_connections. Every other
# case is refused on the controller by the input checks of site.yml's check play (the filter
# pgbouncer_config_problems and the roles' validate.yml), whatever the node runs: those run in
# the default scenario only, these in both.
REFUSED_ON_THE_NODE = {"address-not-on-node", "admin-not-in-userlist", "pool-over-max-connections"}


def refusals(cases, tmp_path, *args):
    """Each case through site.yml's checks, in one ansible-playbook run on NODE: a block per
    case runs what site.yml runs up to where it refuses (its check play's firewall input check,
    the health agent's, haproxy's and keepalived's for a case that sets their variables, then
    the whole pgbouncer role, whose own check is the check play's pgbouncer one) with the
    case's variables, and its rescue records the message.
    args go to ansible-playbook (--check). Returns ({case: message}, recap of NODE). A case that is not refused records
    "NOT REFUSED" and goes on to change the node, which the caller's checks then catch."""
    blocks = []
    for name, extra, _message in cases:
        record = "{{ bad_input_messages | combine({%s: %%s}) }}" % json.dumps(name)
        blocks.append({
            "name": "Case %s" % name,
            "vars": extra,
            "block": [
                {"name": "Check the firewall input", "ansible.builtin.include_role": {"name": "pgbouncer.cluster.firewall", "tasks_from": "validate.yml"},
                 "when": "firewall_enabled | bool"},
                # Only the roles the case sets a variable of: each check costs a few remote steps,
                # and the other cases' input is the lab's, which they pass.
                *({"name": "Check the %s input" % role, "ansible.builtin.include_role": {"name": "pgbouncer.cluster.%s" % role, "tasks_from": "validate.yml"}}
                  for role in ("pgbouncer_health", "haproxy", "keepalived") if any(key.startswith(role + "_") for key in extra)),
                {"name": "Run the pgbouncer role", "ansible.builtin.include_role": {"name": "pgbouncer.cluster.pgbouncer"}},
                {"name": "Record that nothing refused it", "ansible.builtin.set_fact": {"bad_input_messages": record % "'NOT REFUSED'"}},
            ],
            "rescue": [
                {"name": "Record the refusal", "ansible.builtin.set_fact": {
                    # A failed loop says "One or more items failed": the messages are its items'.
                    "bad_input_messages": record % "([ansible_failed_result.msg | default('')] + (ansible_failed_result.results | default([])"
                                                   " | selectattr('failed', 'defined') | selectattr('failed') | map(attribute='msg', default='')"
                                                   " | list)) | join('; ')"}},
            ],
        })
    output = tmp_path / "refusals.json"
    play = [{
        "name": "Bad inputs, as site.yml checks them",
        "hosts": NODE,
        "become": True,
        "gather_subset": ["min", "network"],
        "vars": {"bad_input_messages": {}},
        # As site.yml's firewall check play: the values the firewall role reads from the others.
        "tasks": [*({"name": "Load the %s role's settings" % role,
                     "ansible.builtin.import_role": {"name": "pgbouncer.cluster.%s" % role, "tasks_from": "defaults.yml"}}
                    for role in ("pgbouncer", "pgbouncer_health", "pgbouncer_exporter", "haproxy", "keepalived", "firewall")),
                  *blocks, {"name": "Hand the messages to the test", "delegate_to": "localhost", "become": False, "changed_when": False,
                            "check_mode": False,
                            "ansible.builtin.copy": {"content": "{{ bad_input_messages | to_json }}", "dest": str(output), "mode": "0600"}}],
    }]
    playbook = tmp_path / "bad_inputs.yml"
    playbook.write_text(json.dumps(play))
    result = ansible_playbook(playbook, *args)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return json.loads(output.read_text()), recap(result.stdout)[NODE]


def assert_refused(cases, tmp_path, *args):
    """Returns the messages, {case: message}."""
    before = state()
    messages, stats = refusals(cases, tmp_path, *args)
    wrong = {name: messages.get(name) for name, _extra, message in cases if message not in (messages.get(name) or "")}
    assert wrong == {}, "refused with another message, or not at all: %s" % wrong
    # Nothing changed on the node, over all the cases: no task reported a change, the config
    # files and the process are those of before.
    assert stats["changed"] == 0, stats
    assert state() == before
    return messages


def test_bad_inputs_are_refused_before_any_node_changes(tmp_path):
    """The cases site.yml's input checks refuse on the controller (the same Ansible and the same
    checks whatever the Debian release: the default scenario only). Cost on the lab: two
    ansible-playbook runs on one node with those cases, the real one and the dry run (--check),
    about a minute together; each case adds a few seconds (the health agent's, haproxy's and
    keepalived's checks, run for every case as site.yml's check play runs them, about 1 s of that)."""
    # One node is enough to show the refusal.
    cases = [case for case in BAD_INPUTS if case[0] not in VERSION_DEPENDENT | REFUSED_ON_THE_NODE]
    real = assert_refused(cases, tmp_path)
    # The dry run a careful user starts with refuses the same inputs with the same words.
    (tmp_path / "check").mkdir()
    assert assert_refused(cases, tmp_path / "check", "--check") == real


@pytest.mark.version_dependent
def test_bad_inputs_the_node_refuses_are_refused_before_any_node_changes(tmp_path):
    """The cases refused from what the node's PgBouncer and PostgreSQL say (REFUSED_ON_THE_NODE,
    and a key this PgBouncer version does not know), in both scenarios. Cost on the lab: two
    ansible-playbook runs on one node with four and three cases, about 15-20 s (estimated, not
    yet measured on the lab)."""
    # One node is enough to show the refusal (pool sizing: its own pools alone overrun it).
    on_the_node = [case for case in BAD_INPUTS if case[0] in REFUSED_ON_THE_NODE]
    real = assert_refused(on_the_node + [case for case in BAD_INPUTS if case[0] in VERSION_DEPENDENT], tmp_path)
    # The dry run refuses the node's cases with the same words (the unknown key: the real run only).
    (tmp_path / "check").mkdir()
    assert assert_refused(on_the_node, tmp_path / "check", "--check") == {name: real[name] for name, _extra, _message in on_the_node}


def test_site_yml_itself_refuses_bad_input_before_any_node_changes():
    """The batch above runs site.yml's checks; this proves site.yml runs them first, with the
    firewall input check of its first play (the pgbouncer role's own refusal through site.yml:
    test_a_config_pgbouncer_refuses_never_reaches_the_node)."""
    name, extra, message = next(case for case in BAD_INPUTS if case[0] == "port-range")
    before = state()
    result = ansible_playbook("playbooks/site.yml", "--limit", NODE, "-e", json.dumps(extra))
    assert result.returncode != 0
    assert message in result.stdout + result.stderr, (result.stdout + result.stderr)[-3000:]
    assert recap(result.stdout)[NODE]["changed"] == 0, recap(result.stdout)
    assert state() == before


def test_site_yml_refuses_a_missing_keepalived_vip_before_any_node_changes():
    """Issue 23, item 10: keepalived_vip missing failed in site.yml's last play, after PgBouncer,
    the agent, the firewall and HAProxy had changed; now its first check play refuses it. Cost:
    one site.yml run on one node that stops after the checks, about 20 s."""
    before = state()
    result = ansible_playbook("playbooks/site.yml", "--limit", NODE, "-e", json.dumps({"keepalived_vip": None}))
    assert result.returncode != 0
    assert "keepalived_vip is required" in result.stdout + result.stderr, (result.stdout + result.stderr)[-3000:]
    assert "PLAY [PgBouncer on the PostgreSQL nodes]" not in result.stdout
    assert recap(result.stdout)[NODE]["changed"] == 0, recap(result.stdout)
    assert state() == before


SOCKET_DIR = "/var/run/postgresql"
OVER_WHICH_TRANSPORT = r"""
import json, sys
import psycopg
with psycopg.connect(host=sys.argv[1], port=6432, dbname=sys.argv[2], user=sys.argv[3], password=sys.argv[4], sslmode="disable",
                     connect_timeout=10) as conn:
    # NULL when the server connection PgBouncer used came over the unix socket.
    print(json.dumps(conn.execute("SELECT inet_server_addr()::text").fetchone()[0]))
"""


def test_the_wildcard_entry_goes_over_the_unix_socket_when_pg_hba_accepts_it(restore_node):
    """The documented option the bench measured (docs/bench/findings.md): PgBouncer reaches its
    PostgreSQL over the socket; the lab's pg_hba has `local all all md5` after the postgres
    peer line, so the role's pg_hba check passes. About 35 s: a converge of one node, and
    restore_node's run of the pgbouncer role there."""
    converge("-e", "pgbouncer_database_wildcard_host=" + SOCKET_DIR)
    assert "host=%s" % SOCKET_DIR in ssh(IP, "grep -E '^\\* *=' /etc/pgbouncer/pgbouncer.ini").stdout
    # Under transaction pooling the earlier TCP server connections were closed by the reload's
    # new host; a new login gets one over the socket.
    assert app_python(OVER_WHICH_TRANSPORT, IP, APP_DB, APP_USER, APP_PASSWORD) is None


def test_a_socket_entry_pg_hba_would_refuse_is_refused_before_any_node_changes():
    """Debian's stock pg_hba (`local all all peer` first) would refuse PgBouncer's password
    logins over the socket: the role stops before pgbouncer.ini changes, naming the line.
    pg_hba_file_rules reads the file on disk, so PostgreSQL is not reloaded. About 15 s."""
    hba = ssh(IP, "runuser -u postgres -- psql -XAtc 'SHOW hba_file'").stdout.strip()
    before = state()
    ssh(IP, "cp -p %s /root/pg_hba.conf.test && sed -i '2i local all all peer' %s" % (hba, hba))
    try:
        result = ansible_playbook("playbooks/site.yml", "--limit", NODE, "-e", "pgbouncer_database_wildcard_host=" + SOCKET_DIR)
    finally:
        ssh(IP, "mv /root/pg_hba.conf.test %s" % hba)
    assert result.returncode != 0
    assert "line 2 (local all all peer) matches them first, with method peer" in result.stdout, result.stdout[-3000:]
    assert recap(result.stdout)[NODE]["changed"] == 0
    assert state() == before
