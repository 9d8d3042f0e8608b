"""Appearance randomisation of synthetic in-situ frames: each effect rebuilt from its model,
and none of them changes the labels."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from nwwatch.classes import BACKGROUND, DROPLET, NANOWIRE
from nwwatch.synth.appearance import (
    Appearance,
    apply_halo_and_contamination,
    burn_text,
    jpeg_roundtrip,
    sample_appearance,
)
from nwwatch.synth.insitu import render_insitu_frame
from nwwatch.synth.params import sample_frame_params
from nwwatch.synth.texture import lattice_modulation, stacking_sequence


def _disk_labels(size: int = 128, radius: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[:size, :size].astype(float)
    dist = np.hypot(rows - size / 2, cols - size / 2)
    labels = np.where(dist <= radius, DROPLET, BACKGROUND).astype(np.uint8)
    return labels, dist - radius


def test_halo_follows_its_exponential_profile_outside_the_droplet() -> None:
    labels, signed = _disk_labels()
    look = Appearance(halo_droplet=0.4, halo_width_px=3.0)
    out = apply_halo_and_contamination(np.ones(labels.shape, np.float32), labels, look)
    assert np.all(out[labels == DROPLET] == 1.0)
    ring = (signed > 3.0) & (signed < 4.0)
    # Distance from a background pixel to the nearest droplet pixel is about signed + 0.5.
    expected = 1.0 + 0.4 * np.exp(-(signed[ring] + 0.5 - 0.5) / 3.0)
    assert np.allclose(out[ring], expected, atol=0.04)
    assert np.all(out[signed > 40] < 1.0 + 0.4 * math.exp(-12))


def test_contamination_darkens_a_layer_of_about_its_thickness_on_the_wire() -> None:
    labels = np.zeros((200, 200), np.uint8)
    labels[:, 80:120] = NANOWIRE
    look = Appearance(contamination_px=6.0, contamination_darkening=0.15, seed=3)
    out = apply_halo_and_contamination(np.ones(labels.shape, np.float32), labels, look)
    assert np.all(out[labels == NANOWIRE] == 1.0)
    darker = (out < 0.99) & (labels == BACKGROUND)
    thickness_px = darker.sum() / (2 * labels.shape[0])
    assert 3.0 < thickness_px < 10.0
    assert not darker[:, :60].any() and not darker[:, 140:].any()


def test_text_and_jpeg_touch_the_image_only() -> None:
    rng = np.random.default_rng(5)
    params = sample_frame_params(rng, 128, scale_bar=False)
    plain = dataclasses.replace(params, appearance=Appearance())
    marked = dataclasses.replace(params, appearance=Appearance(text_count=3, jpeg_quality=40,
                                                               seed=9))
    image_a, labels_a, _ = render_insitu_frame(plain, np.random.default_rng(1))
    image_b, labels_b, _ = render_insitu_frame(marked, np.random.default_rng(1))
    assert np.array_equal(labels_a, labels_b)
    assert not np.array_equal(image_a, image_b)


def test_burn_text_writes_bright_or_dark_marks() -> None:
    image = np.full((256, 256), 1000, np.uint16)
    image[0, 0], image[-1, -1] = 500, 1500
    before = image.copy()
    burn_text(image, Appearance(text_count=2, seed=4))
    assert np.count_nonzero(image != before) > 20


def test_jpeg_roundtrip_keeps_the_range_and_is_close_at_high_quality() -> None:
    rows, cols = np.mgrid[:128, :128]
    image = (1000 + 5 * rows + 3 * cols).astype(np.uint16)
    back = jpeg_roundtrip(image, 95)
    assert back.dtype == np.uint16 and back.shape == image.shape
    step = (np.percentile(image, 99.9) - np.percentile(image, 0.1)) / 255.0
    assert np.median(np.abs(back.astype(float) - image)) <= 2 * step


def test_inclined_fringes_have_the_requested_period_along_their_normal() -> None:
    size, period, turn = 256, 5.0, math.radians(30.0)
    rows, cols = np.mgrid[:size, :size].astype(np.float32)
    y = rows  # material coordinate along the axis (axis along +row here)
    u = (y * math.cos(turn) + cols * math.sin(turn)).astype(np.float32)
    seq = stacking_sequence(0, 1e6, 0.0, extent_px=4.0 * size)
    mod = lattice_modulation(y, np.ones_like(y), period, 0.3, seq, u)
    spectrum = np.abs(np.fft.fft2(mod - mod.mean()))
    kr, kc = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    fr = np.fft.fftfreq(size)[kr]
    fc = np.fft.fftfreq(size)[kc]
    assert abs(1.0 / math.hypot(fr, fc) - period) < 0.2
    assert abs(abs(math.degrees(math.atan2(fc, fr))) % 180 - 30.0) < 3.0


def test_sampled_appearance_varies_widely() -> None:
    looks = [sample_appearance(np.random.default_rng(k), 512) for k in range(200)]
    assert 0.3 < np.mean([a.halo_droplet > 0 for a in looks]) < 0.9
    assert 0.2 < np.mean([a.contamination_px > 0 for a in looks]) < 0.6
    assert 0.1 < np.mean([a.jpeg_quality > 0 for a in looks]) < 0.4
    assert min(a.gamma for a in looks) < 0.8 and max(a.gamma for a in looks) > 1.3
