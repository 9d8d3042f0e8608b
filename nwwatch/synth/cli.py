"""``nwwatch synth``: generate synthetic acquisitions with exact ground truth.

Subcommands: ``insitu`` (frames or a growth video of a nanowire with its catalyst droplet) and
``tomogram`` (:mod:`nwwatch.synth.tomogram_cli`, registered below).
"""

from __future__ import annotations

from pathlib import Path

import click

from nwwatch.synth.tomogram_cli import tomogram


@click.group()
def synth() -> None:
    """Generate synthetic acquisitions with exact ground truth."""


@synth.command("insitu")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--frames", "n_frames", type=click.IntRange(min=1), default=16, show_default=True,
              help="Number of frames to write.")
@click.option("--video", is_flag=True,
              help="One growing wire over time instead of independent frames.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed; frame k depends only on it (not on --frames).")
@click.option("--size", type=click.IntRange(min=32), default=512, show_default=True,
              help="Frame side in pixels.")
def insitu(out: Path, n_frames: int, video: bool, seed: int, size: int) -> None:
    """Write OUT/frame_NNNNN.tif, OUT/labels/frame_NNNNN.png and OUT/truth.parquet.

    OUT must be new, empty, or hold only files this run replaces (rerunning a command, or more
    --frames): frames left over from a larger run, or a labelled DATA folder's own files, would
    be trained and evaluated against a truth.parquet that does not describe them."""
    from nwwatch.options import require_writable
    from nwwatch.synth.insitu import generate_insitu

    stale = _not_replaced(out, n_frames)
    if stale:
        listed = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
        raise click.ClickException(
            f"{out} already holds {len(stale)} file(s) this run would not replace ({listed}); "
            "they would not match the new truth.parquet: choose a new or empty folder")
    require_writable(out, "'OUT'", folder=True)
    table = generate_insitu(out, n_frames, video=video, seed=seed, size=size)
    n = table.num_rows
    click.echo(f"wrote {n} frame{'' if n == 1 else 's'} to {out}")


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
