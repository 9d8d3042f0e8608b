"""Regenerate the pictures of docs/synthetic-insitu.md (cv2 only).

Run: OMP_NUM_THREADS=2 .venv/bin/python docs/img/synthetic_insitu_figures.py   (about 20 s)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.synth.geometry import axis_vectors
from nwwatch.synth.insitu import frame_params, render_insitu_frame
from nwwatch.synth.params import frame_rng, sample_frame_params
from nwwatch.synth.video import video_frame_params

HERE = Path(__file__).resolve().parent
VIDEO_SEED = 12


def to_8bit(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [0.5, 99.5])
    return np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1) * 255, 0, 255).astype(np.uint8)


def overlay(gray: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR).astype(np.float32)
    tint = {NANOWIRE: (40, 200, 40), DROPLET: (40, 40, 230)}
    for cls, colour in tint.items():
        mask = labels == cls
        out[mask] = 0.55 * out[mask] + 0.45 * np.array(colour, np.float32)
    return out.astype(np.uint8)


def truth_overlay(gray: np.ndarray, truth: dict) -> np.ndarray:
    """Circle, facet line, triple points (L red, R blue) and centre, drawn at 4x for sub-pixel
    positions (cv2 shift=2)."""
    out = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)

    def p(row: float, col: float) -> tuple[int, int]:
        return int(round(col * 4)), int(round(row * 4))

    cv2.circle(out, p(truth["center_row"], truth["center_col"]), int(round(truth["R_px"] * 4)),
               (0, 215, 255), 1, cv2.LINE_AA, shift=2)
    cv2.line(out, p(truth["left_row"], truth["left_col"]), p(truth["right_row"],
             truth["right_col"]), (255, 120, 0), 1, cv2.LINE_AA, shift=2)
    (d_row, d_col), _ = axis_vectors(truth["wire_axis_deg"])
    fr, fc = truth["facet_row"], truth["facet_col"]
    cv2.arrowedLine(out, p(fr - 60 * d_row, fc - 60 * d_col), p(fr, fc), (0, 255, 0), 1,
                    cv2.LINE_AA, shift=2, tipLength=0.1)
    cv2.circle(out, p(truth["left_row"], truth["left_col"]), 12, (0, 0, 255), -1, cv2.LINE_AA, 2)
    cv2.circle(out, p(truth["right_row"], truth["right_col"]), 12, (255, 0, 0), -1, cv2.LINE_AA,
               2)
    cv2.circle(out, p(truth["center_row"], truth["center_col"]), 10, (0, 215, 255), -1,
               cv2.LINE_AA, 2)
    text = f"theta {truth['theta_deg']:.1f} deg  a {truth['a_px']:.1f} px"
    cv2.putText(out, text, (8, out.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255),
                1, cv2.LINE_AA)
    return out


def frames_figure() -> None:
    tiles_top, tiles_bottom = [], []
    for seed, k in ((42, 0), (42, 8), (7, 2)):
        params = frame_params(seed, k, 512)
        image, labels, _ = render_insitu_frame(params, frame_rng(seed, k, 2))
        gray = to_8bit(image)
        small = (256, 256)
        tiles_top.append(cv2.resize(gray, small, interpolation=cv2.INTER_AREA))
        tiles_bottom.append(cv2.resize(overlay(gray, labels), small,
                                       interpolation=cv2.INTER_AREA))
    top = cv2.cvtColor(np.hstack(tiles_top), cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(HERE / "synthetic-insitu-frames.png"), np.vstack([top,
                                                                       np.hstack(tiles_bottom)]))


def closeup_figure() -> None:
    rng = np.random.default_rng(2024)
    params = sample_frame_params(rng, 512, theta_deg=118.0, axis_deg=180.0, a_px=120.0,
                                 tilt_deg=0.0, truncation_px=0.0, droplet_cut=False,
                                 n_distractors=0, scale_bar=True, dose_e_per_px=60.0)
    params = dataclasses.replace(params, lattice_period_px=0.326 / params.pixel_size_nm,
                                 lattice_amplitude=0.3, defocus_nm=-abs(params.defocus_nm),
                                 mfp_liquid_nm=0.5 * params.mfp_wire_nm)
    image, labels, truth = render_insitu_frame(params, rng)
    gray = to_8bit(image)
    both = np.hstack([cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), truth_overlay(gray, truth)])
    cv2.imwrite(str(HERE / "synthetic-insitu-closeup.png"),
                cv2.resize(both, (800, 400), interpolation=cv2.INTER_AREA))


def video_figure() -> None:
    n = 120
    params = video_frame_params(VIDEO_SEED, 384, n)
    tiles = []
    for k in (0, 40, 80, 119):
        noise = frame_rng(VIDEO_SEED, k, 2, video=True)
        image, _, truth = render_insitu_frame(params[k], noise)
        tile = cv2.resize(truth_overlay(to_8bit(image), truth), (224, 224),
                          interpolation=cv2.INTER_AREA)
        cv2.putText(tile, f"frame {k}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255),
                    1, cv2.LINE_AA)
        tiles.append(tile)
    strip = np.hstack(tiles)
    # theta(t) plot under the strip.
    plot = np.full((180, strip.shape[1], 3), 255, np.uint8)
    theta = np.array([p.wire.theta_deg for p in params])
    lo, hi = 95.0, 125.0
    xs = 40 + np.arange(n) * (plot.shape[1] - 60) / (n - 1)
    ys = 160 - (theta - lo) / (hi - lo) * 140
    for v in (100, 110, 120):
        y = int(160 - (v - lo) / (hi - lo) * 140)
        cv2.line(plot, (40, y), (plot.shape[1] - 20, y), (220, 220, 220), 1)
        cv2.putText(plot, str(v), (6, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    pts = np.stack([xs, ys], 1).round().astype(np.int32)
    cv2.polylines(plot, [pts], False, (0, 0, 200), 2, cv2.LINE_AA)
    cv2.putText(plot, "true contact angle (deg) vs frame", (50, 20), cv2.FONT_HERSHEY_SIMPLEX,
                0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(HERE / "synthetic-insitu-video.png"), np.vstack([strip, plot]))


def appearance_figure() -> None:
    """Top row: the real crops of bench/data/real (fig6, fig1 panels); below: frames 0-11 of
    seed 42. Tiles 192 px high."""
    tile = 192
    real_dir = HERE.parent.parent / "bench" / "data" / "real" / "images"
    real = []
    for name in ("fig6", "fig1-135deg", "fig1-120deg", "fig1-88deg"):
        grey = cv2.imread(str(real_dir / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        width = round(grey.shape[1] * tile / grey.shape[0])
        real.append(cv2.resize(grey, (width, tile), interpolation=cv2.INTER_AREA))
    synth = []
    for k in range(12):
        image, _, _ = render_insitu_frame(frame_params(42, k, 512), frame_rng(42, k, 2))
        synth.append(cv2.resize(to_8bit(image), (tile, tile), interpolation=cv2.INTER_AREA))
    rows = [np.hstack(synth[i:i + 6]) for i in (0, 6)]
    top = np.hstack(real)
    top = np.pad(top, ((0, 8), (0, rows[0].shape[1] - top.shape[1])), constant_values=255)
    cv2.imwrite(str(HERE / "synthetic-insitu-appearance.png"), np.vstack([top, *rows]))


if __name__ == "__main__":
    frames_figure()
    closeup_figure()
    video_figure()
    appearance_figure()
