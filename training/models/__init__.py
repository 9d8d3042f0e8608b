"""Segmentation architectures and their registry.

``build_model(arch, in_channels=1, num_classes=3, **options)`` builds one of ``MODELS``:

- ``"unet"``: lean UNet for live CPU inference (full-resolution 4-channel level, then
  1/2 .. 1/32 with widths 8-16-32-48-64); ``size_multiple`` 32.
- ``"unet-paper"``: the first paper's UNet, 16-32-64-128-256, BN + LeakyReLU + dropout,
  bilinear up; ``size_multiple`` 16.
- ``"pspnet"``: dilated ResNet-34 (output stride 8), pyramid pooling bins 1, 2, 3, 6,
  sub-pixel decoder to full resolution; ``size_multiple`` 8.

Every model is a :class:`SegmentationModel` (encoder -> list of features -> decoder -> logits
(N, num_classes, H, W) at full resolution) and rebuilds from ``build_model(**model.config)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from training.models.base import SegmentationModel
from training.models.pspnet import build_pspnet
from training.models.unet import build_unet, build_unet_paper

MODELS: dict[str, Callable[..., SegmentationModel]] = {
    "unet": build_unet,
    "unet-paper": build_unet_paper,
    "pspnet": build_pspnet,
}


def build_model(
    arch: str, *, in_channels: int = 1, num_classes: int = 3, **options
) -> SegmentationModel:
    """Build a registered architecture with fresh (untrained) weights.

    Parameters
    ----------
    arch : a key of ``MODELS``.
    in_channels : image channels (1 for TEM frames).
    num_classes : output channels (logits).
    options : architecture options (see ``build_unet`` / ``build_pspnet``).

    Raises
    ------
    KeyError : unknown ``arch`` or option; the message lists the valid choices.
    ValueError : a bad option value; the message names the option.
    """
    check_options(arch, options)
    return MODELS[arch](in_channels=in_channels, num_classes=num_classes, **options)


def option_names(arch: str) -> frozenset[str]:
    """The ``options`` keys :func:`build_model` takes for ``arch`` (a key of ``MODELS``)."""
    if arch not in MODELS:
        raise KeyError(f"unknown architecture {arch!r}; choose one of {sorted(MODELS)}")
    fixed = {"in_channels", "num_classes", "arch"}  # set by build_model or by the builder
    params = inspect.signature(MODELS[arch]).parameters.values()
    names = {p.name for p in params if p.kind is p.KEYWORD_ONLY} - fixed
    if any(p.kind is p.VAR_KEYWORD for p in params):  # unet-paper: the rest go to build_unet
        names |= option_names("unet")
    return frozenset(names)


def check_options(arch: str, options: dict) -> None:
    """KeyError naming the unknown ``arch`` or ``options`` keys and listing the known ones."""
    known = option_names(arch)
    unknown = sorted(set(options) - known)
    if unknown:
        raise KeyError(f"unknown key(s) {', '.join(map(repr, unknown))} for {arch!r} (known: "
                       f"{', '.join(sorted(known))})")


__all__ = ["MODELS", "SegmentationModel", "build_model", "build_pspnet", "build_unet",
           "check_options", "option_names"]
