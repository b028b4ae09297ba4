# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters the pgbouncer role and the playbooks use to check variables and find the processes.

pgbouncer.ini itself is rendered, checked and written by the pgbouncer_config module.
"""

from __future__ import annotations

from ansible_collections.pgbouncer.cluster.plugins.module_utils import (
    _firewall,
    _hba,
    _ini,
    _known_issues,
    _processes,
    _ssh,
    _text,
    _validate,
    _version,
)


def ssh_ports(sshd_t, ss="", fallback=22):
    """{ports, source} of the SSH ports the firewall keeps open (see _ssh.ssh_ports)."""
    ports, source = _ssh.ssh_ports(sshd_t, ss, fallback)
    return {"ports": ports, "source": source}


def known_issues(settings, version, package_version="", accepted=None, databases=None, md5_users=None):
    """{issues, problems, accepted}: the known issues that affect this node (_known_issues.advise),
    a message for each one not accepted (and for an accepted id the table does not have), and a
    message for each one accepted."""
    found = _known_issues.advise(settings, version, package_version, accepted, databases, md5_users)
    unknown = [
        "pgbouncer_known_issues_accepted: %s is not a known issue of this collection (README, Known issues)" % name
        for name in _known_issues.unknown_ids(accepted)
    ]
    return {
        "issues": found,
        "problems": _known_issues.messages([issue for issue in found if not issue["accepted"]], version) + unknown,
        "accepted": _known_issues.messages([issue for issue in found if issue["accepted"]], version),
    }


class FilterModule:
    def filters(self):
        return {
            # The roles' one reading of a boolean, for templates and conditions in place of
            # Jinja's `bool`, which reads "y" and "t" as false and anything unknown as false.
            # A value that is none raises ValueError, which Ansible reports with its message.
            "pgbouncer_bool": _text.flag,
            "pgbouncer_input_problems": _validate.input_problems,
            "pgbouncer_listen_addresses": _ini.listen_addresses,
            "pgbouncer_redirect_databases": _ini.redirect_databases,
            "pgbouncer_config_problems": _validate.problems,
            "pgbouncer_version_problems": _validate.version_problems,
            "pgbouncer_version": _version.version_text,
            "pgbouncer_console_user_problems": _validate.console_user_problems,
            "pgbouncer_pool_sizing_problems": _validate.pool_sizing_problems,
            "pgbouncer_source_problems": _validate.source_problems,
            "pgbouncer_unaddressed_problems": _firewall.unaddressed_problems,
            "pgbouncer_ssh_ports": ssh_ports,
            "pgbouncer_processes": _processes.layout,
            "pgbouncer_retired_processes": _processes.retired,
            "pgbouncer_socket_hba_check": _hba.socket_check,
            "pgbouncer_known_issues": known_issues,
        }
