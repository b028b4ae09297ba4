"""The bench's `drivers` phase (BENCH_PHASES=drivers make bench): the long driver lane on the lab.

From the app node, every driver for BENCH_DRIVERS_SECONDS: direct to the primary's PostgreSQL
(reads from a replica's), then through VIP:5000 / VIP:5001 with the role's defaults, then with
the per-driver settings; last, all drivers at once with the settings for
BENCH_DRIVERS_SWITCHOVER_SECONDS with playbooks/switchover.yml run a third of the way in (one
run per driver with a switchover in the middle). Installs the lane first (playbooks/lab/drivers.yml).
Time with the defaults (20 s, 60 s): 3 x 8 x (20 + 2) s + 60 s + the switchover settling, about
10 minutes. The result lines go to the bench's results.json ("drivers") and, when the bench
publishes, to docs/drivers/results.json (then scripts/gen-docs rewrites docs/drivers.md).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time

from bench.drivers import common, report
from bench.lab import ROOT, BenchError, ansible_playbook, check, node_ip, ssh, ssh_popen

LANE = "/opt/pgbouncer-drivers"
USER, PASSWORD, DB = "app_user", "app-pass-1", "appdb"  # inventories/lab/group_vars/all.yml
VIP, RW_PORT, RO_PORT = "10.129.0.20", 5000, 5001


def dsn(host, port):
    return "postgresql://%s:%s@%s:%d/%s" % (USER, PASSWORD, host, port, DB)


def lane_command(args, seconds, drivers_count):
    limit = int(drivers_count * (seconds + 130))
    return "cd %s && timeout %d venv/bin/python -m bench.drivers.run %s" % (LANE, limit, " ".join(map(shlex.quote, args))), limit


def run(bench, switchover) -> dict:
    """bench: the running Bench (its app node, log, settings); switchover: its Switchover helper."""
    seconds = int(os.environ.get("BENCH_DRIVERS_SECONDS", "20"))
    switchover_s = int(os.environ.get("BENCH_DRIVERS_SWITCHOVER_SECONDS", "60"))
    took, returncode, output = ansible_playbook(ROOT / "inventories" / "lab", "playbooks/lab/drivers.yml", bench.s.ansible_timeout)
    if returncode != 0:
        raise BenchError("playbooks/lab/drivers.yml failed (%d): %s" % (returncode, output[-2000:]))
    bench.log("driver lane installed on the app node in %.0f s" % took)
    version = ssh(bench.ip, "pgbouncer --version", timeout=30).stdout.split()[1]
    line = ".".join(version.split(".")[:2])
    primary = switchover.settle()
    replica = next(name for name in switchover.ips if name != primary)
    lines = []
    runs = (
        ("direct", dsn(node_ip(primary), 5432), dsn(node_ip(replica), 5432), []),
        ("pooled-%s-defaults" % line, dsn(VIP, RW_PORT), dsn(VIP, RO_PORT), ["--pooler-version", version]),
        ("pooled-%s-settings" % line, dsn(VIP, RW_PORT), dsn(VIP, RO_PORT), ["--pooler-version", version, "--settings"]),
    )
    for target, rw, ro, extra in runs:
        for ip in (VIP, node_ip(primary), node_ip(replica)):
            check(ip)
        command, limit = lane_command(["--dsn", rw, "--read-dsn", ro, "--seconds", str(seconds), "--drivers", "all", "--target", target, *extra],
                                      seconds, len(common.DRIVERS))
        proc = bench.app(command, timeout=limit + 30, check_rc=False)
        got = [json.loads(text) for text in proc.stdout.splitlines() if text.startswith("{")]
        if len(got) != len(common.DRIVERS):
            raise BenchError("driver lane %s printed %d results (exit %d): %s" % (target, len(got), proc.returncode, proc.stderr[-2000:]))
        bench.log("drivers %s: %s" % (target, ", ".join("%s %d tx%s" % (r["driver"], r["transactions"], " CRASHED" if r.get("crashed") else "")
                                                        for r in got)))
        lines += got
    # All drivers at once, with a switchover through the collection's playbook a third of the way in.
    old = switchover.settle()
    target = "pooled-%s-switchover" % line
    command, limit = lane_command(["--dsn", dsn(VIP, RW_PORT), "--read-dsn", dsn(VIP, RO_PORT), "--seconds", str(switchover_s), "--drivers", "all",
                                   "--target", target, "--parallel", "--settings", "--pooler-version", version], switchover_s, 1)
    check(VIP)
    lane = ssh_popen(bench.s.app, command)
    try:
        time.sleep(switchover_s / 3)
        moved_in, _output = switchover.playbook(old)
        stdout, stderr = lane.communicate(timeout=limit + 60)
    except subprocess.TimeoutExpired as exc:
        lane.kill()
        raise BenchError("the driver lane across the switchover did not end within %d s" % (limit + 60)) from exc
    finally:
        if lane.poll() is None:
            lane.kill()
    got = [json.loads(text) for text in stdout.splitlines() if text.startswith("{")]
    if len(got) != len(common.DRIVERS):
        raise BenchError("driver lane across the switchover printed %d results: %s" % (len(got), stderr[-2000:]))
    new = switchover.settle()
    bench.log("drivers across switchover.yml %s -> %s (%.0f s): %s" % (old, new, moved_in, ", ".join(
        "%s %d tx %d errors %d reconnects" % (r["driver"], r["transactions"], sum(r["errors"].values()), r.get("reconnects", 0)) for r in got)))
    lines += got
    meta = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "where": "the podman lab (make bench), app node to VIP:5000/5001",
            "seconds": seconds, "clients": 4, "postgresql": ssh(node_ip(primary), "psql --version", timeout=30).stdout.split()[-1],
            "poolers": "PgBouncer %s, the role's defaults (lab inventory); %s: switchover.yml %s -> %s after %d s of %d" % (
                version, target, old, new, switchover_s // 3, switchover_s)}
    return report.document([json.dumps(r) for r in lines], meta)


def publish(document) -> None:
    """docs/drivers/results.json from this run (the other PgBouncer versions' results of the
    last file kept: a lab runs one version), and docs/drivers.md regenerated from it."""
    path = ROOT / "docs" / "drivers" / "results.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps(report.merged(document, old), indent=1, sort_keys=True) + "\n")
    subprocess.run([str(ROOT / "scripts" / "gen-docs")], cwd=ROOT, check=True, timeout=120)
