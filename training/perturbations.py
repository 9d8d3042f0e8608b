"""CCT's perturbations of encoder features (Ouali et al. 2020, as used by seed 000).

Each function takes features (N, C, h, w) and returns a perturbed copy of the same shape.
Prediction-based ones (cut-out, context masking, object masking) also take the main decoder's
prediction (N, H, W) class ids, 0 = background, resized here to the feature grid; VAT needs
the decoder it attacks.

Names (``PERTURBATIONS``): ``dropout`` (random), ``feature_drop`` and ``feature_noise``
(feature-based), ``vat``, ``cutout``, ``context_masking``, ``object_masking``
(prediction-based).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

PERTURBATIONS = ("dropout", "feature_drop", "feature_noise", "vat", "cutout",
                 "context_masking", "object_masking")
#: Feature-based and random perturbations: the ones seed 000 applied to the UNet bottleneck.
UNET_PERTURBATIONS = ("dropout", "feature_drop", "feature_noise")
#: Perturbations that need the main decoder's prediction.
PREDICTION_BASED = ("cutout", "context_masking", "object_masking")


def spatial_dropout(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Drop whole channels with probability ``p`` (Dropout2d, always active)."""
    return F.dropout2d(x, p=p, training=True)


def feature_drop(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero the most activated region: where channel-mean attention >= U(0.7, 0.9) x its max."""
    attention = x.mean(dim=1, keepdim=True)
    peak = attention.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    gamma = torch.empty(x.shape[0], 1, 1, 1).uniform_(0.7, 0.9, generator=generator).to(x)
    return x * (attention < peak * gamma).to(x.dtype)


def feature_noise(x: torch.Tensor, magnitude: float = 0.3,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Multiplicative uniform noise: z + z * U(-0.3, 0.3) (one draw shared over the batch)."""
    noise = torch.empty(x.shape[1:]).uniform_(-magnitude, magnitude, generator=generator).to(x)
    return x + x * noise.unsqueeze(0)


def _object_mask(prediction: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # (N, H, W) class ids -> (N, 1, h, w) float, 1 where an object (class != 0) is predicted.
    objects = (prediction > 0).float().unsqueeze(1)
    return F.interpolate(objects, size=size, mode="nearest")


def context_masking(x: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """Keep the features of predicted objects only (mask out the context)."""
    return x * _object_mask(prediction, x.shape[-2:])


def object_masking(x: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """Keep the context only (mask out predicted objects)."""
    return x * (1.0 - _object_mask(prediction, x.shape[-2:]))


def guided_cutout(x: torch.Tensor, prediction: torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a random box inside the bounding box of each image's predicted objects.

    The box spans 30-60 % of the object's bounding box in each direction; without objects a box
    of a quarter of the feature map is cut at random.
    """
    mask = _object_mask(prediction, x.shape[-2:])[:, 0]
    out = x.clone()
    h, w = x.shape[-2:]
    for i in range(x.shape[0]):
        rows, cols = torch.nonzero(mask[i] > 0, as_tuple=True)
        if rows.numel():
            r_lo, r_hi = int(rows.min()), int(rows.max()) + 1
            c_lo, c_hi = int(cols.min()), int(cols.max()) + 1
        else:
            r_lo, r_hi, c_lo, c_hi = 0, h, 0, w
        scale = torch.empty(2).uniform_(0.3, 0.6, generator=generator)
        bh = max(1, int(round((r_hi - r_lo) * float(scale[0]))))
        bw = max(1, int(round((c_hi - c_lo) * float(scale[1]))))
        r0 = r_lo + int(torch.randint(0, max(1, r_hi - r_lo - bh + 1), (1,), generator=generator))
        c0 = c_lo + int(torch.randint(0, max(1, c_hi - c_lo - bw + 1), (1,), generator=generator))
        out[i, :, r0:r0 + bh, c0:c0 + bw] = 0.0
    return out


def vat(x: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor], xi: float = 1e-6,
        eps: float = 2.0, iterations: int = 1) -> torch.Tensor:
    """Virtual adversarial perturbation of features by power iteration (default one).

    ``decode`` maps perturbed features to logits (the auxiliary decoder). Returns
    ``x + eps * d`` where d approximates the direction that changes the prediction most.
    """
    base = x.detach()
    with torch.no_grad():
        reference = decode(base).softmax(dim=1)
    d = torch.randn_like(base)
    with torch.enable_grad():
        for _ in range(iterations):
            d = (xi * F.normalize(d.flatten(1), dim=1).view_as(d)).requires_grad_(True)
            logits = decode(base + d)
            distance = F.kl_div(logits.log_softmax(dim=1), reference, reduction="batchmean")
            (grad,) = torch.autograd.grad(distance, d)
            d = grad.detach()
    return x + eps * F.normalize(d.flatten(1), dim=1).view_as(x)


def perturb(name: str, x: torch.Tensor, prediction: torch.Tensor | None = None,
            decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the perturbation called ``name`` (one of :data:`PERTURBATIONS`)."""
    if name == "dropout":
        return spatial_dropout(x)
    if name == "feature_drop":
        return feature_drop(x, generator)
    if name == "feature_noise":
        return feature_noise(x, generator=generator)
    if name == "vat":
        if decode is None:
            raise ValueError("vat needs the decoder to attack")
        return vat(x, decode)
    if name in PREDICTION_BASED and prediction is None:
        raise ValueError(f"{name} needs the main decoder's prediction")
    if name == "cutout":
        return guided_cutout(x, prediction, generator)
    if name == "context_masking":
        return context_masking(x, prediction)
    if name == "object_masking":
        return object_masking(x, prediction)
    raise ValueError(f"unknown perturbation {name!r}; choose from {PERTURBATIONS}")
