"""``nwwatch synth tomogram``: a synthetic tomogram with truth and a sparsely labeled slice."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import click

from nwwatch.io.limits import MAX_PLAUSIBLE_PIXEL_SIZE_NM, MIN_PLAUSIBLE_PIXEL_SIZE_NM
from nwwatch.options import SEED, FiniteFloatRange, say


@click.command("tomogram")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", type=click.IntRange(min=16), default=128, show_default=True,
              help="Side of the cubic (Z, Y, X) volume in voxels; at least two "
                   "--patch-size (20 at the default).")
@click.option("--labeled-fraction", type=FiniteFloatRange(min=0.0, max=1.0, min_open=True),
              default=0.02, show_default=True,
              help="Share of the training slice's pixels that keep their label, rounded to "
                   "whole patches, at least two (one per class).")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed; the same seed writes the same files.")
@click.option("--voxel-size-nm", type=FiniteFloatRange(min=MIN_PLAUSIBLE_PIXEL_SIZE_NM,
                                                     max=MAX_PLAUSIBLE_PIXEL_SIZE_NM),
              default=1.0, show_default=True,
              help="Voxel size written into the TIFF metadata (1 pm to 10 µm: the sizes "
                   "the readers take as plausible).")
@click.option("--patch-size", "patch_px", type=click.IntRange(min=2), default=10,
              show_default=True,
              help="Cell of the grid of labeled patches in pixels; each patch is a square "
                   "1 px smaller, so that patches in neighbouring cells never touch (training "
                   "counts touching labels as one patch).")
@click.option("--tilt-max-deg", type=FiniteFloatRange(min=2.0, max=90.0),
              default=65.0, show_default=True,
              help="Tilt series from -X to +X degrees in 2 degree steps (so X >= 2); the "
                   "missing wedge is 180 - 2X.")
@click.option("--counts-per-voxel", type=FiniteFloatRange(min=0.0, min_open=True, max=1e6),
              default=2.0, show_default=True,
              help="Dose: expected HAADF counts per voxel of solid on a ray (at most 1e6, "
                   "noise-free for any purpose).")
@click.option("--shift-sigma-px", type=FiniteFloatRange(min=0.0, max=50.0), default=0.7,
              show_default=True,
              help="Std of the per-projection misalignment in pixels (at most 50: beyond a "
                   "few pixels the reconstruction is a blur).")
@click.option("--pore-length-px", type=FiniteFloatRange(min=0.0, min_open=True), default=3.5,
              show_default=True, help="Correlation length of the pore field in voxels.")
@click.option("--porosity", type=FiniteFloatRange(min=0.0, max=1.0, min_open=True,
                                                  max_open=True),
              default=0.45, show_default=True, help="Pore fraction inside the grain.")
@click.option("--density-variation", type=FiniteFloatRange(min=0.0, max=1.0, max_open=True),
              default=0.0, show_default=True,
              help="Relative std of a smooth variation of the solid's density.")
@click.option("--saturation-px", type=FiniteFloatRange(min=0.0, max=1e6), default=0.0,
              show_default=True,
              help="HAADF signal saturation length in voxels (0: linear); a few tenths of the "
                   "grain's thickness gives cupping that defeats global thresholds.")
@click.option("--reconstruction", type=click.Choice(["fbp", "sirt"]), default="fbp",
              show_default=True, help="Reconstruction algorithm.")
def tomogram(out: Path, size: int, labeled_fraction: float, seed: int, voxel_size_nm: float,
             patch_px: int, tilt_max_deg: float, counts_per_voxel: float,
             shift_sigma_px: float, pore_length_px: float, porosity: float,
             density_variation: float, saturation_px: float, reconstruction: str) -> None:
    """Write OUT/volume.tif, OUT/truth.tif, OUT/tomogram.json and the training set OUT/train/."""
    from nwwatch.options import require_writable
    from nwwatch.synth.tomogram import generate_tomogram

    if size // patch_px < 2:  # the labels need two whole patches of the slice's grid
        raise click.BadParameter(
            f"a {size} px slice holds fewer than 2 whole patches of {patch_px} px: use "
            f"--size {2 * patch_px} or more, or --patch-size {size // 2} or less",
            param_hint="'--size'")
    foreign = _not_written_by_synth(out)
    if foreign:
        raise click.ClickException(
            f"{out} already holds {', '.join(foreign)}, which synth did not write there (no "
            "tomogram.json of an earlier synth run names them); this run would replace them: "
            "choose a new or empty folder")
    stale = _stale_slices(out)
    if stale:
        raise click.ClickException(
            f"{out} already holds labeled slices that synth did not write there "
            f"({', '.join(stale[:4])}{' ...' if len(stale) > 4 else ''}); nwwatch train would "
            "read them with the new volume: choose a new or empty folder")
    made = not os.path.lexists(out)
    require_writable(out, "'OUT'", folder=True)
    try:
        summary = generate_tomogram(
            out, size=size, labeled_fraction=labeled_fraction, seed=seed,
            voxel_size_nm=voxel_size_nm, patch_px=patch_px, tilt_max_deg=tilt_max_deg,
            counts_per_voxel=counts_per_voxel, shift_sigma_px=shift_sigma_px,
            pore_length_px=pore_length_px, porosity=porosity,
            density_variation=density_variation, saturation_px=saturation_px,
            reconstruction=reconstruction)
    except ValueError as exc:  # a parameter the scene cannot be drawn with
        if made:
            with contextlib.suppress(OSError):  # only when nothing was written into it
                out.rmdir()
        raise click.ClickException(str(exc)) from None
    except MemoryError as exc:  # numpy refuses an array larger than memory can back
        if made:
            with contextlib.suppress(OSError):  # only when nothing was written into it
                out.rmdir()
        raise click.ClickException(
            f"--size {size}: a {size}^3 volume needs more memory than this process can allocate "
            f"({exc}); choose a smaller --size (256 needs about 0.5 GiB)") from None
    say(f"wrote a {size}^3 tomogram to {out}: porosity {summary['porosity']:.2f}, "
        f"tilts {summary['tilt_min_deg']:g}..{summary['tilt_max_deg']:g} deg, "
        f"slice {summary['labeled_slice']} labeled at {summary['labeled_fraction']:.2%}")


#: The files every run writes besides the labeled slice (generate_tomogram's ``files``).
_OUTPUTS = ("volume.tif", "truth.tif", "tomogram.json", "train/dataset.toml",
            "train/unlabeled/volume.tif")


def _earlier_files(out: Path) -> set[str]:
    """The files an earlier run of synth wrote into ``out``, as its tomogram.json names them
    (with tomogram.json itself); empty when there is none, or not one of synth's."""
    try:
        files = json.loads((out / "tomogram.json").read_text(encoding="utf-8"))["files"]
        return {str(v) for v in files.values()} | {"tomogram.json"}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def _not_written_by_synth(out: Path) -> list[str]:
    """Files of ``out`` that this run would replace and no earlier synth run wrote: a user's
    own ``volume.tif`` (a usual name for a tomogram) must never be overwritten."""
    own = _earlier_files(out)
    return [rel for rel in _OUTPUTS if os.path.lexists(out / rel) and rel not in own]


def _stale_slices(out: Path) -> list[str]:
    """Files of ``out/train/images`` and ``out/train/labels`` that this run would leave beside
    its own labeled slice: every file there but the labeled slice an earlier run of synth
    wrote, as ``out/tomogram.json`` names it (generate_tomogram replaces or removes that)."""
    found = [f"train/{sub}/{p.name}" for sub in ("images", "labels")
             if (out / "train" / sub).is_dir()
             for p in sorted((out / "train" / sub).iterdir()) if not p.name.startswith(".")]
    try:
        files = json.loads((out / "tomogram.json").read_text(encoding="utf-8"))["files"]
        own = {files["train_image"], files["train_labels"]}
    except (OSError, ValueError, KeyError, TypeError):
        own = set()
    return [name for name in found if name not in own]
