"""The fresh-node tests use the integration tests' lab helpers (tests/integration/conftest.py),
loaded under another name: both files are called conftest."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location("lab_helpers", Path(__file__).resolve().parents[1] / "integration" / "conftest.py")
lab = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(lab)

# The autouse fixture that fails every test unless the lab is up.
lab_is_up = lab.lab_is_up
