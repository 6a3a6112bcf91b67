"""A worker's budget (server.workers.startup): an inference worker that may serve without torch does not import it
at start, yet the thread cap reaches torch when something imports it later; other workers set it at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CODE = textwrap.dedent(
    """
    import json, os, sys
    import django
    django.setup()
    from server.workers import startup
    defer = sys.argv[1] == "defer"
    first = startup.apply_budget(defer_torch=defer)
    imported_at_start = "torch" in sys.modules
    import torch
    out = {"first": first, "imported_at_start": imported_at_start, "torch_threads": torch.get_num_threads(),
           "later": startup.apply_torch_budget(), "omp": os.environ.get("OMP_NUM_THREADS")}
    print(json.dumps(out))
    """
)


def _run(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env |= {"DJANGO_SETTINGS_MODULE": "server.settings", "LVIT_TORCH_THREADS": "1", "ML_DEVICE": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", CODE, mode], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_deferred_budget_keeps_torch_out_and_still_caps_its_threads() -> None:
    got = _run("defer")
    assert got["first"] == {"threads": 1, "torch": "deferred"}
    assert got["imported_at_start"] is False
    assert got["omp"] == "1" and got["torch_threads"] == 1  # a later import honours the cap
    assert got["later"] == {"torch": True, "threads": 1}


def test_a_budget_applied_at_once_imports_torch_and_sets_threads() -> None:
    got = _run("now")
    assert got["first"] == {"torch": True, "threads": 1}
    assert got["imported_at_start"] is True and got["torch_threads"] == 1
