"""Write what the labelling tool produces into a DATA folder ``nwwatch train`` reads.

Per labeled frame ``<stem>`` (layout: :mod:`nwwatch.io.dataset`):

- ``DATA/images/<stem>.tif``: the frame's pixels as acquired (native dtype, pixel size,
  acquisition time when its file declared one);
- ``DATA/labels/<stem>.png``: uint8 labels rasterised from the geometry (255 unlabeled);
- ``DATA/geometry/<stem>.json``: the geometry (:meth:`LabelGeometry.to_json`) plus where the
  frame came from, the human contact angle and a digest of the label image it gives
  (``labels_sha256``, :func:`labels_digest`: a label image changed afterwards in another tool
  is told apart, :func:`edited_labels_note`);
- ``DATA/truth.parquet``: one row per geometry file with a contact angle - ``file``,
  ``theta_apparent_deg`` (the human angle), ``pixel_size_nm`` - which ``nwwatch evaluate``
  uses as ground truth. Rewritten whole after every save.

Every file goes through :func:`nwwatch.atomic.atomic_write`; the label and the geometry are
written before the image, so a pair the trainer sees always has its label.

A save holds DATA's lock (:func:`data_lock`, ``DATA/.nwwatch-label.lock``) from its
``saved_token`` check to its truth table, so saves from several ``nwwatch label`` processes
into one DATA follow each other: each truth table is built after the previous save's geometry
file was written, and a frame's label and geometry files are one save's. A save also leaves
``DATA/.nwwatch-label-saving.json`` (its stem) until its truth table is written: found by the
next holder of the lock, it names a save that was stopped midway (``kill -9``, a power cut,
a full disk), which :func:`repair_interrupted_save` makes consistent again.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from nwwatch.atomic import atomic_write_json
from nwwatch.classes import UNLABELED
from nwwatch.io.limits import MAX_FRAME_PIXELS
from nwwatch.io.png import write_image_file
from nwwatch.label.geometry import (
    GeometryError,
    HumanAngle,
    LabelGeometry,
    contact_angle,
    geometry_from_json,
)
from nwwatch.label.raster import rasterize

GEOMETRY_DIR = "geometry"
TRUTH_FILE = "truth.parquet"
#: The ``truth`` column of the rows :func:`write_truth` writes.
HUMAN_TRUTH = "human geometry"
#: Held (``flock``) by a save from its ``saved_token`` check to its truth table.
LOCK_FILE = ".nwwatch-label.lock"
#: Present while a save writes its files: the stem of that save.
SAVING_FILE = ".nwwatch-label-saving.json"
#: Keys of a geometry file that record the save, not the shapes.
_RECORD_KEYS = ("source", "contact_angle_deg", "contact_angle_reason", "labels_sha256")
#: Tries to lock a lock file that another process deletes between its opening and its locking.
_LOCK_RETRIES = 10


class SavedSinceError(RuntimeError):
    """The frame's saved geometry file is not the one the save started from: ``current`` is
    its :func:`saved_token` now ("" when there is none)."""

    def __init__(self, stem: str, current: str) -> None:
        super().__init__(f"{stem}: saved since ({current or 'removed'})")
        self.stem = stem
        self.current = current

    def __reduce__(self):  # else unpickling calls __init__(message) and fails
        return (type(self), (self.stem, self.current))


@contextmanager
def data_lock(data_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the exclusive lock of the DATA folder ``data_dir`` (created when missing), waiting
    for the process or thread holding it. An advisory ``flock`` on ``DATA/.nwwatch-label.lock``:
    the kernel releases it when its process dies (``kill -9`` included), so it is never stale.
    Not re-entrant: a thread holding it that asks again waits for ever."""
    root = Path(data_dir)
    path = root / LOCK_FILE
    for _ in range(_LOCK_RETRIES):
        root.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            # A lock on a file deleted meanwhile (DATA emptied by hand) excludes no one who
            # opens the path now: open it again.
            mine = os.fstat(handle.fileno())
            now = os.stat(path)
        except FileNotFoundError:
            handle.close()
            continue
        except BaseException:
            handle.close()
            raise
        if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            break
        handle.close()
    else:
        raise OSError(f"{path}: deleted {_LOCK_RETRIES} times while being locked; another "
                      "process is removing it")
    try:
        yield
    finally:
        handle.close()


#: The longest stem :func:`safe_stem` gives: what DATA's names add to it (a page, a hash to tell
#: two files apart, the extension) and the atomic writer's temporary name (15 bytes) stay
#: within Linux's 255-byte file names.
MAX_STEM_CHARS = 200


def safe_stem(text: str, max_chars: int | None = MAX_STEM_CHARS) -> str:
    """A file stem made of letters, digits, ``-``, ``_`` and ``.`` only, at most
    ``max_chars`` long (a longer one is cut; the caller tells cut names apart; None: not
    cut, for a stem read back, which may carry a page or hash suffix after its cut)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:max_chars]
    return stem.rstrip("._") or "frame"


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    """``doc`` written to ``path`` as JSON, atomically (the one call tests interpose on)."""
    return atomic_write_json(path, doc)


def save_labeled_frame(
    data_dir: str | os.PathLike[str],
    stem: str,
    image: np.ndarray,
    geometry: LabelGeometry,
    source: dict[str, Any] | None = None,
    base_token: str | None = None,
    acquired_at: datetime | None = None,
) -> dict[str, Any]:
    """Save one labeled frame (see the module docstring).

    Parameters
    ----------
    data_dir : the DATA folder (created when missing).
    stem : file stem, e.g. from :func:`safe_stem`.
    image : (H, W) frame in its native dtype; its shape must be ``geometry.shape``.
    geometry : the shapes; rasterised here. Its ``pixel_size_nm`` is written as the image's
        pixel size, in the geometry file and in the truth table: give the frame's (the
        labelling server sets the one its file declares).
    source : where the frame came from, stored in the geometry file: ``path`` (the file's
        absolute path) and ``page``; for a frame from the label queue also its ``confidence``,
        ``status``, ``source_sha256``, ``model_sha256`` and ``queue_rank``.
    base_token : the :func:`saved_token` of the version the shapes were drawn on ("": none
        was saved); None saves whatever is there.
    acquired_at : the frame's acquisition time (timezone-aware) from its file's metadata,
        written into ``images/<stem>.tif`` as the acquisition software's is; None: none.

    Returns
    -------
    dict with ``stem``, ``label_counts`` ({class id: pixels}), ``contact_angle_deg``,
    ``saved_token`` (of the file this save wrote), ``repaired`` (what
    :func:`repair_interrupted_save` found, or None) and ``truth_left_out`` (the frames the
    truth table written has no row for as their geometry file cannot be read, by stem: why).

    Raises
    ------
    SavedSinceError
        ``base_token`` is not the frame's saved file now (checked under :func:`data_lock`,
        so a save from another process cannot come between the check and the write).
    """
    if tuple(image.shape) != tuple(geometry.shape):
        raise GeometryError(f"shape: geometry {list(geometry.shape)} != frame "
                            f"{list(image.shape)}")
    root = Path(data_dir)
    labels = rasterize(geometry)  # before the lock: seconds on a large frame
    if not np.any(labels != UNLABELED):
        # `nwwatch train` refuses the whole DATA folder over such a label image
        raise GeometryError("not saved: every pixel is unlabeled (255), and training refuses "
                            "a label image without a labeled pixel; label what you can see, "
                            "or leave the frame unsaved")
    angle = contact_angle(geometry, labels)
    doc = geometry.to_json()
    # the next truth tables read this angle back without rasterising the shapes again
    _remember_angle(_shapes_key(geometry), angle)
    doc.update(source=source or {}, contact_angle_deg=angle.angle_deg,
               contact_angle_reason=angle.reason, labels_sha256=labels_digest(labels))
    with data_lock(root):
        repaired = repair_interrupted_save(root)
        current = saved_token(root, stem)
        if base_token is not None and base_token.strip() != current:
            raise SavedSinceError(stem, current)
        write_json(root / SAVING_FILE, {"stem": stem})
        _write_frame_files(root, stem, labels, doc, image, geometry.pixel_size_nm, acquired_at)
        left_out = _write_truth(root)[1]
        (root / SAVING_FILE).unlink()
        token = saved_token(root, stem)
    values, counts = np.unique(labels, return_counts=True)
    return {"stem": stem, "label_counts": {int(v): int(c) for v, c in zip(values, counts,
                                                                            strict=True)},
            "contact_angle_deg": angle.angle_deg, "saved_token": token, "repaired": repaired,
            "truth_left_out": left_out}


def _write_frame_files(root: Path, stem: str, labels: np.ndarray, doc: dict[str, Any],
                       image: np.ndarray, pixel_size_nm: float | None,
                       acquired_at: datetime | None) -> None:
    from nwwatch.io import write_frame_tiff

    write_image_file(root / "labels" / f"{stem}.png", labels, durable=True)
    write_json(root / GEOMETRY_DIR / f"{stem}.json", doc)
    if image.dtype not in (np.uint8, np.uint16, np.int16, np.float32):
        image = image.astype(np.float32)
    write_frame_tiff(root / "images" / f"{stem}.tif", image, pixel_size_nm=pixel_size_nm,
                     acquired_at=acquired_at)
    _remove_other_formats(root, stem)


def _remove_other_formats(root: Path, stem: str) -> None:
    """Remove the frame's label or image saved in another format (labels drawn elsewhere:
    napari's labels/<stem>.tif, an images/<stem>.png) once the tool's file of that folder is
    there: left beside it, the folder had two files of one stem, which `nwwatch train`
    refuses."""
    for folder, kept in (("labels", f"{stem}.png"), ("images", f"{stem}.tif")):
        if not (root / folder / kept).is_file():
            continue
        for path in stem_files(root / folder, stem):
            if path.name != kept:
                path.unlink(missing_ok=True)


def repair_interrupted_save(data_dir: str | os.PathLike[str]) -> str | None:
    """Make a frame whose save was stopped midway consistent again; what was done, or None
    when no save was interrupted. Call it holding :func:`data_lock` (a save on its way leaves
    the same mark).

    The save writes the label image, the geometry file, the image, then the truth table, so
    the frame named by ``DATA/.nwwatch-label-saving.json`` is left as one of: its geometry
    file and image there (the shapes last written, old or new): its label image is
    rasterised again from that geometry file, so label and shapes agree; a geometry file but
    no image (its first save, stopped before the image): its label and geometry files are
    removed, since ``nwwatch train`` refuses a label without its image; no geometry file and
    no image: a label image written by that first save is removed. Then the truth table is
    rebuilt from the geometry files."""
    root = Path(data_dir)
    marker = root / SAVING_FILE
    if not marker.is_file():
        return None
    try:
        stem = safe_stem(str(json.loads(marker.read_text())["stem"]), max_chars=None)
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        stem = None  # atomic_write never leaves a partial file; written by hand
    done = []
    if stem is not None:
        geometry_file = root / GEOMETRY_DIR / f"{stem}.json"
        has_image = bool(stem_files(root / "images", stem))
        label_png = root / "labels" / f"{stem}.png"
        if geometry_file.is_file() and has_image:
            try:
                geometry = load_geometry(root, stem)
            except GeometryError as exc:  # edited by hand: saves go on, the frame names it
                done.append(f"{exc}; fix or remove it")
            else:
                if geometry is not None:
                    write_image_file(label_png, rasterize(geometry), durable=True)
                    _remove_other_formats(root, stem)
                done.append(f"labels/{stem}.png was rasterised again from geometry/{stem}.json"
                            " (the shapes last written: check the frame)")
        elif geometry_file.is_file():
            label_png.unlink(missing_ok=True)
            geometry_file.unlink()
            done.append(f"its first save had not written images/{stem}.tif yet: "
                        f"labels/{stem}.png and geometry/{stem}.json were removed; label it "
                        "again")
        elif label_png.is_file() and not has_image:
            label_png.unlink()
            done.append(f"its first save had written only labels/{stem}.png, which was "
                        "removed; label it again")
    write_truth(root)
    marker.unlink()
    done.append(f"{TRUTH_FILE} was rebuilt from geometry/")
    return (f"{root}: the save of {stem or 'a frame'} was stopped midway (the process was "
            f"killed, or a write failed): " + "; ".join(done))


def foreign_data_reason(data_dir: str | os.PathLike[str]) -> str | None:
    """Why the tool must not save into ``data_dir``, or None.

    A DATA folder's ``images/``, ``labels/`` or ``geometry/`` (a sibling of the others): the
    saves would go into folders inside it, which ``nwwatch train DATA`` does not read.

    A folder of frames directly in DATA with their ``labels/`` (the layout ``nwwatch synth
    insitu`` writes), or a ``truth.parquet`` the tool did not write: a save would add
    ``images/`` beside those frames (every label of theirs then lacks an image for
    ``nwwatch train``), replace their labels of the same stem, and rewrite the truth table
    from the tool's geometry files, dropping every other row. A ``dataset.toml`` of another
    kind than in-situ (a tomogram's training set), or one that cannot be read: the frames
    saved there, labelled 0-2, are refused by ``nwwatch train`` with the whole folder."""
    from nwwatch.io.dataset import list_images

    root = Path(data_dir)
    parts = ("images", "labels", GEOMETRY_DIR)
    if root.name in parts and any((root.parent / name).is_dir() for name in parts
                                  if name != root.name):
        # DATA/images given as DATA: its saves went to DATA/images/images/..., which
        # `nwwatch train DATA` does not read
        return (f"is the {root.name}/ folder of the DATA folder {root.parent}: a save writes "
                f"images/, labels/ and geometry/ inside --out, where `nwwatch train "
                f"{root.parent}` would not find them: give --out {root.parent}")
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
        table = pq.read_table(os.path.abspath(path))
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
    """The saved geometry of ``stem``, or None when it was never saved
    (:func:`load_saved_frame`)."""
    saved = load_saved_frame(data_dir, stem)
    return None if saved is None else saved.geometry


#: The human contact angles a geometry file may hold, in degrees, both ends excluded: the
#: angle of a circle cut by a facet line (:func:`nwwatch.label.geometry.contact_angle`) lies
#: strictly between them, so anything else was not saved by the tool.
SAVED_ANGLE_RANGE_DEG = (0.0, 180.0)


@dataclass(frozen=True)
class SavedFrame:
    """``geometry/<stem>.json`` as :func:`load_saved_frame` reads and checks it."""

    path: Path
    stem: str
    geometry: LabelGeometry
    #: the human angle the shapes give (degrees, :func:`saved_shapes_angle`), whatever
    #: number the file holds; None: the shapes give none (:attr:`contact_angle_reason`)
    contact_angle_deg: float | None
    #: :func:`labels_digest` of the label image saved with the shapes; None: the file holds
    #: none, and the label image is not checked against it
    labels_sha256: str | None
    #: the keys of the file that are not shapes (``source``, ``contact_angle_deg``,
    #: ``contact_angle_reason``, ``labels_sha256``, those present), as found
    record: dict[str, Any]
    #: why the shapes give no angle ("" when they give one)
    contact_angle_reason: str = ""
    #: "" or why the file's ``contact_angle_deg`` is not the angle its shapes give (naming
    #: the file and both): edited by hand, or written by another program
    angle_note: str = ""

    def size_problem(self, shape: tuple[int, ...], of: str) -> str:
        """"" when the shapes are of a frame of ``shape`` (rows, columns, ...), else why not,
        naming the file and both sizes; ``of`` names what has ``shape`` ("the label image of
        f1", "this frame")."""
        saved = tuple(self.geometry.shape)
        if saved == tuple(shape[:2]):
            return ""
        return (f"{self.path}: its shapes are for a {saved[1]} x {saved[0]} px frame, {of} is "
                f"{shape[1]} x {shape[0]} px (the shapes of another frame)")


def saved_angle_problem(value: Any) -> str:
    """Why ``value`` cannot be the ``contact_angle_deg`` of a geometry file ("" when it can:
    null, or a finite JSON number strictly within :data:`SAVED_ANGLE_RANGE_DEG`). The one rule
    for a saved human angle: the tool, training, evaluation and truth.parquet apply it."""
    low, high = SAVED_ANGLE_RANGE_DEG
    # Compared as they are, not as floats: NaN and infinities fail the range, and an integer
    # too large for a float (a hand-edited file) is refused rather than raising OverflowError.
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)
                         and low < value < high):
        return ""
    return (f"contact_angle_deg: expected a number of degrees between {low:g} and {high:g} "
            f"(both excluded) or null, got {value!r}")


def load_saved_frame(data_dir: str | os.PathLike[str], stem: str) -> SavedFrame | None:
    """The saved shapes of ``stem`` with the record of their save (:class:`SavedFrame`), or
    None when it was never saved. The one reader of a geometry file: the labelling tool,
    ``nwwatch train``, ``nwwatch evaluate`` and :func:`write_truth` read them through it.

    Its human angle is the one its shapes give (:func:`saved_shapes_angle`), not the number
    the file holds: where they differ, :attr:`SavedFrame.angle_note` says so.

    Raises :class:`GeometryError` naming the file when it is not UTF-8 JSON, not a geometry
    (the first bad key), its ``contact_angle_deg`` is not an angle (:func:`saved_angle_problem`)
    or its ``labels_sha256`` is not text."""
    path = Path(data_dir) / GEOMETRY_DIR / f"{stem}.json"
    if not path.is_file():
        return None
    geometry, record, angle, digest = _read_saved_file(path)
    try:
        shapes = saved_shapes_angle(geometry)
    except (ValueError, MemoryError) as exc:  # shapes the label image cannot be drawn from
        raise GeometryError(f"{path}: its shapes cannot be drawn as a label image: "
                            f"{exc}") from None
    note = ""
    if (shapes.angle_deg is None) != (angle is None) or (
            angle is not None and abs(shapes.angle_deg - angle) > ANGLE_ROUNDING_DEG):
        if shapes.angle_deg is None:
            note = (f"{path}: contact_angle_deg {angle!r}, but its shapes give no angle "
                    f"({shapes.reason}; edited by hand?): no human angle is taken; open the "
                    "frame in nwwatch label and Save to write the file again")
        else:
            note = (f"{path}: contact_angle_deg {angle!r} is not the angle its shapes give "
                    f"({shapes.angle_deg:.2f} deg; edited by hand?): the shapes' angle is "
                    "taken; open the frame in nwwatch label and Save to write it into the file")
    return SavedFrame(path, stem, geometry, shapes.angle_deg, digest, record, shapes.reason,
                      note)


def _read_saved_file(path: Path) -> tuple[LabelGeometry, dict[str, Any], Any, str | None]:
    """The shapes, record, stored angle and label digest of the geometry file ``path``, checked
    as :func:`load_saved_frame` says; the shapes' angle is not computed."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise GeometryError(f"expected a JSON object (the geometry), got "
                                f"{type(doc).__name__}")
        record = {k: doc[k] for k in _RECORD_KEYS if k in doc}
        geometry = geometry_from_json({k: v for k, v in doc.items() if k not in _RECORD_KEYS},
                                      limits=False)  # saved before the limits, maybe
        if geometry.shape[0] * geometry.shape[1] > MAX_FRAME_PIXELS:
            raise GeometryError(f"shape: {list(geometry.shape)} is larger than any frame "
                                f"nwwatch reads ({MAX_FRAME_PIXELS} pixels)")
        angle = record.get("contact_angle_deg")
        problem = saved_angle_problem(angle)
        if problem:
            raise GeometryError(problem)
        digest = record.get("labels_sha256")
        if digest is not None and not isinstance(digest, str):
            raise GeometryError(f"labels_sha256: expected the text digest of the saved label "
                                f"image or null, got {digest!r}")
    except (ValueError, GeometryError) as exc:  # JSONDecodeError, UnicodeDecodeError too
        raise GeometryError(f"{path}: {exc}") from None
    return geometry, record, angle, digest


def saved_file_problem(data_dir: str | os.PathLike[str], stem: str) -> str:
    """Why ``geometry/<stem>.json`` cannot be read as saved shapes (as :func:`load_saved_frame`
    says it), or "" when it can or there is none; its angle is not computed (cheap enough
    for every frame of a list)."""
    path = Path(data_dir) / GEOMETRY_DIR / f"{stem}.json"
    if not path.is_file():
        return ""
    try:
        _read_saved_file(path)
    except GeometryError as exc:
        return str(exc)
    return ""


#: A stored ``contact_angle_deg`` within this of the shapes' angle (degrees) is that angle
#: rounded (written by hand to two decimals), not another one.
ANGLE_ROUNDING_DEG = 0.005
#: Shapes' angles found with their label image (:func:`saved_shapes_angle`), by a digest of
#: the shapes: every save rebuilds truth.parquet from all geometry files, and rasterising a
#: 2048 x 2048 frame takes about a second.
_RASTERISED_ANGLES: dict[str, HumanAngle] = {}
_RASTERISED_ANGLES_KEPT = 4096
_RASTERISED_LOCK = threading.Lock()


def saved_shapes_angle(geometry: LabelGeometry) -> HumanAngle:
    """The human angle the saved shapes ``geometry`` give: :func:`contact_angle` with their
    label image, as the save computed it (the angle the page shows for them).

    The circle and facet alone are cheap (no label image) and decide when they give no
    angle; otherwise the label image, which can only take the angle away (too few circle
    pixels, no wire under the base), is drawn, once per version of the shapes in a process
    (a number in the file proves nothing of the label checks: it may be edited by hand)."""
    quick = contact_angle(geometry)
    if quick.angle_deg is None:
        return quick
    key = _shapes_key(geometry)
    with _RASTERISED_LOCK:
        found = _RASTERISED_ANGLES.get(key)
    if found is None:
        found = contact_angle(geometry, rasterize(geometry))
        _remember_angle(key, found)
    return found


def _shapes_key(geometry: LabelGeometry) -> str:
    return hashlib.sha256(json.dumps(geometry.to_json(), sort_keys=True).encode()).hexdigest()


def _remember_angle(key: str, angle: HumanAngle) -> None:
    with _RASTERISED_LOCK:  # the labelling server reads geometry files from several threads
        if len(_RASTERISED_ANGLES) >= _RASTERISED_ANGLES_KEPT:
            _RASTERISED_ANGLES.pop(next(iter(_RASTERISED_ANGLES)))
        _RASTERISED_ANGLES[key] = angle


def saved_shapes_problem(data_dir: str | os.PathLike[str], stem: str,
                         label_shape: tuple[int, ...]) -> str:
    """Why ``geometry/<stem>.json`` of a frame whose label image is ``label_shape`` (rows,
    columns) cannot be taken as that frame's saved shapes ("" when it can, or when there is
    none): not a geometry file the tool reads (:func:`load_saved_frame`), or shapes of a frame
    of another size (:meth:`SavedFrame.size_problem`). Its human angle is then no angle of
    these labels."""
    try:
        saved = load_saved_frame(data_dir, stem)
    except GeometryError as exc:
        return str(exc)
    return "" if saved is None else saved.size_problem(label_shape, f"the label image of {stem}")


def labels_digest(labels: np.ndarray) -> str:
    """A short hash of a label image's class ids and shape (not of its file's bytes: the same
    pixels saved again by another program keep it)."""
    digest = hashlib.sha256(repr(tuple(labels.shape)).encode())
    digest.update(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    return digest.hexdigest()[:16]


def edited_labels_note(data_dir: str | os.PathLike[str], saved: SavedFrame) -> str:
    """Why the label image of the saved frame ``saved`` (:func:`load_saved_frame`) is not the
    one its shapes give ("" when it is): edited in another tool, replaced or removed since the
    tool saved it. The page opens the shapes, so those pixels are not what it shows, and its
    Save writes the shapes' label image in their place. Geometry files without
    ``labels_sha256`` are not checked."""
    from nwwatch.io.dataset import DatasetLayoutError, read_label_image

    root = Path(data_dir)
    stem, expected = saved.stem, saved.labels_sha256
    if expected is None:
        return ""
    label_name = f"labels/{stem}.png"
    found = stem_files(root / "labels", stem)
    if not found:
        return (f"{label_name} is missing from DATA (nwwatch train refuses its image without it): "
                "showing the saved shapes; Save writes it again")
    names = ", ".join(f"labels/{p.name}" for p in found)
    if [p.name for p in found] == [f"{stem}.png"]:
        try:
            if labels_digest(read_label_image(found[0])) == expected:
                return ""
        except DatasetLayoutError:
            pass
    return (f"{names} in DATA changed since nwwatch label saved {stem} (edited in another "
            "tool?): showing the saved shapes, not those pixels; Save replaces "
            f"{'them' if len(found) > 1 else 'it'} with the shapes' {label_name}")


def write_truth(data_dir: str | os.PathLike[str]) -> Path | None:
    """Rewrite DATA/truth.parquet from the geometry files (rows with a human angle only).

    A geometry file :func:`load_saved_frame` refuses gives no row: it is named where its
    frame is opened, trained on or evaluated, and its angle is not taken anywhere (a save
    says which frames were left out: :func:`save_labeled_frame`'s ``truth_left_out``)."""
    return _write_truth(Path(data_dir))[0]


def _write_truth(root: Path) -> tuple[Path, dict[str, str]]:
    """:func:`write_truth`; and the frames left out as their geometry file cannot be read,
    by stem: why (naming the file)."""
    import pyarrow as pa

    from nwwatch.results.parquet import write_table_atomic

    rows = []
    left_out: dict[str, str] = {}
    for path in sorted((root / GEOMETRY_DIR).glob("*.json")):
        try:
            saved = load_saved_frame(root, path.stem)
        except GeometryError as exc:
            left_out[path.stem] = str(exc)
            continue
        if saved is None or saved.contact_angle_deg is None:
            continue
        rows.append({"file": f"images/{path.stem}.tif",
                     "theta_apparent_deg": saved.contact_angle_deg,
                     "pixel_size_nm": saved.geometry.pixel_size_nm, "truth": HUMAN_TRUTH})
    schema = pa.schema([("file", pa.string()), ("theta_apparent_deg", pa.float64()),
                        ("pixel_size_nm", pa.float64()), ("truth", pa.string())])
    target = root / TRUTH_FILE
    write_table_atomic(pa.Table.from_pylist(rows, schema=schema), target)
    return target, left_out
