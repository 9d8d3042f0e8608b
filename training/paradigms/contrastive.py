"""Pixel-contrastive few-label training (seed 003).

A backbone (any registered architecture built with ``num_classes = embedding_dim``, 16 by
default) maps pixels to embeddings. Its loss = the supervised pixel-contrastive loss on
labeled pixels (``n_positive`` + ``n_negative`` partners per anchor, cosine similarity /
temperature) + the self-supervised pixel-contrastive loss between an image and a perturbed
copy (Gaussian noise sigma U(0.01, 0.06) always, grey shift U(-0.01, 0.01) with p = 0.5,
Gaussian blur sigma U(0.5, 1.5) with p = 0.5), on labeled and unlabeled crops. The two terms
are weighted by ``contrastive_supervised_weight`` and ``contrastive_self_weight`` (the
paper's Table 3 ablation). Temperature 1 by default, the paper's plain cosine similarity: at
0.1 the self-supervised term, whose ~1000 negatives are mostly pixels of the anchor's own
class, rewards scattering a class over the sphere by ~5 nats, and the large never-labeled
vacuum around a grain then lands on both sides of the classifier (docs/training.md).

A 1x1 convolution classifier learns from the embeddings with cross-entropy that ignores
unlabeled pixels. It trains alongside on DETACHED embeddings (no gradient reaches the
backbone, as in the paper's frozen second stage) and is refit for ``classifier_steps``
iterations on the final, frozen backbone. The exported model composes both, so the runtime
sees plain logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nwwatch.classes import UNLABELED
from training.losses import (
    self_supervised_pixel_contrastive_loss,
    supervised_pixel_contrastive_loss,
    unit_embeddings,
)
from training.models import build_model
from training.paradigms.base import ComposedModel, Paradigm


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W) images, reflect padding."""
    kernel = _gaussian_kernel(sigma).to(images)
    r = kernel.numel() // 2
    out = F.pad(images, (r, r, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    out = F.pad(out, (0, 0, r, r), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1))


def perturb_image(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Seed 003's Table 1 perturbation of normalised images (N, 1, H, W), per image.

    Noise and shift amplitudes are in units of the image's [0, 1] range (the normalised
    [-1, 1] range is twice as wide, hence the factor 2).
    """
    out = []
    for image in images:
        x = image[None]
        if float(torch.rand(1, generator=generator)) < 0.5:
            sigma = float(torch.empty(1).uniform_(0.5, 1.5, generator=generator))
            x = gaussian_blur(x, sigma)
        if float(torch.rand(1, generator=generator)) < 0.5:
            x = x + 2.0 * float(torch.empty(1).uniform_(-0.01, 0.01, generator=generator))
        sigma = float(torch.empty(1).uniform_(0.01, 0.06, generator=generator))
        noise = torch.randn(x.shape, generator=generator).to(x)
        out.append(x + 2.0 * sigma * noise)
    return torch.cat(out, dim=0)


class ContrastiveParadigm(Paradigm):
    name = "contrastive"
    uses_unlabeled = True

    def __init__(self, config, num_classes: int) -> None:
        self.config = config
        self.num_classes = num_classes
        self.backbone = build_model(config.arch, in_channels=1,
                                    num_classes=config.embedding_dim, **config.model_options)
        self.classifier = nn.Conv2d(config.embedding_dim, num_classes, 1)
        self.model = ComposedModel(self.backbone, self.classifier)
        self.modules = nn.ModuleDict({"model": self.model})
        self.provenance = {}
        self._generator = torch.Generator().manual_seed(config.seed + 29)

    def inference_spec(self):
        return {"type": "contrastive", "config": dict(self.backbone.config),
                "num_classes": self.num_classes}

    def training_loss(self, images, labels, unlabeled, epoch):
        c = self.config
        batch = images if unlabeled is None else torch.cat([images, unlabeled], dim=0)
        embeddings = self.backbone(batch)
        perturbed = self.backbone(perturb_image(batch, self._generator))
        labeled_emb = embeddings[: images.shape[0]]
        sup = supervised_pixel_contrastive_loss(
            labeled_emb, labels, c.n_positive, c.n_negative, c.temperature, c.max_anchors,
            self._generator)
        self_temperature = c.temperature if c.self_temperature is None else c.self_temperature
        pseudo = None
        if c.self_negatives == "other-class":
            with torch.no_grad():
                pseudo = self.classifier(unit_embeddings(embeddings.detach())).argmax(1)
        selfsup = self_supervised_pixel_contrastive_loss(
            embeddings, perturbed, self_temperature, c.max_pixels, self._generator, pseudo)
        logits = self.classifier(unit_embeddings(labeled_emb.detach()))
        ce = F.cross_entropy(logits, labels, ignore_index=UNLABELED) \
            if bool((labels != UNLABELED).any()) else logits.sum() * 0.0
        loss = (c.contrastive_supervised_weight * sup + c.contrastive_self_weight * selfsup
                + ce)
        return loss, {"sup": float(sup.detach()), "self": float(selfsup.detach()),
                      "ce": float(ce.detach()), "loss": float(loss.detach())}

    def finish(self, sample_batch, device) -> None:
        """Refit the classifier on the frozen final backbone (seed 003's second stage)."""
        if self.config.classifier_steps <= 0:
            return
        self.backbone.eval()
        optimizer = torch.optim.SGD(self.classifier.parameters(), lr=self.config.lr * 10,
                                    momentum=self.config.momentum)
        for _ in range(self.config.classifier_steps):
            images, labels = sample_batch()
            with torch.no_grad():
                embeddings = self.model.embed(images.to(device))
            labels = labels.to(device)
            if not bool((labels != UNLABELED).any()):
                continue
            loss = F.cross_entropy(self.classifier(embeddings), labels, ignore_index=UNLABELED)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
