# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: what a playbook run changed, per host, and where its time went.

Enabled by the integration tests (tests/integration/conftest.py) with
ANSIBLE_CALLBACK_PLUGINS=tests/callback_plugins ANSIBLE_CALLBACKS_ENABLED=run_record and
RUN_RECORD=<file>: at the end of the run the file gets one JSON object,
  {"check_mode": bool, "changed": {host: [task, ...]}, "tasks": [[task, seconds], ...]}
where a task is "role : name" as the default output prints it (handlers included) and a
looped task counts as changed when any of its items changed.
"""

from __future__ import annotations

import json
import os
import time

from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: run_record
type: aggregate
short_description: Record the tasks a run changed per host, and each task's time
description:
  - Writes one JSON object to the file named by the RUN_RECORD environment variable.
  - Used by the collection's integration tests; not part of the collection's interface.
requirements:
  - enable in configuration (callbacks_enabled)
"""


def task_label(task):
    role = getattr(task, "_role", None)
    name = task.get_name().strip()
    if role is not None and not name.startswith(role.get_name() + " : "):
        return "%s : %s" % (role.get_name(), name)
    return name


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "run_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._changed = {}
        self._tasks = []
        self._started = None
        self._check_mode = False

    def v2_playbook_on_start(self, playbook):
        self._check_mode = bool(context.CLIARGS.get("check"))

    def _start(self, task):
        self._close()
        self._started = (task_label(task), time.monotonic())

    def _close(self):
        if self._started is not None:
            label, start = self._started
            self._tasks.append([label, round(time.monotonic() - start, 3)])
            self._started = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task)

    def v2_runner_on_ok(self, result):
        if result._result.get("changed"):
            self._changed.setdefault(result._host.get_name(), set()).add(task_label(result._task))

    def v2_runner_item_on_ok(self, result):
        self.v2_runner_on_ok(result)

    def v2_playbook_on_stats(self, stats):
        self._close()
        path = os.environ.get("RUN_RECORD")
        if not path:
            return
        record = {
            "check_mode": self._check_mode,
            "changed": {host: sorted(tasks) for host, tasks in sorted(self._changed.items())},
            "tasks": self._tasks,
        }
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
