"""Which per-frame confidence ranks the frames the labelling queue should offer first?

Every frame of each set (``nwwatch synth insitu`` layout: ``labels/``, ``truth.parquet``) is
segmented once through :class:`nwwatch.segment.session.Segmenter` (one thread, the model's
working scale and whole-droplet pass, as the service runs it) and measured as the service
measures it (model labels, droplet probability, raw frame). The softmax, labels, true labels
and the measurement row are cached under ``--work`` (``<set>.npz``, ``<set>.json``), so a
second run only scores (the cache is not keyed on the model or the runtime: use a fresh
``--work`` for another one).

Each candidate confidence in :data:`CANDIDATES` is computed from the cached softmax, labels
and measurement row, and ranked against two per-frame targets (Spearman):

- ``miou``: per-frame mIoU of the model's labels against the true labels (%, higher = better);
- ``angle``: minus the measurement's error, ``-|contact_angle_deg - theta_apparent_deg|`` on
  frames with a valid angle, and below every valid frame (tied) where the measurement gave
  none (a frame without an angle is the least trustworthy measurement).

``runtime`` is the confidence the runtime gave before measurement 2.2.3 (mean boundary-band
margin, halved without a valid angle), ``soft_miou_x_valid`` the one it gives since
(:func:`nwwatch.segment.confidence.frame_confidence`: the expected mIoU, halved likewise);
the rest are the other candidates looked at. ``capture16`` is the share of the achievable
mIoU deficit the 16 least confident frames (the queue's length) hold. ``--judge VIDEO
OTHER...`` applies bench/results/queue_confidence_rule.txt (written before the held-out
sets were scored) to those sets.

Usage (design sets, then the held-out ones; about 4 minutes on one core the first time)::

    python -m bench.bench_queue_confidence nwwatch/models/insitu-default.onnx \\
        eval_new=EVAL_NEW video_311=V311 ... demo_seed1=DEMO1 --work WORK \\
        --json bench/results/queue_confidence_design.json
    python -m bench.bench_queue_confidence nwwatch/models/insitu-default.onnx \\
        video_new=VIDEO_NEW seed304=SEED304 eval_a=EVAL_A demo_seed0=DEMO0 --work WORK \\
        --judge video_new seed304 eval_a demo_seed0 \\
        --json bench/results/queue_confidence_heldout.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from nwwatch.classes import DROPLET
from nwwatch.io.dataset import pair_folder, read_pair
from nwwatch.measure import measure_contact_angle
from nwwatch.normalize import normalize_image
from nwwatch.segment.confidence import (
    BAND_PX,
    _band_indices,
    _top_two_margin,
    band_margin,
    expected_iou,
    frame_confidence,
)
from nwwatch.segment.metrics import confusion_matrix, metrics_from_confusion


def cache_set(segmenter, folder: Path, work: Path, name: str) -> dict[str, Any]:
    """Softmax (float16 (N, C, H, W)), labels, true labels (uint8 (N, H, W)), measurement rows
    and true apparent angles of ``folder``; segmented and measured once, then read back."""
    import pyarrow.parquet as pq

    arrays, rows_path = work / f"{name}.npz", work / f"{name}.json"
    if arrays.is_file() and rows_path.is_file():
        with np.load(arrays) as data:
            out = dict(data)
        out.update(json.loads(rows_path.read_text()))
        return out
    truth = {Path(r["file"]).stem: r for r in pq.read_table(folder / "truth.parquet").to_pylist()}
    probs, labels, true_labels, rows, angles, stems = [], [], [], [], [], []
    for stem, image_path, label_path in pair_folder(folder):
        raw, true = read_pair(image_path, label_path, 3)
        seg = segmenter.segment(normalize_image(raw))
        t = truth[stem]
        ps = float(t.get("pixel_size_nm") or float("nan"))
        result = measure_contact_angle(seg.labels[0], seg.probabilities[0, DROPLET],
                                       ps if math.isfinite(ps) and ps > 0 else None,
                                       image=np.asarray(raw, dtype=np.float32))
        row = {k: v for k, v in result.as_row().items()
               if isinstance(v, (int, float, str, bool)) or v is None}
        probs.append(seg.probabilities[0].astype(np.float16))
        labels.append(seg.labels[0])
        true_labels.append(np.where(true == 255, 0, true).astype(np.uint8))
        rows.append(row)
        angles.append(float(t.get("theta_apparent_deg") or t["theta_deg"]))
        stems.append(stem)
    work.mkdir(parents=True, exist_ok=True)
    np.savez(arrays, probs=np.asarray(probs), labels=np.asarray(labels),
             true_labels=np.asarray(true_labels))
    rows_path.write_text(json.dumps({"rows": rows, "angles": angles, "stems": stems}))
    return cache_set(segmenter, folder, work, name)


# --- candidate confidences: f(probs float32 (C, H, W), labels (H, W), row) -> float ---------

def _margins(probs: np.ndarray, labels: np.ndarray, band_px: int = BAND_PX) -> np.ndarray:
    flat = probs.reshape(probs.shape[0], -1)
    band = _band_indices(labels, band_px)
    return _top_two_margin(np.take(flat, band, axis=1) if band.size else flat)


def runtime(probs, labels, row) -> float:
    """The confidence the runtime gave before measurement 2.2.3 (the rule's baseline)."""
    return band_margin(probs, labels) * _valid(row)


def band_mean(probs, labels, row) -> float:
    return band_margin(probs, labels)


def _valid(row) -> float:
    return 1.0 if row["angle_valid"] else 0.5


def _sigma_trust(row, scale_deg: float = 2.0) -> float:
    """1 / (1 + sigma / scale) for a valid angle; 0.5 / (1 + sigma / scale) refused with a
    sigma; 0.25 without any angle."""
    sigma = row.get("contact_angle_uncertainty_deg")
    if sigma is None or not math.isfinite(sigma):
        return 0.25
    return (1.0 if row["angle_valid"] else 0.5) / (1.0 + sigma / scale_deg)


def soft_miou(probs, labels, row) -> float:
    return float(np.nanmean(expected_iou(probs, labels)))


def soft_miou_fg(probs, labels, row) -> float:
    iou = expected_iou(probs, labels)[1:]
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0


def soft_min_fg(probs, labels, row) -> float:
    iou = expected_iou(probs, labels)[1:]
    return float(np.nanmin(iou)) if np.isfinite(iou).any() else 0.0


CANDIDATES: dict[str, Callable[[np.ndarray, np.ndarray, dict], float]] = {
    "runtime": runtime,            # before 2.2.3: mean band margin x (0.5 if no valid angle)
    "band_mean": band_mean,        # mean band margin, angle taken as valid
    "soft_miou": soft_miou,        # expected mIoU from the softmax
    # The candidate: the expected mIoU x 0.5 without a valid angle, the runtime's
    # frame_confidence since measurement 2.2.3.
    "soft_miou_x_valid": lambda p, lab, r: frame_confidence(p, lab, bool(r["angle_valid"])),
    "soft_miou_fg_x_valid": lambda p, lab, r: soft_miou_fg(p, lab, r) * _valid(r),
    "soft_min_fg_x_valid": lambda p, lab, r: soft_min_fg(p, lab, r) * _valid(r),
    "sigma_trust": lambda p, lab, r: _sigma_trust(r),
    "band_x_sigma": lambda p, lab, r: band_mean(p, lab, r) * _sigma_trust(r),
    "soft_miou_x_sigma": lambda p, lab, r: soft_miou(p, lab, r) * _sigma_trust(r),
}
#: The one candidate the rule (bench/results/queue_confidence_rule.txt) may ship, and its
#: baseline.
CANDIDATE, BASELINE = "soft_miou_x_valid", "runtime"
#: The labelling queue's length (nwwatch.results.label_queue keeps 16 frames).
QUEUE = 16


def frame_miou(true: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * metrics_from_confusion(confusion_matrix(true, labels, 3)).mean_iou


def targets(data: dict[str, Any]) -> dict[str, np.ndarray]:
    miou = np.array([frame_miou(t, p) for t, p in zip(data["true_labels"], data["labels"],
                                                       strict=True)])
    errors = []
    for row, truth in zip(data["rows"], data["angles"], strict=True):
        if row["angle_valid"]:
            errors.append(-abs(row["contact_angle_deg"] - truth))
        else:
            errors.append(-1e3)
    return {"miou": miou, "angle": np.array(errors)}


def features(data: dict[str, Any]) -> list[dict[str, float]]:
    """Per-frame diagnostics: what the targets and the confidence follow."""
    out = []
    for probs, labels, row in zip(data["probs"], data["labels"], data["rows"], strict=True):
        p = probs.astype(np.float32)
        m = _margins(p, labels)
        out.append({"band_px_count": int(m.size), "band_mean": float(m.mean()),
                    "droplet_px": int((labels == 2).sum()), "wire_px": int((labels == 1).sum()),
                    "angle_valid": bool(row["angle_valid"]),
                    "sigma_deg": row.get("contact_angle_uncertainty_deg"),
                    "reason_code": row["reason_code"], "facet_edge": row.get("facet_edge")})
    return out


def _rho(values: np.ndarray, target: np.ndarray) -> float | None:
    """Spearman rank correlation; None where either side is constant."""
    if np.ptp(values) == 0 or np.ptp(target) == 0:
        return None
    return round(float(spearmanr(values, target)[0]), 3)


def capture(values: np.ndarray, miou: np.ndarray, k: int = QUEUE) -> float:
    """Share of the achievable mIoU deficit the ``k`` least confident frames hold: (mean of
    all - mean of the queue) / (mean of all - mean of the k worst); 1 = the k worst frames,
    0 = as good as a random pick, below 0 = better frames than a random pick."""
    queue = np.argsort(values, kind="stable")[:k]
    worst = np.sort(miou)[:k]
    return float((miou.mean() - miou[queue].mean()) / max(miou.mean() - worst.mean(), 1e-9))


def judge(sets: dict[str, Any], video: str, others: list[str]) -> dict[str, Any]:
    """The rule of bench/results/queue_confidence_rule.txt on the held-out ``sets``."""
    def get(name: str, who: str, key: str) -> float | None:
        return sets[name]["candidates"][who][key]

    checks: dict[str, bool] = {}
    cand_v, base_v = get(video, CANDIDATE, "spearman_miou"), get(video, BASELINE, "spearman_miou")
    checks[f"1 {video}: rho_miou >= 0 and >= runtime + 0.10"] = (
        cand_v >= 0 and cand_v >= base_v + 0.10)
    for name in others:
        checks[f"2 {name}: rho_miou >= runtime - 0.02"] = (
            get(name, CANDIDATE, "spearman_miou") >= get(name, BASELINE, "spearman_miou") - 0.02)
    for name in [video, *others]:
        c, b = get(name, CANDIDATE, "spearman_angle"), get(name, BASELINE, "spearman_angle")
        if c is not None and b is not None and sets[name]["valid"] >= 2:
            checks[f"3 {name}: rho_angle >= runtime - 0.02"] = c >= b - 0.02
    mean = {who: float(np.mean([get(n, who, "capture16") for n in [video, *others]]))
            for who in (CANDIDATE, BASELINE)}
    checks["4 mean capture16 >= runtime"] = mean[CANDIDATE] >= mean[BASELINE]
    return {"checks": checks, "mean_capture16": mean, "passes": all(checks.values())}


def score(data: dict[str, Any], candidates: dict[str, Callable]) -> dict[str, Any]:
    tg = targets(data)
    values = {name: [] for name in candidates}
    for probs, labels, row in zip(data["probs"], data["labels"], data["rows"], strict=True):
        p = probs.astype(np.float32)
        for name, fn in candidates.items():
            values[name].append(float(fn(p, labels, row)))
    report: dict[str, Any] = {"frames": len(data["stems"]),
                              "valid": int(sum(r["angle_valid"] for r in data["rows"])),
                              "miou_mean": round(float(tg["miou"].mean()), 2), "candidates": {}}
    for name, vals in values.items():
        v = np.array(vals)
        report["candidates"][name] = {
            **{f"spearman_{t}": _rho(v, tg[t]) for t in tg},
            "capture16": round(capture(v, tg["miou"]), 3)}
    report["values"] = {name: [round(x, 4) for x in vals] for name, vals in values.items()}
    report["miou"] = [round(float(x), 2) for x in tg["miou"]]
    report["angle_target"] = [round(float(x), 3) for x in tg["angle"]]
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("sets", nargs="+", help="NAME=FOLDER")
    parser.add_argument("--work", type=Path, required=True, help="cache folder")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--judge", nargs="+", metavar="NAME", default=None,
                        help="apply the rule: the held-out video's set name first, then the "
                             "other held-out sets")
    args = parser.parse_args(argv)
    from nwwatch.segment.session import Segmenter

    segmenter = Segmenter(args.model, providers=("cpu",), threads=1)
    report: dict[str, Any] = {"model": str(args.model), "sets": {}}
    for spec in args.sets:
        name, _, folder = spec.partition("=")
        data = cache_set(segmenter, Path(folder), args.work, name)
        result = score(data, CANDIDATES)
        report["sets"][name] = {"folder": folder, **result}
        print(name, "frames", result["frames"], "valid", result["valid"],
              "mIoU", result["miou_mean"])
        for cand, s in result["candidates"].items():
            print(f"  {cand:22s} " + "  ".join(
                f"{k} {'n/a' if v is None else f'{v:+.3f}'}" for k, v in s.items()))
    if args.judge:
        report["rule"] = judge(report["sets"], args.judge[0], args.judge[1:])
        for check, ok in report["rule"]["checks"].items():
            print("PASS" if ok else "FAIL", check)
        print("mean capture16", report["rule"]["mean_capture16"],
              "-> ship" if report["rule"]["passes"] else "-> not kept")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
