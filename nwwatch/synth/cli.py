"""``nwwatch synth``: generate synthetic acquisitions with exact ground truth.

Subcommands: ``insitu`` (frames or a growth video of a nanowire with its catalyst droplet) and
``tomogram`` (registered below by :mod:`nwwatch.synth.tomogram_cli`).
"""

from __future__ import annotations

from pathlib import Path

import click


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
    """Write OUT/frame_NNNNN.tif, OUT/labels/frame_NNNNN.png and OUT/truth.parquet."""
    from nwwatch.synth.insitu import generate_insitu

    table = generate_insitu(out, n_frames, video=video, seed=seed, size=size)
    click.echo(f"wrote {table.num_rows} frames to {out}")


# --- tomogram subcommand ------------------------------------------------------------------
# Registered by the tomogram module's owner: nwwatch/synth/tomogram_cli.py defines a click
# command `tomogram`. The import is guarded only so that `insitu` keeps working while that
# file does not exist yet.
try:
    from nwwatch.synth.tomogram_cli import tomogram as _tomogram
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the other module
    if _exc.name != "nwwatch.synth.tomogram_cli":
        raise
else:
    synth.add_command(_tomogram)
# --- end tomogram subcommand --------------------------------------------------------------
