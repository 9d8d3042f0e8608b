"""The one shape every nwwatch network has: encoder -> decoder, wired in one place."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


class SegmentationModel(nn.Module):
    """An encoder producing a list of features and a decoder turning them into logits.

    Attributes
    ----------
    encoder : x float32 (N, C_in, H, W) -> list of feature tensors; the LAST is the deepest
        (UNet bottleneck, PSPNet pyramid-pooling output); for UNet the others are the skips,
        shallowest first.
    decoder : list of features -> logits float32 (N, num_classes, H, W) at full input resolution.
    size_multiple : H and W must be multiples of it.
    arch : registry name (``training.models.MODELS``).
    config : keyword arguments that rebuild the model: ``build_model(**config)``.

    ``new_decoder()`` returns a freshly initialised decoder of the same structure (CCT auxiliary
    decoders fed perturbed features).
    """

    encoder: nn.Module
    decoder: nn.Module

    def __init__(
        self,
        encoder: nn.Module,
        decoder_factory: Callable[[], nn.Module],
        *,
        size_multiple: int,
        arch: str,
        config: dict[str, Any],
    ) -> None:
        super().__init__()
        self.encoder = encoder
        # A picklable callable (functools.partial of a class), not a lambda.
        self._decoder_factory = decoder_factory
        self.decoder = decoder_factory()
        self.size_multiple = int(size_multiple)
        self.arch = arch
        self.config = dict(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits float32 (N, num_classes, H, W) of normalised images x (N, C_in, H, W)."""
        return self.decoder(self.encoder(x))

    def new_decoder(self) -> nn.Module:
        """A freshly initialised decoder of the same structure, on the model's device."""
        decoder = self._decoder_factory()
        reference = next(self.decoder.parameters(), None)
        if reference is not None:
            decoder = decoder.to(device=reference.device, dtype=reference.dtype)
        return decoder

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, size_multiple={self.size_multiple}"


def int_tuple(name: str, value: Any) -> tuple[int, ...]:
    """A list option of whole numbers (``--model-options`` JSON) as a tuple; ValueError naming
    the option for a string, a fraction or another type (``int()`` truncated 4.5 to 4)."""
    if isinstance(value, Sequence) and not isinstance(value, str) and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        return tuple(int(v) for v in value)
    raise ValueError(f"{name}: expected a list of whole numbers, got {value!r}")
