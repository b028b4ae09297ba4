"""PgBouncer listens on 127.0.0.1 too by default (issue 15): `psql -h localhost -p 6432` and
`psql -h 127.0.0.1 -p 6432 -U pgbouncer pgbouncer` work on the node. The filter that builds
listen_addr, and the lab's pgbouncer.ini as scripts/render-lab-ini renders it with the role's
own defaults and vars and the pgbouncer_config module's renderer (about 8 s, controller only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.filter.pgbouncer import FilterModule  # noqa: E402
from ansible_collections.pgbouncer.cluster.plugins.module_utils import _ini  # noqa: E402


@pytest.mark.parametrize(("listen_addr", "localhost", "wanted"), [
    ("10.129.0.21", True, "10.129.0.21,127.0.0.1"),
    ("10.129.0.21", False, "10.129.0.21"),
    ("10.129.0.21, 10.0.0.5", True, "10.129.0.21,10.0.0.5,127.0.0.1"),
    ("127.0.0.1", True, "127.0.0.1"),
    ("10.129.0.21,127.0.0.1", True, "10.129.0.21,127.0.0.1"),
    ("10.129.0.21,localhost", True, "10.129.0.21,localhost"),
    # A wildcard already takes 127.0.0.1; binding it next to one fails (address in use).
    ("*", True, "*"),
    ("0.0.0.0", True, "0.0.0.0"),
    ("::", True, "::"),
    ("pg-srv1.example", True, "pg-srv1.example,127.0.0.1"),
])
def test_listen_addresses(listen_addr, localhost, wanted):
    assert _ini.listen_addresses(listen_addr, localhost) == wanted
    assert FilterModule().filters()["pgbouncer_listen_addresses"](listen_addr, localhost) == wanted


def test_the_default_is_on_and_the_role_renders_it_through_the_filter():
    defaults = yaml.safe_load((ROOT / "roles" / "pgbouncer" / "defaults" / "main.yml").read_text())
    assert defaults["pgbouncer_listen_localhost"] is True
    settings = yaml.safe_load((ROOT / "roles" / "pgbouncer" / "vars" / "main.yml").read_text())["__pgbouncer_settings_base"]
    assert settings["listen_addr"] == ("{{ pgbouncer_listen_addr | pgbouncer.cluster.pgbouncer_listen_addresses("
                                       "pgbouncer_listen_localhost | pgbouncer.cluster.pgbouncer_bool) }}")


def test_the_lab_pgbouncer_ini_listens_on_the_node_and_on_127_0_0_1(tmp_path):
    subprocess.run([str(ROOT / "scripts" / "render-lab-ini"), str(tmp_path)], check=True, capture_output=True, timeout=300)
    lines = {path.relative_to(tmp_path).as_posix(): [line for line in path.read_text().splitlines() if line.startswith("listen_addr")]
             for path in sorted(tmp_path.glob("*/*.ini"))}
    assert lines["debian12/pg-srv1-pgbouncer.ini"] == ["listen_addr = 10.129.0.21,127.0.0.1"]
    assert lines["debian13-two-processes/pg-srv2-pgbouncer-2.ini"] == ["listen_addr = 10.129.0.22,127.0.0.1"]
    assert all(value and value[0].endswith(",127.0.0.1") for value in lines.values()), lines
