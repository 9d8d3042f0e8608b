"""``nwwatch synth``: generate synthetic acquisitions with exact ground truth.

Subcommands: ``insitu`` (frames or a growth video of a nanowire with its catalyst droplet) and
``tomogram`` (:mod:`nwwatch.synth.tomogram_cli`, registered below).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click
from click.core import ParameterSource

from nwwatch.options import SEED, FiniteFloatRange, listed, require_writable, say
from nwwatch.synth.tomogram_cli import tomogram
from nwwatch.synth.video import VIDEO_SCENES, scene_options


@click.group()
def synth() -> None:
    """Generate synthetic acquisitions with exact ground truth."""


#: Largest droplet radius a video may ask for, as a fraction of the frame side: the droplet
#: must fit in the frame with room to drift.
MAX_DROPLET_RADIUS_FRACTION = 0.4


@synth.command("insitu")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--frames", "n_frames", type=click.IntRange(min=1), default=16, show_default=True,
              help="Number of frames to write.")
@click.option("--video", is_flag=True,
              help="One growing wire over time instead of independent frames.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed; frame k depends only on it (not on --frames).")
@click.option("--size", type=click.IntRange(min=32), default=512, show_default=True,
              help="Frame side in pixels.")
@click.option("--scene", type=click.Choice(list(VIDEO_SCENES)), default="realistic",
              show_default=True,
              help="Look of the --video. realistic: like real frames (droplet radius 100 px "
                   "at 512 px, scaled with --size; 60 e-/px; facet inclined 12 deg; droplet "
                   "darker than the wire). drawn: everything as the seed draws it (often a "
                   "small droplet or strong defocus). stress: droplet radius 35 px at 512 px, "
                   "35 e-/px, the rest as the seed draws it.")
@click.option("--droplet-radius-px", type=FiniteFloatRange(min=2.0), default=None,
              help="--video: droplet radius in px at the mean contact angle, 2 to "
                   f"{MAX_DROPLET_RADIUS_FRACTION} x --size, of a droplet whose base is as "
                   "wide as the wire; replaces the scene's. An inclined facet (the realistic "
                   "scene, --facet-incline-deg) draws the base 0.75-1.2 x the wire, and the "
                   "radius scales with it: truth.parquet gives the radius drawn.")
@click.option("--dose-e-per-px", type=FiniteFloatRange(min=0.0, min_open=True, max=2000.0),
              default=None,
              help="--video: electrons per pixel of vacuum, up to 2000 (more could saturate "
                   "the 16-bit frame); replaces the scene's.")
@click.option("--facet-incline-deg", type=FiniteFloatRange(min=-80.0, max=80.0, min_open=True,
                                                           max_open=True), default=None,
              help="--video: facet inclined to the wire axis by this angle (0: square to "
                   "it; the wire is then untilted); replaces the scene's.")
def insitu(out: Path, n_frames: int, video: bool, seed: int, size: int, scene: str,
           droplet_radius_px: float | None, dose_e_per_px: float | None,
           facet_incline_deg: float | None) -> None:
    """Write OUT/frame_NNNNN.tif, OUT/labels/frame_NNNNN.png and OUT/truth.parquet.

    OUT must be new, empty, or hold only files this run replaces (rerunning a command, or more
    --frames): frames left over from a larger run, or a labelled DATA folder's own files, would
    be trained and evaluated against a truth.parquet that does not describe them."""
    from nwwatch.synth.insitu import generate_insitu

    overrides = {"droplet_radius_px": droplet_radius_px, "dose_e_per_px": dose_e_per_px,
                 "facet_incline_deg": facet_incline_deg}
    if not video:
        ctx = click.get_current_context()
        given = ["--scene"] * (ctx.get_parameter_source("scene") != ParameterSource.DEFAULT) + [
            "--" + key.replace("_", "-") for key, value in overrides.items() if value is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)}: only for a --video (add --video, or leave "
                                   f"{'it' if len(given) == 1 else 'them'} out)")
    limit = MAX_DROPLET_RADIUS_FRACTION * size
    if droplet_radius_px is not None and droplet_radius_px > limit:
        raise click.BadParameter(
            f"{droplet_radius_px:g} px does not fit a {size} px frame: at most "
            f"{MAX_DROPLET_RADIUS_FRACTION} x --size = {limit:g} px",
            param_hint="'--droplet-radius-px'")
    stale = _not_replaced(out, n_frames)
    if stale:
        raise click.ClickException(
            f"{out} already holds {len(stale)} file(s) this run would not replace "
            f"({listed(stale)}); "
            "they would not match the new truth.parquet: choose a new or empty folder")
    made = not out.exists()
    require_writable(out, "'OUT'", folder=True)
    options = None
    if video:
        options = scene_options(scene, size)
        options.update({k: v for k, v in overrides.items() if v is not None})
    try:
        table = generate_insitu(out, n_frames, video=video, seed=seed, size=size,
                                video_options=options)
    except MemoryError as exc:  # numpy refuses an array larger than memory can back
        with contextlib.suppress(OSError):  # the folders made for it, when still empty
            (out / "labels").rmdir()
            if made:
                out.rmdir()
        raise click.ClickException(
            f"--size {size}: a {size}^2 frame needs more memory to render than this process "
            f"can allocate ({exc}); choose a smaller --size") from None
    n = table.num_rows
    say(f"wrote {n} frame{'' if n == 1 else 's'} to {out}")


def _not_replaced(out: Path, n_frames: int) -> list[str]:
    """Entries of ``out`` and ``out/labels`` (relative names, sorted; hidden ones ignored) that
    a run writing ``n_frames`` frames would leave as they are."""
    if not out.is_dir():
        return []
    names = {f"frame_{k:05d}" for k in range(n_frames)}
    written = {"labels", "truth.parquet", *(f"{n}.tif" for n in names),
               *(f"labels/{n}.png" for n in names)}
    found = [p.name for p in out.iterdir()]
    if (out / "labels").is_dir():
        found += [f"labels/{p.name}" for p in (out / "labels").iterdir()]
    return sorted(n for n in found if n not in written and not n.rsplit("/", 1)[-1].startswith("."))


synth.add_command(tomogram)
