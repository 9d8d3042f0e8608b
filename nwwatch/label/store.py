"""Write what the labelling tool produces into a DATA folder ``nwwatch train`` reads.

Per labeled frame ``<stem>`` (layout: :mod:`nwwatch.io.dataset`):

- ``DATA/images/<stem>.tif``: the frame's pixels as acquired (native dtype, pixel size);
- ``DATA/labels/<stem>.png``: uint8 labels rasterised from the geometry (255 unlabeled);
- ``DATA/geometry/<stem>.json``: the geometry (:meth:`LabelGeometry.to_json`) plus where the
  frame came from and the human contact angle;
- ``DATA/truth.parquet``: one row per geometry file with a contact angle - ``file``,
  ``theta_apparent_deg`` (the human angle), ``pixel_size_nm`` - which ``nwwatch evaluate``
  uses as ground truth. Rewritten whole after every save.

Every file goes through :func:`nwwatch.atomic.atomic_write`; the label and the geometry are
written before the image, so a pair the trainer sees always has its label.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from nwwatch.atomic import atomic_write
from nwwatch.label.geometry import GeometryError, LabelGeometry, contact_angle, geometry_from_json
from nwwatch.label.raster import rasterize

GEOMETRY_DIR = "geometry"
TRUTH_FILE = "truth.parquet"
#: The ``truth`` column of the rows :func:`write_truth` writes.
HUMAN_TRUTH = "human geometry"


def safe_stem(text: str) -> str:
    """A file stem made of letters, digits, ``-``, ``_`` and ``.`` only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "frame"


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write a uint8/uint16 (H, W) or (H, W, 3|4) image as PNG, atomically."""
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_write(path) as handle:
        handle.write(data.tobytes())
    return path


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    with atomic_write(path) as handle:
        handle.write(json.dumps(doc, indent=1).encode())
    return path


def save_labeled_frame(
    data_dir: str | os.PathLike[str],
    stem: str,
    image: np.ndarray,
    geometry: LabelGeometry,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Save one labeled frame (see the module docstring).

    Parameters
    ----------
    data_dir : the DATA folder (created when missing).
    stem : file stem, e.g. from :func:`safe_stem`.
    image : (H, W) frame in its native dtype; its shape must be ``geometry.shape``.
    geometry : the shapes; rasterised here.
    source : where the frame came from (path, page, sha256), stored in the geometry file.

    Returns
    -------
    dict with ``stem``, ``label_counts`` ({class id: pixels}) and ``contact_angle_deg``.
    """
    from nwwatch.io import write_frame_tiff

    if tuple(image.shape) != tuple(geometry.shape):
        raise GeometryError(f"shape: geometry {list(geometry.shape)} != frame "
                            f"{list(image.shape)}")
    root = Path(data_dir)
    labels = rasterize(geometry)
    angle = contact_angle(geometry)
    doc = geometry.to_json()
    doc.update(source=source or {}, contact_angle_deg=angle.angle_deg,
               contact_angle_reason=angle.reason)
    write_png(root / "labels" / f"{stem}.png", labels)
    write_json(root / GEOMETRY_DIR / f"{stem}.json", doc)
    if image.dtype not in (np.uint8, np.uint16, np.int16, np.float32):
        image = image.astype(np.float32)
    write_frame_tiff(root / "images" / f"{stem}.tif", image,
                     pixel_size_nm=geometry.pixel_size_nm)
    # The frame's label or image saved in another format (labels drawn elsewhere: napari's
    # labels/<stem>.tif, an images/<stem>.png) is replaced too: left beside the new files,
    # the folder had two files of one stem, which `nwwatch train` refuses.
    for folder, kept in (("labels", f"{stem}.png"), ("images", f"{stem}.tif")):
        for path in stem_files(root / folder, stem):
            if path.name != kept:
                path.unlink(missing_ok=True)
    write_truth(root)
    values, counts = np.unique(labels, return_counts=True)
    return {"stem": stem, "label_counts": {int(v): int(c) for v, c in zip(values, counts,
                                                                            strict=True)},
            "contact_angle_deg": angle.angle_deg}


def foreign_data_reason(data_dir: str | os.PathLike[str]) -> str | None:
    """Why the tool must not save into ``data_dir``, or None.

    A folder of frames directly in DATA with their ``labels/`` (the layout ``nwwatch synth
    insitu`` writes), or a ``truth.parquet`` the tool did not write: a save would add
    ``images/`` beside those frames (every label of theirs then lacks an image for
    ``nwwatch train``), replace their labels of the same stem, and rewrite the truth table
    from the tool's geometry files, dropping every other row. A ``dataset.toml`` of another
    kind than in-situ (a tomogram's training set), or one that cannot be read: the frames
    saved there, labelled 0-2, are refused by ``nwwatch train`` with the whole folder."""
    from nwwatch.io.dataset import list_images

    root = Path(data_dir)
    if not root.is_dir():
        return None
    if (root / "labels").is_dir() and not (root / "images").is_dir() and list_images(root):
        return ("holds frames directly in it with their labels/ (the layout `nwwatch synth "
                "insitu` writes); saving would add images/ beside them and rewrite its "
                f"{TRUTH_FILE}: label into another --out")
    if (root / "dataset.toml").is_file():  # a tomogram set: its labels are 0 / 1 / 255
        from nwwatch.io.dataset import DatasetLayoutError, read_dataset_toml

        try:
            kind = read_dataset_toml(root)[0]
        except DatasetLayoutError as exc:
            return f"{exc}: fix it, or label into another --out"
        if kind != "insitu":
            return (f"its dataset.toml says kind = {kind!r}: the frames saved here (0 "
                    "background, 1 nanowire, 2 droplet) would be trained as that kind's "
                    "classes, which `nwwatch train` refuses: label into another --out")
    truth = root / TRUTH_FILE
    if truth.is_file() and not _tool_truth(truth):
        return (f"its {TRUTH_FILE} was not written by nwwatch label (a synthetic set's exact "
                "truth?); every save rewrites that file from the saved shapes: label into "
                "another --out")
    return None


def _tool_truth(path: Path) -> bool:
    """True when ``path`` is a truth table :func:`write_truth` wrote (every row's ``truth``
    is "human geometry"; an empty one too)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException):
        return False
    if "truth" not in table.column_names:
        return table.num_rows == 0 and "file" in table.column_names
    return all(value == HUMAN_TRUTH for value in table.column("truth").to_pylist())


def stem_files(folder: Path, stem: str) -> list[Path]:
    """The files of ``folder`` the DATA parser reads as ``stem`` (``<stem>.tif``, ``.tiff``,
    ``.png``, in any case; :func:`nwwatch.io.dataset.list_images`), sorted."""
    from nwwatch.io.dataset import IMAGE_SUFFIXES

    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{glob.escape(stem)}.*") if p.is_file()
                  and p.stem == stem and p.suffix.lower() in IMAGE_SUFFIXES)


def saved_token(data_dir: str | os.PathLike[str], stem: str) -> str:
    """A short hash of ``stem``'s saved geometry file ("" when it was never saved): it changes
    with every save, so a page can tell whether someone saved the frame since it loaded it."""
    path = Path(data_dir) / GEOMETRY_DIR / f"{stem}.json"
    if not path.is_file():
        return ""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_geometry(data_dir: str | os.PathLike[str], stem: str) -> LabelGeometry | None:
    """The saved geometry of ``stem``, or None when it was never saved."""
    path = Path(data_dir) / GEOMETRY_DIR / f"{stem}.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        doc = {k: v for k, v in doc.items()
               if k not in ("source", "contact_angle_deg", "contact_angle_reason")}
        return geometry_from_json(doc)
    except (json.JSONDecodeError, GeometryError) as exc:
        raise GeometryError(f"{path}: {exc}") from None


def write_truth(data_dir: str | os.PathLike[str]) -> Path | None:
    """Rewrite DATA/truth.parquet from the geometry files (rows with a human angle only)."""
    import pyarrow as pa

    from nwwatch.results.parquet import write_table_atomic

    root = Path(data_dir)
    rows = []
    for path in sorted((root / GEOMETRY_DIR).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue  # a broken file names itself when the tool loads it
        if doc.get("contact_angle_deg") is None:
            continue
        rows.append({"file": f"images/{path.stem}.tif",
                     "theta_apparent_deg": float(doc["contact_angle_deg"]),
                     "pixel_size_nm": doc.get("pixel_size_nm"), "truth": HUMAN_TRUTH})
    schema = pa.schema([("file", pa.string()), ("theta_apparent_deg", pa.float64()),
                        ("pixel_size_nm", pa.float64()), ("truth", pa.string())])
    target = root / TRUTH_FILE
    write_table_atomic(pa.Table.from_pylist(rows, schema=schema), target)
    return target
