"""The small-frames bench (bench/bench_small_frames.py): valid angles, their RMSE and the
refusal reasons are counted per mode, and the pooled mIoU comes from the summed confusions."""

from __future__ import annotations

import math

import numpy as np

from bench.bench_small_frames import summarise


def _angle(valid: bool, error: float | None, reason: str) -> dict:
    return {"valid": valid, "reason": reason, "error_deg": error, "sigma_deg": 1.0}


def _frame(a_px: float, confusion: list[list[int]], with_frame: dict, alone: dict) -> dict:
    return {"a_px": a_px, "true_labels": _angle(True, 0.0, "ok"),
            "true_labels_with_frame": _angle(False, None, "angle_uncertain"),
            "working": {"miou": 100.0 * (np.trace(confusion) == np.sum(confusion)),
                        "confusion": confusion, "with_frame": with_frame,
                        "labels_alone": alone}}


def test_summary_counts_valid_angles_refusals_and_pools_the_confusions():
    perfect = [[5, 0, 0], [0, 5, 0], [0, 0, 5]]
    wrong = [[5, 0, 0], [0, 0, 5], [0, 5, 0]]  # wire and droplet swapped
    rows = [_frame(16.5, perfect, _angle(True, 3.0, "ok"), _angle(True, -4.0, "ok")),
            _frame(40.0, wrong, _angle(False, None, "interface_not_line"),
                   _angle(True, 0.0, "ok"))]
    s = summarise(rows, ["working"])
    assert s["frames"] == 2 and s["a_px_range"] == [16.5, 40.0]
    assert s["true_labels"]["valid"] == 2
    assert s["true_labels_with_frame"] == {"valid": 0, "of": 2, "rmse_deg": None,
                                           "refusals": {"angle_uncertain": 2}}
    mode = s["working"]
    assert mode["with_frame"] == {"valid": 1, "of": 2, "rmse_deg": 3.0,
                                  "refusals": {"interface_not_line": 1}}
    assert mode["labels_alone"]["rmse_deg"] == round(math.sqrt(8.0), 3)
    # Pooled: background 10/10; wire and droplet each 5 right of 15 -> IoU 1/3.
    assert mode["pooled_miou"] == round(100 * (1 + 1 / 3 + 1 / 3) / 3, 2)
    assert mode["mean_frame_miou"] == 50.0
