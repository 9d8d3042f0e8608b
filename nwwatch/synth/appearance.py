"""Appearance randomisation of in-situ frames beyond the optics: what real frames show and the
physical model leaves out or under-weights.

- a bright halo (Fresnel fringe as recorded, often wider and stronger than one defocus fringe)
  just outside the droplet and the wire;
- amorphous contamination: a low-contrast, grainy layer of rough thickness on the sidewalls;
- tone: gamma of the recorded intensity;
- burned-in annotations: text anywhere (labels of what lies beneath are unchanged, as a person
  labelling a figure would draw them);
- JPEG compression of an 8-bit export.

The model learns what a wire and a droplet are from shape, so these vary widely rather than
matching one microscope. Every function works at frame resolution on (row, col) arrays; the
draws come from one generator, so a video keeps its appearance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from nwwatch.classes import BACKGROUND, DROPLET, NANOWIRE
from nwwatch.synth.optics import smooth_field

_WORDS = ("200 kV", "300kV", "x 400k", "x250 k", "ZB", "WZ", "GaAs", "Au", "Ga", "In-situ",
          "t = 12.4 s", "00:03:17", "Frame 118", "HAADF", "TEM", "[111]", "<110>", "1", "2",
          "a", "b", "c", "theta", "phi = 120", "10 nm", "5nm", "T=550C", "Si", "InAs")


@dataclass(frozen=True)
class Appearance:
    """Appearance settings of one frame (defaults: none of these effects).

    ``halo_*``: peak relative brightening just outside the droplet / wire, decaying with
    distance over ``halo_width_px``. ``contamination_px``: mean thickness of the amorphous
    layer on the wire's sidewalls (0: none), ``contamination_darkening`` its relative
    darkening, ``contamination_droplet``: the droplet carries it too. ``gamma``: recorded
    intensity = intensity ** gamma. ``text_count``: annotations burned in anywhere;
    ``jpeg_quality``: 0 none, else the 8-bit JPEG quality of an export.
    """

    halo_droplet: float = 0.0
    halo_wire: float = 0.0
    halo_width_px: float = 2.0
    contamination_px: float = 0.0
    contamination_darkening: float = 0.0
    contamination_droplet: bool = False
    gamma: float = 1.0
    text_count: int = 0
    jpeg_quality: int = 0
    seed: int = 0


def sample_appearance(rng: np.random.Generator, size: int) -> Appearance:
    """Draw an :class:`Appearance` for a ``size`` x ``size`` frame: each effect present in
    about half the frames or less, over wide ranges."""
    halo = rng.random() < 0.6
    contamination = rng.random() < 0.4
    return Appearance(
        halo_droplet=float(rng.uniform(0.05, 0.5)) if halo else 0.0,
        halo_wire=float(rng.uniform(0.0, 0.35)) if halo else 0.0,
        halo_width_px=float(math.exp(rng.uniform(math.log(1.0), math.log(max(2.0, size / 50))))),
        contamination_px=float(rng.uniform(1.5, max(2.0, size / 40))) if contamination else 0.0,
        contamination_darkening=float(rng.uniform(0.03, 0.2)) if contamination else 0.0,
        contamination_droplet=bool(rng.random() < 0.3),
        gamma=float(math.exp(rng.uniform(math.log(0.6), math.log(1.6))))
        if rng.random() < 0.5 else 1.0,
        text_count=int(rng.choice([0, 1, 2, 3], p=[0.6, 0.2, 0.12, 0.08])),
        jpeg_quality=int(rng.integers(30, 90)) if rng.random() < 0.25 else 0,
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def _distance_outside(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) of every pixel to the nearest pixel of ``mask`` (0 inside)."""
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)


def apply_halo_and_contamination(
    intensity: np.ndarray, labels: np.ndarray, appearance: Appearance
) -> np.ndarray:
    """Multiply ``intensity`` (float32 (H, W), vacuum about 1) by the contamination layer
    and the halo; ``labels`` (uint8 (H, W), 0/1/2) place them. Returns a new float32 array.

    The layer and the halo lie outside the objects, on pixels labelled background, which they
    stay: contamination is not part of the crystal, the halo is an imaging artefact.
    """
    out = intensity.astype(np.float32, copy=True)
    a = appearance
    outside = labels == BACKGROUND
    if a.contamination_px > 0 and a.contamination_darkening > 0:
        target = (labels == NANOWIRE) | ((labels == DROPLET) if a.contamination_droplet
                                         else np.zeros_like(outside))
        if target.any():
            dist = _distance_outside(target)
            rough = smooth_field(labels.shape, max(4.0, 2.0 * a.contamination_px), a.seed)
            thickness = a.contamination_px * np.clip(1.0 + 0.5 * rough, 0.2, 2.0)
            layer = np.clip(thickness - dist + 0.5, 0.0, 1.0) * outside
            grain = smooth_field(labels.shape, 1.5, a.seed + 1)
            out *= 1.0 - a.contamination_darkening * layer * (1.0 + 0.5 * grain)
    if a.halo_droplet > 0 or a.halo_wire > 0:
        width = max(a.halo_width_px, 0.5)
        for cls, strength in ((DROPLET, a.halo_droplet), (NANOWIRE, a.halo_wire)):
            target = labels == cls
            if strength <= 0 or not target.any():
                continue
            dist = _distance_outside(target)
            out *= 1.0 + strength * np.exp(-(dist - 0.5) / width) * outside
    return out


def apply_gamma(intensity: np.ndarray, gamma: float) -> np.ndarray:
    """``intensity ** gamma`` (float32, negative values clipped to 0)."""
    if gamma == 1.0:
        return intensity
    return np.power(np.clip(intensity, 0.0, None), np.float32(gamma)).astype(np.float32)


def burn_text(image: np.ndarray, appearance: Appearance) -> None:
    """Burn ``appearance.text_count`` short annotations (white or black, any place, over the
    objects too) into ``image`` (uint16 (H, W), in place)."""
    if appearance.text_count <= 0:
        return
    rng = np.random.default_rng(appearance.seed + 2)
    h, w = image.shape
    lo, hi = np.percentile(image, (0.5, 99.5))
    for _ in range(appearance.text_count):
        text = str(rng.choice(_WORDS))
        scale = float(rng.uniform(0.35, 1.0)) * h / 512
        thick = max(1, round(float(rng.uniform(1.0, 2.5)) * h / 512))
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        org = (int(rng.integers(0, max(1, w - tw))), int(rng.integers(th + 1, max(th + 2, h))))
        mask = np.zeros((h, w), np.uint8)
        cv2.putText(mask, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)
        level = (hi * 1.2 if rng.random() < 0.75 else lo * 0.8)
        alpha = mask.astype(np.float32) / 255.0
        blended = image.astype(np.float32) * (1.0 - alpha) + np.float32(level) * alpha
        image[...] = np.clip(np.rint(blended), 0, 65535).astype(image.dtype)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Export ``image`` (uint16 (H, W)) as 8-bit JPEG of ``quality`` (stretched between its
    0.1 and 99.9 percentiles, as figure exports do) and read it back as uint16 in that range."""
    if quality <= 0:
        return image
    lo, hi = (float(v) for v in np.percentile(image, (0.1, 99.9)))
    hi = max(hi, lo + 1.0)
    eight = np.clip((image.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255)
    ok, buf = cv2.imencode(".jpg", eight.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("jpeg_roundtrip: OpenCV could not encode the frame")
    back = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32)
    return np.clip(np.rint(lo + back * ((hi - lo) / 255.0)), 0, 65535).astype(np.uint16)
