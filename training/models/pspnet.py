"""PSPNet: dilated ResNet-34 (output stride 8), pyramid pooling, sub-pixel decoder.

The first paper's PSPNet kept the ResNet strides (output stride 32, not 8) and its decoder
stopped at 1/4 resolution. Here the last two stages are dilated, so features
are at 1/8, and the decoder reaches full resolution with three x2 sub-pixel (PixelShuffle)
steps, each refined by a 3x3 convolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from training.models.base import SegmentationModel, int_tuple
from training.models.blocks import ConvBNAct, init_weights
from training.models.pooling import PyramidPooling
from training.models.resnet import ResNet


class PSPEncoder(nn.Module):
    """ResNet -> pyramid pooling. forward(x) -> [stage1 (1/4), stage2 (1/8), ppm (1/8)].

    The last element, the pyramid-pooling output with ``ppm_channels`` channels, is what the
    decoder reads (and what CCT perturbs); the earlier ones are exposed for inspection.
    """

    def __init__(
        self,
        in_channels: int,
        layers: Sequence[int],
        base_width: int,
        bins: Sequence[int],
        ppm_channels: int,
    ) -> None:
        super().__init__()
        self.backbone = ResNet(in_channels, layers, base_width, output_stride=8)
        self.ppm = PyramidPooling(self.backbone.out_channels, ppm_channels, bins)
        init_weights(self.ppm)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stages = self.backbone(x)
        return [stages[0], stages[1], self.ppm(stages[-1])]


class SubPixelDecoder(nn.Module):
    """Three x2 sub-pixel steps from 1/8 to full resolution, then a 1x1 classifier.

    Step: 1x1 conv to 4*c_out -> PixelShuffle(2) -> BN -> ReLU -> 3x3 ConvBNAct(c_out, c_out).
    Only ``features[-1]`` is used.
    """

    def __init__(self, in_channels: int, widths: Sequence[int], num_classes: int) -> None:
        super().__init__()
        steps = []
        previous = in_channels
        for width in widths:
            steps.append(
                nn.Sequential(
                    nn.Conv2d(previous, 4 * width, 1, bias=False),
                    nn.PixelShuffle(2),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                    ConvBNAct(width, width, 3),
                )
            )
            previous = width
        self.steps = nn.Sequential(*steps)
        self.head = nn.Conv2d(previous, num_classes, 1)
        init_weights(self)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.head(self.steps(features[-1]))


def build_pspnet(
    *,
    in_channels: int = 1,
    num_classes: int = 3,
    layers: Sequence[int] = (3, 4, 6, 3),
    base_width: int = 64,
    bins: Sequence[int] = (1, 2, 3, 6),
    ppm_channels: int | None = None,
    decoder_widths: Sequence[int] | None = None,
) -> SegmentationModel:
    """PSPNet with a ResNet-34 encoder (``layers`` BasicBlocks per stage) at output stride 8.

    Parameters
    ----------
    base_width : ResNet stem/first-stage width (64 in ResNet-34; stages are x1, x2, x4, x8).
    bins : pyramid-pooling grid sizes.
    ppm_channels : channels after pyramid pooling (default ``4 * base_width``).
    decoder_widths : channels after each x2 sub-pixel step (default base_width x (1, 1/2, 1/4)).

    Returns a :class:`SegmentationModel` with ``size_multiple = 8``.
    """
    layers_t = int_tuple("layers", layers)
    bins_t = int_tuple("bins", bins)
    if min(bins_t, default=0) < 1:
        raise ValueError(f"bins: need positive grid sizes, got {bins}")
    ppm = int(ppm_channels or 4 * base_width)
    widths = tuple(
        int(w)
        for w in (decoder_widths or (base_width, max(1, base_width // 2), max(1, base_width // 4)))
    )
    if len(widths) != 3:
        raise ValueError(f"decoder_widths: need three widths (1/4, 1/2, full), got {widths}")
    encoder = PSPEncoder(in_channels, layers_t, base_width, bins_t, ppm)
    config = dict(
        arch="pspnet",
        in_channels=in_channels,
        num_classes=num_classes,
        layers=list(layers_t),
        base_width=base_width,
        bins=list(bins_t),
        ppm_channels=ppm,
        decoder_widths=list(widths),
    )
    return SegmentationModel(
        encoder,
        partial(SubPixelDecoder, ppm, widths, num_classes),
        size_multiple=8,
        arch="pspnet",
        config=config,
    )
