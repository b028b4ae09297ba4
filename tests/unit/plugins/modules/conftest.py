"""What the module tests share: a module's main() run in-process, its JSON result read back."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest
from ansible.module_utils.testing import patch_module_args


def module_result(main, args, check_mode=False, diff=False):
    """main() of a module with `args` (and check or diff mode), which exits: the JSON it printed."""
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    out = io.StringIO()
    with patch_module_args(args), redirect_stdout(out), pytest.raises(SystemExit):
        main()
    return json.loads(out.getvalue())
