"""The proposal's extra-blob strokes against frame size: stroke count and agreement with the
model's labels, for the fixed 20 px minimum and for the scaled rule
(:func:`nwwatch.label.propose.min_blob_area_px`, interface blobs from 20 px).

Per frame: the frame is segmented as ``nwwatch label`` segments it (shipped model, CPU), the
proposal made with each rule and rasterised (:func:`nwwatch.label.raster.rasterize`, what
Save writes); recorded: the number of strokes, the fraction of pixels whose label equals the
model's label (whole frame, and in the interface zone: within 8 working pixels of both the
main droplet and the main wire blob, with the disagreeing pixels by class pair), and the
rasterisation time. Rules: ``fixed20`` (before), ``scaled`` (shipped: the scaled minimum,
blobs in the interface zone from 20 px), ``scaled_everywhere`` (the scaled minimum there
too, to see whether the interface exception keeps anything).

Usage::

    nwwatch synth insitu S512 --frames 4 --size 512 --seed 21   # and 1024, 2048
    python bench/bench_label_proposal_blobs.py S512 S1024 S2048 \\
        --json bench/results/label_proposal_blobs.json
    # frames of a look the shipped model was not trained on (bench/bench_finetune.py's
    # "hard" look, seed 4242, frames 1001-1002, rendered at 512, 1024 and 2048 px):
    python bench/bench_label_proposal_blobs.py --hard-look 512 1024 2048 \\
        --json bench/results/label_proposal_blobs_hard.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _hard_look_frames(root: Path, sizes: list[int]) -> list[Path]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_finetune import LOOKS

    from nwwatch.io import write_frame_tiff
    from nwwatch.synth.insitu import render_insitu_frame

    folders = []
    for size in sizes:
        folder = root / f"hard{size}"
        folder.mkdir()
        for k in (1001, 1002):
            params = LOOKS["hard"][0](4242, k, size)
            image, _, _ = render_insitu_frame(params, np.random.default_rng(k))
            write_frame_tiff(folder / f"frame_{k:05d}.tif", image,
                             pixel_size_nm=params.pixel_size_nm)
        folders.append(folder)
    return folders


def main(argv: list[str] | None = None) -> int:
    from nwwatch import DEFAULT_INSITU_MODEL
    from nwwatch.classes import DROPLET, NANOWIRE
    from nwwatch.label import propose
    from nwwatch.label.frames import frame_refs, read_frame
    from nwwatch.label.raster import rasterize
    from nwwatch.normalize import normalize_image
    from nwwatch.segment.session import Segmenter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="folders of frame_*.tif")
    parser.add_argument("--hard-look", nargs="*", type=int, default=[],
                        help="also render bench_finetune's hard-look frames at these sizes")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    segmenter = Segmenter(DEFAULT_INSITU_MODEL, providers=("cpu",))
    working_px = segmenter.working_scale.frame_px
    rows = []
    folders = list(args.dirs)
    if args.hard_look:
        tmp = tempfile.TemporaryDirectory()
        folders += _hard_look_frames(Path(tmp.name), args.hard_look)
    for folder in folders:
        for ref in frame_refs(sorted(folder.glob("frame_*.tif"))):
            image, pixel_size_nm, _ = read_frame(ref)
            seg = segmenter.segment(normalize_image(image), probabilities=True)
            labels = seg.labels[0]
            prob = seg.probabilities[0, DROPLET]
            comp_w, areas_w = propose._components(labels == NANOWIRE)
            comp_d, areas_d = propose._components(labels == DROPLET)
            main_w = comp_w == int(np.argmax(areas_w)) if areas_w.max(initial=0) else None
            main_d = comp_d == int(np.argmax(areas_d)) if areas_d.max(initial=0) else None
            factor = propose.working_factor(labels.shape, working_px)
            zone = (propose._interface_zone(main_d, main_w,
                                            propose.INTERFACE_BAND_WORKING_PX * factor)
                    if main_w is not None and main_d is not None
                    else np.zeros(labels.shape, bool))
            row = {"frame": str(ref.path), "size": int(max(labels.shape)),
                   "zone_px": int(zone.sum()),
                   "min_area_px_scaled": propose.min_blob_area_px(labels.shape, working_px)}
            for name, kwargs, floor in (
                    ("fixed20", {"min_area_px": 20, "working_px": None}, 20),
                    ("scaled", {"working_px": working_px}, 20),
                    # the scaled minimum at the interface too (no 20 px floor there)
                    ("scaled_everywhere", {"working_px": working_px}, 10**12)):
                propose.INTERFACE_MIN_AREA_PX = floor
                try:
                    geometry = propose.propose_geometry(labels, prob, pixel_size_nm,
                                                        image=image, **kwargs)
                finally:
                    propose.INTERFACE_MIN_AREA_PX = 20
                start = time.perf_counter()
                raster = rasterize(geometry)
                row[name] = {
                    "strokes": len(geometry.strokes),
                    "agreement": float(np.mean(raster == labels)),
                    "agreement_zone": (float(np.mean(raster[zone] == labels[zone]))
                                       if zone.any() else None),
                    "rasterize_s": round(time.perf_counter() - start, 3),
                    # zone pixels by (model label, saved label): where they disagree
                    "zone_confusion": {f"{a}->{b}": int(np.sum((labels[zone] == a)
                                                               & (raster[zone] == b)))
                                       for a in (0, 1, 2) for b in (0, 1, 2, 255) if a != b}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"working_px": working_px, "frames": rows}, indent=1)
                             + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
