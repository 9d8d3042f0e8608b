"""Supervised training (seed 000's models A = PSPNet and D = UNet): CE + mean Dice."""

from __future__ import annotations

import torch

from training.losses import ce_dice_loss
from training.paradigms.base import Paradigm


class SupervisedParadigm(Paradigm):
    """Labeled crops only; loss = CE on logits (ignoring 255) + mean Dice."""

    name = "supervised"

    def training_loss(self, images: torch.Tensor, labels: torch.Tensor,
                      unlabeled: torch.Tensor | None, epoch: float
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        loss = ce_dice_loss(self.model(images), labels, dice_weight=self.config.dice_weight,
                            boundary_weight=self.config.boundary_weight)
        return loss, {"loss": float(loss.detach())}
