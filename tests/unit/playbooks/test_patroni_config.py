"""playbooks/tasks/patroni_config.yml: Patroni's configuration and REST URL are explicit (issue 29).

A common /etc/patroni/patroni.yml did not match the glob the task file used, and the PostgreSQL
restart then went through `systemctl restart postgresql` without a word. Now a node of group
patroni whose configuration is not found stops the run, naming patroni_config_file; only a node
outside group patroni without one is left to systemd. Proved on the controller: one
ansible-playbook run of the task file on a local inventory, one host per case, each with its
own directory of Patroni files under tmp_path. Cost: about 4 s (one ansible-playbook run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# (case, files in its directory {name: content}, host vars, in group patroni, expected:
#  ("ok", config file name, scope, name, url) or ("fail", words of the message)).
CASES = [
    ("debian-layout", {"15-main.yml": "scope: 15-main\nname: db1\n"}, {}, True, ("ok", "15-main.yml", "15-main", "db1", "http://127.0.0.1:8008")),
    ("patroni-yml-set", {"patroni.yml": "scope: pg\nname: db2\n"}, {"patroni_config_file": "{dir}/patroni.yml",
     "switchover_patroni_url": "https://db2.example.test:8009"}, True, ("ok", "patroni.yml", "pg", "db2", "https://db2.example.test:8009")),
    ("patroni-yml-not-set", {"patroni.yml": "scope: pg\nname: db3\n"}, {}, True,
     ("fail", "patroni_config_file: no file on patroni-yml-not-set matches", "Set patroni_config_file")),
    ("two-clusters", {"15-main.yml": "scope: a\nname: b\n", "16-main.yml": "scope: a\nname: b\n"}, {}, True,
     ("fail", "patroni_config_file: 2 files", "Set patroni_config_file")),
    ("no-member-name", {"15-main.yml": "scope: 15-main\n"}, {}, True, ("fail", "has no name", "patroni_config_file")),
    ("url-with-path", {"15-main.yml": "scope: s\nname: n\n"}, {"switchover_patroni_url": "http://127.0.0.1:8008/cluster"}, True,
     ("fail", "switchover_patroni_url must be", "without a path")),
    ("relative-path", {}, {"patroni_config_file": "patroni.yml"}, False, ("fail", "patroni_config_file must be the absolute path")),
    ("no-patroni-here", {}, {}, False, ("ok", "", "", "", "http://127.0.0.1:8008")),
]


def test_patroni_configuration_is_found_or_refused_by_name(tmp_path):
    hosts, patroni = {}, {}
    for case, files, host_vars, in_group, _expected in CASES:
        directory = tmp_path / case
        directory.mkdir()
        for name, content in files.items():
            (directory / name).write_text(content)
        # The default glob /etc/patroni/*-*.yml, moved into the case's directory.
        values = {"patroni_config_file": str(directory / "*-*.yml"), "ansible_host": "127.0.0.1"}
        values.update({key: value.replace("{dir}", str(directory)) for key, value in host_vars.items()})
        hosts[case] = values
        if in_group:
            patroni[case] = {}
    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}, "hosts": hosts},
                 "patroni": {"hosts": patroni}}
    (tmp_path / "hosts.json").write_text(json.dumps(inventory))
    playbook = [{"name": "Patroni's configuration", "hosts": "all", "gather_facts": False, "tasks": [
        {"name": "The task file", "ansible.builtin.include_tasks": str(ROOT / "playbooks" / "tasks" / "patroni_config.yml")},
        {"name": "Show", "ansible.builtin.debug": {"msg": "RESULT {{ {'config': __patroni_config, 'patroni': __patroni, "
                                                          "'url': switchover_patroni_url} | to_json }}"}},
    ]}]
    (tmp_path / "play.json").write_text(json.dumps(playbook))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
               PYTHONWARNINGS="ignore")
    result = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(tmp_path / "hosts.json"),
                             str(tmp_path / "play.json")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    output = result.stdout + result.stderr
    fatal = {line.split("]", 1)[0].removeprefix("fatal: ["): line for line in output.splitlines() if line.startswith("fatal: [")}
    shown, current = {}, None
    for line in output.splitlines():
        if '"msg": "RESULT ' in line:
            host = current
            shown[host] = json.loads(json.loads("{%s}" % line.strip())["msg"].removeprefix("RESULT "))
        elif line.startswith("ok: ["):
            current = line.split("]", 1)[0].removeprefix("ok: [")
    for case, _files, _vars, _group, expected in CASES:
        if expected[0] == "fail":
            assert case in fatal, "%s was not refused:\n%s" % (case, output[-3000:])
            for words in expected[1:]:
                assert words in fatal[case], (case, fatal[case])
        else:
            _kind, config, scope, name, url = expected
            assert case not in fatal, fatal.get(case)
            got = shown[case]
            assert (Path(got["config"]).name if got["config"] else "", got["patroni"]["scope"], got["patroni"]["name"], got["url"]) == (
                config, scope, name, url), got
