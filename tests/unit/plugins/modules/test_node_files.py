"""The node_files module on a temporary directory: writes, directories, removals, check mode,
diff, idempotence and the refusals that leave the node untouched.

Cost: under a second (each case runs the module's main() in-process).
"""

from __future__ import annotations

import getpass
import grp
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))

from ansible_collections.pgbouncer.cluster.plugins.modules import node_files  # noqa: E402

from conftest import module_result  # noqa: E402

USER = getpass.getuser()
GROUP = grp.getgrgid(os.getgid()).gr_name


def run_module(check_mode=False, diff=False, **args):
    """The module's JSON result for `args`; owner and group default to whoever runs the test."""
    for key in ("files", "directories"):
        args[key] = [dict({"owner": USER, "group": GROUP}, **entry) for entry in args.get(key, [])]
    return module_result(node_files.main, args, check_mode, diff)


def tree(base):
    """{relative path: (kind, mode, content)} of everything below `base`."""
    found = {}
    for path in sorted(base.rglob("*")):
        mode = oct(path.lstat().st_mode & 0o7777)
        if path.is_dir():
            found[str(path.relative_to(base))] = ("dir", mode, None)
        else:
            found[str(path.relative_to(base))] = ("file", mode, path.read_bytes())
    return found


def layout(base):
    return dict(
        directories=[{"path": str(base / "libexec"), "mode": "0750"}],
        files=[
            {"dest": str(base / "libexec" / "agent"), "content": "#!/bin/sh\necho ok\n", "mode": "0755"},
            {"dest": str(base / "unit" / "agent.service"), "content": "[Service]\nExecStart=/x\n"},
        ],
    )


def test_first_run_makes_everything_then_a_rerun_changes_nothing(tmp_path):
    first = run_module(**layout(tmp_path))
    assert first["changed"] is True
    assert first["files"] == [str(tmp_path / "libexec" / "agent"), str(tmp_path / "unit" / "agent.service")]
    # The listed directory with its mode, the unlisted parent of a file 0755.
    assert first["directories"] == [str(tmp_path / "libexec"), str(tmp_path / "unit")]
    assert tree(tmp_path) == {
        "libexec": ("dir", "0o750", None),
        "libexec/agent": ("file", "0o755", b"#!/bin/sh\necho ok\n"),
        "unit": ("dir", "0o755", None),
        "unit/agent.service": ("file", "0o644", b"[Service]\nExecStart=/x\n"),
    }
    second = run_module(**layout(tmp_path))
    assert {key: second[key] for key in ("changed", "files", "directories", "removed")} == {
        "changed": False, "files": [], "directories": [], "removed": []}
    assert "diff" not in second


def test_check_mode_reports_the_real_runs_changes_and_touches_nothing(tmp_path):
    predicted = run_module(check_mode=True, **layout(tmp_path))
    assert tree(tmp_path) == {}
    done = run_module(**layout(tmp_path))
    for key in ("changed", "files", "directories", "removed"):
        assert predicted[key] == done[key], key
    # A changed content and a changed mode: predicted alike, and still nothing touched.
    agent = tmp_path / "libexec" / "agent"
    agent.write_text("old\n")
    (tmp_path / "unit" / "agent.service").chmod(0o600)
    before = tree(tmp_path)
    predicted = run_module(check_mode=True, **layout(tmp_path))
    assert tree(tmp_path) == before
    assert predicted["files"] == [str(agent), str(tmp_path / "unit" / "agent.service")]
    assert run_module(**layout(tmp_path))["files"] == predicted["files"]
    assert run_module(check_mode=True, **layout(tmp_path))["changed"] is False


def test_diff_shows_content_of_a_changed_file_and_the_attributes_of_a_changed_mode(tmp_path):
    run_module(**layout(tmp_path))
    (tmp_path / "libexec" / "agent").write_text("#!/bin/sh\necho old\n")
    (tmp_path / "unit" / "agent.service").chmod(0o600)
    result = run_module(check_mode=True, diff=True, **layout(tmp_path))
    content, mode = result["diff"]
    assert content["before"] == "#!/bin/sh\necho old\n" and content["after"] == "#!/bin/sh\necho ok\n"
    assert content["before_header"] == content["after_header"] == str(tmp_path / "libexec" / "agent")
    assert mode["before"]["mode"] == "0600" and mode["after"]["mode"] == "0644"
    assert run_module(diff=True, **layout(tmp_path))["diff"] == result["diff"]  # the real run shows the same
    assert "diff" not in run_module(diff=True, **layout(tmp_path))  # converged: no diff at all


def test_a_new_file_diffs_from_nothing_and_a_new_directory_by_state(tmp_path):
    result = run_module(check_mode=True, diff=True, **layout(tmp_path))
    states = [entry for entry in result["diff"] if isinstance(entry["before"], dict)]
    assert {entry["before"]["path"] for entry in states} == {str(tmp_path / "libexec"), str(tmp_path / "unit")}
    assert all(entry["before"]["state"] == "absent" and entry["after"]["state"] == "directory" for entry in states)
    texts = [entry for entry in result["diff"] if not isinstance(entry["before"], dict)]
    assert [entry["before"] for entry in texts] == ["", ""]


def test_absent_removes_named_files_and_pattern_matches_only(tmp_path):
    (tmp_path / "old-checker").write_text("x")
    for name in ("pgbouncer.ini.2024-01-01@10:00:00~", "pgbouncer-2.ini.1234.2024@x~", "pgbouncer.ini", "pgbouncer.ini.previous"):
        (tmp_path / name).write_text("x")
    args = dict(absent=[str(tmp_path / "old-checker"), str(tmp_path / "pgbouncer*.ini.*@*~"), str(tmp_path / "never-there")])
    predicted = run_module(check_mode=True, diff=True, **args)
    assert predicted["removed"] == [str(tmp_path / "old-checker"), str(tmp_path / "pgbouncer-2.ini.1234.2024@x~"),
                                    str(tmp_path / "pgbouncer.ini.2024-01-01@10:00:00~")]
    assert predicted["diff"][0] == {"before": {"path": str(tmp_path / "old-checker"), "state": "file"},
                                    "after": {"path": str(tmp_path / "old-checker"), "state": "absent"}}
    assert len(list(tmp_path.iterdir())) == 5
    assert run_module(**args)["removed"] == predicted["removed"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pgbouncer.ini", "pgbouncer.ini.previous"]
    assert run_module(**args)["changed"] is False


def test_a_removed_link_goes_but_not_its_target(tmp_path):
    target = tmp_path / "target"
    target.write_text("keep")
    (tmp_path / "link").symlink_to(target)
    assert run_module(absent=[str(tmp_path / "link")])["removed"] == [str(tmp_path / "link")]
    assert target.read_text() == "keep" and not (tmp_path / "link").exists()


@pytest.mark.parametrize("args, message", [
    (lambda base: {"absent": [str(base / "adir")]}, "is a directory"),
    (lambda base: {"absent": [str(base / "a*")]}, "is a directory"),
    (lambda base: {"absent": ["relative/path"]}, "not an absolute path"),
    (lambda base: {"absent": [str(base / "*" / "x")]}, "only the last part may be a pattern"),
    (lambda base: {"files": [{"dest": str(base / "f"), "content": "x"}], "absent": [str(base / "f")]},
     "both in files and in absent"),
    (lambda base: {"files": [{"dest": str(base / "f"), "content": "x"}] * 2}, "more than once"),
    (lambda base: {"files": [{"dest": str(base / "f"), "content": "x", "mode": "u+rwx"}]}, "give an octal mode"),
    (lambda base: {"files": [{"dest": str(base / "f"), "content": "x", "owner": "no-such-user-here"}]},
     "user no-such-user-here does not exist"),
    (lambda base: {"files": [{"dest": str(base / "adir"), "content": "x"}]}, "is a directory"),
])
def test_refusals_say_what_to_fix_and_change_nothing(tmp_path, args, message):
    (tmp_path / "adir").mkdir()
    (tmp_path / "kept").write_text("x")
    before = tree(tmp_path)
    # A valid entry too: nothing of it may be written when another is refused.
    call = args(tmp_path)
    call.setdefault("directories", []).append({"path": str(tmp_path / "new-dir")})
    result = run_module(**call)
    assert result["failed"] and message in result["msg"], result["msg"]
    assert tree(tmp_path) == before


def test_an_unknown_owner_in_check_mode_is_a_change_with_a_warning(tmp_path):
    dest = tmp_path / "f"
    dest.write_text("x")
    result = run_module(check_mode=True, files=[{"dest": str(dest), "content": "x", "owner": "no-such-user-here"}])
    assert result["changed"] is True and result["files"] == [str(dest)]
    assert "no-such-user-here" in json.dumps(result["warnings"])


def test_the_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    dest = tmp_path / "conf"
    dest.write_text("old")
    os.link(dest, tmp_path / "hardlink")  # a replaced file is a new inode: the old one keeps its text
    run_module(files=[{"dest": str(dest), "content": "new\n", "mode": "0600"}])
    assert dest.read_text() == "new\n" and (tmp_path / "hardlink").read_text() == "old"
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["conf", "hardlink"]
