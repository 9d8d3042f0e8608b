"""CPU time of the whole measurement against another version of ``nwwatch/measure``, call by
call, with the rows compared.

Frames: the ideal caps of ``bench/bench_refine_speed.py`` (a = 40, 100, 200 px; labels and a
float32 frame) and the cached segmentations of ``bench/bench_model_angles.py`` (``--npz``
files: the model's labels, droplet probability, pixel size and raw frame; default: the newest
cache of each of the sets eval_new, video_new and eval_a under bench/out/model_angles/).

``--reference DIR``: a folder holding another checkout's ``nwwatch/measure`` (e.g.
``git archive REV nwwatch/measure | tar -x -C DIR``). Both versions are loaded in this process
(the reference as ``nwwatch.measure`` first, its modules then set aside); every frame is
measured with and without the raw frame by each version in turn, ``--repeats`` times each
(A, B, A, B, ...), so both see the same load; the fastest CPU time (``time.process_time``)
of each counts. Every row (``as_row()``), reason and fit-point array of the two versions must
be identical: the script exits 1 if one differs. Prints and writes (``--json``) the medians
and means per set, this version and the reference, and the load average.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m bench.bench_measure_speed \\
        --reference /tmp/ref_measure [--repeats 5] [--npz FILE ...] [--json FILE.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path("bench/out/model_angles")
SETS = ("eval_new", "video_new", "eval_a")


def _measure_modules() -> dict:
    return {m: sys.modules[m] for m in list(sys.modules)
            if m == "nwwatch.measure" or m.startswith("nwwatch.measure.")}


def load_measure(root: Path | None):
    """``measure_contact_angle`` of the ``nwwatch/measure`` under ``root`` (None: this
    checkout's, as imported). Another copy is loaded as ``nwwatch.measure`` with its own
    modules, which are then taken out of ``sys.modules`` again and the ones there before put
    back: its functions keep their own module globals, everything else sees this checkout's."""
    if root is None:
        import nwwatch.measure as module

        return module.measure_contact_angle
    before = _measure_modules()
    for name in before:
        del sys.modules[name]
    try:
        package = root / "nwwatch" / "measure"
        spec = importlib.util.spec_from_file_location(
            "nwwatch.measure", package / "__init__.py", submodule_search_locations=[str(package)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["nwwatch.measure"] = module
        spec.loader.exec_module(module)
    finally:
        for name in _measure_modules():
            del sys.modules[name]
        sys.modules.update(before)
    return module.measure_contact_angle


def _snapshot(result) -> tuple:
    points = result.points
    arrays = None if points is None else {k: np.asarray(v) for k, v in vars(points).items()}
    return result.as_row(), arrays, result.reason


def _same(a: tuple, b: tuple) -> bool:
    (row_a, arr_a, why_a), (row_b, arr_b, why_b) = a, b
    if row_a.keys() != row_b.keys() or why_a != why_b:
        return False
    for key, value in row_a.items():
        other = row_b[key]
        both_nan = (isinstance(value, float) and isinstance(other, float)
                    and math.isnan(value) and math.isnan(other))
        if not (value == other or both_nan):
            return False
    if arr_a is None or arr_b is None:
        return arr_a is None and arr_b is None
    return arr_a.keys() == arr_b.keys() and all(np.array_equal(arr_a[k], arr_b[k])
                                                for k in arr_a)


def _interleaved_ms(calls: list, repeats: int) -> list[float]:
    """Fastest CPU ms of each of ``calls``, run in turn ``repeats`` times."""
    best = [math.inf] * len(calls)
    for _ in range(repeats):
        for i, call in enumerate(calls):
            t0 = time.process_time()
            call()
            best[i] = min(best[i], time.process_time() - t0)
    return [1e3 * b for b in best]


def frames(npz_files: list[Path]):
    """(set name, labels, probability or None, pixel size or None, raw frame) per frame."""
    from bench.bench_refine_speed import CAP_A_PX, ideal_cap

    for a_px in CAP_A_PX:
        labels, image = ideal_cap(a_px)
        yield "ideal_caps", labels, None, None, image
    for path in npz_files:
        name = next((s for s in SETS if f"_{s}_" in path.name), path.stem)
        with np.load(path) as data:
            for i in range(len(data["stem"])):
                yield (name, data["labels"][i], data["prob"][i],
                       float(data["pixel_size_nm"][i]), data["image"][i])


def default_npz() -> list[Path]:
    out = []
    for name in SETS:
        found = sorted(OUT.glob(f"*_{name}_*.npz"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise SystemExit(f"{OUT}: no cached segmentation of set {name!r}: run "
                             "bench/bench_model_angles.py first, or pass --npz")
        out.append(found[-1])
    return out


def _stats(values: list[float]) -> dict:
    return {"median_ms": round(float(np.median(values)), 3),
            "mean_ms": round(float(np.mean(values)), 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, required=True,
                        help="folder with another checkout's nwwatch/measure")
    parser.add_argument("--npz", type=Path, nargs="*", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    if not (args.reference / "nwwatch" / "measure" / "__init__.py").is_file():
        raise SystemExit(f"{args.reference}: no nwwatch/measure/__init__.py in it")
    reference = load_measure(args.reference)
    current = load_measure(None)
    npz = args.npz or default_npz()
    times: dict[str, dict[str, list[float]]] = {}
    differ = 0
    load_start = os.getloadavg()[0]
    for name, labels, prob, px, image in frames(npz):
        per = times.setdefault(name, {k: [] for k in ("labels", "labels_ref", "image",
                                                      "image_ref")})
        for key, img in (("labels", None), ("image", image)):
            mine = _snapshot(current(labels, prob, px, image=img))
            theirs = _snapshot(reference(labels, prob, px, image=img))
            if not _same(mine, theirs):
                differ += 1
                print(f"differs: {name} frame {len(per[key])} ({key}): "
                      f"{[k for k in mine[0] if mine[0][k] != theirs[0].get(k)]}",
                      file=sys.stderr)
            args_ = (labels, prob, px)
            new_ms, ref_ms = _interleaved_ms(
                [lambda a=args_, img=img: current(*a, image=img),
                 lambda a=args_, img=img: reference(*a, image=img)], args.repeats)
            per[key].append(new_ms)
            per[f"{key}_ref"].append(ref_ms)
    report = {"reference": str(args.reference), "repeats": args.repeats,
              "npz": [str(p) for p in npz], "rows_differing": differ,
              "load_average_start": round(load_start, 2),
              "load_average_end": round(os.getloadavg()[0], 2), "sets": {}}
    for name, per in times.items():
        report["sets"][name] = {"frames": len(per["labels"]),
                                **{k: _stats(v) for k, v in per.items()}}
    every = {k: [x for per in times.values() if per is not times.get("ideal_caps")
                 for x in per[k]] for k in ("labels", "labels_ref", "image", "image_ref")}
    report["bench_sets_all"] = {"frames": len(every["labels"]),
                                **{k: _stats(v) for k, v in every.items()}}
    print(json.dumps(report, indent=1))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if differ:
        raise SystemExit(f"{differ} measurements differ from the reference's")


if __name__ == "__main__":
    main()
