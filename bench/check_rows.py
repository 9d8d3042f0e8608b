"""Rows of the frame path on a fixed corpus, to show that a speed-up changed no result.

``--out ROWS.json`` runs the checkout it is run from over the corpus and records every row
field (and a SHA-256 of each normalised frame, label image and softmax); ``--compare
BEFORE.json AFTER.json`` says which values differ. Run it once from a copy of the code before
the change (e.g. ``git archive REV nwwatch bench | tar -x -C /tmp/ref``, then
``PYTHONPATH=/tmp/ref python /tmp/ref/bench/check_rows.py ...`` with this file copied there)
and once from the checkout.

Corpus:

* ``video``: the TIFF frames of a folder (default: the growth video of bench_replay.py,
  seed 1, 200 frames of 512 px, made once under ``bench/out/check_rows/video``) through the
  service's stages: ``read_frames`` -> ``normalize_image`` -> ``Segmenter.segment`` (batches
  of 8, one thread) -> ``measure_contact_angle`` with the raw frame -> ``frame_confidence``;
* ``npz``: each ``--npz`` file of bench/bench_model_angles.py's segmentation cache (raw frame,
  model labels, droplet probability, true labels): measured four ways (model labels with and
  without the frame, true labels with and without it); with ``--segment-npz`` its frames
  are also segmented again (whole-droplet pass included) and the outputs hashed;
* ``replay`` (with ``--replay-threads``): the rows ``nwwatch replay`` writes for the video
  frames (the whole service path, ``[inference] threads`` and ``streams`` as given), in the
  order written, without the columns that differ between any two runs (clocks, batch ids);
* ``geometry``: the real-geometry cases of bench/bench_contact_angle.py (inclined facets,
  flared/tapered/stepped walls, narrow and wide bases, corner, stub, large and cut droplets),
  ``--per-geometry`` wires each, exact labels with their droplet coverage as probability,
  then every degradation of the benchmark (wiggles, blobs, holes, a 2 px gap) of the same
  labels; and wires tilted out of the image plane.

Comparison: text, integers, booleans and None must be equal; floats bit-identical, or
within ``--rtol`` relative (counted and reported per field). Exit status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def _row(result) -> dict:
    row = result.as_row()
    return {k: (v if not isinstance(v, np.generic) else v.item()) for k, v in row.items()}


def video_rows(folder: Path, model: Path) -> dict:
    from nwwatch.classes import DROPLET
    from nwwatch.io import read_frames
    from nwwatch.measure import measure_contact_angle
    from nwwatch.normalize import normalize_image
    from nwwatch.segment.confidence import frame_confidence
    from nwwatch.segment.session import Segmenter

    seg = Segmenter(model, providers=("cpu",), threads=1)
    files = sorted(folder.glob("*.tif"))
    rows, hashes = [], []
    for i in range(0, len(files), 8):
        frames = [f for p in files[i:i + 8] for f in read_frames(p)]
        batch = np.empty((len(frames), *frames[0].image.shape), np.float32)
        for j, f in enumerate(frames):
            normalize_image(f.image, out=batch[j])
        out = seg.segment(batch)
        for j, f in enumerate(frames):
            r = measure_contact_angle(out.labels[j], out.probabilities[j, DROPLET],
                                      f.pixel_size_nm, image=f.image)
            row = _row(r)
            row["confidence"] = frame_confidence(out.probabilities[j], out.labels[j],
                                                 r.angle_valid)
            row["source"] = f.source.name
            rows.append(row)
            hashes.append({"source": f.source.name, "image": _sha(f.image),
                           "normalised": _sha(batch[j]), "labels": _sha(out.labels[j]),
                           "probabilities": _sha(out.probabilities[j])})
    return {"rows": rows, "hashes": hashes}


#: Row columns of a replay that differ between any two runs (clocks, batch ids).
REPLAY_VARYING = ("processed_at", "batch_id", "read_ms", "segment_ms", "measure_ms",
                  "confidence_ms")


def replay_rows(folder: Path, model: Path, threads: int, streams: str | None) -> dict:
    """The rows ``nwwatch replay`` writes for the frames of ``folder`` (the whole service
    path: ledger, groups, the network's batches, the streams), in the order written, with
    ``[inference] threads`` and, when given, ``streams`` (omitted for code without the key),
    without the columns of :data:`REPLAY_VARYING`."""
    import tempfile

    import pyarrow.dataset as ds

    from nwwatch.logsetup import configure_logging
    from nwwatch.service import replay
    from nwwatch.service.config import one_folder_config

    configure_logging("error")
    with tempfile.TemporaryDirectory(prefix="check-rows-replay-") as tmp:
        out, cfg = Path(tmp) / "out", Path(tmp) / "replay.toml"
        text = one_folder_config(folder, out, model, threads=threads)
        if streams is not None:
            value = streams if streams == "auto" else int(streams)
            text = text.replace("[inference]\n", f"[inference]\nstreams = {json.dumps(value)}\n")
        cfg.write_text(text)
        summary = replay(folder, out, kind="insitu", model=model, config=cfg)
        table = ds.dataset(out / "frames", format="parquet").to_table()
    rows = []
    for row in table.drop_columns([c for c in REPLAY_VARYING if c in table.column_names]
                                  ).to_pylist():
        row = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}
        row["source"] = f"{Path(row['source']).name}/{row['frame']}"
        rows.append(row)
    return {"rows": rows, "provider": summary.provider, "threads": threads,
            "streams": streams}


def npz_rows(path: Path, model: Path | None) -> dict:
    from nwwatch.measure import measure_contact_angle

    with np.load(path) as data:
        d = dict(data)
    rows = []
    for i, stem in enumerate(d["stem"]):
        ps = float(d["pixel_size_nm"][i])
        ps = ps if math.isfinite(ps) and ps > 0 else None
        for way, lab, prob, image in (
                ("model+image", d["labels"][i], d["prob"][i], d["image"][i]),
                ("model", d["labels"][i], d["prob"][i], None),
                ("truth+image", d["truth_labels"][i], None, d["image"][i]),
                ("truth", d["truth_labels"][i], None, None)):
            row = _row(measure_contact_angle(lab, prob, ps, image=image))
            row["source"] = f"{stem}/{way}"
            rows.append(row)
    out: dict = {"rows": rows}
    if model is not None:
        from nwwatch.normalize import normalize_image
        from nwwatch.segment.session import Segmenter

        seg = Segmenter(model, providers=("cpu",), threads=1)
        out["hashes"] = []
        for i, stem in enumerate(d["stem"]):
            s = seg.segment(normalize_image(d["image"][i])[None])
            out["hashes"].append({"source": str(stem), "labels": _sha(s.labels[0]),
                                  "probabilities": _sha(s.probabilities[0])})
    return out


def geometry_rows(per_geometry: int, seed: int) -> dict:
    from bench.bench_contact_angle import (
        DEGRADATIONS,
        GEOMETRIES,
        SHAPE,
        degrade,
        real_wire,
        render,
    )
    from nwwatch.measure import measure_contact_angle
    from nwwatch.synth.params import sample_frame_params

    rng = np.random.default_rng(seed)
    rows = []
    cases = []
    for kind in GEOMETRIES:
        for k in range(per_geometry):
            wire = real_wire(rng, kind)
            labels, cover = render(wire)
            cases.append((f"{kind}/{k}", labels, cover.astype(np.float32)))
            for deg in DEGRADATIONS:
                cases.append((f"{kind}/{k}/{deg}", degrade(labels, wire, deg, rng), None))
    for k in range(2 * per_geometry):
        params = sample_frame_params(
            rng, SHAPE[0], theta_deg=float(rng.uniform(80.0, 150.0)),
            a_px=float(rng.uniform(15.0, 80.0)), tilt_deg=float(rng.uniform(1.0, 10.0)),
            truncation_px=0.0, n_distractors=0, scale_bar=False, placement="centred",
            facet_incline_deg=0.0, wire_profile="straight", base_ratio=1.0)
        labels, cover = render(params.wire)
        cases.append((f"tilted/{k}", labels, cover.astype(np.float32)))
    for name, labels, prob in cases:
        row = _row(measure_contact_angle(labels, None))
        row["source"] = name
        rows.append(row)
        if prob is not None:
            row = _row(measure_contact_angle(labels, prob))
            row["source"] = name + "/probability"
            rows.append(row)
    return {"rows": rows}


#: Frames of the test set (tests/data/measure_reference.npz): (npz name part, index); picked
#: for what the measurement does with them (refined and unrefined facet lines, an elliptical
#: facet, a refusal).
TEST_FRAMES = (("eval_a", 4), ("video_new", 0), ("eval_new", 1), ("seed304", 2))
TEST_MARGIN_PX = 8


def pick_test_frames(npz_paths: list[Path]) -> dict[str, list]:
    """Crops of :data:`TEST_FRAMES` around their labelled pixels (+ ``TEST_MARGIN_PX``):
    model and true labels, the droplet probability quantised to 1/255 (stored exactly as
    uint8) and the raw frame in units of 8 counts (uint16): small files, still a model's
    labels on a real frame's noise."""
    import cv2

    out: dict[str, list] = {k: [] for k in ("labels", "truth_labels", "prob_q", "image",
                                           "pixel_size_nm", "name")}
    for part, index in TEST_FRAMES:
        path = next(p for p in npz_paths if f"_{part}_" in p.name)
        with np.load(path) as data:
            lab, truth = data["labels"][index], data["truth_labels"][index]
            x, y, w, h = cv2.boundingRect(np.maximum(lab, truth))
            r0, c0 = max(y - TEST_MARGIN_PX, 0), max(x - TEST_MARGIN_PX, 0)
            r1, c1 = y + h + TEST_MARGIN_PX, x + w + TEST_MARGIN_PX
            crop = (slice(r0, r1), slice(c0, c1))
            out["labels"].append(lab[crop])
            out["truth_labels"].append(truth[crop])
            out["prob_q"].append(np.round(data["prob"][index][crop] * 255).astype(np.uint8))
            out["image"].append((data["image"][index][crop] / 8).astype(np.uint16))
            out["pixel_size_nm"].append(float(data["pixel_size_nm"][index]))
            out["name"].append(f"{part}/{index}")
    return out


def measure_test_frames(inputs: dict) -> list[dict]:
    """The rows tests/test_measure_reference_rows.py compares: each test frame measured four
    ways (model labels with probability, with and without the frame; true labels with and
    without the frame)."""
    from nwwatch.measure import measure_contact_angle

    rows = []
    for i, name in enumerate(inputs["name"]):
        prob = inputs["prob_q"][i].astype(np.float32) / np.float32(255)
        ps = float(inputs["pixel_size_nm"][i])
        ps = ps if math.isfinite(ps) and ps > 0 else None
        for way, lab, pr, image in (
                ("model+image", inputs["labels"][i], prob, inputs["image"][i]),
                ("model", inputs["labels"][i], prob, None),
                ("truth+image", inputs["truth_labels"][i], None, inputs["image"][i]),
                ("truth", inputs["truth_labels"][i], None, None)):
            row = _row(measure_contact_angle(lab, pr, ps, image=image))
            row["source"] = f"{name}/{way}"
            rows.append(row)
    return rows


def write_test_data(npz_paths: list[Path], folder: Path) -> None:
    inputs = pick_test_frames(npz_paths)
    arrays = {"name": np.array(inputs["name"]),
              "pixel_size_nm": np.array(inputs["pixel_size_nm"])}
    for key in ("labels", "truth_labels", "prob_q", "image"):
        for i, a in enumerate(inputs[key]):
            arrays[f"{key}_{i}"] = a
    np.savez_compressed(folder / "measure_reference.npz", **arrays)
    rows = measure_test_frames(load_test_inputs(folder / "measure_reference.npz"))
    (folder / "measure_reference_rows.json").write_text(json.dumps(rows, indent=0) + "\n")


def load_test_inputs(path: Path) -> dict:
    with np.load(path) as data:
        n = len(data["name"])
        out = {"name": [str(x) for x in data["name"]],
               "pixel_size_nm": data["pixel_size_nm"].tolist()}
        for key in ("labels", "truth_labels", "prob_q", "image"):
            out[key] = [data[f"{key}_{i}"] for i in range(n)]
    return out


def compare(before: dict, after: dict, rtol: float) -> tuple[dict, list[str]]:
    bad: list[str] = []
    stats = {"rows": 0, "values": 0, "bit_identical": 0, "hashes": 0,
             "within_rtol": {}, "max_rel_diff": {}}
    if sorted(before) != sorted(after):
        return stats, [f"parts differ: {sorted(before)} vs {sorted(after)}"]
    for part in before:
        for kind in ("hashes", "rows"):
            lb, la = before[part].get(kind, []), after[part].get(kind, [])
            if len(lb) != len(la):
                bad.append(f"{part} {kind}: {len(lb)} vs {len(la)}")
                continue
            for rb, ra in zip(lb, la, strict=True):
                if sorted(rb) != sorted(ra):
                    bad.append(f"{part} {rb.get('source')}: fields differ")
                    continue
                if kind == "hashes":
                    stats["hashes"] += len(rb) - 1
                    bad += [f"{part} {rb['source']} {k} differs" for k in rb if rb[k] != ra[k]]
                    continue
                stats["rows"] += 1
                for key, xb in rb.items():
                    xa = ra[key]
                    stats["values"] += 1
                    if type(xb) is not type(xa):
                        bad.append(f"{part} {rb['source']} {key}: {xb!r} -> {xa!r}")
                    elif isinstance(xb, float):
                        if xb == xa or (math.isnan(xb) and math.isnan(xa)):
                            stats["bit_identical"] += 1
                            continue
                        rel = abs(xa - xb) / max(abs(xb), abs(xa))
                        stats["max_rel_diff"][key] = max(stats["max_rel_diff"].get(key, 0.0),
                                                         rel)
                        if rel <= rtol:
                            stats["within_rtol"][key] = stats["within_rtol"].get(key, 0) + 1
                        else:
                            bad.append(f"{part} {rb['source']} {key}: {xb!r} -> {xa!r}")
                    elif xb != xa:
                        bad.append(f"{part} {rb['source']} {key}: {xb!r} -> {xa!r}")
                    else:
                        stats["bit_identical"] += 1
    return stats, bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the rows of this checkout here")
    ap.add_argument("--video", type=Path, default=ROOT / "out" / "check_rows" / "video")
    ap.add_argument("--video-frames", type=int, default=200)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--npz", type=Path, action="append", default=[])
    ap.add_argument("--segment-npz", action="store_true")
    ap.add_argument("--per-geometry", type=int, default=4)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--compare", type=Path, nargs=2, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--rtol", type=float, default=1e-9)
    ap.add_argument("--opencv-threads", type=int, default=None,
                    help="cv2.setNumThreads (default: OpenCV's; the service sets 1)")
    ap.add_argument("--json", type=Path, help="with --compare: write the summary here")
    ap.add_argument("--replay-threads", type=int, default=None,
                    help="also record the rows of `nwwatch replay` of the --video frames with "
                         "[inference] threads = this (part 'replay')")
    ap.add_argument("--replay-streams", default=None,
                    help="with --replay-threads: [inference] streams (default: the key left "
                         "out, as code without it needs)")
    ap.add_argument("--write-test-data", type=Path, metavar="FOLDER",
                    help="write the test frames (from the --npz files) and their rows "
                         "measured by this checkout to FOLDER (tests/data)")
    args = ap.parse_args()
    if args.write_test_data:
        write_test_data(args.npz, args.write_test_data)
        return
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        stats, bad = compare(before, after, args.rtol)
        summary = {"before": str(args.compare[0]), "after": str(args.compare[1]),
                   "rtol": args.rtol, **stats, "mismatches": len(bad),
                   "parts": {k: len(v.get("rows", [])) for k, v in after.items()}}
        print("\n".join(bad[:50]))
        print(json.dumps(summary, indent=1))
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1) + "\n")
        sys.exit(1 if bad else 0)
    from nwwatch.service.config import DEFAULT_MODELS

    if args.opencv_threads is not None:
        import cv2

        cv2.setNumThreads(args.opencv_threads)
    model = args.model or DEFAULT_MODELS["insitu"]
    if not any(args.video.glob("*.tif")):
        from nwwatch.synth.insitu import generate_insitu

        generate_insitu(args.video, args.video_frames, video=True, seed=1, size=512)
    result = {"video": video_rows(args.video, model),
              "geometry": geometry_rows(args.per_geometry, args.seed)}
    for path in args.npz:
        result[f"npz:{path.name}"] = npz_rows(path, model if args.segment_npz else None)
    if args.replay_threads is not None:
        result["replay"] = replay_rows(args.video, model, args.replay_threads,
                                       args.replay_streams)
    args.out.write_text(json.dumps(result))
    print({k: len(v["rows"]) for k, v in result.items()})


if __name__ == "__main__":
    main()
