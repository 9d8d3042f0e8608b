"""Cross-consistency training (seed 000's models B, C and E; Ouali et al. 2020).

A shared encoder feeds the main decoder (supervised CE + Dice on labeled crops) and K
auxiliary decoders that see perturbed features of unlabeled crops; the unsupervised loss is
the MSE between the softmax of the main decoder (detached, a pseudo target) and of each
auxiliary decoder, weighted by ``unsupervised_weight`` x a sigmoid ramp-up over EPOCHS
(``exp(-5 (1 - t)^2)``, t = epoch / rampup_epochs; the public code counted iterations, so
it never ramped).

Model C: ``frozen_encoder`` = a supervised checkpoint whose encoder weights are loaded and
frozen - parameters without gradients AND BatchNorm running statistics frozen (the frozen
part stays in eval mode); any segmentation checkpoint is taken (a cct or pseudo-label run's
gives the encoder of the model it exports). For PSPNet the frozen part is the ResNet
(``encoder.backbone``), the pyramid pooling is trained as in the paper; for a UNet the whole
encoder.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nwwatch.filehash import file_sha256
from training.losses import ce_dice_loss, consistency_mse
from training.paradigms.base import Paradigm
from training.perturbations import (
    PERTURBATIONS,
    PREDICTION_BASED,
    UNET_PERTURBATIONS,
    perturb,
)

#: Perturbations that may also be applied to UNet skip features (no decoder/prediction needed).
_SKIP_SAFE = ("dropout", "feature_drop", "feature_noise")


def rampup(epoch: float, rampup_epochs: float) -> float:
    """Sigmoid ramp-up in [0, 1]: exp(-5 (1 - epoch / rampup_epochs)^2), 1 after the ramp."""
    if rampup_epochs <= 0:
        return 1.0
    t = min(max(epoch / rampup_epochs, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


class CCTParadigm(Paradigm):
    name = "cct"
    uses_unlabeled = True

    def __init__(self, config, num_classes: int, frozen_from_checkpoint: bool = False) -> None:
        """``frozen_from_checkpoint``: a resumed run's encoder weights come from its
        checkpoint: the ``--frozen-encoder`` file is not read (nor needed: ``--resume
        --export-only`` of a run whose encoder file moved), its encoder is only frozen."""
        if config.perturb_skips and not config.arch.startswith("unet"):
            # it would do nothing: a PSPNet decoder reads no skip features
            raise ValueError(f"--perturb-skips perturbs a UNet's skip features; a "
                             f"{config.arch!r} model has none: leave it out")
        super().__init__(config, num_classes)
        names = config.perturbations
        if names is None:
            names = UNET_PERTURBATIONS if config.arch.startswith("unet") else PERTURBATIONS
        unknown = [n for n in names if n not in PERTURBATIONS]
        if unknown:
            raise ValueError(f"unknown perturbation(s) {unknown}; choose from {PERTURBATIONS}")
        if config.perturb_skips and not set(names) & set(_SKIP_SAFE):
            # it would do nothing: only these act on skip features (it was taken silently)
            raise ValueError(f"--perturb-skips perturbs skip features with "
                             f"{', '.join(_SKIP_SAFE)}; --perturbations "
                             f"{','.join(names)} has none of them: add one or leave it out")
        repeat = range(config.aux_per_perturbation)
        self.perturbation_names = tuple(n for n in names for _ in repeat)
        self.aux = nn.ModuleList(self.model.new_decoder() for _ in self.perturbation_names)
        self.modules["aux"] = self.aux
        self.frozen: nn.Module | None = None
        if config.frozen_encoder and frozen_from_checkpoint:
            self._freeze()
        elif config.frozen_encoder:
            self._freeze_from(Path(config.frozen_encoder))
        self._generator = torch.Generator().manual_seed(config.seed + 17)

    def _freeze_from(self, path: Path) -> None:
        from training.checkpoint import load_inference_state, not_a_network
        from training.modelfiles import checkpoint_path

        if path.suffix == ".onnx":  # as for --init: the checkpoint next to the model
            path = checkpoint_path(path)
        if not path.is_file():
            why = not_a_network(path, "--frozen-encoder")
            raise ValueError(f"--frozen-encoder: {path} not found: "
                             f"{why or 'the supervised checkpoint whose encoder is frozen'}")
        spec, state = load_inference_state(path)
        theirs = dict(spec["config"])
        if spec["type"] != "segmentation":  # e.g. a contrastive run's embedding network
            raise ValueError(f"{path}: frozen encoder must come from a segmentation "
                             f"checkpoint, it holds a {spec['type']} model (an embedding "
                             f"network, not an encoder of a segmentation model): give the "
                             f"MODEL.pt of a --paradigm supervised run (model C), or of a "
                             f"cct or pseudo-label run")
        if theirs.get("arch") != self.config.arch:
            raise ValueError(f"{path}: frozen encoder must come from a {self.config.arch!r} "
                             f"segmentation checkpoint, it holds segmentation "
                             f"{theirs.get('arch')!r}; give --arch {theirs.get('arch')}")
        prefix = "encoder."
        encoder_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            self.model.encoder.load_state_dict(encoder_state)
        except RuntimeError:  # torch lists every mismatched key: name the options instead
            mine = self.model.config
            fixed = ("arch", "in_channels", "num_classes")
            differing = [f"{k} {theirs.get(k)} in it, {mine.get(k)} here"
                         for k in sorted(set(theirs) | set(mine))
                         if k not in fixed and theirs.get(k) != mine.get(k)]
            options = {k: v for k, v in theirs.items() if k not in fixed}
            raise ValueError(f"{path}: its encoder does not fit this run's "
                             f"{self.config.arch!r} model: {'; '.join(differing)}; give "
                             f"--model-options '{json.dumps(options)}'") from None
        self._freeze()
        self.provenance["frozen_encoder"] = os.path.abspath(path)
        self.provenance["frozen_encoder_sha256"] = file_sha256(path)

    def _freeze(self) -> None:
        self.frozen = getattr(self.model.encoder, "backbone", self.model.encoder)
        for parameter in self.frozen.parameters():
            parameter.requires_grad_(False)

    def train_mode(self) -> None:
        self.modules.train()
        if self.frozen is not None:
            self.frozen.eval()  # frozen BatchNorm statistics

    def training_loss(self, images, labels, unlabeled, epoch):
        supervised = ce_dice_loss(self.model(images), labels, dice_weight=self.config.dice_weight)
        logs: dict[str, Any] = {"sup": float(supervised.detach())}
        if unlabeled is None or not len(self.aux):
            logs["loss"] = logs["sup"]
            return supervised, logs
        features = self.model.encoder(unlabeled)
        main_logits = self.model.decoder(features)
        prediction = main_logits.detach().argmax(dim=1)
        unsup = torch.zeros((), device=images.device)
        for name, decoder in zip(self.perturbation_names, self.aux, strict=True):
            skips = list(features[:-1])

            def decode(z, decoder=decoder, skips=skips):
                return decoder([*skips, z])

            deepest = perturb(name, features[-1], prediction=prediction if name in
                              PREDICTION_BASED else None, decode=decode, generator=self._generator)
            if self.config.perturb_skips and name in _SKIP_SAFE:
                skips = [perturb(name, s, generator=self._generator) for s in skips]
            unsup = unsup + consistency_mse(main_logits, decoder([*skips, deepest]))
        unsup = unsup / len(self.aux)
        weight = self.config.unsupervised_weight * rampup(epoch, self.config.rampup_epochs)
        loss = supervised + weight * unsup
        logs.update(unsup=float(unsup.detach()), w_u=weight, loss=float(loss.detach()))
        return loss, logs
