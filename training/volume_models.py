"""The smoothed-threshold candidate of ``nwwatch train --volume`` and the feature bank of the
feature forest, as torch modules on normalised slices float32 (N, 1, H, W).

:class:`SmoothedThreshold` maps them to logits (N, 2, H, W) (pore, solid), so it exports
through :func:`training.export.export_onnx` under the model contract like the networks, and
the runtime runs it unchanged. Borders are mirrored (``reflect``, the convention of
``cv2.GaussianBlur``).

- :class:`SmoothedThreshold`: a Gaussian blur of each slice, then a global threshold. The
  threshold is Otsu's on the blurred volume (no labels); the blur and which side is solid are
  chosen on the labeled pixels (:func:`fit_threshold`), and the logit slope is a logistic fit
  on them, so that ``p(solid)`` is calibrated for the uncertain fraction.
- :class:`PixelFeatures`: per-pixel features (Gaussian-blurred intensity, gradient
  magnitude and Hessian eigenvalues at several scales, as scikit-image's
  ``multiscale_basic_features``), the input of the feature forest
  (:mod:`training.volume_forest`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nwwatch.volume.crosscheck import otsu_threshold

#: Blur candidates (px) of the smoothed threshold; 0 is the plain threshold.
THRESHOLD_SIGMAS_PX = (0.0, 0.7, 1.0, 1.5, 2.0, 3.0)
#: The blur kept unless the labels show another to be better by more than SIGMA_MARGIN: the
#: label-free reference's (nwwatch.volume.crosscheck), so that a few labeled pixels do not
#: move it on noise.
DEFAULT_SIGMA_PX = 1.0
#: Balanced accuracy (0..1) another blur must gain on the labeled pixels to replace the default.
SIGMA_MARGIN = 0.01
#: Smoothing along Z (px) of both small candidates' input (2.5-D): every slice is seen averaged
#: with its neighbours (``extra["z_sigma_px"]``, applied by nwwatch.volume.segment_volume). On
#: the benchmark volumes it denoises what a per-slice blur cannot: +0.007 IoU for the blurred
#: Otsu on the noise-limited volumes, +0.03 on the saturated ones, -0.004 on the default ones
#: (docs/tomography.md).
Z_SIGMA_PX = 1.0
#: Scales (px) of :class:`PixelFeatures` (the feature forest uses its own, wider set).
FEATURE_SIGMAS_PX = (0.7, 1.5, 3.0, 5.0)


def _gaussian_kernel(sigma_px: float, truncate: float = 4.0) -> torch.Tensor:
    radius = max(1, math.ceil(truncate * sigma_px))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma_px) ** 2)
    return kernel / kernel.sum()


class GaussianBlur(nn.Module):
    """Separable Gaussian blur of (N, C, H, W), mirrored borders; ``sigma_px = 0``: identity.
    The kernel is cut at ``truncate`` sigma; its radius must be smaller than H and W."""

    def __init__(self, sigma_px: float, channels: int = 1, truncate: float = 4.0) -> None:
        super().__init__()
        self.sigma_px, self.channels = float(sigma_px), channels
        kernel = _gaussian_kernel(sigma_px, truncate) if sigma_px > 0 else torch.ones(1)
        self.radius = (kernel.numel() - 1) // 2
        self.register_buffer("row", kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1))
        self.register_buffer("col", kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sigma_px <= 0:
            return x
        r = self.radius
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), self.row, groups=self.channels)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), self.col, groups=self.channels)


class SmoothedThreshold(nn.Module):
    """logit(solid) = slope * sign * (blur(x) - threshold); pore gets the negative half."""

    arch = "smoothed-threshold"
    size_multiple = 1

    def __init__(self, sigma_px: float, threshold: float, slope: float,
                 solid_brighter: bool) -> None:
        super().__init__()
        self.blur = GaussianBlur(sigma_px)
        self.threshold, self.slope, self.solid_brighter = float(threshold), float(slope), \
            bool(solid_brighter)
        self.config = {"sigma_px": float(sigma_px), "threshold": self.threshold,
                       "slope": self.slope, "solid_brighter": self.solid_brighter}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sign = 1.0 if self.solid_brighter else -1.0
        z = (self.blur(x) - self.threshold) * (0.5 * sign * self.slope)
        return torch.cat([-z, z], dim=1)


def _balanced_accuracy(solid_predicted: np.ndarray, labels: np.ndarray) -> float:
    recalls = [float(np.mean(solid_predicted[labels == c] == bool(c))) for c in (0, 1)
               if np.any(labels == c)]
    return float(np.mean(recalls)) if recalls else math.nan


def _logistic_slope(margin: np.ndarray, labels: np.ndarray) -> float:
    """Slope ``a`` maximising the class-balanced likelihood of p(solid) = sigmoid(a * margin)."""
    target = labels.astype(np.float64)
    weight = np.where(labels == 1, 0.5 / max(1, np.count_nonzero(labels == 1)),
                      0.5 / max(1, np.count_nonzero(labels == 0)))
    best, best_ll = 1.0, -math.inf
    for slope in np.logspace(0, 3, 31):
        z = slope * margin
        ll = float(np.sum(weight * (target * -np.logaddexp(0, -z)
                                    + (1 - target) * -np.logaddexp(0, z))))
        if ll > best_ll:
            best, best_ll = float(slope), ll
    return best


#: Mirror margin (px) around slices while fitting: the runtime's default, so a fit sees the
#: borders the exported model will see (and slices smaller than a kernel can be blurred).
FIT_MARGIN_PX = 16


def _mirrored(images: np.ndarray) -> torch.Tensor:
    """(N, 1, H + 2m, W + 2m) tensor of (N, H, W) slices mirrored by ``FIT_MARGIN_PX``."""
    m = FIT_MARGIN_PX
    padded = np.pad(images, ((0, 0), (m, m), (m, m)), mode="reflect")
    return torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))[:, None]


def blurred_stack(images: np.ndarray, sigma_px: float, batch: int = 32) -> np.ndarray:
    """float32 (N, H, W): :class:`GaussianBlur` of normalised slices (N, H, W), each seen
    with a ``FIT_MARGIN_PX`` mirror margin as at run time."""
    blur, m = GaussianBlur(sigma_px), FIT_MARGIN_PX
    height, width = images.shape[1:]
    with torch.no_grad():
        return np.concatenate([
            blur(_mirrored(images[i:i + batch]))[:, 0, m:m + height, m:m + width].numpy()
            for i in range(0, images.shape[0], batch)])


def fit_threshold(volume: np.ndarray, labeled: Sequence[tuple[np.ndarray, np.ndarray]],
                  sigmas_px: Sequence[float] = THRESHOLD_SIGMAS_PX,
                  otsu_cache: dict[float, float] | None = None) -> SmoothedThreshold:
    """Choose the blur and polarity of a global threshold on labeled pixels.

    Parameters
    ----------
    volume : float32 (Z, Y, X), the whole volume normalised as the model will see it; its
        blurred Otsu threshold is the candidate's threshold (label-free).
    labeled : (normalised slice (Y, X), labels uint8 (Y, X): 0 pore, 1 solid, 255 none) pairs.
    sigmas_px : blurs to try; the one with the best balanced accuracy on the labeled pixels
        wins (ties: the smaller blur) if it beats ``DEFAULT_SIGMA_PX`` (when tried) by more
        than ``SIGMA_MARGIN``.
    otsu_cache : {sigma: threshold}, filled and reused (Otsu of a volume is the same for every
        cross-validation fold).
    """
    cache = {} if otsu_cache is None else otsu_cache
    images = np.stack([image for image, _ in labeled])
    labels = np.concatenate([label[label != 255] for _, label in labeled])
    solid_mean = np.mean(np.concatenate([i[lab == 1] for i, lab in labeled]))
    pore_mean = np.mean(np.concatenate([i[lab == 0] for i, lab in labeled]))
    brighter = bool(solid_mean > pore_mean)
    best: tuple[float, float, np.ndarray] | None = None
    default: tuple[float, float, np.ndarray] | None = None
    for sigma in sigmas_px:
        if sigma not in cache:
            cache[sigma] = otsu_threshold(blurred_stack(volume, sigma))
        blurred = blurred_stack(images, sigma)
        values = np.concatenate([b[lab != 255] for b, (_, lab) in zip(blurred, labeled,
                                                                    strict=True)])
        margin = (values - cache[sigma]) * (1.0 if brighter else -1.0)
        score = _balanced_accuracy(margin > 0, labels)
        if best is None or score > best[1]:
            best = (sigma, score, margin)
        if sigma == DEFAULT_SIGMA_PX:
            default = (sigma, score, margin)
    assert best is not None
    if default is not None and best[1] - default[1] <= SIGMA_MARGIN:
        best = default
    sigma, _, margin = best
    return SmoothedThreshold(sigma, cache[sigma], _logistic_slope(margin, labels), brighter)


class PixelFeatures(nn.Module):
    """(N, 1, H, W) -> (N, 1 + 4 * len(sigmas), H, W): intensity, and per scale the blurred
    intensity, gradient magnitude and the two Hessian eigenvalues (central differences of the
    blurred slice, mirrored borders)."""

    def __init__(self, sigmas_px: Sequence[float] = FEATURE_SIGMAS_PX,
                 truncate: float = 4.0) -> None:
        super().__init__()
        self.sigmas_px = tuple(float(s) for s in sigmas_px)
        self.blurs = nn.ModuleList(GaussianBlur(s, truncate=truncate) for s in self.sigmas_px)
        self.count = 1 + 4 * len(self.sigmas_px)
        # Central differences (first and second).
        self.register_buffer("dx", torch.tensor([[[[-0.5, 0.0, 0.5]]]]))
        self.register_buffer("dxx", torch.tensor([[[[1.0, -2.0, 1.0]]]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = [x]
        for blur in self.blurs:
            g = blur(x)
            gx = F.conv2d(F.pad(g, (1, 1, 0, 0), mode="reflect"), self.dx)
            gy = F.conv2d(F.pad(g, (0, 0, 1, 1), mode="reflect"), self.dx.transpose(2, 3))
            gxx = F.conv2d(F.pad(g, (1, 1, 0, 0), mode="reflect"), self.dxx)
            gyy = F.conv2d(F.pad(g, (0, 0, 1, 1), mode="reflect"), self.dxx.transpose(2, 3))
            gxy = F.conv2d(F.pad(gx, (0, 0, 1, 1), mode="reflect"), self.dx.transpose(2, 3))
            half_trace = 0.5 * (gxx + gyy)
            root = torch.sqrt(0.25 * (gxx - gyy) ** 2 + gxy ** 2 + 1e-12)
            out += [g, torch.sqrt(gx ** 2 + gy ** 2 + 1e-12), half_trace + root,
                    half_trace - root]
        return torch.cat(out, dim=1)
