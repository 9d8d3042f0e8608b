"""The labelling proposal saved as it is, against the synthetic truth: is it closer to the
truth than the model's labels it was fitted to?

Per synthetic frame (``nwwatch synth insitu DIR``: ``labels/`` and ``truth.parquet`` hold the
exact labels and the true apparent angle), the frame is segmented as ``nwwatch label``
segments it (shipped model, CPU) and the proposal made from the model's labels
(:func:`nwwatch.label.propose.propose_geometry`, with the raw frame, as the page does) and
rasterised (:func:`nwwatch.label.raster.rasterize`, what Save writes). Recorded, for (a) the
model's labels and (b) the saved proposal: the fraction of pixels equal to the truth over the
whole frame and in the interface zone (pixels within 8 working pixels of both the true main
droplet and the true main wire; :func:`nwwatch.label.propose._interface_zone`), the zone's
disagreeing pixels by (truth, label) class pair, and the contact angle against the true one:
``measure_contact_angle`` on (a) (with the droplet probability and the raw frame, the
service's row) and on (b) (labels alone, as training data is read), and the geometry's own
human angle (:func:`nwwatch.label.geometry.contact_angle`). For reference the same for the
proposal made from the true labels (``from_truth``: what the conversion to shapes alone loses).

Usage::

    nwwatch synth insitu S512 --frames 4 --size 512 --seed 21   # and 1024, 2048
    python bench/bench_label_proposal_truth.py S512 S1024 S2048 \\
        --json bench/results/label_proposal_truth.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

PAIRS = [(a, b) for a in (0, 1, 2) for b in (0, 1, 2, 255) if a != b]


def _scores(labels: np.ndarray, truth: np.ndarray, zone: np.ndarray) -> dict:
    out = {"agreement": float(np.mean(labels == truth)),
           "agreement_zone": float(np.mean(labels[zone] == truth[zone])) if zone.any() else None,
           # zone pixels by (true label, label): where they disagree
           "zone_confusion": {f"{a}->{b}": int(np.sum((truth[zone] == a) & (labels[zone] == b)))
                              for a, b in PAIRS}}
    return out


def _angle(result) -> float | None:
    return None if result.contact_angle_deg is None else float(result.contact_angle_deg)


def _main_masks(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    from nwwatch.classes import DROPLET, NANOWIRE
    from nwwatch.label import propose

    comp_w, areas_w = propose._components(labels == NANOWIRE)
    comp_d, areas_d = propose._components(labels == DROPLET)
    if not (areas_w.max(initial=0) and areas_d.max(initial=0)):
        return None
    return comp_d == int(np.argmax(areas_d)), comp_w == int(np.argmax(areas_w))


def summarise(rows: list[dict]) -> dict:
    """Per folder: medians of the agreements, the smallest zone agreement, and the median and
    largest |angle - true angle| with the number of frames that have an angle."""
    out: dict[str, dict] = {}
    for folder in dict.fromkeys(r["frame"].split("/")[0] for r in rows):
        sel = [r for r in rows if r["frame"].split("/")[0] == folder]
        entry: dict = {"frames": len(sel), "size": sel[0]["size"]}
        for name in ("model", "proposal", "from_truth"):
            zone = [r[name]["agreement_zone"] for r in sel
                    if r[name]["agreement_zone"] is not None]
            entry[name] = {
                "agreement_median": float(np.median([r[name]["agreement"] for r in sel])),
                "agreement_zone_median": float(np.median(zone)) if zone else None,
                "agreement_zone_min": float(min(zone)) if zone else None}
            keys = ("angle_deg",) if name == "model" else ("saved_labels_angle_deg",
                                                           "human_angle_deg")
            for key in keys:
                err = [abs(r[name][key] - r["true_angle_deg"]) for r in sel
                       if r[name][key] is not None]
                entry[name][f"{key}_abs_error_median"] = float(np.median(err)) if err else None
                entry[name][f"{key}_abs_error_max"] = float(max(err)) if err else None
                entry[name][f"{key}_n"] = len(err)
        out[folder] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from nwwatch import DEFAULT_INSITU_MODEL
    from nwwatch.classes import DROPLET
    from nwwatch.io.dataset import read_image_2d
    from nwwatch.label import propose
    from nwwatch.label.frames import frame_refs, read_frame
    from nwwatch.label.geometry import contact_angle
    from nwwatch.label.raster import rasterize
    from nwwatch.measure import measure_contact_angle
    from nwwatch.normalize import normalize_image
    from nwwatch.segment.session import Segmenter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path,
                        help="folders written by nwwatch synth insitu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    segmenter = Segmenter(DEFAULT_INSITU_MODEL, providers=("cpu",))
    working_px = segmenter.working_scale.frame_px
    rows = []
    for folder in args.dirs:
        table = pd.read_parquet(folder / "truth.parquet")
        for rec in table.itertuples():
            path = folder / rec.file
            image = read_frame(frame_refs([path])[0]).image
            pixel_size_nm = float(rec.pixel_size_nm)
            truth = np.asarray(read_image_2d(folder / "labels" / (path.stem + ".png")),
                               dtype=np.uint8)
            seg = segmenter.segment(normalize_image(image), probabilities=True)
            model = seg.labels[0]
            prob = seg.probabilities[0, DROPLET]
            factor = propose.working_factor(truth.shape, working_px)
            masks = _main_masks(truth)
            zone = (propose._interface_zone(*masks, propose.INTERFACE_BAND_WORKING_PX * factor)
                    if masks else np.zeros(truth.shape, bool))
            true_deg = float(rec.theta_apparent_deg)
            row = {"frame": f"{folder.name}/{rec.file}", "size": int(max(truth.shape)),
                   "zone_px": int(zone.sum()), "true_angle_deg": true_deg,
                   "truth_labels_measured_deg": _angle(measure_contact_angle(
                       truth, None, pixel_size_nm))}
            measured = measure_contact_angle(model, prob, pixel_size_nm, image=image)
            row["model"] = {**_scores(model, truth, zone), "angle_deg": _angle(measured),
                            "status": measured.status}
            for name, source, src_prob in (("proposal", model, prob),
                                           ("from_truth", truth, None)):
                geometry = propose.propose_geometry(source, src_prob, pixel_size_nm,
                                                    image=image, working_px=working_px)
                raster = rasterize(geometry)
                saved = measure_contact_angle(raster, None, pixel_size_nm)
                row[name] = {**_scores(raster, truth, zone),
                             "saved_labels_angle_deg": _angle(saved),
                             "human_angle_deg": contact_angle(geometry).angle_deg,
                             "circle": None if geometry.droplet is None else
                             [*geometry.droplet.center, geometry.droplet.radius_px],
                             "facet": geometry.facet}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items()}, default=str), flush=True)

    result = {"bench": "python bench/bench_label_proposal_truth.py "
                       + " ".join(str(d) for d in args.dirs),
              "working_px": working_px,
              "summary": summarise(rows),
              "frames": rows}
    print(json.dumps(result["summary"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
