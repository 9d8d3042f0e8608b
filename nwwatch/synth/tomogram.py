"""Synthetic electron tomograms of a porous grain with exact ground truth.

:func:`simulate_tomogram` returns the arrays (for benchmarks); :func:`generate_tomogram` also
writes them with a sparsely labeled training slice in the layout ``nwwatch train`` reads.

The acquisition is a single-axis HAADF-STEM tilt series around the Y axis (see
:mod:`nwwatch.synth.tomo_radon` for the geometry): line integrals of the solid, per-projection
misalignment shifts, probe/detector blur, Poisson counting noise at low dose, then FBP (or
SIRT) reconstruction that assumes a perfect alignment. A limited tilt range leaves a missing
wedge: features elongate along Z (the beam direction) and streak.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import ndimage as ndi

from nwwatch.atomic import atomic_write_json
from nwwatch.classes import TOMOGRAM_CLASSES
from nwwatch.synth.tomo_labels import patch_labels
from nwwatch.synth.tomo_phantom import gaussian_random_field, porous_grain
from nwwatch.synth.tomo_radon import fbp, project, sirt

RECONSTRUCTIONS = ("fbp", "sirt")
#: Unlabeled pixels at the bottom and right of each labeled patch of the training slice:
#: patches in neighbouring cells of the grid would touch, and ``nwwatch train --volume``
#: takes touching pixels for one patch (docs/tomography.md asks users for such gaps too).
PATCH_GAP_PX = 1


@dataclass(frozen=True)
class SyntheticTomogram:
    """A simulated acquisition and its truth.

    Attributes
    ----------
    volume : float32 (Z, Y, X)
        Reconstruction in units of the solid's density: a full, noise-free series gives 1 in
        solid and 0 in vacuum; blur, thin struts and the missing wedge lower the contrast.
    truth : uint8 (Z, Y, X)
        1 solid, 0 pore or vacuum.
    grain : bool (Z, Y, X)
        The grain envelope (pores are inside it, vacuum outside).
    angles_deg : float64 (A,)
        Tilt angles of the series.
    shifts_px : float64 (A, 2)
        Misalignment of each projection, (row = along the tilt axis Y, col = detector X), px.
    params : dict
        Every knob used, JSON-serialisable.
    """

    volume: np.ndarray
    truth: np.ndarray
    grain: np.ndarray
    angles_deg: np.ndarray
    shifts_px: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def porosity(self) -> float:
        """Pore fraction inside the grain envelope."""
        return float(1.0 - self.truth[self.grain].mean())


def _acquire(density: np.ndarray, angles_deg: np.ndarray, shifts_px: np.ndarray,
             blur_sigma_px: float, counts_per_voxel: float, background_counts: float,
             rng: np.random.Generator | None, saturation_px: float = 0.0) -> np.ndarray:
    """Noisy, misaligned tilt series (A, Y, N) converted back to solid-voxel path lengths.

    ``rng=None`` skips the Poisson noise (expected counts). ``saturation_px > 0`` makes the
    signal of each ray grow as ``L * (1 - exp(-t / L))`` with its solid path length ``t``.
    """
    sino = project(density, angles_deg)
    if saturation_px > 0:
        length = np.float32(saturation_px)
        sino = length * -np.expm1(-np.maximum(sino, 0.0) / length)
    ny, n = sino.shape[1:]
    for i, (dy, dx) in enumerate(shifts_px):
        shift = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float64)
        image = cv2.warpAffine(sino[i], shift, (n, ny), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if blur_sigma_px > 0:
            image = cv2.GaussianBlur(image, (0, 0), blur_sigma_px)
        sino[i] = image
    expected = counts_per_voxel * np.maximum(sino, 0.0) + background_counts
    counts = expected if rng is None else rng.poisson(expected).astype(np.float32)
    return (counts - np.float32(background_counts)) / np.float32(counts_per_voxel)


def simulate_tomogram(
    size: int = 128,
    *,
    seed: int = 0,
    porosity: float = 0.45,
    pore_length_px: float = 3.5,
    tilt_max_deg: float = 65.0,
    tilt_step_deg: float = 2.0,
    counts_per_voxel: float = 2.0,
    background_counts: float = 2.0,
    shift_sigma_px: float = 0.7,
    blur_sigma_px: float = 0.7,
    density_variation: float = 0.0,
    saturation_px: float = 0.0,
    reconstruction: str = "fbp",
    fbp_window: str = "ramp",
    sirt_iterations: int = 30,
    noise: bool = True,
) -> SyntheticTomogram:
    """Simulate a tilt series of a porous grain and reconstruct it. Pure: depends only on args.

    Parameters
    ----------
    size : int
        Side N of the cubic (Z, Y, X) volume in voxels (>= 16).
    seed : int
        Everything random derives from it.
    porosity : float in (0, 1)
        Pore fraction inside the grain envelope.
    pore_length_px : float
        Correlation length (Gaussian filter std, voxels) of the random field; pores and struts
        are roughly 2-3 times wider. Smaller is harder.
    tilt_max_deg, tilt_step_deg : float
        Tilt series from ``-tilt_max_deg`` to ``+tilt_max_deg``. The missing wedge is the
        ``2 * (90 - tilt_max_deg)`` deg left out.
    counts_per_voxel : float
        Expected HAADF counts per voxel of solid crossed by a ray (dose x scattering yield);
        the dose knob. Lower is noisier.
    background_counts : float
        Expected counts per detector pixel without specimen (support film, dark current);
        adds noise without signal.
    shift_sigma_px : float
        Std of the per-projection misalignment, drawn independently along Y and X.
    blur_sigma_px : float
        Probe/detector blur of each projection (Gaussian std, px).
    density_variation : float
        Relative amplitude (std) of a smooth variation of the solid's density across the grain
        (composition, crystallinity); defeats a single global threshold.
    saturation_px : float
        0 (default): the signal is linear in the solid path length ``t`` of a ray. ``L > 0``:
        it grows as ``L * (1 - exp(-t / L))``, the sub-linear thickness dependence of HAADF
        signal in thick specimens. A reconstruction that assumes linearity then shows
        cupping: the grain's interior looks less dense than its rim, so no global threshold
        fits both. In voxels; compare with the grain's thickness (about ``0.6 * size``).
    reconstruction : {"fbp", "sirt"}
    fbp_window : {"ramp", "shepp-logan", "hann"}
    sirt_iterations : int
    noise : bool
        False: no Poisson noise (for checking the projector); shifts and blur still apply.

    Returns
    -------
    SyntheticTomogram
    """
    if reconstruction not in RECONSTRUCTIONS:
        raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}")
    if not 0.0 < tilt_max_deg <= 90.0 or not 0.0 < tilt_step_deg <= tilt_max_deg:
        raise ValueError(f"need 0 < tilt_step_deg <= tilt_max_deg <= 90, got "
                         f"{tilt_step_deg}, {tilt_max_deg}")
    if not counts_per_voxel > 0 or background_counts < 0:
        raise ValueError("counts_per_voxel must be > 0 and background_counts >= 0")
    if shift_sigma_px < 0 or blur_sigma_px < 0 or not 0 <= density_variation < 1:
        raise ValueError("shift_sigma_px and blur_sigma_px must be >= 0, "
                         "density_variation in [0, 1)")
    if not (saturation_px >= 0 and np.isfinite(saturation_px)):
        raise ValueError(f"saturation_px must be finite and >= 0 (0: linear signal), "
                         f"got {saturation_px}")
    params = dict(locals())  # every argument, JSON-serialisable

    rng = np.random.default_rng(seed)
    phantom_rng, density_rng, acquisition_rng = rng.spawn(3)
    truth, grain = porous_grain(size, phantom_rng, porosity=porosity,
                                pore_length_px=pore_length_px)
    density = truth.astype(np.float32)
    if density_variation > 0:
        smooth = gaussian_random_field(truth.shape, size / 8.0, density_rng)
        density *= np.clip(1.0 + np.float32(density_variation) * smooth, 0.2, None)
    # Both ends are recorded; the step is adjusted to fit a whole number of steps.
    n_steps = max(1, int(round(2.0 * tilt_max_deg / tilt_step_deg)))
    angles = np.linspace(-tilt_max_deg, tilt_max_deg, n_steps + 1)
    if tilt_max_deg >= 90.0:
        angles = angles[:-1]  # -90 and +90 are the same projection
    shifts = acquisition_rng.normal(0.0, shift_sigma_px, size=(angles.size, 2))
    sino = _acquire(density, angles, shifts, blur_sigma_px, counts_per_voxel, background_counts,
                    acquisition_rng if noise else None, saturation_px)
    if reconstruction == "fbp":
        volume = fbp(sino, angles, window=fbp_window)
    else:
        volume = sirt(sino, angles, n_iter=sirt_iterations)
    return SyntheticTomogram(volume=volume, truth=truth, grain=grain, angles_deg=angles,
                             shifts_px=shifts, params=params)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # other file system, or links not supported
        shutil.copy2(source, target)


def _remove_previous_slices(out: Path, keep: dict[str, str]) -> None:
    """Delete the labeled slice files that an earlier run wrote into ``out`` (its
    tomogram.json names them), except those in ``keep``: a stale slice of another volume
    would otherwise lie in train/ next to the new one, a second labeled image of the set."""
    try:
        files = json.loads((out / "tomogram.json").read_text(encoding="utf-8"))["files"]
        earlier = [files["train_image"], files["train_labels"]]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no earlier run of ours, or not one we can read: touch nothing
    for rel in earlier:
        if isinstance(rel, str) and rel not in keep.values() and rel.startswith("train/"):
            (out / rel).unlink(missing_ok=True)


def generate_tomogram(
    out_dir: str | os.PathLike[str],
    *,
    size: int = 128,
    labeled_fraction: float = 0.02,
    seed: int = 0,
    voxel_size_nm: float = 1.0,
    patch_px: int = 10,
    **difficulty: Any,
) -> dict[str, Any]:
    """Write a synthetic tomogram, its truth and a sparsely labeled training set.

    Files written under ``out_dir`` (created if needed, files replaced; the labeled slice of
    an earlier run into the same folder, named in its tomogram.json, is removed)::

        volume.tif                  float32 (Z, Y, X), voxel size in the metadata
        truth.tif                   uint8 (Z, Y, X), 1 solid, 0 pore or vacuum
        tomogram.json               this function's return value
        train/dataset.toml          kind = "tomogram", classes = ["pore", "solid"]
        train/images/slice_KKK.tif  float32 (Y, X) = volume[KKK]
        train/labels/slice_KKK.png  uint8 (Y, X), 1 solid, 0 pore, 255 unlabeled
        train/unlabeled/volume.tif  hard link to (or copy of) volume.tif

    The labeled slice KKK is drawn from the central fifth of Z; its labels are squares of
    ``patch_px - PATCH_GAP_PX`` px at the top left of cells of an aligned ``patch_px`` grid,
    so that no two touch (see :func:`nwwatch.synth.tomo_labels.patch_labels`).

    Parameters
    ----------
    out_dir : folder to write into.
    size : int, side of the cubic volume in voxels.
    labeled_fraction : float in (0, 1], share of the slice's pixels to label (rounded to
        whole patches, at least two).
    seed : int; the same seed writes the same files.
    voxel_size_nm : float, cubic voxel size recorded in the TIFF metadata.
    patch_px : int > PATCH_GAP_PX, the grid's cell: a labeled patch is ``patch_px -
        PATCH_GAP_PX`` px square.
    **difficulty : keyword arguments of :func:`simulate_tomogram` (porosity, pore_length_px,
        tilt_max_deg, counts_per_voxel, shift_sigma_px, reconstruction, ...).

    Returns
    -------
    dict, JSON-serialisable summary (also written to ``tomogram.json``).
    """
    from nwwatch.io import write_frame_tiff, write_volume_tiff
    from nwwatch.io.png import write_image_file

    if not voxel_size_nm > 0:
        raise ValueError(f"voxel_size_nm must be > 0, got {voxel_size_nm}")
    if not 0.0 < labeled_fraction <= 1.0:
        raise ValueError(f"labeled_fraction must be in (0, 1], got {labeled_fraction}")
    if patch_px <= PATCH_GAP_PX:
        raise ValueError(f"patch_px must be > {PATCH_GAP_PX} (a patch is patch_px - "
                         f"{PATCH_GAP_PX} px square with a gap), got {patch_px}")
    unknown = set(difficulty) - set(simulate_tomogram.__kwdefaults__)
    if unknown:
        raise TypeError(f"unknown difficulty knob(s): {sorted(unknown)}")
    tomo = simulate_tomogram(size, seed=seed, **difficulty)
    label_rng = np.random.default_rng([seed, 1])  # independent of the simulation's stream
    low, high = int(round(0.4 * size)), max(int(round(0.6 * size)), int(round(0.4 * size)) + 1)
    k = int(label_rng.integers(low, high))
    labels = patch_labels(tomo.truth[k], labeled_fraction, label_rng, patch_px=patch_px,
                          grain=tomo.grain[k], gap_px=PATCH_GAP_PX)

    out = Path(out_dir)
    for sub in ("train/images", "train/labels", "train/unlabeled"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    name = f"slice_{k:03d}"
    files = {"volume": "volume.tif", "truth": "truth.tif",
             "train_image": f"train/images/{name}.tif",
             "train_labels": f"train/labels/{name}.png",
             "unlabeled": "train/unlabeled/volume.tif", "dataset": "train/dataset.toml"}
    _remove_previous_slices(out, keep=files)
    write_volume_tiff(out / "volume.tif", tomo.volume, voxel_size_nm=voxel_size_nm)
    write_volume_tiff(out / "truth.tif", tomo.truth, voxel_size_nm=voxel_size_nm)
    write_frame_tiff(out / "train" / "images" / f"{name}.tif", tomo.volume[k],
                     pixel_size_nm=voxel_size_nm)
    label_path = out / "train" / "labels" / f"{name}.png"
    write_image_file(label_path, labels)
    _link_or_copy(out / "volume.tif", out / "train" / "unlabeled" / "volume.tif")

    labeled = labels != 255
    # counted as training counts them (training.volume_folds.labeled_patches): 8-connected
    n_patches = int(ndi.label(labeled, structure=np.ones((3, 3), dtype=bool))[1])
    achieved = float(labeled.mean())
    # Only the keys the DATA reader knows (nwwatch.io.dataset.read_dataset_toml refuses any
    # other, so `nwwatch train OUT/train` reads this folder); the rest is said in comments and
    # recorded in tomogram.json.
    dataset = {"kind": "tomogram", "classes": list(TOMOGRAM_CLASSES)}
    lines = ["# Training set written by `nwwatch synth tomogram`; labels: 255 = unlabeled.",
             f"# labeled slice {k} ({round(achieved, 6)} of its pixels), seed {int(seed)}, "
             f"voxel size {float(voxel_size_nm)} nm: see ../tomogram.json"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in dataset.items()]
    (out / "train" / "dataset.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    shifts = tomo.shifts_px
    summary: dict[str, Any] = {
        "size": int(size),
        "shape_zyx": list(tomo.volume.shape),
        "voxel_size_nm": float(voxel_size_nm),
        "seed": int(seed),
        "porosity": round(tomo.porosity, 6),
        "solid_fraction": round(float(tomo.truth.mean()), 6),
        "tilt_min_deg": float(tomo.angles_deg.min()),
        "tilt_max_deg": float(tomo.angles_deg.max()),
        "tilt_step_deg": round(float(np.median(np.diff(tomo.angles_deg))), 6),
        "n_projections": int(tomo.angles_deg.size),
        # -90..88 in 2 degree steps (+90 is -90's projection again) covers every direction
        "missing_wedge_deg": round(_missing_wedge_deg(tomo.angles_deg), 6),
        "counts_per_voxel": float(tomo.params["counts_per_voxel"]),
        "background_counts": float(tomo.params["background_counts"]),
        "shift_rms_px": round(float(np.sqrt(np.mean(shifts**2))), 6),
        "shift_max_px": round(float(np.abs(shifts).max()), 6) if shifts.size else 0.0,
        "shifts_px": np.round(shifts, 4).tolist(),
        "reconstruction": tomo.params["reconstruction"],
        "labeled_slice": k,
        "patch_px": int(patch_px),
        "patch_gap_px": PATCH_GAP_PX,
        "labeled_patches": n_patches,
        "labeled_fraction_requested": float(labeled_fraction),
        "labeled_fraction": round(achieved, 6),
        "params": {key: value for key, value in tomo.params.items() if key != "seed"},
        "files": files,
    }
    atomic_write_json(out / "tomogram.json", summary, indent=2)
    return summary


def _missing_wedge_deg(angles_deg: np.ndarray) -> float:
    """The tilt directions no projection covers, degrees: 180 minus the range, 0 when the
    range and one step reach 180 (a projection at +90 degrees is the one at -90)."""
    span = float(np.ptp(angles_deg))
    step = float(np.median(np.diff(np.sort(angles_deg)))) if angles_deg.size > 1 else 0.0
    return 0.0 if span + step >= 180.0 - 1e-9 else 180.0 - span
