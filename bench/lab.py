"""The bench's only ways to reach the lab: lab/lab.sh, ssh with the lab's ssh_config, and
ansible-playbook. Every call checks the lab route first and has a timeout."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "lab" / "lab.sh"
STATE = Path(os.environ.get("LAB_STATE", ROOT / ".lab"))
SSH_CONFIG = STATE / "ssh" / "config"
LAB_ENV = dict(os.environ, CONTAINERS_CONF=str(ROOT / "lab" / "containers.conf"))


class BenchError(RuntimeError):
    """A failure that must stop the bench with a clear message and a non-zero exit."""


def node_ip(name: str) -> str:
    """pg-srvN -> 10.129.0.(20+N); an address is returned as it is."""
    match = re.fullmatch(r"pg-srv(\d+)", name)
    if match:
        return "10.129.0.%d" % (20 + int(match.group(1)))
    if re.fullmatch(r"10\.129\.0\.\d+", name):
        return name
    raise BenchError("%r is neither pg-srvN nor a 10.129.0.x lab address" % name)


def run(argv: list[str], timeout: float, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run with text output and a timeout that becomes a BenchError."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=LAB_ENV, **kwargs)
    except subprocess.TimeoutExpired as exc:
        raise BenchError("timed out after %ds: %s" % (timeout, " ".join(argv)[:300])) from exc
    if check and proc.returncode != 0:
        raise BenchError("failed (%d): %s\n%s%s" % (proc.returncode, " ".join(argv)[:300], proc.stdout[-2000:], proc.stderr[-2000:]))
    return proc


def check(ip: str) -> None:
    """Refuse (BenchError) unless the lab network exists and routes `ip` through its bridge."""
    proc = run([str(LAB), "check", ip], timeout=30, check=False)
    if proc.returncode != 0:
        raise BenchError("lab is not up or %s is not a lab address (%s): run `make lab` first" % (ip, proc.stderr.strip()))


def ssh(ip: str, command: str, timeout: float, input: str | None = None, check_rc: bool = True) -> subprocess.CompletedProcess:
    """Run a shell command on a lab node, after checking the route to it."""
    check(ip)
    return run(["ssh", "-F", str(SSH_CONFIG), ip, command], timeout=timeout, check=check_rc, input=input)


def ssh_popen(ip: str, command: str) -> subprocess.Popen:
    """A running ssh command on a lab node (the caller bounds it), after checking the route."""
    check(ip)
    return subprocess.Popen(
        ["ssh", "-F", str(SSH_CONFIG), ip, command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=LAB_ENV,
    )


def lab_sh(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [str(LAB), *args], capture_output=True, text=True, timeout=timeout, check=False, env=LAB_ENV
    )
    if proc.returncode != 0:
        raise BenchError("lab/lab.sh %s failed (%d): %s%s" % (" ".join(args), proc.returncode, proc.stdout[-1500:], proc.stderr[-1500:]))
    return proc.stdout


def ansible_playbook(inventory: Path, playbook: str, timeout: float, extra: tuple[str, ...] = ()) -> tuple[float, int, str]:
    """(wall seconds, exit code, stdout+stderr) of one ansible-playbook run."""
    env = dict(LAB_ENV, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", LAB_ROOT=str(ROOT))
    start = time.monotonic()
    try:
        proc = subprocess.run(
            ["ansible-playbook", "-i", str(inventory), str(ROOT / playbook), *extra],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError("ansible-playbook %s timed out after %ds" % (playbook, timeout)) from exc
    return time.monotonic() - start, proc.returncode, proc.stdout + proc.stderr


def recap(output: str) -> dict[str, dict[str, int]]:
    """{host: {ok: n, changed: n, ...}} from the PLAY RECAP of ansible-playbook."""
    stats = {}
    for host, fields in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        stats[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", fields)}
    return stats
