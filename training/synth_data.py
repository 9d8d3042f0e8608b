"""Synthetic training frames whose labels leave out what the image cannot decide.

A wire tilted out of the image plane shows its top facet as an ellipse. Rays through that
ellipse cross both the solid wire and the droplet's cap; the truth labels call them droplet
("droplet over wire", :func:`nwwatch.synth.geometry.project_scene`), so the labelled
wire/droplet boundary lies at the near rim of the ellipse, up to ``2 r sin(tilt)`` px past
the far rim where the solid wire starts. In the image the band is a gradual change of
thickness with no step at either rim; a network trained on those labels learns to extend the
droplet past the visible start of the wire, also on untilted wires, whose facet is a sharp
step. :func:`overlap_band` finds the band and :func:`write_training_frames` writes frames
with it set to 255 (unlabeled), so training sees only boundaries the image shows.

The frames and their truth table are those of :func:`nwwatch.synth.insitu.generate_insitu`
with the same seed; only the label PNGs differ (in the band).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow.parquet as pq

from nwwatch.classes import DROPLET, NANOWIRE, UNLABELED
from nwwatch.io.dataset import read_label_image
from nwwatch.io.png import write_image_file
from nwwatch.synth.geometry import WireSpec, wire_chords
from nwwatch.synth.insitu import generate_insitu

#: Thinnest chord (px) of solid and of cap for a ray to count as crossing both.
MIN_CHORD_PX = 0.5


def overlap_band(scene: tuple, shape: tuple[int, int], *, dilate_px: int = 1) -> np.ndarray:
    """Pixels whose ray crosses both a wire's solid and its droplet's cap.

    ``scene``: :class:`WireSpec` / ``SphereSpec`` objects (spheres are skipped: a free
    droplet has no wire under it); ``shape`` (H, W). Evaluated at pixel centres ((row, col),
    integer indices), chords of at least :data:`MIN_CHORD_PX` px, then grown by ``dilate_px``
    so the mixed pixels along the band's rims go too. Returns bool (H, W); empty for untilted
    wires, whose facet plane contains the beam.
    """
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    cols = np.arange(shape[1], dtype=np.float32)[None, :]
    band = np.zeros(shape, bool)
    for obj in scene:
        if not isinstance(obj, WireSpec) or obj.theta_deg is None or obj.tilt_deg == 0.0:
            continue
        solid, cap, _ = wire_chords(obj, rows, cols)
        band |= (solid >= MIN_CHORD_PX) & (cap >= MIN_CHORD_PX)
    if dilate_px > 0 and band.any():
        size = 2 * dilate_px + 1
        band = cv2.dilate(band.astype(np.uint8), np.ones((size, size), np.uint8)) > 0
    return band


def training_labels(labels: np.ndarray, scene: tuple) -> np.ndarray:
    """``labels`` (uint8 (H, W), class ids) with the wire and droplet pixels of
    :func:`overlap_band` set to 255 (background stays labelled)."""
    band = overlap_band(scene, labels.shape)
    out = labels.copy()
    out[band & ((labels == NANOWIRE) | (labels == DROPLET))] = UNLABELED
    return out


def write_training_frames(
    out_dir: str | os.PathLike[str], n_frames: int, *, seed: int, size: int = 512,
    first: int = 0,
) -> int:
    """Write frames ``first .. first + n_frames - 1`` of ``seed`` as a training folder:
    ``out_dir/frame_NNNNN.tif``, ``out_dir/labels/frame_NNNNN.png`` (the truth labels with
    the overlap band unlabeled) and ``out_dir/truth.parquet``. Returns the number of label
    pixels set to 255 in all."""
    ignored = 0

    def unlabel_band(labels: np.ndarray, params) -> np.ndarray:
        nonlocal ignored
        train = training_labels(labels, (params.wire, *params.distractors))
        ignored += int(np.count_nonzero(train != labels))
        return train

    generate_insitu(out_dir, n_frames, seed=seed, size=size, first=first,
                    label_transform=unlabel_band)
    return ignored


def wire_from_truth(row: dict[str, Any]) -> WireSpec:
    """The main wire of a truth-table row (:data:`TRUTH_SCHEMA`) as far as the table records
    it: facet, axis, radius, tilt, truncation, contact angle, facet inclination, flare and
    droplet base (a step in the side wall is not recorded and left out)."""
    radius = float(row["wire_width_px"]) / 2.0
    base = row.get("a_px")
    return WireSpec(
        facet_row=float(row["facet_row"]), facet_col=float(row["facet_col"]),
        axis_deg=float(row["wire_axis_deg"]), radius_px=radius,
        tilt_deg=float(row["tilt_deg"]), truncation_px=float(row["truncation_px"]),
        theta_deg=float(row["theta_deg"]),
        facet_incline_deg=float(row.get("facet_incline_deg") or 0.0),
        droplet_base_px=None if base is None or abs(float(base) - radius) < 1e-9 else float(base),
        flare=float(row.get("wire_flare") or 0.0),
    )


def relabel_folder(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                   prefix: str = "") -> int:
    """Training copy of a folder written by ``nwwatch synth insitu``: images linked (as
    ``dst/<prefix><name>``), labels with the main wire's :func:`overlap_band` unlabeled
    (distractor wires are not in the truth table and keep their labels). Returns the number
    of label pixels set to 255."""
    src, dst = Path(src), Path(dst)
    (dst / "labels").mkdir(parents=True, exist_ok=True)
    ignored = 0
    for row in pq.read_table(src / "truth.parquet").to_pylist():
        name = Path(row["file"]).stem
        label_path = src / "labels" / f"{name}.png"
        labels = read_label_image(label_path)
        train = training_labels(labels, (wire_from_truth(row),))
        ignored += int(np.count_nonzero(train != labels))
        link = dst / f"{prefix}{row['file']}"
        if not link.exists():
            link.symlink_to((src / row["file"]).resolve())
        write_image_file(dst / "labels" / f"{prefix}{name}.png", train)
    return ignored


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--relabel", type=Path, metavar="SRC",
                        help="link the frames of SRC (with truth.parquet) instead of rendering")
    parser.add_argument("--prefix", default="", help="with --relabel: prefix of the names")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--first", type=int, default=0, help="index of the first frame")
    args = parser.parse_args(argv)
    if args.relabel is not None:
        ignored = relabel_folder(args.relabel, args.out, args.prefix)
        print(f"relabelled {args.relabel} into {args.out}; {ignored} label pixels set to 255")
        return
    if args.frames is None or args.seed is None:
        parser.error("--frames and --seed are needed to render frames")
    ignored = write_training_frames(args.out, args.frames, seed=args.seed, size=args.size,
                                    first=args.first)
    print(f"wrote {args.frames} frames to {args.out}; {ignored} label pixels set to 255")


if __name__ == "__main__":
    main()
