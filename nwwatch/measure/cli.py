"""``nwwatch measure``: contact angles of label images (e.g. human annotations) to Parquet.

One row per label image (per page for a multi-page TIFF), in the frame-row schema the daemon
writes (``nwwatch.results.schema.frame_schema``), so human and model measurements compare
directly. Optional overlays show every fit on its frame.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click
import cv2
import numpy as np
import tifffile

from nwwatch import __version__
from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure.contact_angle import measure_contact_angle
from nwwatch.measure.overlay import draw_overlay
from nwwatch.measure.result import MEASUREMENT_VERSION

_TIFF = {".tif", ".tiff"}
_IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


class LabelFileError(click.ClickException):
    """A label file that cannot be measured: names the file and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _read_pages(path: Path) -> list[np.ndarray]:
    if path.suffix.lower() in _TIFF:
        try:
            data = tifffile.imread(path)
        except Exception as exc:  # tifffile raises several types for broken files
            raise LabelFileError(path, f"not a readable TIFF ({exc})") from None
    else:
        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if data is None:
            raise LabelFileError(path, "not a readable image")
    data = np.asarray(data)
    if data.ndim == 2:
        return [data]
    if data.ndim == 3 and path.suffix.lower() in _TIFF:
        return list(data)
    raise LabelFileError(path, f"expected a single-channel label image, got shape {data.shape}")


def read_labels(path: Path) -> list[np.ndarray]:
    """Label pages of ``path`` (PNG or TIFF) as uint8 (H, W) arrays with values in {0, 1, 2}."""
    pages = _read_pages(path)
    out = []
    for page in pages:
        if not np.issubdtype(page.dtype, np.integer):
            raise LabelFileError(path, f"labels must be integers, got dtype {page.dtype}")
        bad = np.setdiff1d(np.unique(page), [0, NANOWIRE, DROPLET])
        if bad.size:
            raise LabelFileError(
                path, f"labels must be 0 background, 1 nanowire, 2 droplet; found {bad[:5]}"
            )
        out.append(page.astype(np.uint8))
    return out


def _grey_image(images: Path | None, stem: str, index: int, shape: tuple[int, int]):
    if images is None:
        return None
    for suffix in _IMAGE_SUFFIXES:
        candidate = images / f"{stem}{suffix}"
        if candidate.exists():
            pages = (
                tifffile.imread(candidate)
                if suffix in _TIFF
                else cv2.imread(str(candidate), cv2.IMREAD_GRAYSCALE)
            )
            pages = np.asarray(pages)
            page = pages if pages.ndim == 2 else pages[min(index, len(pages) - 1)]
            if page.shape == shape:
                return page
            click.echo(f"warning: {candidate} has shape {page.shape}, labels {shape}; "
                       "overlay drawn on the labels", err=True)
            return None
    return None


def _write(rows: list[dict], out: Path) -> None:
    try:
        from nwwatch.results.parquet import rows_to_table, write_table_atomic
        from nwwatch.results.schema import frame_schema
    except ImportError:  # results package not available: same columns, plain pyarrow
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), out)
        return
    write_table_atomic(rows_to_table(rows, frame_schema()), out)


@click.command("measure")
@click.argument("labels", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Parquet file to write (one row per label image or page).")
@click.option("--pixel-size-nm", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Pixel size; fills the *_nm columns.")
@click.option("--overlays", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for one overlay PNG per label image.")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder of grey images with the labels' stems, for overlays.")
def measure(labels: tuple[Path, ...], out: Path, pixel_size_nm: float | None,
            overlays: Path | None, images: Path | None) -> None:
    """Measure contact angles on LABELS (PNG/TIFF: 0 background, 1 nanowire, 2 droplet)."""
    rows: list[dict] = []
    skipped = 0
    if overlays is not None:
        overlays.mkdir(parents=True, exist_ok=True)
    for path in labels:
        try:
            pages = read_labels(path)
        except LabelFileError as exc:
            click.echo(f"skipped {exc.format_message()}", err=True)
            skipped += 1
            continue
        for index, page in enumerate(pages):
            start = time.perf_counter()
            result = measure_contact_angle(page, pixel_size_nm=pixel_size_nm)
            elapsed_ms = 1000.0 * (time.perf_counter() - start)
            rows.append({
                "source": str(path),
                "frame": index,
                **result.as_row(),
                "processed_at": datetime.now(UTC),
                "nwwatch_version": __version__,
                "measurement_version": MEASUREMENT_VERSION,
                "measure_ms": elapsed_ms,
            })
            angle = (f"{result.contact_angle_deg:.2f} deg"
                     if result.contact_angle_deg is not None else "-")
            note = f" ({result.reason})" if result.reason else ""
            click.echo(f"{path}[{index}]: {result.status} {angle}{note}")
            if overlays is not None:
                grey = _grey_image(images, path.stem, index, page.shape)
                name = path.stem + (f"_{index:04d}" if len(pages) > 1 else "") + "_overlay.png"
                cv2.imwrite(str(overlays / name), draw_overlay(grey, page, result))
    if rows:
        _write(rows, out)
        click.echo(f"wrote {len(rows)} row(s) to {out}")
    if skipped:
        raise click.ClickException(f"{skipped} file(s) could not be read (see above)")
