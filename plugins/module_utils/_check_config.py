# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dry start: the real pgbouncer started on a candidate pgbouncer.ini, away from the
live one, to learn whether it would start with it.

The candidate is copied to a private directory with its listener moved to a free port on
127.0.0.1 and its socket, pid file and log moved there too, so the running PgBouncer is not
touched. Root writes only in a directory that the service's user cannot change (issue 23,
item 1: a symlink planted there made root chown or truncate a file of its choice).
PgBouncer refuses a config it cannot load (unknown key, bad value, bad [databases] line,
unreadable auth_file or TLS file) with FATAL and exits; a config it accepts keeps running,
and is then stopped. What the copy overrides (listen_addr, listen_port) is checked
by _listen.py instead.

Private to this collection: the API may change without notice.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time

from ansible_collections.pgbouncer.cluster.plugins.module_utils._text import lines


def overrides(directory, port):
    """Settings moved out of the live instance's way; the rest of the file is checked as it is."""
    return {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": directory,
        "pidfile": os.path.join(directory, "pgbouncer.pid"),
        "logfile": "",
        "syslog": "0",
        "so_reuseport": "0",
        "user": "",
    }


# PgBouncer logs a refused [databases] line whole ("invalid value ... for parameter"): the
# rest of a line after a password key is hidden, since this output reaches Ansible's.
SECRET = re.compile(r"(passw\w*\s*=).*", re.IGNORECASE)


def masked(line):
    return SECRET.sub(r"\1********", line)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rewrite(text, settings):
    """The candidate with `settings` replacing their keys in [pgbouncer] (added if absent)."""
    out, section, done = [], None, set()
    for line in lines(text):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if section == "pgbouncer":
                out.extend("%s = %s" % (k, v) for k, v in settings.items() if k not in done)
                done.update(settings)
            section = stripped[1:-1].strip().lower()
        elif section == "pgbouncer" and "=" in stripped and stripped[0] not in ";#":
            key = stripped.split("=", 1)[0].strip().lower()
            if key in settings:
                if key not in done:
                    out.append("%s = %s" % (key, settings[key]))
                    done.add(key)
                continue
        out.append(line)
    if section == "pgbouncer" or "pgbouncer" not in text.lower():
        out.extend("%s = %s" % (k, v) for k, v in settings.items() if k not in done)
    return "\n".join(out) + "\n"


def privileges(entry):
    """Popen's user, group and extra_groups to run as `entry` (a pwd entry), when root; {}
    otherwise. The supplementary groups are the user's own, as initgroups(3) sets them for the
    service: a TLS key readable through a group (ssl-cert) must be readable here too, or a
    config PgBouncer loads is refused."""
    if os.geteuid() != 0:
        return {}
    return dict(user=entry.pw_uid, group=entry.pw_gid, extra_groups=os.getgrouplist(entry.pw_name, entry.pw_gid))


def problems(lines, ended, timeout):
    """The lines that say why PgBouncer did not come up, secrets masked."""
    found = [line for line in lines if " ERROR " in line or " FATAL " in line] or lines[-5:]
    if not ended:
        found.append("(not up within %s s)" % timeout)
    return [masked(line) for line in found]


def _wait(proc, log_path, timeout):
    """(up, ended, output lines): whether PgBouncer logged "process up", and whether it
    exited by itself, before `timeout` seconds passed. Its output goes to a file, read as it
    grows: no thread needed."""
    deadline = time.monotonic() + timeout
    while True:
        ended = proc.poll() is not None
        # Read after the poll: what an exited process wrote is all there. By path: the file
        # is in root's directory (_private_dir), which the service cannot change.
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        if "process up" in text or ended or time.monotonic() >= deadline:
            return "process up" in text, ended, lines(text)
        time.sleep(0.05)


def _private_dir(entry):
    """(directory, run directory) for one dry start. The directory stays root's (0711: the
    service may pass, not list nor write), so nothing in it can be swapped for a symlink
    between root's creating a file and using it; only the run directory, where PgBouncer
    writes its socket and pid file, is the service's, and root never opens anything there
    (shutil.rmtree removes it without following symlinks)."""
    directory = tempfile.mkdtemp(prefix="pgbouncer-check-")
    os.chmod(directory, 0o711)
    run = os.path.join(directory, "run")
    os.mkdir(run, 0o700)
    if os.geteuid() == 0:
        os.chown(run, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    return directory, run


def _create(path, owner=None):
    """A new file opened for writing (mode 0600, never through a symlink nor over an existing
    file), handed to `owner` (a pwd entry) by descriptor when given."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    if owner is not None and os.geteuid() == 0:
        os.fchown(fd, owner.pw_uid, owner.pw_gid)
    return os.fdopen(fd, "w", encoding="utf-8")


def dry_start(binary, text, user, timeout=10.0):
    """None when pgbouncer `binary`, run as OS `user`, starts with config `text`; else the
    list of lines (secrets masked) that say why it does not."""
    entry = pwd.getpwnam(user)
    directory, run = _private_dir(entry)
    try:
        candidate = os.path.join(directory, "pgbouncer.ini")
        with _create(candidate, entry) as handle:
            handle.write(rewrite(text, overrides(run, free_port())))
        # Opened here, so PgBouncer writes it through the inherited descriptor whoever it runs as.
        log_path = os.path.join(directory, "output.log")
        with _create(log_path) as log:
            proc = subprocess.Popen([binary, candidate], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    **privileges(entry))
        try:
            up, ended, lines = _wait(proc, log_path, timeout)
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return None if up else problems(lines, ended, timeout)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
