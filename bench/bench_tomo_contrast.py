"""The contrast verdicts (``contrast_inverted``, ``no_contrast``) on right and wrong masks.

For each volume family and seed (the 64³ volumes of :mod:`bench.bench_tomography`,
``simulate_tomogram``), the default workflow is trained on 10x10 patches of the central slice
(``patch_labels``, the benchmark's rates and seeds; by default with the small candidates only,
``--candidates threshold features``: the contrast statistics are those of the kept mask, and
the networks take minutes a run on a CPU). Every kept model is then segmented, as the service
does (:func:`nwwatch.volume.segment_volume`), on:

- ``volume``: every volume of its seed set (its own, and the other families and seeds);
- of every volume of its own seed (all families): ``core`` (a box inside the grain, no
  vacuum), ``half`` (half of the volume along X), ``slab8`` and ``slab16`` (the central 8 and
  16 slices of the grain), ``bin2`` (2x2x2 binned), ``gamma0.5`` and ``gamma2`` (grey levels
  scaled to 0..1 and raised to that power), ``sirt`` (the same tilt series reconstructed with
  SIRT);
- each of the above with its grey levels inverted (negated): ``..._inverted``;
- ``vacuum``: the slices of its own volume without any grain.

Each record holds the mask's verdict (status, reason codes), its contrast statistics
(:func:`nwwatch.volume.crosscheck.mask_contrast`), the training volume's
(``extra["contrast"]["volume"]``) and the IoU of the solid class against the truth (every
slice). The summary counts, per kind of volume, the masks flagged by each contrast code:
on the volumes that are not inverted a contrast code is a false alarm, on the inverted ones
``contrast_inverted`` is the detection, on ``vacuum`` ``no_contrast`` is.

Usage::

    OMP_NUM_THREADS=1 python -m bench.bench_tomo_contrast --seeds 0 1 2 --out OUT.json \\
        --work W      # W keeps the trained models: a second run reuses them
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bench.bench_tomography import write_inputs
from nwwatch.synth.tomo_labels import patch_labels
from nwwatch.synth.tomogram import simulate_tomogram

#: The benchmark's volume families (bench/results/tomography_select_r0.02.json).
FAMILIES = {
    "default": {},
    "noise-limited": {"tilt_max_deg": 80, "pore_length_px": 6, "counts_per_voxel": 1},
    "saturated": {"tilt_max_deg": 80, "pore_length_px": 6, "counts_per_voxel": 1,
                  "saturation_px": 20},
}
VARIANTS = ("core", "half", "slab8", "slab16", "bin2", "gamma0.5", "gamma2", "sirt")
CONTRAST_CODES = ("contrast_inverted", "no_contrast")


def _bin2(data: np.ndarray) -> np.ndarray:
    z, y, x = (s // 2 * 2 for s in data.shape)
    return data[:z, :y, :x].reshape(z // 2, 2, y // 2, 2, x // 2, 2).mean(axis=(1, 3, 5))


def _gamma(data: np.ndarray, power: float) -> np.ndarray:
    low, high = float(data.min()), float(data.max())
    return (((data - low) / (high - low)) ** power).astype(np.float32)


def variants(sim, sirt) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (volume, truth)} of one simulated volume (see the module docstring)."""
    volume, truth = sim.volume.astype(np.float32), sim.truth.astype(bool)
    n = volume.shape[0]
    grain_z = np.flatnonzero(sim.grain.reshape(n, -1).any(axis=1))
    centre = int(grain_z.mean().round())
    # the user's 24 x 20 x 20 crop of a 64³ volume: well inside the grain, no vacuum
    hz, hyx = max(2, round(0.19 * n)), max(2, round(0.16 * n))
    c = n // 2
    core = (slice(centre - hz, centre + hz), slice(c - hyx, c + hyx), slice(c - hyx, c + hyx))
    edge = round(0.16 * n)
    half = (slice(edge, n - edge), slice(edge, n - edge), slice(n // 2, n))
    out = {"core": (volume[core], truth[core]), "half": (volume[half], truth[half])}
    for depth in (8, 16):
        slab = slice(centre - depth // 2, centre + depth // 2)
        out[f"slab{depth}"] = (volume[slab], truth[slab])
    out["bin2"] = (_bin2(volume).astype(np.float32), _bin2(truth.astype(np.float32)) > 0.5)
    for power in (0.5, 2.0):
        out[f"gamma{power:g}"] = (_gamma(volume, power), truth)
    out["sirt"] = (sirt.volume.astype(np.float32), sirt.truth.astype(bool))
    return out


def train(volume_path: Path, labels_path: Path, k: int, out: Path, candidates: list[str]):
    from training.config import TrainConfig
    from training.volume_select import select_and_train

    if out.exists():
        return out
    config = TrainConfig(out=str(out), volume=str(volume_path), slice_index=k,
                         labels=str(labels_path), threads=1, device="cpu", val_fraction=0.0)
    select_and_train(config, tuple(candidates))
    return out


def record(segmenter, name: str, volume: np.ndarray, truth: np.ndarray) -> dict:
    from nwwatch.volume import segment_volume
    from nwwatch.volume.crosscheck import mask_contrast

    seg = segment_volume(segmenter, volume)
    mask = seg.mask.astype(bool)
    contrast = mask_contrast(volume, mask)
    union = int(np.count_nonzero(mask | truth))
    return {"volume": name, "status": seg.verdict.status, "codes": seg.verdict.reason_code,
            "solid_fraction": round(seg.verdict.solid_fraction, 4),
            "iou": round(int(np.count_nonzero(mask & truth)) / union, 4) if union else None,
            "separation_sd": round(contrast.separation_sd, 3),
            "solid_sd_ratio": round(contrast.solid_sd_ratio, 3)}


def kind_of(name: str) -> str:
    """The summary's group of a record's volume name."""
    if name == "vacuum":
        return "vacuum"
    base = name.removesuffix("_inverted")
    part = base.split(":")[-1]
    group = part if part in VARIANTS else "volume"
    return group + ("_inverted" if name.endswith("_inverted") else "")


def summarise(runs: list[dict]) -> dict:
    groups: dict[str, dict] = {}
    for run in runs:
        for rec in run["records"]:
            g = groups.setdefault(kind_of(rec["volume"]), {"masks": 0, "ok": 0, "codes": Counter(),
                                                           "ious": []})
            g["masks"] += 1
            g["ok"] += rec["status"] == "ok"
            for code in CONTRAST_CODES:
                g["codes"][code] += code in rec["codes"].split(",")
            if rec["iou"] is not None:
                g["ious"].append(rec["iou"])
    out = {}
    for name, g in sorted(groups.items()):
        out[name] = {"masks": g["masks"], "ok": g["ok"], **{c: g["codes"][c] for c in
                                                            CONTRAST_CODES},
                     "iou_median": round(float(np.median(g["ious"])), 3) if g["ious"] else None}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.02, 0.25])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--candidates", nargs="+", default=["threshold", "features"])
    parser.add_argument("--work", type=Path, required=True, help="models and volumes (kept)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from nwwatch.segment.session import Segmenter

    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sims = {(f, s): simulate_tomogram(args.size, seed=s, **FAMILIES[f])
            for f in args.families for s in args.seeds}
    sirts = {(f, s): simulate_tomogram(args.size, seed=s, reconstruction="sirt", **FAMILIES[f])
             for f in args.families for s in args.seeds}
    k = args.size // 2
    runs = []
    for (family, seed), sim in sims.items():
        folder = args.work / f"{family}_s{seed}"
        folder.mkdir(exist_ok=True)
        for rate in args.rates:
            rng = np.random.default_rng([seed, int(round(rate * 1000))])
            labels = patch_labels(sim.truth[k], rate, rng, grain=sim.grain[k])
            tag = f"r{rate:g}"
            volume_path, labels_path = write_inputs(folder, sim.volume, labels, k, tag)
            model = train(volume_path, labels_path, k, folder / f"{tag}.onnx", args.candidates)
            segmenter = Segmenter(model, providers=("cpu",), threads=1)
            meta = segmenter.metadata.extra
            records = []
            for (f2, s2), other in sims.items():
                name = f"{f2}_s{s2}"
                records.append(record(segmenter, name, other.volume, other.truth.astype(bool)))
                records.append(record(segmenter, name + "_inverted", -other.volume,
                                      other.truth.astype(bool)))
                if s2 != seed:
                    continue
                for vname, (vol, truth) in variants(other, sirts[(f2, s2)]).items():
                    records.append(record(segmenter, f"{name}:{vname}", vol, truth))
                    records.append(record(segmenter, f"{name}:{vname}_inverted", -vol, truth))
            empty = np.flatnonzero(sim.truth.reshape(sim.truth.shape[0], -1).max(axis=1) == 0)
            records.append(record(segmenter, "vacuum", sim.volume[empty], sim.truth[empty] > 0))
            runs.append({"model": f"{family}_s{seed}_{tag}",
                         "method": meta.get("selection", {}).get("method"),
                         "trained_volume": meta.get("contrast", {}).get("volume"),
                         "records": records})
            print(json.dumps({"model": runs[-1]["model"], "method": runs[-1]["method"],
                              "seconds": round(time.perf_counter() - start)}), flush=True)
    result = {
        "command": "OMP_NUM_THREADS=1 python -m bench.bench_tomo_contrast "
                   + " ".join(sys.argv[1:] if argv is None else argv),
        "families": {f: FAMILIES[f] for f in args.families},
        "seconds": round(time.perf_counter() - start),
        "summary": summarise(runs),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
