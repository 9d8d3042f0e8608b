"""The contrastive paradigm's self-supervised loss must not reward scattering one class.

With ~1000 in-batch negatives per anchor, a temperature of 0.1 makes the self-supervised loss
about 5 nats lower for randomly scattered embeddings than for one direction per class, so the
large unlabeled background (vacuum) is spread over the sphere and the linear classifier calls
much of it solid. The paper's plain cosine similarity (temperature 1) leaves < 1 nat.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from training_helpers import make_scene

from nwwatch.normalize import normalize_image
from training.config import TrainConfig
from training.losses import self_supervised_pixel_contrastive_loss
from training.paradigms import PARADIGMS

torch.set_num_threads(1)
TINY = {"widths": [4, 8, 16], "encoder_convs": [1, 1, 1], "decoder_convs": [1, 1]}


def _scatter_gain(temperature: float, pixels: int = 512, dim: int = 16) -> float:
    """Self-supervised loss of a class-collapsed embedding minus that of a scattered one."""
    g = torch.Generator().manual_seed(0)
    collapsed = torch.zeros(1, dim, 1, pixels)
    collapsed[0, 0, 0, : pixels // 2] = 1.0       # class a -> +e1, class b -> -e1
    collapsed[0, 0, 0, pixels // 2:] = -1.0
    scattered = torch.randn(1, dim, 1, pixels, generator=g)
    # Perfect invariance in both cases: the perturbed view equals the original.
    loss = [float(self_supervised_pixel_contrastive_loss(z, z, temperature, max_pixels=pixels))
            for z in (collapsed, scattered)]
    return loss[0] - loss[1]


def test_default_temperature_does_not_reward_scattering_a_class():
    assert _scatter_gain(TrainConfig(out="x.onnx").temperature) < 1.0
    # Temperature 0.1: scattering is worth several nats (the vacuum drift).
    assert _scatter_gain(0.1) > 4.0


def _batch(n, seed):
    rng = np.random.default_rng(seed)
    images, labels = zip(*(make_scene(rng, 32) for _ in range(n)), strict=True)
    x = torch.from_numpy(np.stack([normalize_image(i) for i in images]))[:, None]
    return x, torch.from_numpy(np.stack(labels).astype(np.int64))


@pytest.mark.parametrize("weights", [(1.0, 0.0), (0.0, 1.0), (0.5, 2.0)])
def test_contrastive_loss_weights_combine_the_terms(weights):
    sup_w, self_w = weights
    config = TrainConfig(out="x.onnx", paradigm="contrastive", model_options=TINY,
                         embedding_dim=8, max_anchors=256, max_pixels=128,
                         contrastive_supervised_weight=sup_w, contrastive_self_weight=self_w)
    paradigm = PARADIGMS["contrastive"](config, 3)
    paradigm.train_mode()
    x, y = _batch(2, 0)
    loss, logs = paradigm.training_loss(x, y, _batch(2, 1)[0], epoch=0.0)
    expected = sup_w * logs["sup"] + self_w * logs["self"] + logs["ce"]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert logs["sup"] > 0 and logs["self"] > 0


def _split_pseudo(pixels: int) -> torch.Tensor:
    pseudo = torch.zeros(1, 1, pixels, dtype=torch.long)
    pseudo[0, 0, pixels // 2:] = 1
    return pseudo


def test_other_class_negatives_leave_a_class_alone():
    pixels, dim = 256, 16
    z = torch.randn(1, dim, 1, pixels, generator=torch.Generator().manual_seed(1))
    # One predicted class everywhere: no pixel is a negative, nothing is pushed apart.
    one_class = torch.zeros(1, 1, pixels, dtype=torch.long)
    loss = self_supervised_pixel_contrastive_loss(z, z, 0.1, max_pixels=pixels,
                                                  pseudo_labels=one_class)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    # Two classes: collapsing each one is now rewarded even at temperature 0.1, where the
    # paper's "every other pixel" negatives reward scattering by several nats.
    collapsed = torch.zeros(1, dim, 1, pixels)
    collapsed[0, 0, 0, : pixels // 2] = 1.0
    collapsed[0, 0, 0, pixels // 2:] = -1.0
    split = _split_pseudo(pixels)
    losses = [float(self_supervised_pixel_contrastive_loss(e, e, 0.1, max_pixels=pixels,
                                                           pseudo_labels=split))
              for e in (collapsed, z)]
    assert losses[0] < losses[1]


def _reference_self_loss(z, zt, classes, temperature):
    """eq. 6 (InfoNCE form) pixel by pixel, same-class pixels left out of the negatives."""
    total = 0.0
    for i in range(len(z)):
        terms = [float(z[i] @ zt[i]) / temperature]
        terms += [float(z[i] @ z[j]) / temperature for j in range(len(z))
                  if j != i and classes[i] != classes[j]]
        total += -(terms[0] - float(torch.logsumexp(torch.tensor(terms), 0)))
    return total / len(z)


@pytest.mark.parametrize("max_pixels", [1000, 9])  # all 24 pixels, or a random subset
def test_other_class_negatives_match_a_pixel_by_pixel_reference(max_pixels):
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(2, 5, 3, 4, generator=g)  # N, D, H, W with H != W
    pert = emb + 0.3 * torch.randn(emb.shape, generator=g)
    pseudo = torch.randint(0, 2, (2, 3, 4), generator=g)
    loss = self_supervised_pixel_contrastive_loss(
        emb, pert, 0.5, max_pixels=max_pixels, generator=torch.Generator().manual_seed(7),
        pseudo_labels=pseudo)
    # The reference flattens by explicit (n, row, col) loops, not by reshape.
    z = torch.nn.functional.normalize(torch.stack(
        [emb[n, :, r, c] for n in range(2) for r in range(3) for c in range(4)]), dim=1)
    zt = torch.nn.functional.normalize(torch.stack(
        [pert[n, :, r, c] for n in range(2) for r in range(3) for c in range(4)]), dim=1)
    classes = [int(pseudo[n, r, c]) for n in range(2) for r in range(3) for c in range(4)]
    if max_pixels < len(z):  # the loss draws its subset from the generator it is given
        pick = torch.randperm(len(z), generator=torch.Generator().manual_seed(7))[:max_pixels]
        z, zt, classes = z[pick], zt[pick], [classes[i] for i in pick]
    assert float(loss) == pytest.approx(_reference_self_loss(z, zt, classes, 0.5), rel=1e-5)
    with pytest.raises(ValueError, match="pseudo_labels"):
        self_supervised_pixel_contrastive_loss(emb, pert, pseudo_labels=pseudo[:, :, :3])


def test_other_class_negatives_in_the_paradigm_and_bad_values():
    x, y = _batch(2, 0)
    unlabeled = _batch(2, 1)[0]
    selfsup = {}
    for negatives in ("all", "other-class"):
        torch.manual_seed(0)  # the same network weights for both
        config = TrainConfig(out="x.onnx", paradigm="contrastive", model_options=TINY,
                             embedding_dim=8, max_anchors=256, max_pixels=128,
                             self_negatives=negatives)
        paradigm = PARADIGMS["contrastive"](config, 3)
        paradigm.train_mode()
        loss, logs = paradigm.training_loss(x, y, unlabeled, epoch=0.0)
        assert torch.isfinite(loss)
        selfsup[negatives] = logs["self"]
    # Fewer negatives in every denominator: the paradigm really passes its pseudo-labels.
    assert selfsup["other-class"] < selfsup["all"]

    from training.engine import TrainingError, train

    with pytest.raises(TrainingError, match="other-class"):
        train(TrainConfig(out="x.onnx", paradigm="contrastive", self_negatives="same"),
              progress=False, echo=lambda *a, **k: None)


def test_a_zero_embedding_does_not_blow_up_the_first_step_of_the_lean_unet():
    # The lean unet (ReLU, biases starting at zero) gives some pixels an exact zero embedding;
    # normalised at torch's eps 1e-12 its gradient was ~1e9: one SGD step killed the network,
    # and the exported model gave one class everywhere (loss flat, no warning).
    x, y = _batch(2, 0)
    torch.manual_seed(0)
    config = TrainConfig(out="x.onnx", paradigm="contrastive", arch="unet",
                         model_options={"widths": [4, 8, 16]}, lr=0.001)
    paradigm = PARADIGMS["contrastive"](config, 3)
    paradigm.train_mode()
    params = [q for q in paradigm.modules.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.001, momentum=0.9)
    for _ in range(3):
        loss, _ = paradigm.training_loss(x, y, None, epoch=0.0)
        optimizer.zero_grad()
        loss.backward()
        largest = max(float(q.grad.norm()) for q in params if q.grad is not None)
        assert largest < 1e3, largest
        optimizer.step()
    with torch.no_grad():
        embedded = paradigm.model.embed(x)
    assert float(embedded.std(dim=(0, 2, 3)).mean()) > 1e-3  # not one direction everywhere
