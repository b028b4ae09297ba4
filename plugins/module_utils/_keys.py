# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which [pgbouncer] settings each PgBouncer version knows. Pure data and one function.

BASE is what PgBouncer 1.18 reports in SHOW CONFIG (recorded from Debian 12's 1.18.0, plus
conffile-only keys it also reads). ADDED maps each later key to the release that added it;
where the release is uncertain it is the first release known to have it (conservative: a
key is never written for a version that might refuse it). tests/unit/plugins/module_utils/test_keys.py checks
these sets against SHOW CONFIG recorded from 1.18 and 1.24.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ini, _version

BASE = frozenset(
    """
    admin_users application_name_add_host auth_file auth_hba_file auth_query auth_type auth_user
    autodb_idle_timeout client_idle_timeout client_login_timeout client_tls_ca_file client_tls_cert_file
    client_tls_ciphers client_tls_dheparams client_tls_ecdhcurve client_tls_key_file client_tls_protocols
    client_tls_sslmode conffile default_pool_size disable_pqexec dns_max_ttl dns_nxdomain_ttl
    dns_zone_check_period idle_transaction_timeout ignore_startup_parameters job_name listen_addr
    listen_backlog listen_port log_connections log_disconnections log_pooler_errors log_stats logfile
    max_client_conn max_db_connections max_packet_size max_user_connections min_pool_size pidfile pkt_buf
    pool_mode query_timeout query_wait_timeout reserve_pool_size reserve_pool_timeout resolv_conf
    sbuf_loopcnt server_check_delay server_check_query server_connect_timeout server_fast_close
    server_idle_timeout server_lifetime server_login_retry server_reset_query server_reset_query_always
    server_round_robin server_tls_ca_file server_tls_cert_file server_tls_ciphers server_tls_key_file
    server_tls_protocols server_tls_sslmode so_reuseport stats_period stats_users suspend_timeout syslog
    syslog_facility syslog_ident tcp_defer_accept tcp_keepalive tcp_keepcnt tcp_keepidle tcp_keepintvl
    tcp_socket_buffer tcp_user_timeout unix_socket_dir unix_socket_group unix_socket_mode user verbose
    """.split()
)

ADDED = {
    "peer_id": (1, 19),
    "auth_dbname": (1, 20),
    "track_extra_parameters": (1, 20),
    "max_prepared_statements": (1, 21),
    "auth_ident_file": (1, 23),
    "cancel_wait_timeout": (1, 24),
    "max_db_client_connections": (1, 24),
    "max_user_client_connections": (1, 24),
}

NEWEST_KNOWN = (1, 24)


def parse_version(text):
    """(major, minor) of a version such as "1.18.0" or "PgBouncer 1.24.1"."""
    return _version.parse_version(text)[:2]


def known(key, version):
    """Whether PgBouncer `version` reads `key`. For releases newer than the tables, keys
    the tables do not list are allowed: the dry start of the candidate file still checks them."""
    release = parse_version(version)
    if key in BASE:
        return True
    if key in ADDED:
        return release >= ADDED[key]
    return release > NEWEST_KNOWN


def restart_only(version=None):
    """The [pgbouncer] keys whose change PgBouncer `version` applies only by a restart (see
    _ini.RESTART_ONLY and RESTART_FOR_AUTH); all of them for an unknown version (None)."""
    keys = _ini.RESTART_ONLY | _ini.RESTART_FOR_AUTH
    if version is None:
        return keys
    return frozenset(key for key in keys if known(key, version))


def changeable(rows):
    """{key: whether a RELOAD applies it} from SHOW CONFIG rows (dicts with `key` and
    `changeable`, "yes" or "no" in 1.18 and 1.24)."""
    return {
        str(row["key"]).lower(): str(row["changeable"]).strip().lower() in ("yes", "true", "t", "1")
        for row in rows
        if row.get("key") is not None and row.get("changeable") is not None
    }
