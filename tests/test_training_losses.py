"""Losses on hand-built inputs, perturbations, schedules."""

from __future__ import annotations

import math

import pytest
import torch

from training.engine import poly_lr
from training.losses import (
    boundary_band,
    ce_dice_loss,
    consistency_mse,
    self_supervised_pixel_contrastive_loss,
    soft_dice_loss,
    supervised_pixel_contrastive_loss,
)
from training.paradigms.cct import rampup
from training.perturbations import PERTURBATIONS, perturb

torch.set_num_threads(1)


def _labels():
    y = torch.zeros(2, 8, 8, dtype=torch.long)
    y[:, 2:5, 2:6] = 1
    y[:, 6:, :3] = 2
    return y


def test_ce_dice_ignores_unlabeled_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    y = _labels()
    y[0, :4] = 255
    base = ce_dice_loss(logits, y)
    changed = logits.clone()
    changed[0, :, :4] = torch.randn(3, 4, 8) * 10   # only under the 255 pixels
    assert torch.allclose(base, ce_dice_loss(changed, y))
    changed[0, 1, 5] += 3.0                          # a labeled row
    assert not torch.allclose(base, ce_dice_loss(changed, y))


def test_ce_dice_small_for_confident_correct_logits_and_zero_without_labels():
    y = _labels()
    logits = torch.nn.functional.one_hot(y, 3).permute(0, 3, 1, 2).float() * 20
    assert float(ce_dice_loss(logits, y)) < 1e-3
    assert float(soft_dice_loss(logits, y)) < 1e-3
    none = torch.full_like(y, 255)
    loss = ce_dice_loss(logits.requires_grad_(), none)
    assert float(loss.detach()) == 0.0
    loss.backward()  # still differentiable


def test_dice_is_mean_over_present_classes():
    y = torch.zeros(1, 4, 4, dtype=torch.long)
    y[0, :2] = 1                                     # class 2 absent
    logits = torch.zeros(1, 3, 4, 4)
    logits[0, 0, 2:] = 20
    logits[0, 1, :2] = 20
    assert float(soft_dice_loss(logits, y)) < 1e-3   # absent class 2 does not count


def test_consistency_mse_detaches_main():
    main = torch.randn(1, 3, 4, 4, requires_grad=True)
    aux = torch.randn(1, 3, 4, 4, requires_grad=True)
    consistency_mse(main, aux).backward()
    assert main.grad is None and aux.grad is not None
    assert float(consistency_mse(main, main.detach().clone())) == 0.0


def _embeddings(y, good):
    # Class c -> basis vector e_c (good), or every pixel the same vector (bad).
    z = torch.nn.functional.one_hot(y.clamp(max=2), 4).permute(0, 3, 1, 2).float()
    if not good:
        z = torch.ones_like(z)
    return z


def test_supervised_contrastive_low_for_separated_classes():
    y = _labels()
    g = torch.Generator().manual_seed(0)
    good = supervised_pixel_contrastive_loss(_embeddings(y, True), y, temperature=0.1,
                                             generator=g)
    bad = supervised_pixel_contrastive_loss(_embeddings(y, False), y, temperature=0.1,
                                            generator=g)
    # Ideal: each positive competes only with the other 9 identical positives -> log(10).
    assert float(good) == pytest.approx(math.log(10), abs=1e-3)
    assert float(bad) == pytest.approx(math.log(20), abs=1e-3)


def test_supervised_contrastive_ignores_unlabeled_embeddings():
    y = _labels()
    y[1] = 255
    z = torch.randn(2, 4, 8, 8)
    a = supervised_pixel_contrastive_loss(z, y, generator=torch.Generator().manual_seed(1))
    z2 = z.clone()
    z2[1] = torch.randn(4, 8, 8)
    b = supervised_pixel_contrastive_loss(z2, y, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, b)


def test_self_supervised_contrastive_rewards_matching_pixels():
    torch.manual_seed(0)
    z = torch.randn(1, 16, 8, 8)
    same = self_supervised_pixel_contrastive_loss(z, z + 0.01 * torch.randn_like(z))
    shuffled = self_supervised_pixel_contrastive_loss(z, z[..., torch.randperm(8)])
    assert float(same) < float(shuffled) - 1.0


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_every_perturbation_keeps_shape_and_changes_features(name):
    torch.manual_seed(0)
    x = torch.rand(2, 8, 6, 6) + 0.1
    prediction = torch.zeros(2, 24, 24, dtype=torch.long)
    prediction[:, 6:18, 6:18] = 1
    decoder = torch.nn.Conv2d(8, 3, 1)
    out = perturb(name, x, prediction=prediction, decode=decoder)
    assert out.shape == x.shape
    assert not torch.allclose(out, x)


def test_poly_lr_and_rampup():
    assert poly_lr(0.01, 0, 100) == 0.01
    assert poly_lr(0.01, 50, 100) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_lr(0.01, 100, 100) == 0.0
    assert rampup(0, 10) == pytest.approx(math.exp(-5))
    assert rampup(5, 10) == pytest.approx(math.exp(-5 * 0.25))
    assert rampup(10, 10) == 1.0 and rampup(30, 10) == 1.0


def test_boundary_band_is_the_strip_within_its_width_of_a_class_change():
    target = torch.zeros(1, 20, 30, dtype=torch.long)
    target[0, :, 12:] = 1
    target[0, 0, 0] = 255
    band = boundary_band(target, width_px=3)[0]
    cols = torch.nonzero(band.any(dim=0)).flatten().tolist()
    assert cols == list(range(9, 15))  # 3 px each side of the edge between cols 11 and 12
    assert bool(band[:, 9:15].all()) and not bool(band[0, 0])


def test_boundary_weight_adds_weighted_cross_entropy_of_the_band_only():
    torch.manual_seed(0)
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[:, 4:12, 4:12] = 2
    logits = torch.randn(2, 3, 16, 16)
    plain = ce_dice_loss(logits, target)
    weighted = ce_dice_loss(logits, target, boundary_weight=2.0)
    per_pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    band = boundary_band(target)
    expected = plain + 2.0 * per_pixel[band].sum() / target.numel()
    assert torch.allclose(weighted, expected, atol=1e-5)
