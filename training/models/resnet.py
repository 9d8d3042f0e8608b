"""ResNet-34 (BasicBlock, [3, 4, 6, 3]) with optional dilation instead of striding.

torchvision is not a dependency and no pretrained weights are used, so it is written here.
With ``output_stride=8`` the last two stages keep stride 1 and dilate their convolutions by 2
and 4 (the first block of each stage by the previous dilation, as in DeepLab/PSPNet), so the
receptive field grows as in the strided network while features stay at 1/8 resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from training.models.blocks import init_weights

OUTPUT_STRIDES = (8, 16, 32)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (1x1 projection when the shape changes)."""

    def __init__(
        self, in_channels: int, channels: int, stride: int = 1, dilation: tuple[int, int] = (1, 1)
    ) -> None:
        super().__init__()
        d1, d2 = dilation
        self.conv1 = nn.Conv2d(
            in_channels, channels, 3, stride, padding=d1, dilation=d1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, padding=d2, dilation=d2, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with BasicBlocks: 7x7/2 stem, 3x3/2 max-pool, four stages.

    forward(x (N, C_in, H, W)) -> [stage1 (1/4), stage2 (1/8), stage3, stage4]; stage widths
    are ``base_width * (1, 2, 4, 8)``; stages 3 and 4 are at 1/8 (output_stride 8), 1/16 and
    1/16 (16) or 1/16 and 1/32 (32).
    """

    def __init__(
        self,
        in_channels: int = 1,
        layers: Sequence[int] = (3, 4, 6, 3),
        base_width: int = 64,
        output_stride: int = 8,
    ) -> None:
        super().__init__()
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride: {output_stride} is not one of {OUTPUT_STRIDES}")
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers: need four positive block counts, got {layers}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, base_width, 7, 2, padding=3, bias=False),
            nn.BatchNorm2d(base_width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, padding=1),
        )
        # (stride, dilation) of stages 3 and 4 for each output stride.
        plan = {8: ((1, 2), (1, 4)), 16: ((2, 1), (1, 2)), 32: ((2, 1), (2, 1))}[output_stride]
        stages = [self._stage(base_width, base_width, layers[0], 1, 1, 1)]
        stages.append(self._stage(base_width, 2 * base_width, layers[1], 2, 1, 1))
        previous = 1
        for i, (stride, dilation) in enumerate(plan):
            width = base_width * 2 ** (i + 2)
            stages.append(self._stage(width // 2, width, layers[i + 2], stride, previous, dilation))
            previous = dilation
        self.stages = nn.ModuleList(stages)
        self.out_channels = 8 * base_width
        init_weights(self)
        # Zero-init of each block's last BN makes every residual branch start as identity.
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    @staticmethod
    def _stage(
        in_channels: int, channels: int, blocks: int, stride: int, first: int, dilation: int
    ) -> nn.Sequential:
        layers = [BasicBlock(in_channels, channels, stride, (first, dilation))]
        layers += [
            BasicBlock(channels, channels, 1, (dilation, dilation)) for _ in range(blocks - 1)
        ]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
