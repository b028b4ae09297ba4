"""The keepalived role's configuration test (roles/keepalived/files/keepalived-validate.sh), run
with bash against a stand-in keepalived (issue 23, item 7).

It used to test a copy of keepalived.conf without the vrrp_script and track_script blocks, on
every keepalived, because Debian 12's keepalived 2.2.7 ends `keepalived -t` with SIGTERM (exit
143) whenever a vrrp_script is there, errors or not (keepalived issue 2587, fixed in 2.2.8). It
now tests the file itself, and falls back to the copy only on that exit, failing on any message
2.2.7 prints about a line of the blocks left out. The stand-in behaves as 2.2.7 and as a fixed
keepalived do; the script was also run by hand against Debian 12's keepalived 2.2.7 binary with
the same four files (good, a bad priority, a bad interval in the vrrp_script, an unknown
track_script): 0, 5, 1 and 1. About 0.3 s in all (a few runs of bash).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[4] / "roles" / "keepalived" / "files" / "keepalived-validate.sh"

# keepalived -t -f FILE: each line with "banana" is an invalid number. "fixed" exits 1 on one;
# "2.2.7" with a vrrp_script prints the same, then is terminated (143).
FAKE = """#!/bin/bash
echo "$3" >> "$(dirname "$0")/calls"
grep -n banana "$3" | while IFS=: read -r n _rest; do echo "($3: Line $n) invalid number 'banana'"; done
if [ "$FAKE_KEEPALIVED" = 2.2.7 ] && grep -q '^vrrp_script ' "$3"; then echo Terminated; exit 143; fi
! grep -q banana "$3" || exit 1
"""

CONF = """global_defs {
    enable_script_security
    script_user keepalived_script
}

vrrp_script pgbouncer_cluster_check {
    script "/usr/local/libexec/pgbouncer-cluster/keepalived-check --timeout 2"
    interval INTERVAL
}

vrrp_instance VI_1 {
    state BACKUP
    priority PRIORITY
    track_script {
        TRACKED
    }
}
"""


def run(tmp_path, version, interval="2", priority="100", tracked="pgbouncer_cluster_check"):
    binary = tmp_path / "bin" / "keepalived"
    binary.parent.mkdir(exist_ok=True)
    binary.write_text(FAKE)
    binary.chmod(0o755)
    conf = tmp_path / "keepalived.conf"
    conf.write_text(CONF.replace("INTERVAL", interval).replace("PRIORITY", priority).replace("TRACKED", tracked))
    env = {"PATH": "%s:/usr/bin:/bin" % binary.parent, "FAKE_KEEPALIVED": version}
    done = subprocess.run(["bash", str(SCRIPT), str(conf)], capture_output=True, text=True, timeout=20, env=env, check=False)
    calls = (tmp_path / "bin" / "calls").read_text().split()
    return done.returncode, calls, done.stderr, str(conf)


def test_a_fixed_keepalived_tests_the_file_itself(tmp_path):
    code, calls, _err, conf = run(tmp_path, "fixed")
    assert code == 0 and calls == [conf]


@pytest.mark.parametrize("version", ["fixed", "2.2.7"])
def test_a_bad_value_in_the_vrrp_script_block_fails(tmp_path, version):
    """The old test never saw these lines: it left the block out."""
    code, _calls, err, _conf = run(tmp_path, version, interval="banana")
    assert code == 1 and "Line 8) invalid number 'banana'" in err


def test_a_bad_track_script_line_fails_on_2_2_7(tmp_path):
    code, _calls, err, _conf = run(tmp_path, "2.2.7", tracked="banana")
    assert code == 1 and "line 15 of the check's blocks" in err


def test_2_2_7_falls_back_to_the_copy_for_the_rest(tmp_path):
    code, calls, _err, conf = run(tmp_path, "2.2.7")
    assert code == 0 and calls[0] == conf and len(calls) == 2 and calls[1] != conf
    code, _calls, err, _conf = run(tmp_path, "2.2.7", priority="banana")
    assert code == 1 and "invalid number 'banana'" in err
