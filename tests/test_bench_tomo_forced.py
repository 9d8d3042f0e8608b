"""bench/bench_tomo_forced.py: the forced-method check that was tried and not kept
(docs/tomography.md); its decision on recorded held-out scores."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("torch")
from bench.bench_tomo_forced import MARGIN, check_default, threshold_check  # noqa: E402


def test_the_check_fires_beyond_the_margin_only():
    scores = {"threshold": 0.9, "unet": 0.9 - MARGIN + 0.001}
    assert not threshold_check("unet", scores, {})
    scores["unet"] = 0.9 - MARGIN - 0.001
    assert threshold_check("unet", scores, {})
    # folds stopped early: the bound is compared
    assert threshold_check("unet", {"threshold": 0.9, "unet": math.nan}, {"unet": 0.8})
    assert not threshold_check("unet", {"unet": 0.5}, {})  # no threshold scored
    assert not threshold_check("threshold", {"threshold": 0.9}, {})


def test_check_default_reads_the_kept_method_of_auto_records(tmp_path):
    records = [
        {"method": "auto", "family": "f", "seed": 0, "rate": 0.25, "chosen": "features",
         "grouping": "patches", "cv_scores": {"threshold": 0.95, "features": 0.91}},
        {"method": "auto", "family": "f", "seed": 1, "rate": 0.25, "chosen": "unet",
         "grouping": "patches", "cv_scores": {"threshold": 0.95, "unet": None},
         "cv_stopped": {"unet": 0.8}},
        {"method": "otsu", "seed": 0, "rate": None},
    ]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"records": records}))
    assert [r["flagged"] for r in check_default([path])] == [False, True]
