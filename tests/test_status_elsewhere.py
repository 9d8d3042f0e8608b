"""``nwwatch status --out RESULTS`` does not read a results folder's own ledger once the
results are kept by a ledger elsewhere: that one stopped counting when they moved."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from onnx_models import TOMOGRAM_GREY
from servicekit import model

from nwwatch.io import write_volume_tiff
from nwwatch.service import replay

ROOT = Path(__file__).resolve().parents[1]


def _nwwatch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "nwwatch", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_status_of_results_kept_by_a_ledger_elsewhere_names_that_ledger(tmp_path):
    # Was: after `nwwatch ledger rebuild RES --ledger OTHER` (or a service whose [state]
    # ledger moved), `status --out RES` read RES/ledger.sqlite, left behind, and showed its
    # counts (exit 0) without a word, however many files the other ledger processed since.
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    vol = np.full((6, 24, 24), TOMOGRAM_GREY[0], np.uint8)
    vol[1:5, 4:12, 6:20] = TOMOGRAM_GREY[1]
    write_volume_tiff(acq / "v.tif", vol)
    assert replay(acq, res, kind="tomogram", model=model(tmp_path / "m", kind="tomogram")).done
    assert _nwwatch("status", "--out", str(res)).returncode == 0
    other = tmp_path / "state" / "ledger.sqlite"
    other.parent.mkdir()
    rebuilt = _nwwatch("ledger", "rebuild", str(res), "--ledger", str(other))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (res / "ledger.sqlite").is_file() and other.is_file()
    for extra in ([], ["--json"]):
        shown = _nwwatch("status", "--out", str(res), *extra)
        assert shown.returncode == 1, shown.stdout
        said = " ".join(shown.stderr.split())
        assert f"its ledger is {other}" in said and f"not {res / 'ledger.sqlite'}" in said
        assert "files:" not in shown.stdout and shown.stdout == ""
