"""Does the demo's main video look like the real frames where the measurement reads them?

The wire/droplet interface of the real crops (``bench/data/real``: fig1's three panels and
fig6, hand labels, 255 = unsure) and of frames of the demo's main video (``nwwatch demo``;
truth labels with the same +-2 px unsure band drawn around every boundary as the hand
labels have) measured the same way:

* the profile across the interface: the line fitted to the unsure pixels between wire and
  droplet, sampled along its normal over the middle 60 % of the interface, median over
  positions (``bench.bench_interface_band.real_crop``; burned-in annotations cover part of
  fig1's positions, the median keeps them out); the wire's and the droplet's plateaus are
  the profile's means 4-10 px either side;
* the background: median of the pixels labelled background 4-12 px outside the droplet;
* the noise: 1.4826 MAD of horizontal neighbour differences / sqrt 2 inside the droplet
  (labels 4 px or more from any other class);
* ``ratio`` = (droplet - wire) / (background - droplet): the plateau contrast in units of the
  droplet's own contrast, unchanged by the detector's offset and gain or a figure's linear
  grey-level stretch (negative: droplet darker than the wire); ``step_over_noise`` =
  |droplet - wire| / noise; ``centred_band``: the darkest point within 3 px of the line lies
  within 1 px of it and is darker than the darker plateau by more than the step (a dark band
  on the interface, not a step with its fringes; ``band_depth_over_step`` as in
  ``bench_interface_band``).

``--search`` renders frames of the demo's scene (seed 0) for a grid of
``liquid_mfp_ratio`` x ``liquid_phase_ratio`` (:func:`nwwatch.synth.video.video_scene`) and
reports these contrast figures only; the choice it prints follows
``bench/results/demo_look_rule.txt``. No angle is measured here.

Usage (about 15 s without ``--search``; the search about 5 minutes on one busy core)::

    python -m bench.demo_look --search --json bench/results/demo_look.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt

from bench.bench_interface_band import DATA, real_crop
from nwwatch.io.dataset import pair_folder, read_pair
from nwwatch.synth.insitu import render_insitu_frame
from nwwatch.synth.params import frame_rng
from nwwatch.synth.video import video_frame_params

UNSURE = 255
#: Frames of the 60-frame video measured per scene (spread over the layer cycle and drift).
FRAMES = (0, 10, 20, 30, 40, 50)
SEARCH_FRAMES = (0, 30)
MFP_RATIOS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def unsure_band(labels: np.ndarray, band_px: int = 2) -> np.ndarray:
    """``labels`` (uint8 0/1/2) with every pixel within ``band_px`` of a class boundary set
    to 255, as ``bench/data/real/draw_labels.py`` marks its hand labels."""
    edges = np.zeros(labels.shape, np.uint8)
    for cls in (1, 2):
        mask = (labels == cls).astype(np.uint8)
        edges |= cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    width = 2 * band_px - 1
    out = labels.copy()
    out[cv2.dilate(edges, np.ones((width, width), np.uint8)) > 0] = UNSURE
    return out


def look(image: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Contrast figures of one frame (``image`` (H, W) any dtype, ``labels`` uint8 with 255
    unsure); see the module docstring."""
    img = np.asarray(image, np.float64)
    profile = real_crop(img, labels)
    out: dict[str, Any] = {k: profile.get(k) for k in (
        "positions", "plateau_wire", "plateau_droplet", "darkest_px", "brightest_px",
        "band_depth_over_step")}
    to_drop = distance_transform_edt(labels != 2)
    ring = (labels == 0) & (to_drop >= 4) & (to_drop <= 12)
    background = float(np.median(img[ring]))
    inside = distance_transform_edt(labels == 2) >= 4
    pairs = inside[:, 1:] & inside[:, :-1]
    diffs = (img[:, 1:] - img[:, :-1])[pairs]
    noise = float(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / np.sqrt(2.0))
    out["background"] = round(background, 2)
    out["noise"] = round(noise, 2)
    if out["plateau_wire"] is None:
        return out
    wire, drop = out["plateau_wire"], out["plateau_droplet"]
    out["ratio"] = round((drop - wire) / (background - drop), 3)
    out["step_over_noise"] = round(abs(drop - wire) / max(noise, 1e-9), 2)
    out["centred_band"] = bool(abs(out["darkest_px"]) <= 1.0
                               and out["band_depth_over_step"] > 1.0)
    return out


def real_crops() -> dict[str, dict[str, Any]]:
    """:func:`look` of each real crop."""
    out = {}
    for stem, image_path, label_path in pair_folder(DATA):
        image, labels = read_pair(image_path, label_path, 3)
        out[stem] = look(image, labels)
    return out


def demo_frames(options: dict[str, float], frames: tuple[int, ...], seed: int = 0,
                size: int = 512) -> dict[str, Any]:
    """:func:`look` of frames of the demo video ``options`` (the frames ``nwwatch demo``
    writes, rendered here), with the median of each figure over them."""
    params = video_frame_params(seed, size, max(frames) + 1, **options)
    per_frame = {}
    for k in frames:
        image, labels, _ = render_insitu_frame(params[k], frame_rng(seed, k, 2, video=True))
        per_frame[k] = look(image, unsure_band(labels))
    p0 = params[0]
    phase_step = (p0.phase_liquid_rad_per_nm - p0.phase_wire_rad_per_nm) \
        * 2.0 * p0.wire.radius_px * p0.pixel_size_nm
    return {"options": options, "frames": per_frame,
            "mfp_wire_nm": round(p0.mfp_wire_nm, 1), "mfp_liquid_nm": round(p0.mfp_liquid_nm, 1),
            "phase_step_rad": round(phase_step, 3), "defocus_nm": round(p0.defocus_nm, 1),
            **summary(per_frame.values())}


def summary(looks) -> dict[str, Any]:
    looks = [v for v in looks if v.get("ratio") is not None]
    return {"median_ratio": round(float(np.median([v["ratio"] for v in looks])), 3),
            "median_step_over_noise": round(float(np.median(
                [v["step_over_noise"] for v in looks])), 2),
            "centred_band_frames": int(sum(v["centred_band"] for v in looks)),
            "measured_frames": len(looks)}


def ranked(real: dict[str, dict[str, Any]], grid: list[dict[str, Any]],
           drawn_phase_ratio: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The candidates the rule of ``bench/results/demo_look_rule.txt`` allows, best first,
    and the real crops' range: no centred band on any searched frame, a median ratio of the
    seed's own sign (negative: the droplet darker than the wire) whose magnitude lies within
    the real crops' |ratio| range; ordered by the phase ratio closest to the drawn one, then
    the median |ratio| closest to the real crops' median |ratio|."""
    magnitudes = [abs(v["ratio"]) for v in real.values()]
    lo, hi, target = min(magnitudes), max(magnitudes), float(np.median(magnitudes))
    ok = [g for g in grid if g["centred_band_frames"] == 0 and g["median_ratio"] < 0
          and lo <= abs(g["median_ratio"]) <= hi]
    ok.sort(key=lambda g: (abs(g["options"]["liquid_phase_ratio"] - drawn_phase_ratio),
                           abs(abs(g["median_ratio"]) - target)))
    return ok, {"real_abs_ratio_range": [lo, hi], "real_abs_ratio_median": round(target, 3)}


def main(argv: list[str] | None = None) -> None:
    from nwwatch.demo import MAIN_VIDEO

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--search", action="store_true")
    parser.add_argument("--old", default='{"droplet_radius_px": 100.0, "dose_e_per_px": 60.0, '
                        '"facet_incline_deg": 12.0}',
                        help="JSON video options of the previous main video (compared)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"real": real_crops()}
    for name, r in result["real"].items():
        print(name, {k: r.get(k) for k in ("plateau_wire", "plateau_droplet", "background",
                                           "noise", "ratio", "step_over_noise",
                                           "centred_band")})
    scenes = {"old_demo": json.loads(args.old), "demo": dict(MAIN_VIDEO)}
    for name, options in scenes.items():
        result[name] = demo_frames(options, FRAMES)
        print(name, options, {k: result[name][k] for k in (
            "phase_step_rad", "median_ratio", "median_step_over_noise", "centred_band_frames")})
    if args.search:
        base = json.loads(args.old)
        p0 = video_frame_params(0, 512, 1, **base)[0]
        drawn = p0.phase_liquid_rad_per_nm / p0.phase_wire_rad_per_nm
        phase_ratios = sorted({round(drawn, 3), 1.3, 1.2, 1.1, 1.0}, reverse=True)
        grid = []
        for phase_ratio in phase_ratios:
            for mfp_ratio in MFP_RATIOS:
                options = {**base, "liquid_mfp_ratio": mfp_ratio,
                           "liquid_phase_ratio": phase_ratio}
                g = demo_frames(options, SEARCH_FRAMES)
                grid.append(g)
                print("search", mfp_ratio, phase_ratio, {k: g[k] for k in (
                    "median_ratio", "median_step_over_noise", "centred_band_frames")},
                    flush=True)
        ok, target = ranked(result["real"], grid, round(drawn, 3))
        chosen = None
        for g in ok:
            # Checked on the six frames before it is taken; the next one otherwise.
            check = demo_frames(g["options"], FRAMES)
            print("check", g["options"], {k: check[k] for k in (
                "median_ratio", "centred_band_frames")}, flush=True)
            lo, hi = target["real_abs_ratio_range"]
            if check["centred_band_frames"] == 0 and check["median_ratio"] < 0 \
                    and lo <= abs(check["median_ratio"]) <= hi:
                chosen = check
                break
        result["search"] = {"drawn_phase_ratio": round(drawn, 3), "grid": grid, **target,
                            "chosen": None if chosen is None else chosen["options"]}
        print("choice", {k: v for k, v in result["search"].items() if k != "grid"})
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
