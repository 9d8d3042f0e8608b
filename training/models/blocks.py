"""Small convolutional building blocks shared by the architectures."""

from __future__ import annotations

import math

from torch import nn

ACTIVATIONS = ("relu", "leaky_relu")


def activation(name: str) -> nn.Module:
    """A fresh activation module: ``"relu"`` or ``"leaky_relu"`` (slope 0.01)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01, inplace=True)
    raise ValueError(f"activation: {name!r} is not one of {ACTIVATIONS}")


class ConvBNAct(nn.Sequential):
    """``kernel x kernel`` convolution (no bias) -> BatchNorm -> activation; 'same' padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        act: str = "relu",
    ) -> None:
        padding = dilation * (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel,
                stride=stride,
                padding=padding,
                dilation=dilation,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            activation(act),
        )


def conv_stack(
    in_channels: int,
    out_channels: int,
    n_convs: int,
    *,
    stride: int = 1,
    act: str = "relu",
    dropout: float = 0.0,
) -> nn.Sequential:
    """``n_convs`` 3x3 ConvBNAct layers (the first may be strided), then optional Dropout2d."""
    if n_convs < 1:
        raise ValueError(f"n_convs: {n_convs} must be >= 1")
    layers: list[nn.Module] = [ConvBNAct(in_channels, out_channels, stride=stride, act=act)]
    layers += [ConvBNAct(out_channels, out_channels, act=act) for _ in range(n_convs - 1)]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


def init_weights(module: nn.Module, act: str = "relu") -> None:
    """He-normal convolutions (fan-out; transposed convs: taps per output pixel), unit
    BatchNorm, zero biases; applied recursively."""
    slope = 0.01 if act == "leaky_relu" else 0.0
    gain = nn.init.calculate_gain(act, slope)
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d):
            # Each output pixel of a k x k, stride-k transposed conv sees one tap per input
            # channel; torch's fan (in_channels * k * k) would shrink the upsampled path by k
            # at every level and starve the deep features at the start of training.
            taps = m.in_channels * math.prod(m.kernel_size) // math.prod(m.stride)
            nn.init.normal_(m.weight, std=gain / math.sqrt(taps))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=slope, mode="fan_out", nonlinearity=act)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
