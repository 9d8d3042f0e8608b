"""What every paradigm provides to the training loop (:mod:`training.engine`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from training.config import TrainConfig
from training.losses import unit_embeddings
from training.models import build_model

if TYPE_CHECKING:
    from training.data import LabeledImage, TrainingData


class ComposedModel(nn.Module):
    """Embedding backbone + 1x1 classifier, seen by the runtime as one logits model.

    forward(x float32 (N, 1, H, W)) -> logits (N, C, H, W): the classifier reads the
    L2-normalised embedding (the contrastive losses only constrain its direction).
    """

    def __init__(self, backbone: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.size_multiple = backbone.size_multiple
        self.arch = backbone.arch
        self.config = dict(backbone.config)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings (N, D, H, W)."""
        return unit_embeddings(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def build_inference_model(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a logits model from the ``inference`` entry of a checkpoint (untrained weights)."""
    if spec["type"] == "segmentation":
        return build_model(**spec["config"])
    if spec["type"] == "contrastive":
        backbone = build_model(**spec["config"])
        classifier = nn.Conv2d(spec["config"]["num_classes"], spec["num_classes"], 1)
        return ComposedModel(backbone, classifier)
    raise ValueError(f"unknown inference model type {spec['type']!r}")


class Paradigm:
    """Base class: one segmentation model trained with CE + Dice.

    Subclasses override :meth:`training_loss` and, where needed, the hooks. ``modules`` holds
    every trained module (saved in the checkpoint); :meth:`inference_model` is what is
    validated and exported.
    """

    name = "supervised"
    uses_unlabeled = False

    def __init__(self, config: TrainConfig, num_classes: int) -> None:
        self.config = config
        self.num_classes = num_classes
        self.model = build_model(config.arch, in_channels=1, num_classes=num_classes,
                                 **config.model_options)
        self.modules = nn.ModuleDict({"model": self.model})
        self.provenance: dict[str, Any] = {}

    # --- hooks ------------------------------------------------------------------------
    def extra_labeled(self, data: TrainingData, device: torch.device,
                      echo: Callable[[str], None]) -> list[LabeledImage]:
        """Labeled images the paradigm adds to DATA's training images (pseudo-labels);
        ``echo`` takes a line for the user about them."""
        return []

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.modules.parameters() if p.requires_grad]

    def train_mode(self) -> None:
        self.modules.train()

    def inference_model(self) -> nn.Module:
        return self.model

    def inference_spec(self) -> dict[str, Any]:
        return {"type": "segmentation", "config": dict(self.model.config)}

    def training_loss(self, images: torch.Tensor, labels: torch.Tensor,
                      unlabeled: torch.Tensor | None, epoch: float
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch.

        images : float32 (N, 1, h, w) normalised crops.  labels : int64 (N, h, w), 255 ignored.
        unlabeled : float32 (M, 1, h, w) or None.  epoch : fractional epoch (for ramp-ups).
        """
        raise NotImplementedError

    def finish(self, sample_batch, device: torch.device) -> None:
        """Called once after the last epoch (the contrastive classifier refit)."""

    def rng_state(self) -> torch.Tensor | None:
        """State of the paradigm's own generator (CCT's perturbations, the contrastive
        copies and pixel draws), saved in the checkpoint; None when it has none."""
        generator = getattr(self, "_generator", None)
        return None if generator is None else generator.get_state()

    def set_rng_state(self, state: torch.Tensor | None) -> None:
        """Continue the generator of :meth:`rng_state` (a resumed run draws what an
        uninterrupted one would)."""
        generator = getattr(self, "_generator", None)
        if generator is not None and state is not None:
            generator.set_state(state)

    def to(self, device: torch.device) -> Paradigm:
        self.modules.to(device)
        return self
