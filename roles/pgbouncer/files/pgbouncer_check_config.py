"""Check a candidate pgbouncer.ini by starting the real pgbouncer on it, away from the live one.

Usage: pgbouncer-check-config [--user postgres] [--timeout 3] FILE

The candidate is copied to a private directory with its listener moved to a free port on
127.0.0.1 and its socket, pid file and log moved there too, so the running PgBouncer is not
touched. PgBouncer refuses a config it cannot load (unknown key, bad value, bad [databases]
line, unreadable auth_file or TLS file) with FATAL and exits; a config it accepts keeps
running, and is then stopped. Exit status 0 means PgBouncer would start with FILE.
Installed by the pgbouncer.cluster pgbouncer role (as the validate step of pgbouncer.ini).
"""

import argparse
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time


# Settings moved out of the live instance's way; the rest of the file is checked as it is.
def overrides(directory, port):
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


def read_log(stream, lines, up, ended):
    """Collect PgBouncer's log lines; flag the line it writes once it is up, and its exit."""
    for line in stream:
        lines.append(line.rstrip("\n"))
        if "process up" in line:
            up.set()
    ended.set()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rewrite(text, settings):
    """The candidate with `settings` replacing their keys in [pgbouncer] (added if absent)."""
    out, section, done = [], None, set()
    for line in text.splitlines():
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--user", default="postgres", help="OS user PgBouncer runs as")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds PgBouncer may take to come up")
    parser.add_argument("--pgbouncer", default=shutil.which("pgbouncer") or "/usr/sbin/pgbouncer")
    parser.add_argument("file")
    args = parser.parse_args()

    entry = pwd.getpwnam(args.user)
    with open(args.file, encoding="utf-8") as handle:
        text = handle.read()
    directory = tempfile.mkdtemp(prefix="pgbouncer-check-")
    try:
        os.chown(directory, entry.pw_uid, entry.pw_gid)
        candidate = os.path.join(directory, "pgbouncer.ini")
        with open(candidate, "w", encoding="utf-8") as handle:
            handle.write(rewrite(text, overrides(directory, free_port())))
        os.chown(candidate, entry.pw_uid, entry.pw_gid)
        proc = subprocess.Popen([args.pgbouncer, candidate], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                **privileges(entry))
        lines, up, ended = [], threading.Event(), threading.Event()
        reader = threading.Thread(target=read_log, args=(proc.stdout, lines, up, ended), daemon=True)
        reader.start()
        for _attempt in range(int(args.timeout * 20)):
            if up.is_set() or ended.is_set():
                break
            time.sleep(0.05)
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=10)
        if up.is_set():
            return 0
        reader.join(timeout=5)
        problems = [line for line in lines if " ERROR " in line or " FATAL " in line] or lines[-5:]
        if not ended.is_set():
            problems.append("(not up within %s s)" % args.timeout)
        sys.stderr.write("pgbouncer would not start with %s:\n%s\n" % (args.file, "\n".join(map(masked, problems))))
        return 1
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
