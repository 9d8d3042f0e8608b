"""Segment a tomogram with a 2D model: slice by slice, optionally tri-planar and tiled.

The model (an nwwatch ONNX model of kind ``tomogram``, classes pore/solid) sees one slice at a
time, as in seed 003, or one slab of neighbouring slices (below). Slices are normalised as
the model was trained (``ModelMetadata.normalization_scope``): ``"volume"`` maps the whole volume's
:func:`~nwwatch.normalize.intensity_range` to [-1, 1] for every slice, ``"image"`` normalises
each slice on its own.

Beyond the paper:

- **tri-planar fusion**: segment along Z, Y and X and average the three solid probabilities;
  errors that depend on the slicing direction (missing-wedge streaks, slice-to-slice flicker)
  partly cancel. Three times the work.
- **tiling**: slices larger than ``tile`` are cut into overlapping tiles whose probabilities
  are blended with weights that ramp down towards each tile's edge, so a model trained on
  small crops sees the size it knows and no seam shows.
- **flip averaging** (test-time augmentation): segment each slice as it is and flipped
  up-down, left-right and both, and average the four probabilities. A network's learned
  kernels are not mirror-symmetric, so few-label models place boundaries with a direction
  bias (a solid one pixel too thick on one side); the average cancels it. Four times the
  work. The flips keep the tilt axis where it is, so missing-wedge streaks keep their
  orientation.
- **mirror margin**: every slice is extended by ``margin_px`` on all four sides by mirroring
  it (the U-Net paper's overlap-tile strategy) and the margin is cropped after the model. A
  network trained on a few labeled pixels inside the grain was never told what its zero-padded
  border looks like: on the synthetic noise-limited volumes a contrastive model called the
  last row and column of every slice solid (2.6 % of the vacuum; IoU 0.76 -> 0.88 with the
  margin, docs/tomography.md).
- **smoothing along Z** (2.5-D input): a model whose metadata names
  ``extra["z_sigma_px"] > 0`` (the smoothed threshold and the feature forest of
  ``nwwatch train --volume``) sees every slice averaged with its neighbours: the normalised
  volume is blurred along Z with a Gaussian of that sigma (mirrored at the first and last
  slice) before it is sliced, so each input slice is a weighted sum of the slices within
  4 sigma. The graph keeps its one input channel; the runtime feeds the neighbours.
- **slab input**: a model whose metadata names ``extra["input_slices"] = 2k + 1`` (the
  feature forest trained with ``forest_slices`` > 1; ``nwwatch train --volume`` keeps one
  slice by default) sees each slice with its k neighbours on
  either side, fed as consecutive images of one batch (:mod:`nwwatch.volume.slab`; end slices
  repeated), so it can compute derivatives along Z itself. Slabs follow the slicing axis, so
  tri-planar fusion gives them along Y and X too.
- **cleanup**: solid specks (26-connected) and pores (6-connected) smaller than
  ``min_component_voxels`` are removed and filled: isolated noise voxels, not structure.

Every segmentation also reports two label-free warning signs, because a model trained on a
few labeled pixels can fail without any error, by calling most of the vacuum solid:

- **uncertain fraction**: the share of voxels whose (fused) solid probability lies strictly
  inside ``UNCERTAIN_BAND``. It misses confident failures.
- **threshold agreement**: the IoU of the mask's solid with a label-free reference, Otsu
  after a per-slice blur (:mod:`nwwatch.volume.crosscheck`). It catches the confident
  failures too, but is lower where the threshold itself fails (cupping).

Both, the mask's solid share against what the labels and the threshold suggest, and the
labeled pixel counts the model recorded, give the mask a :class:`~nwwatch.volume.verdict.
MaskVerdict`: ``"ok"`` or ``"suspect"`` with stable reason codes, which the service writes
into the volume row and its ``volume_suspect`` warning.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from nwwatch.classes import SOLID
from nwwatch.normalize import NAN_FILL, intensity_range, normalize_image
from nwwatch.segment.session import Segmenter
from nwwatch.volume.crosscheck import (
    ClassContrast,
    agreement_with,
    blurred_volume,
    mask_contrast,
    reference_from_blurred,
    solid_beyond_reference,
    solid_is_brighter,
)
from nwwatch.volume.fill import ConstantFill, without_constant_fill
from nwwatch.volume.labeling import remove_small_components
from nwwatch.volume.nodata import count_with_data, data_per_slice, fill_slices_without_data
from nwwatch.volume.runner import SliceRunner, VolumeModelError
from nwwatch.volume.slab import SlabModelError, model_input_slices
from nwwatch.volume.verdict import (
    UNCERTAIN_BAND,
    AxisSizes,
    MaskVerdict,
    assess_mask,
    labels_threshold_share,
    trained_contrast,
    trained_voxel_size,
)

#: Default size (voxels) below which solid specks are removed and pores filled: a 2x2x2 cube.
DEFAULT_MIN_COMPONENT_VOXELS = 8
#: Default mirror margin (px) added around every slice before the model sees it.
DEFAULT_MARGIN_PX = 16


#: Bumped when a default of segment_volume changes the masks or the verdicts it gives (2: the
#: mirror margin; 3: voxels without data, NaN or infinite, are never solid and are left out
#: of the Z blur; 4: the volume's grey range from a grid over every axis, nwwatch.normalize;
#: 5: a constant fill, nwwatch.volume.fill, is no data as NaN is; 6: contrast_inverted's
#: spread test needs the classes' shares swapped too; 7: voxels without data, infinite ones
#: as NaN, take the nearest data voxel's grey in their slice before the model, and a slice
#: without data the nearest data slice's, not the darkest, and the 2 % solid floor of the
#: threshold agreement counts voxels with data only), so the service does not count
#: volumes segmented the old way as done.
SEGMENTATION_VERSION = "7"


@dataclass(frozen=True)
class VolumeOptions:
    """The :func:`segment_volume` settings the service applies to every tomogram.

    ``version`` names them for the ledger: the same volume segmented with other settings is a
    different result.
    """

    triplanar: bool = False
    flips: bool = False
    margin_px: int = DEFAULT_MARGIN_PX
    min_component_voxels: int = DEFAULT_MIN_COMPONENT_VOXELS

    @property
    def version(self) -> str:
        parts = [f"seg{SEGMENTATION_VERSION}"]
        parts += [name for name in ("triplanar", "flips") if getattr(self, name)]
        if self.margin_px != DEFAULT_MARGIN_PX:
            parts.append(f"margin{self.margin_px}")
        if self.min_component_voxels != DEFAULT_MIN_COMPONENT_VOXELS:
            parts.append(f"min{self.min_component_voxels}")
        return "+".join(parts)

    def as_kwargs(self) -> dict[str, object]:
        """The settings as :func:`segment_volume` keyword arguments (field names match)."""
        return asdict(self)


def smooth_along_z(volume: np.ndarray, sigma_px: float,
                   valid: np.ndarray | None = None) -> np.ndarray:
    """float32 (Z, Y, X): ``volume`` blurred along axis 0 by a Gaussian of ``sigma_px`` slices
    (truncated at 4 sigma, mirrored ends: the first slice's neighbour below is the second);
    ``sigma_px <= 0`` returns a float32 copy. What a model with ``extra["z_sigma_px"]`` sees,
    in training and at run time.

    valid : bool (Z, Y, X), optional: the voxels with data (finite in the raw volume). The
        others are left out of their neighbours' average (each voxel gets the Gaussian
        average of the valid voxels along Z, the weights renormalised) and keep their own
        value; without it, or when all are valid, every voxel counts.
    """
    data = np.asarray(volume, dtype=np.float32)
    if sigma_px <= 0:
        return data.copy()
    blur = {"sigma": float(sigma_px), "axis": 0, "mode": "mirror", "truncate": 4.0}
    if valid is None or valid.all():
        return ndi.gaussian_filter1d(data, **blur)
    # Normalised convolution: no data holds a copy of some data's grey (the fill), which
    # would otherwise weigh in the slices next to it as data.
    weights = ndi.gaussian_filter1d(valid.astype(np.float32), **blur)
    out = ndi.gaussian_filter1d(np.where(valid, data, np.float32(0.0)), **blur)
    keep = valid & (weights > 0)
    out[keep] /= weights[keep]
    out[~keep] = data[~keep]
    return out


def model_z_sigma_px(segmenter: Segmenter) -> float:
    """The model's smoothing along Z (px; 0: none), from ``extra["z_sigma_px"]``."""
    value = segmenter.metadata.extra.get("z_sigma_px", 0.0)
    try:
        sigma = float(value or 0.0)
    except (TypeError, ValueError):
        raise VolumeModelError(f"{segmenter.model_path}: extra.z_sigma_px must be a number, "
                               f"got {value!r}") from None
    if not math.isfinite(sigma) or sigma < 0:
        raise VolumeModelError(f"{segmenter.model_path}: extra.z_sigma_px must be >= 0, "
                               f"got {value!r}")
    return sigma


def _min_input_px(segmenter: Segmenter) -> int:
    """``extra["min_input_px"]``: the smallest slice side the model runs on (absent: 1)."""
    value = segmenter.metadata.extra.get("min_input_px", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VolumeModelError(f"{segmenter.model_path}: extra.min_input_px must be a positive "
                               f"integer, got {value!r}")
    return value


def _input_slices(segmenter: Segmenter) -> int:
    try:
        return model_input_slices(segmenter)
    except SlabModelError as exc:
        raise VolumeModelError(str(exc)) from None


def check_volume_model(segmenter: Segmenter) -> None:
    """Raise :class:`VolumeModelError` (naming the model file) when ``segmenter``'s model
    cannot segment tomograms: not a ``tomogram`` model, no solid class, or an ``extra`` value
    (``z_sigma_px``, ``min_input_px``, ``input_slices``, ``contrast``, ``voxel_size_nm``)
    :func:`segment_volume` refuses. These depend on the model alone, so the service checks
    them once, when it loads the model."""
    _solid_index(segmenter)
    model_z_sigma_px(segmenter)
    _input_slices(segmenter)
    _min_input_px(segmenter)
    _trained_contrast(segmenter)
    _trained_voxel_size(segmenter)


def _trained_contrast(segmenter: Segmenter) -> ClassContrast | None:
    try:
        return trained_contrast(segmenter.metadata.extra)
    except ValueError as exc:
        raise VolumeModelError(f"{segmenter.model_path}: {exc}") from None


def _trained_voxel_size(segmenter: Segmenter) -> AxisSizes | None:
    try:
        return trained_voxel_size(segmenter.metadata.extra)
    except ValueError as exc:
        raise VolumeModelError(f"{segmenter.model_path}: {exc}") from None


@dataclass(frozen=True)
class VolumeSegmentation:
    """Segmentation of a tomogram.

    mask : uint8 (Z, Y, X), 1 solid, 0 pore or vacuum (after cleanup).
    solid_probability : float32 (Z, Y, X) in [0, 1] before cleanup, or None when not asked for.
    uncertain_fraction : share of voxels (0..1) whose solid probability lies strictly inside
        ``UNCERTAIN_BAND`` (before cleanup).
    threshold_agreement : IoU (0..1) of ``mask`` with the label-free reference of
        :func:`nwwatch.volume.crosscheck.threshold_agreement`; NaN when the mask calls less
        than 2 % of the voxels with data solid or the volume has no finite value.
    verdict : status (``"ok"``/``"suspect"``) and reason codes
        (:func:`nwwatch.volume.verdict.assess_mask`).
    fill : the constant fills taken as no data (:mod:`nwwatch.volume.fill`); () for none.
    """

    mask: np.ndarray
    solid_probability: np.ndarray | None
    uncertain_fraction: float
    threshold_agreement: float
    verdict: MaskVerdict
    fill: tuple[ConstantFill, ...] = ()


def _solid_index(segmenter: Segmenter) -> int:
    meta = segmenter.metadata
    if meta.kind != "tomogram":
        raise VolumeModelError(
            f"{segmenter.model_path}: model kind is {meta.kind!r}; segmenting a volume needs a "
            f"'tomogram' model (classes pore, solid)"
        )
    names = tuple(meta.class_names)
    if "solid" in names:
        return names.index("solid")
    if len(names) == 2:
        return SOLID
    raise VolumeModelError(
        f"{segmenter.model_path}: class_names {names} have no 'solid' class"
    )


def clean_mask(mask: np.ndarray, min_component_voxels: int) -> np.ndarray:
    """Remove solid components and fill pore components smaller than ``min_component_voxels``.

    Parameters
    ----------
    mask : bool or 0/1 ndarray (Z, Y, X), True solid.
    min_component_voxels : size threshold in voxels (<= 1: nothing changes).

    Returns
    -------
    bool ndarray (Z, Y, X). Solid uses 26-connectivity and pores 6-connectivity (the usual
    complementary pair), so a pore is a pore only through shared faces.
    """
    solid = remove_small_components(mask, min_component_voxels, connectivity=26)
    pores = remove_small_components(~solid, min_component_voxels, connectivity=6)
    return ~pores


def segment_volume(
    segmenter: Segmenter,
    volume: np.ndarray,
    *,
    triplanar: bool = False,
    flips: bool = False,
    tile: int | None = None,
    tile_overlap: int | None = None,
    batch_size: int = 8,
    min_component_voxels: int = DEFAULT_MIN_COMPONENT_VOXELS,
    margin_px: int = DEFAULT_MARGIN_PX,
    return_probability: bool = False,
    heartbeat: Callable[[], None] | None = None,
    fill: tuple[ConstantFill, ...] | None = None,
    voxel_size_nm: AxisSizes | None = None,
) -> VolumeSegmentation:
    """Segment a tomogram into solid and pore/vacuum with a 2D nwwatch model.

    Parameters
    ----------
    segmenter : a :class:`~nwwatch.segment.session.Segmenter` on a ``tomogram`` model; its
        ``extra["z_sigma_px"]`` and ``extra["input_slices"]`` say what it is fed (the
        volume blurred along Z; slabs of neighbouring slices, :mod:`nwwatch.volume.slab`).
    volume : ndarray (Z, Y, X), raw intensities (any real dtype).
    triplanar : also segment along Y and X and average the three solid probabilities.
    flips : test-time flip averaging: also segment every slice flipped up-down, left-right and
        both, and average the four solid probabilities (four times the work; with
        ``triplanar``, twelve).
    tile : slices with a side above this size (px) are processed as overlapping tiles of
        ``tile`` x ``tile``; None processes whole slices.
    tile_overlap : overlap of neighbouring tiles in px (default ``tile // 4``).
    batch_size : slices (or tiles) per model call.
    min_component_voxels : cleanup threshold (see :func:`clean_mask`); 0 disables it.
    margin_px : every slice is extended by this many px on each side by mirroring before the
        model runs (tiles are cut from the extended slice); 0 lets the model see the bare
        border. Costs ``((H + 2m) (W + 2m)) / (H W)`` times the work without tiling; with
        ``tile``, a slice that fits a tile may need several once extended (a 256² slice with
        ``tile=256`` becomes four tiles).
    return_probability : also return the fused solid probability (float32, before cleanup).
        It is computed in every case (for ``uncertain_fraction``): 4 bytes a voxel.
    heartbeat : called after every model call and after the cleanup, so that a caller with
        a watchdog (the service: systemd's ``WatchdogSec``) is not taken for hung while one
        large volume is segmented.
    fill : None (default): the volume's constant fill is looked for here
        (:func:`nwwatch.volume.fill.without_constant_fill`). A tuple: ``volume`` is already
        ``without_constant_fill``'s array and this its fills (() for none), as the service
        hands it on; not looked for again (on the NaN copy the next value would be the
        extreme), so that every path finds the fill once and gets the same mask.
    voxel_size_nm : the volume's voxel size (z, y, x) nm as its file declares it
        (``Volume.declared_voxel_size_nm``: None on an axis without a declared size), None
        when unknown. Only the verdict uses it: a model that recorded its training volume's
        voxel size flags a volume more than ``VOXEL_SIZE_FACTOR`` apart on an axis both
        declare (``voxel_size_mismatch``, :mod:`nwwatch.volume.verdict`).

    Returns
    -------
    VolumeSegmentation with ``mask`` uint8 (Z, Y, X): 1 solid, 0 pore or vacuum. A voxel is
    solid when its (fused) solid probability is above 0.5; a NaN or infinite voxel (no
    data) has probability 0. ``uncertain_fraction`` is the share
    of voxels with a solid probability strictly inside ``UNCERTAIN_BAND``;
    ``threshold_agreement`` the IoU of the mask with the label-free reference (solid is the
    bright class when the model's ``extra["class_mean_intensity"]`` says so, else when the
    mask's solid is brighter on average than the rest). A constant fill (the padding of an
    alignment or a mask written as a value, :func:`nwwatch.volume.fill.without_constant_fill`)
    is no data as NaN is; ``fill`` names it.
    """
    data = np.asarray(volume)
    if data.ndim != 3 or min(data.shape) == 0:
        raise ValueError(f"volume must be a non-empty 3D (Z, Y, X) array, got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError(f"volume must hold real numbers, got dtype {data.dtype}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if tile is not None and tile < 8:
        raise ValueError(f"tile must be at least 8 px, got {tile}")
    overlap = (tile // 4 if tile_overlap is None else int(tile_overlap)) if tile else 0
    if tile is not None and not 0 <= overlap < tile:
        raise ValueError(f"tile_overlap must be in [0, tile), got {overlap}")
    if margin_px < 0:
        raise ValueError(f"margin_px must be >= 0, got {margin_px}")
    solid_index = _solid_index(segmenter)
    # a float copy with NaN at the fill's voxels, only when there is one; looked for once
    if fill is None:
        data, fill = without_constant_fill(data)
    scope = segmenter.metadata.normalization_scope
    value_range = intensity_range(data) if scope == "volume" else None
    z_sigma = model_z_sigma_px(segmenter)
    slices = _input_slices(segmenter)
    source = data
    if z_sigma > 0 or slices > 1:
        # The whole volume normalised as the model's scope says (a slab's slices then share
        # it), then blurred along Z. No data takes the nearest data's grey in its slice
        # (NAN_FILL), and a slice without any data the nearest data slice's, as in training:
        # the model's in-plane filter, tri-planar fusion's Y and X passes and a slab's
        # neighbour slices read them beside the data.
        fill_mode = NAN_FILL["tomogram"]
        source = (normalize_image(data, value_range, nan_fill=fill_mode)
                  if value_range is not None
                  else np.stack([normalize_image(s, nan_fill=fill_mode) for s in data]))
        fill_slices_without_data(source, data_per_slice(data) > 0)
        if z_sigma > 0:
            valid = np.isfinite(data) if data.dtype.kind == "f" else None
            source = smooth_along_z(source, z_sigma, valid=valid)
            del valid
    runner = SliceRunner(segmenter, value_range, tile, overlap, batch_size, solid_index,
                          int(margin_px), normalised=source is not data, slices=slices,
                          min_input=_min_input_px(segmenter),
                          infer_min_input="min_input_px" not in segmenter.metadata.extra,
                          heartbeat=heartbeat)

    def along(stack: np.ndarray) -> np.ndarray:
        total = runner.stack(stack)
        if not flips:
            return total
        for flip in ((1,), (2,), (1, 2)):
            total += np.flip(runner.stack(np.flip(stack, flip)), flip)
        return total / np.float32(4.0)

    solid = along(source)
    if triplanar:
        for axis in (1, 2):
            solid += np.moveaxis(along(np.moveaxis(source, axis, 0)), 0, axis)
        solid /= np.float32(3.0)
    del source  # the normalised (and Z-blurred) copy: 4 bytes a voxel, not needed below
    if data.dtype.kind == "f":
        # A voxel without data (NaN or infinite: the padding of an aligned reconstruction)
        # is never solid; normalisation gives it the nearest data's grey, which a model may
        # call solid.
        solid[~np.isfinite(data)] = 0.0
    low, high = UNCERTAIN_BAND
    uncertain = float(np.count_nonzero((solid > low) & (solid < high)) / solid.size)
    mask = solid > 0.5
    probability = solid if return_probability else None
    del solid  # 4 bytes a voxel, not needed through the cleanup unless returned
    if min_component_voxels > 1:
        mask = clean_mask(mask, min_component_voxels)
        if data.dtype.kind == "f":
            # the cleanup fills small pores, and a few voxels without data amid solid (bad
            # pixels) are one: they stay no solid
            mask[~np.isfinite(data)] = False
        if heartbeat is not None:
            heartbeat()
    mask = mask.astype(np.uint8)
    return VolumeSegmentation(mask=mask, solid_probability=probability,
                              uncertain_fraction=uncertain, fill=fill,
                              **_crosscheck(data, mask, uncertain, segmenter, solid_index,
                                            voxel_size_nm))


def _crosscheck(data: np.ndarray, mask: np.ndarray, uncertain: float, segmenter: Segmenter,
                solid_index: int, voxel_size_nm: AxisSizes | None
                ) -> dict[str, object]:
    """The mask's threshold agreement and verdict (one blurred copy of the volume for both)."""
    extra = segmenter.metadata.extra
    solid_name = segmenter.metadata.class_names[solid_index]
    means = extra.get("class_mean_intensity")
    brighter = solid_is_brighter(data, mask, means, solid_name=solid_name)
    blurred = blurred_volume(data)
    try:
        reference = reference_from_blurred(blurred, brighter)
    except ValueError:  # no finite value: nothing to compare with
        reference = None
    solid_fraction = float(np.count_nonzero(mask) / mask.size)
    reference_share = (float(np.count_nonzero(reference) / reference.size)
                       if reference is not None else float("nan"))
    labels_share = labels_threshold_share(blurred, intensity_range(data), means, solid_name)
    agreement = agreement_with(reference, mask, count_with_data(data))
    beyond = (solid_beyond_reference(mask, reference) if reference is not None
              else float("nan"))
    trained = _trained_contrast(segmenter)
    # only for models that recorded the training volume's contrast: one more pass
    contrast = mask_contrast(data, mask) if trained is not None else None
    verdict = assess_mask(solid_fraction, uncertain, agreement, reference_share, labels_share,
                          extra.get("class_pixel_counts"), extra.get("selection"), beyond,
                          contrast, trained, voxel_size_nm, _trained_voxel_size(segmenter))
    return {"threshold_agreement": agreement, "verdict": verdict}
