"""Adaptive average pooling and pyramid pooling that export to ONNX for any input size.

``nn.AdaptiveAvgPool2d`` with a dynamic height/width exports silently wrong: the bin edges of
the trace-time size are baked into the graph (tests/test_export.py shows it). Here the
pooling is two matrix products, ``P_rows @ x @ P_cols.T``, with the averaging matrices
computed from the input shape inside the graph, so the exported model pools correctly at every size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from training.models.blocks import ConvBNAct


def averaging_matrix(length: int | torch.SymInt, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins, length) matrix whose row i averages the input cells of adaptive bin i.

    Bin i covers ``[floor(i*length/bins), ceil((i+1)*length/bins))``, the definition of
    ``torch.nn.AdaptiveAvgPool2d``; bins may overlap and ``length < bins`` is allowed.
    """
    index = torch.arange(length, device=like.device)
    b = torch.arange(bins, device=like.device)
    start = torch.div(b * length, bins, rounding_mode="floor")
    end = torch.div((b + 1) * length + bins - 1, bins, rounding_mode="floor")
    inside = (index[None, :] >= start[:, None]) & (index[None, :] < end[:, None])
    weights = inside.to(like.dtype)
    return weights / weights.sum(dim=1, keepdim=True)


def adaptive_avg_pool2d(x: torch.Tensor, bins: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, bins)`` for x (N, C, H, W) -> (N, C, bins, bins), exportable."""
    rows = averaging_matrix(x.shape[-2], bins, x)
    cols = averaging_matrix(x.shape[-1], bins, x)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


class PyramidPooling(nn.Module):
    """PSPNet pyramid pooling: for each bin count, pool -> 1x1 conv -> upsample; concatenate.

    forward(x (N, C, h, w)) -> (N, C + len(bins) * branch_channels, h, w), then a 3x3
    ConvBNAct fuses it to ``out_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        branch_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.bins = tuple(int(b) for b in bins)
        branch = branch_channels or max(1, in_channels // len(self.bins))
        self.branches = nn.ModuleList(ConvBNAct(in_channels, branch, 1) for _ in self.bins)
        self.fuse = ConvBNAct(in_channels + branch * len(self.bins), out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pyramid = [x]
        for bins, branch in zip(self.bins, self.branches, strict=True):
            pooled = branch(adaptive_avg_pool2d(x, bins))
            pyramid.append(F.interpolate(pooled, size=size, mode="bilinear", align_corners=False))
        return self.fuse(torch.cat(pyramid, dim=1))
