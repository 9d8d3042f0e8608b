"""Tiny synthetic training folders for the training tests (a bright bar and a dark disc)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile


def write_two_phase_volume(path: Path, slices: int = 5) -> Path:
    """A (slices, 32, 32) float32 TIFF volume at ``path``: pore (50 counts) in columns 0-15,
    solid (110) in 16-31, Gaussian noise of 8 counts (seed 0); returns ``path``."""
    volume = np.random.default_rng(0).normal(50, 8, (slices, 32, 32)).astype(np.float32)
    volume[:, :, 16:] += 60
    tifffile.imwrite(path, volume)
    return path


def make_scene(rng: np.random.Generator, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """uint16 image (size, size) and uint8 labels: 0 background, 1 bar, 2 disc."""
    rows, cols = np.mgrid[:size, :size]
    label = np.zeros((size, size), np.uint8)
    c0 = int(rng.integers(size // 4, size // 2))
    width = int(rng.integers(6, 12))
    top = int(rng.integers(size // 3, size // 2))
    label[top:, c0:c0 + width] = 1
    radius = width * 0.8
    centre = (top - radius * 0.6, c0 + width / 2)
    label[(rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2] = 2
    image = np.choose(label, [1000.0, 2500.0, 300.0]) + rng.normal(0, 150, label.shape)
    return np.clip(image, 0, 65535).astype(np.uint16), label


def make_folder(root: Path, n: int = 6, size: int = 48, unlabeled: int = 0,
                seed: int = 0) -> Path:
    """DATA/images/*.tif, DATA/labels/*.png and optional DATA/unlabeled/stack.tif."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for k in range(n):
        image, label = make_scene(rng, size)
        tifffile.imwrite(root / "images" / f"img{k:02d}.tif", image)
        cv2.imwrite(str(root / "labels" / f"img{k:02d}.png"), label)
    if unlabeled:
        (root / "unlabeled").mkdir(exist_ok=True)
        stack = np.stack([make_scene(rng, size)[0] for _ in range(unlabeled)])
        tifffile.imwrite(root / "unlabeled" / "stack.tif", stack, photometric="minisblack")
    return root


def capture_train(monkeypatch) -> dict:
    """Replace ``training.engine.train`` with a stub that records the TrainConfig the CLI
    built (``seen["config"]``) and stops the command with a TrainingError("captured")."""
    import training.engine

    seen: dict = {}

    def capture(config, **_):
        seen["config"] = config
        raise training.engine.TrainingError("captured")

    monkeypatch.setattr(training.engine, "train", capture)
    return seen

