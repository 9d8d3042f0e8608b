"""Class ids shared by label images, models and measurements."""

from __future__ import annotations

BACKGROUND = 0
NANOWIRE = 1
DROPLET = 2
#: Pixels with this value in a training label are ignored by every loss and metric.
UNLABELED = 255

INSITU_CLASSES: tuple[str, ...] = ("background", "nanowire", "droplet")

#: Tomogram classes: 0 pore or vacuum, 1 solid.
PORE = 0
SOLID = 1
TOMOGRAM_CLASSES: tuple[str, ...] = ("pore", "solid")
