"""UNet: an encoder of stride-2 levels, a decoder that upsamples and concatenates the skips.

Two registered configurations share this code:

- ``"unet-paper"``: the first paper's network, widths 16-32-64-128-256, two 3x3 convolutions
  per level, BatchNorm + LeakyReLU + dropout, max-pool down, bilinear up (~1.9 M parameters).
- ``"unet"``: the lean default for live CPU inference. A single cheap 3x3 convolution works at
  full resolution (4 channels) and is the shallowest skip; the last step concatenates it with
  the upsampled decoder features and a 1x1 head classifies every full-resolution pixel, so
  boundaries are placed with full-resolution image evidence. Everything else works at
  1/2 .. 1/32 resolution with widths 8-16-32-48-64, strided-convolution downsampling and
  2x2 transposed-convolution upsampling (choices measured in docs/models.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from training.models.base import SegmentationModel, int_tuple
from training.models.blocks import ACTIVATIONS, conv_stack, init_weights

DOWNSAMPLING = ("maxpool", "conv")
UPSAMPLING = ("bilinear", "transpose")


def _per_level(
    value: int | Sequence[int], n_levels: int, name: str, *, zero_first: bool = False
) -> tuple[int, ...]:
    values = (int(value),) * n_levels if isinstance(value, int) else int_tuple(name, value)
    lowest = (0 if zero_first else 1, 1)
    if len(values) != n_levels or any(v < lowest[i > 0] for i, v in enumerate(values)):
        raise ValueError(f"{name}: need {n_levels} positive counts (one per level), got {value}")
    return values


class UNetEncoder(nn.Module):
    """Levels 0..L-1; level i works at 1/2**i resolution with ``widths[i]`` channels.

    forward(x (N, C_in, H, W)) -> [level 0, ..., level L-1]; the last is the bottleneck.
    """

    def __init__(
        self,
        in_channels: int,
        widths: tuple[int, ...],
        convs: tuple[int, ...],
        *,
        down: str,
        act: str,
        dropout: float,
    ) -> None:
        super().__init__()
        levels = [conv_stack(in_channels, widths[0], convs[0], act=act, dropout=dropout)]
        for i in range(1, len(widths)):
            if down == "maxpool":
                block = conv_stack(widths[i - 1], widths[i], convs[i], act=act, dropout=dropout)
                levels.append(nn.Sequential(nn.MaxPool2d(2), block))
            else:
                levels.append(
                    conv_stack(
                        widths[i - 1], widths[i], convs[i], stride=2, act=act, dropout=dropout
                    )
                )
        self.levels = nn.ModuleList(levels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class UNetDecoder(nn.Module):
    """Upsample x2, concatenate the skip, convolve; a 1x1 head gives full-resolution logits."""

    def __init__(
        self,
        widths: tuple[int, ...],
        convs: tuple[int, ...],
        num_classes: int,
        *,
        upsample: str,
        act: str,
        dropout: float,
    ) -> None:
        super().__init__()
        self.upsample = upsample
        ups, blocks = [], []
        # Built deepest step first, the order forward() consumes them.
        for i in reversed(range(len(widths) - 1)):
            deep = widths[i + 1]
            if upsample == "transpose":
                ups.append(nn.ConvTranspose2d(deep, widths[i], 2, stride=2))
                deep = widths[i]
            else:
                ups.append(nn.Identity())
            if convs[i] == 0:  # only the full-resolution step: the head reads the concatenation
                blocks.append(nn.Identity())
                head_channels = deep + widths[i]
            else:
                blocks.append(
                    conv_stack(deep + widths[i], widths[i], convs[i], act=act, dropout=dropout)
                )
                head_channels = widths[i]
        self.ups = nn.ModuleList(ups)
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(head_channels, num_classes, 1)
        init_weights(self, act)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        skips = features[-2::-1]
        for up, block, skip in zip(self.ups, self.blocks, skips, strict=True):
            if self.upsample == "transpose":
                x = up(x)
            else:
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


def build_unet(
    *,
    in_channels: int = 1,
    num_classes: int = 3,
    widths: Sequence[int] = (4, 8, 16, 32, 48, 64),
    encoder_convs: int | Sequence[int] | None = None,
    decoder_convs: int | Sequence[int] | None = None,
    down: str = "conv",
    upsample: str = "transpose",
    act: str = "relu",
    dropout: float = 0.0,
    arch: str = "unet",
) -> SegmentationModel:
    """A UNet with configurable widths and depth (``len(widths)`` levels).

    Parameters
    ----------
    widths : channels of each level, shallowest (full resolution) first.
    encoder_convs, decoder_convs : 3x3 convolutions per level (an int or one per level; the
        decoder has one level fewer: nothing is decoded at the bottleneck). The encoder
        default is 1 at full resolution and 2 at every coarser level. ``decoder_convs[0]``
        may be 0 (the default: 0 then 1 per level): the 1x1 head then reads the
        concatenation of the upsampled features and the full-resolution skip directly.
    down : ``"conv"`` (stride-2 first convolution) or ``"maxpool"``.
    upsample : ``"bilinear"`` (x2 resize, then concatenation) or ``"transpose"`` (2x2 stride-2
        transposed convolution to the skip's width).
    act : ``"relu"`` or ``"leaky_relu"``; dropout : Dropout2d after every level's convolutions.

    Returns a :class:`SegmentationModel` with ``size_multiple = 2 ** (len(widths) - 1)``.
    """
    widths_t = int_tuple("widths", widths)
    if len(widths_t) < 2 or min(widths_t) < 1:
        raise ValueError(f"widths: need >= 2 positive widths, got {widths}")
    if down not in DOWNSAMPLING:
        raise ValueError(f"down: {down!r} is not one of {DOWNSAMPLING}")
    if upsample not in UPSAMPLING:
        raise ValueError(f"upsample: {upsample!r} is not one of {UPSAMPLING}")
    if act not in ACTIVATIONS:
        raise ValueError(f"act: {act!r} is not one of {ACTIVATIONS}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: {dropout} must be in [0, 1)")
    if encoder_convs is None:
        encoder_convs = (1,) + (2,) * (len(widths_t) - 1)
    if decoder_convs is None:
        decoder_convs = (0,) + (1,) * (len(widths_t) - 2)
    enc = _per_level(encoder_convs, len(widths_t), "encoder_convs")
    dec = _per_level(decoder_convs, len(widths_t) - 1, "decoder_convs", zero_first=True)
    encoder = UNetEncoder(in_channels, widths_t, enc, down=down, act=act, dropout=dropout)
    init_weights(encoder, act)
    decoder_factory = partial(
        UNetDecoder, widths_t, dec, num_classes, upsample=upsample, act=act, dropout=dropout
    )
    config = dict(
        arch=arch,
        in_channels=in_channels,
        num_classes=num_classes,
        widths=list(widths_t),
        encoder_convs=list(enc),
        decoder_convs=list(dec),
        down=down,
        upsample=upsample,
        act=act,
        dropout=dropout,
    )
    return SegmentationModel(
        encoder,
        decoder_factory,
        size_multiple=2 ** (len(widths_t) - 1),
        arch=arch,
        config=config,
    )


def build_unet_paper(
    *,
    in_channels: int = 1,
    num_classes: int = 3,
    widths: Sequence[int] = (16, 32, 64, 128, 256),
    dropout: float = 0.1,
    **options,
) -> SegmentationModel:
    """The first paper's UNet: two convs per level, LeakyReLU, dropout, max-pool, bilinear up."""
    settings = dict(
        encoder_convs=2, decoder_convs=2, down="maxpool", upsample="bilinear", act="leaky_relu"
    )
    settings.update(options)
    settings["arch"] = "unet-paper"
    return build_unet(
        in_channels=in_channels, num_classes=num_classes, widths=widths, dropout=dropout, **settings
    )
