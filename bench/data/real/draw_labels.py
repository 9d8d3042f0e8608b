"""Crop the real TEM frames out of the reference figures and draw their 3-class labels.

Sources (read-only): ``fig6-real-frame-with-measurement-overlay.png`` (one real frame inside
plot axes, with a measurement overlay drawn on it) and ``fig1-real-frames-contact-angle-88-
120-135.png`` (three real frames side by side, angle annotations and scale bars burned in).

Labels are drawn by hand from each frame's visible geometry (read off 2-5x enlarged crops
with a pixel grid): a polygon for the droplet of fig6 and for its flared wire, a circle cut by
the facet row for the droplets of fig1 and a rectangle for their wires. 0 background,
1 nanowire, 2 droplet, 255 unsure: a band of +-2 px around every drawn boundary (the drawing
is good to about that), and the coloured overlay of fig6 (dilated by 2 px). Burned-in text
keeps the label of what lies beneath it.

Run from the repository root:
    python bench/data/real/draw_labels.py /path/to/figures
writes bench/data/real/images/*.png (uint8 grey) and bench/data/real/labels/*.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

OUT = Path(__file__).resolve().parent
BAND_PX = 2


def _finish(grey: np.ndarray, labels: np.ndarray, unsure: np.ndarray | None, name: str) -> None:
    edges = np.zeros(labels.shape, np.uint8)
    for cls in (1, 2):
        mask = (labels == cls).astype(np.uint8)
        edges |= cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    band = cv2.dilate(edges, np.ones((2 * BAND_PX - 1, 2 * BAND_PX - 1), np.uint8)) > 0
    out = labels.copy()
    out[band] = 255
    if unsure is not None:
        out[unsure] = 255
    (OUT / "images").mkdir(exist_ok=True)
    (OUT / "labels").mkdir(exist_ok=True)
    cv2.imwrite(str(OUT / "images" / f"{name}.png"), grey)
    cv2.imwrite(str(OUT / "labels" / f"{name}.png"), out)


def fig6(figures: Path) -> None:
    rgb = cv2.imread(str(figures / "fig6-real-frame-with-measurement-overlay.png"))[:, :, :3]
    # Image area inside the plot axes (spines at rows 8/377, cols 39/409).
    crop = rgb[9:377, 40:409]
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    spread = crop.max(axis=2).astype(int) - crop.min(axis=2).astype(int)
    overlay = cv2.dilate((spread > 40).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    labels = np.zeros(grey.shape, np.uint8)
    # (col, row) vertices read off the enlarged crop.
    wire = np.array([(151, 55), (200, 55), (250, 52), (275, 46), (300, 36), (325, 25),
                     (350, 17), (368, 13), (368, 287), (350, 288), (325, 290), (310, 283),
                     (300, 277), (285, 266), (275, 258), (265, 255), (250, 253), (200, 252),
                     (175, 253), (154, 255)], np.int32)
    droplet = np.array([(151, 55), (120, 55), (100, 57), (80, 63), (60, 75), (45, 92),
                        (33, 112), (25, 135), (22, 158), (25, 180), (33, 200), (47, 220),
                        (65, 237), (85, 248), (105, 254), (130, 256), (154, 255)], np.int32)
    cv2.fillPoly(labels, [wire], 1)
    cv2.fillPoly(labels, [droplet], 2)
    _finish(grey, labels, overlay, "fig6")


def fig1(figures: Path) -> None:
    rgb = cv2.imread(str(figures / "fig1-real-frames-contact-angle-88-120-135.png"))[:, :, :3]
    # (first col, end col), droplet circle (row, col, radius), facet row, wire cols.
    panels = {
        "fig1-135deg": ((0, 124), (60, 60, 56), 107, (20, 97)),
        "fig1-120deg": ((127, 254), (81, 62, 43), 106, (22, 101)),
        "fig1-88deg": ((256, 383), (100, 60, 38), 106, (23, 99)),
    }
    for name, ((c0, c1), (row, col, radius), facet_row, (w0, w1)) in panels.items():
        grey = cv2.cvtColor(rgb[:, c0:c1], cv2.COLOR_BGR2GRAY)
        labels = np.zeros(grey.shape, np.uint8)
        rows, cols = np.mgrid[: grey.shape[0], : grey.shape[1]]
        inside = (rows - row) ** 2 + (cols - col) ** 2 <= radius**2
        labels[inside & (rows < facet_row)] = 2
        labels[(rows >= facet_row) & (cols >= w0) & (cols <= w1)] = 1
        _finish(grey, labels, None, name)


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/seeds/figures")
    fig6(source)
    fig1(source)
