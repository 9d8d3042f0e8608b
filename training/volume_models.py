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
#: Balanced accuracy (0..1) another blur must gain on the labeled pixels to replace the
#: default: at least this, and at least :func:`sigma_margin`'s standard error of a recall on
#: the rarer class's labeled pixels (on two labeled patches a wider blur won by 0.016 and
#: lost 0.04 IoU on the volume; on the benchmark's seeds 0-4 no move away from 1 px gained IoU).
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


def min_input_px(module: nn.Module) -> int:
    """The smallest image side (px) ``module`` runs on: a mirrored pad must be shorter than
    the side it mirrors, so 1 + the largest :class:`GaussianBlur` radius inside it (1 without
    one). Exported as ``extra["min_input_px"]``: the runtime widens its mirror margin on
    slices narrower than that (a thin volume sliced along Y or X by tri-planar fusion)."""
    return 1 + max((m.radius for m in module.modules() if isinstance(m, GaussianBlur)),
                   default=0)


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


def sigma_margin(labels: np.ndarray) -> float:
    """Balanced accuracy another blur must gain over ``DEFAULT_SIGMA_PX`` on the labeled pixels
    ``labels`` (0 pore, 1 solid) to replace it: max(``SIGMA_MARGIN``, 0.5 / sqrt(n)), n the
    labeled pixels of the rarer class (the binomial standard error of a recall near 0.5; it
    overstates what n pixels know, as neighbouring pixels are not independent: one labeled
    10x10 patch per class (n = 100) needs 0.05, and the floor takes over from n = 2500)."""
    rarer = min(np.count_nonzero(labels == 0), np.count_nonzero(labels == 1))
    return max(SIGMA_MARGIN, 0.5 / math.sqrt(max(1, rarer)))


def fit_threshold(volume: np.ndarray, labeled: Sequence[tuple[np.ndarray, np.ndarray]],
                  sigmas_px: Sequence[float] = THRESHOLD_SIGMAS_PX,
                  otsu_cache: dict[float, float] | None = None,
                  valid: np.ndarray | None = None) -> SmoothedThreshold:
    """Choose the blur and polarity of a global threshold on labeled pixels.

    Parameters
    ----------
    volume : float32 (Z, Y, X), the whole volume normalised as the model will see it; its
        blurred Otsu threshold is the candidate's threshold (label-free).
    labeled : (normalised slice (Y, X), labels uint8 (Y, X): 0 pore, 1 solid, 255 none) pairs.
    sigmas_px : blurs to try; the one with the best balanced accuracy on the labeled pixels
        wins (ties: the smaller blur) if it beats ``DEFAULT_SIGMA_PX`` (when tried) by more
        than :func:`sigma_margin` of the labels.
    otsu_cache : {sigma: threshold}, filled and reused (Otsu of a volume is the same for every
        cross-validation fold).
    valid : bool (Z, Y, X), the voxels with data (None: all): the others, given the nearest
        data's grey, are left out of Otsu's histogram (they are not data; a third of the
        volume padded with the darkest grey moved the threshold to "padding against data":
        92 % called solid).
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
            blurred_volume = blurred_stack(volume, sigma)
            if valid is not None:
                blurred_volume = np.where(valid, blurred_volume, np.nan)
            cache[sigma] = otsu_threshold(blurred_volume)
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
    if default is not None and best[1] - default[1] <= sigma_margin(labels):
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


def z_kernels(slices: int, sigma_px: float) -> torch.Tensor:
    """float32 (3, S): weights over the S = 2k + 1 slices of a slab (offsets -k ... k) of the
    Gaussian of ``sigma_px`` slices (sum 1), its first derivative (exact on a linear ramp)
    and its second derivative (sum 0, exact on a parabola), each cut at the slab's ends."""
    half = slices // 2
    z = torch.arange(-half, half + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (z / sigma_px) ** 2)
    g = g / g.sum()
    d1 = -z * g
    d1 = d1 / (z * d1).sum()
    d2 = (z ** 2 / sigma_px ** 2 - 1.0) * g
    d2 = d2 - g * d2.sum() / g.sum()
    d2 = d2 / (0.5 * z ** 2 * d2).sum()
    return torch.stack([g, d1, d2]).float()


class SlabFeatures(nn.Module):
    """Slabs (N * S, 1, H, W) (the S slices of each slab consecutive, lowest first: the slab
    input of nwwatch.volume.slab) -> (N, F, H, W) features of each slab's centre slice, 3-D:

    - across Z, three weighted sums of the slab's slices (:func:`z_kernels`, σ = ``z_sigma_px``
      slices): the Z-smoothed slice, its Z derivative and its second Z derivative;
    - the Z-smoothed slice's :class:`PixelFeatures` at ``sigmas_px`` (intensity, blurred
      intensity, gradient magnitude, both Hessian eigenvalues: 1 + 4 per scale);
    - at each of ``z_sigmas_px`` (in-plane scales), from the derivatives blurred in-plane:
      |d/dz|, d²/dz² and the magnitude of the mixed terms (d²/dxdz, d²/dydz) of the Hessian
      (3 per scale).
    """

    def __init__(self, slices: int, sigmas_px: Sequence[float], z_sigmas_px: Sequence[float],
                 z_sigma_px: float = 1.0, truncate: float = 4.0) -> None:
        super().__init__()
        if slices < 3 or slices % 2 == 0:
            raise ValueError(f"a slab has an odd number of slices >= 3, got {slices}")
        self.slices, self.z_sigma_px = int(slices), float(z_sigma_px)
        self.sigmas_px = tuple(float(s) for s in sigmas_px)
        self.z_sigmas_px = tuple(float(s) for s in z_sigmas_px)
        self.plane = PixelFeatures(self.sigmas_px, truncate=truncate)
        self.z_blurs = nn.ModuleList(GaussianBlur(s, channels=2, truncate=truncate)
                                     for s in self.z_sigmas_px)
        self.count = self.plane.count + 3 * len(self.z_sigmas_px)
        self.register_buffer("z_weights", z_kernels(self.slices, self.z_sigma_px)[:, :, None,
                                                                                    None])
        self.register_buffer("dx", torch.tensor([[[[-0.5, 0.0, 0.5]]]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slabs = x.reshape(-1, self.slices, x.shape[-2], x.shape[-1])
        along_z = F.conv2d(slabs, self.z_weights)
        out = [self.plane(along_z[:, :1])]
        derivatives = along_z[:, 1:]
        for blur in self.z_blurs:
            d = blur(derivatives)
            gz, gzz = d[:, :1], d[:, 1:]
            # d/dx and d/dy of the Z derivative: the mixed Hessian terms.
            gxz = F.conv2d(F.pad(gz, (1, 1, 0, 0), mode="reflect"), self.dx)
            gyz = F.conv2d(F.pad(gz, (0, 0, 1, 1), mode="reflect"), self.dx.transpose(2, 3))
            out += [torch.abs(gz), gzz, torch.sqrt(gxz ** 2 + gyz ** 2 + 1e-12)]
        return torch.cat(out, dim=1)
