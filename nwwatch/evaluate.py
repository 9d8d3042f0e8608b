"""``nwwatch evaluate MODEL.onnx DATA``: score a model on a labeled folder through the runtime.

Images run through :class:`nwwatch.segment.session.Segmenter` (exactly what the service
runs), normalised by :func:`nwwatch.normalize.normalize_image`. Reported: dataset-level
per-class IoU and Dice, mIoU, mean Dice and pixel accuracy (pixels labeled 255 ignored), and,
with reference angles (:func:`_reference_angles`: a frame's ``geometry/<stem>.json`` where
``nwwatch label`` saved one, else DATA/truth.parquet), the contact-angle errors
of :func:`nwwatch.measure.measure_contact_angle` on the predicted labels against the true
apparent angle, with every failed frame counted by ``reason_code`` (never dropped silently), as
replay, status and report count them, next to
the same measurement on the true labels.

DATA layout and image reading: :mod:`nwwatch.io.dataset` (the parser ``nwwatch train`` uses).
DATA/truth.parquet is written by ``nwwatch synth insitu`` (the exact angles) and by
``nwwatch label`` (the angle of the drawn circle and facet, rebuilt from geometry/ at each
save: the geometry file decides where the table is stale).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from nwwatch.atomic import atomic_write_json
from nwwatch.classes import (
    DROPLET,
    NANOWIRE,
    UNLABELED,
    UnsureBandError,
    fill_unsure_band,
    misplaced_insitu_class,
)
from nwwatch.io.dataset import (
    DatasetLayoutError,
    pair_folder,
    read_dataset_toml,
    read_pair,
)
from nwwatch.normalize import NAN_FILL, normalize_image
from nwwatch.options import OutputFile, model_file, say
from nwwatch.segment.metrics import (
    InterfaceOffsets,
    SegmentationMetrics,
    confusion_matrix,
    interface_offsets_px,
    metrics_from_confusion,
)
from nwwatch.segment.scale import WorkingScale

if TYPE_CHECKING:
    from nwwatch.label.store import SavedFrame


@dataclass
class AngleErrors:
    """Contact-angle errors (degrees) against the synthetic truth."""

    frames: int
    valid: int
    failures: dict[str, int]
    rmse_deg: float
    mean_abs_deg: float
    bias_deg: float
    max_abs_deg: float

    @classmethod
    def from_errors(cls, errors: list[float], frames: int, failures: Counter) -> AngleErrors:
        e = np.asarray(errors, dtype=float)
        nan = float("nan")
        return cls(frames, int(e.size), dict(failures),
                   float(np.sqrt(np.mean(e**2))) if e.size else nan,
                   float(np.mean(np.abs(e))) if e.size else nan,
                   float(np.mean(e)) if e.size else nan,
                   float(np.max(np.abs(e))) if e.size else nan)


@dataclass
class EvaluationReport:
    """Result of :func:`evaluate_folder`."""

    model: str
    images: int
    class_names: tuple[str, ...]
    metrics: SegmentationMetrics
    angles: AngleErrors | None = None
    angles_on_truth_labels: AngleErrors | None = None
    interface: InterfaceOffsets | None = None
    seconds_per_image: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: the execution provider ONNX Runtime actually obtained (``--provider`` is a preference:
    #: cuda asked for on a machine without a GPU runs on the CPU)
    provider: str = ""
    #: the softmax averaged over the frame and its mirror images (``--flip-average``): the
    #: report says so, as its figures differ from those of the model run as the service runs it
    flip_average: bool = False
    #: label images (their path under DATA) whose true-label angle was not measured, with
    #: why: unlabeled (255) pixels :func:`nwwatch.classes.fill_unsure_band` gives no class,
    #: as ``nwwatch measure`` refuses them
    truth_labels_not_measured: dict[str, str] = field(default_factory=dict)
    #: stems of the labeled images no reference gives an angle for (a frame labelled in
    #: another tool beside the labelling tool's, one drawn without droplet): not in the angles
    no_reference_angle: list[str] = field(default_factory=list)
    #: label images (their path under DATA) whose true labels are refused as drawn and give
    #: an angle with 1 and 2 exchanged: most likely another tool's order, 1 droplet, 2 wire
    truth_labels_exchanged: list[str] = field(default_factory=list)
    #: stems whose label image changed since ``nwwatch label`` saved the shapes their angle
    #: comes from (``geometry/<stem>.json``'s ``labels_sha256``): an angle the labels no
    #: longer stand behind is not scored (their masks are)
    truth_angle_of_other_labels: list[str] = field(default_factory=list)
    #: stems of :attr:`no_reference_angle` whose ``geometry/<stem>.json`` gives no angle
    #: (``nwwatch label`` drew no circle or facet that gives one: ``contact_angle_reason``)
    no_saved_angle: list[str] = field(default_factory=list)
    #: stems whose ``geometry/<stem>.json`` (the labelling tool's saved shapes and angle, from
    #: which truth.parquet is rebuilt at every save) and truth.parquet disagree: the table
    #: lacks the file's angle or gives another (files copied in from another session, an
    #: angle edited by hand), gives one where the file gives none (those are in
    #: :attr:`no_saved_angle` too), or two. The geometry file decides: its angle is the
    #: reference, or the frame has none.
    truth_table_differs: list[str] = field(default_factory=list)
    #: whether DATA/truth.parquet exists: with :attr:`truth_table_differs`, a missing table
    #: is told from one that contradicts the geometry files
    truth_table_found: bool = False
    #: ``geometry/<stem>.json`` files that cannot be taken as their frame's saved shapes (not
    #: JSON, not a geometry, an angle that is not a number between 0 and 180 degrees, shapes
    #: of another frame size: :func:`nwwatch.label.store.load_saved_frame`), by stem: why.
    #: Their frame's human angle is not scored (its mask is).
    geometry_not_used: dict[str, str] = field(default_factory=dict)
    #: ``geometry/<stem>.json`` files whose ``contact_angle_deg`` is not the angle their
    #: shapes give (edited by hand), by stem: why (:attr:`nwwatch.label.store.SavedFrame.
    #: angle_note`). The shapes' angle is the one scored, as the labelling page shows it.
    geometry_angle_differs: dict[str, str] = field(default_factory=dict)
    #: what the scored angles were compared with: "geometry" (the human angles ``nwwatch
    #: label`` saved in geometry/), "truth.parquet" (the table alone: ``nwwatch synth
    #: insitu``'s exact angles, or a table written by hand), "geometry and truth.parquet"
    #: (frames of both), "" (no frame's angle was scored)
    angle_reference: str = ""
    #: stems of the labeled images the model has seen: all of them when DATA is the folder it
    #: was trained on (its ``training_source``; trained on, or its weights chosen on them):
    #: their scores are no held-out figures. (Another folder is not matched by image name:
    #: frame_00005 of a test set is not the training set's.)
    seen_by_model: list[str] = field(default_factory=list)
    #: why they were seen ("" when none was)
    seen_why: str = ""
    #: the model file's sha256 (the model_sha256 of its rows) and the DATA folder scored
    model_sha256: str = ""
    data: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model, "model_sha256": self.model_sha256, "data": self.data,
            "images": self.images,
            "metrics": self._metrics(),
            "seconds_per_image": self.seconds_per_image, "provider": self.provider,
            "flip_average": self.flip_average,
        }
        if self.angles is not None:
            from nwwatch.measure import MEASUREMENT_VERSION

            out["contact_angle"] = self.angles.__dict__
            # the angles are this measurement's: a later one may score the same labels otherwise
            out["measurement_version"] = MEASUREMENT_VERSION
        if self.angles_on_truth_labels is not None:
            out["contact_angle_on_truth_labels"] = self.angles_on_truth_labels.__dict__
            out["truth_labels_not_measured"] = dict(self.truth_labels_not_measured)
            out["no_reference_angle"] = list(self.no_reference_angle)
            out["truth_angle_of_other_labels"] = list(self.truth_angle_of_other_labels)
            out["no_saved_angle"] = list(self.no_saved_angle)
            out["truth_table_differs"] = list(self.truth_table_differs)
            out["truth_table_found"] = self.truth_table_found
            out["geometry_not_used"] = dict(self.geometry_not_used)
            out["geometry_angle_differs"] = dict(self.geometry_angle_differs)
            out["angle_reference"] = self.angle_reference
        if self.interface is not None:  # in-situ
            out["interface_offset"] = self.interface.__dict__
            out["truth_labels_exchanged"] = list(self.truth_labels_exchanged)
        out["seen_by_model"] = list(self.seen_by_model)
        return out

    def _metrics(self) -> dict[str, float]:
        """Every class's IoU and Dice, NaN (``null`` through :func:`strict_json`) for a class
        absent from truth and prediction: a script reads ``metrics["iou_droplet"]`` whatever
        the images held."""
        out = self.metrics.as_dict(self.class_names)
        for name in self.class_names:
            out.setdefault(f"iou_{name}", math.nan)
            out.setdefault(f"dice_{name}", math.nan)
        return out


def strict_json(value: Any) -> Any:
    """``value`` with every NaN float (a metric with nothing to average) replaced by None,
    recursively through dicts, lists and tuples: ``json.dumps`` would write ``NaN``, which
    strict JSON parsers (RFC 8259) refuse."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


class ModelKindError(ValueError):
    """The model is of another kind (or has another number of classes) than the DATA folder;
    the message names the model, its kind and classes, and the folder's."""


_TableAngles = dict[str, tuple[float, float | None, tuple[float, float, float] | None]]


def _truth_angles(root: Path, stems: list[str], needed: list[str] | None = None
                  ) -> tuple[_TableAngles, set[str]]:
    """The true angle and pixel size of each frame DATA/truth.parquet has a row for, by stem,
    and the true droplet's circle (centre row, centre col, radius; px) where the table gives
    it (``center_row``, ``center_col``, ``R_px``: nwwatch synth insitu's) and the frame may
    hold another droplet (``n_distractors`` > 0, or no such column); and the stems of
    ``stems`` not in ``needed`` that have two rows with different angles.

    ``needed``: the stems of ``stems`` whose angle can come from the table alone (None: all of
    them); the others have a geometry file, which decides their angle, so their rows are
    compared with it, never refused. Raises :class:`DatasetLayoutError` naming truth.parquet
    when it cannot be read, lacks the ``file`` or angle column, holds a column of another
    type (names that are not text, angles or pixel sizes that are not numbers); for a stem of
    ``needed``, a pixel size that is not a positive number or two rows of its stem with
    different angles (files of other folders: which is the image's cannot be told); or, when
    some stem is needed, rows of which none names a labeled image (a table of other files):
    scored as it stood, every angle line read ``0/0 measured``. Rows of labeled images whose
    angle is null or NaN are not that: those frames have no entry, and are scored on their
    masks alone."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = root / "truth.parquet"
    try:
        table = pq.read_table(os.path.abspath(path))  # a relative "d:1/…" is no URI
    except (OSError, pa.ArrowException) as exc:
        raise DatasetLayoutError(path, f"cannot be read as a Parquet table ({exc}); remove it "
                                       f"or give --no-angles") from None
    if table.num_rows == 0:  # the labelling tool's, before any frame had an angle
        return {}, set()
    angle_column = next((name for name in ("theta_apparent_deg", "theta_deg")
                         if name in table.column_names), None)
    if "file" not in table.column_names or angle_column is None:
        have = table.column_names
        raise DatasetLayoutError(path, "needs the columns file and theta_apparent_deg (or "
                                       f"theta_deg); it has {', '.join(have[:8])}"
                                       f"{', ...' if len(have) > 8 else ''}")
    size_column = "pixel_size_nm" if "pixel_size_nm" in table.column_names else None
    # Checked by type before any value is used: a column of text angles would raise a
    # ValueError deep in the scoring, file numbers a TypeError.
    def holds(name: str, *tests: Any) -> bool:
        kind = table.schema.field(name).type
        if pa.types.is_dictionary(kind):  # a pandas Categorical column
            kind = kind.value_type
        return pa.types.is_null(kind) or any(test(kind) for test in tests)

    wanted = {"file": (holds("file", pa.types.is_string, pa.types.is_large_string), "text")}
    for name in (angle_column, size_column):
        if name is not None:
            wanted[name] = (holds(name, pa.types.is_floating, pa.types.is_integer), "numbers")
    for name, (ok, what) in wanted.items():
        if not ok:
            raise DatasetLayoutError(path, f"column {name} holds {table.schema.field(name).type}"
                                           f", not {what}; correct it, or give --no-angles")
    out: _TableAngles = {}
    source: dict[str, str] = {}
    labeled = set(stems)
    checked = labeled if needed is None else set(needed) & labeled
    contradicted: set[str] = set()  # of a geometry file's stem: compared, not refused
    # Stems of every named row, with an angle or not: a table whose rows all lack an angle
    # still describes DATA's frames (scored on their masks), unlike a table of other frames.
    named_stems: set[str] = set()
    circle = [c for c in ("center_row", "center_col", "R_px") if c in table.column_names]
    circle = circle if len(circle) == 3 and all(
        holds(c, pa.types.is_floating, pa.types.is_integer) for c in circle) else []
    if circle and "n_distractors" in table.column_names and holds("n_distractors",
                                                                  pa.types.is_integer):
        circle.append("n_distractors")
    for row in table.select(["file", angle_column] + ([size_column] if size_column else [])
                            + circle).to_pylist():
        angle, name = row[angle_column], row["file"]
        if not name:
            continue
        stem = Path(name).stem
        named_stems.add(stem)
        if angle is None or not math.isfinite(angle):
            continue  # no angle for this frame (NaN as null): scored on its mask alone
        pixel_size = row.get(size_column) if size_column else None
        if stem in checked and pixel_size is not None and not (
                math.isfinite(pixel_size) and pixel_size > 0):
            raise DatasetLayoutError(path, f"{size_column} {pixel_size} for {name}: not a "
                                           f"positive number; correct it or leave it empty")
        if stem in labeled and stem not in checked and stem in out and (
                out[stem][0] != float(angle)):
            contradicted.add(stem)
        if stem in checked and stem in out and out[stem][0] != float(angle):
            raise DatasetLayoutError(path, f"two rows for the frame {stem!r}: {source[stem]} "
                                           f"({out[stem][0]:g} deg) and {name} ({angle:g} deg); "
                                           f"keep the row of the labeled image in {root}")
        found = [row.get(c) for c in circle[:3]]
        others = row.get("n_distractors") if len(circle) == 4 else None
        true_circle = (tuple(float(v) for v in found)
                       if circle and all(v is not None and math.isfinite(v) for v in found)
                       and (others is None or others > 0) else None)
        out[stem] = (float(angle), None if pixel_size is None else float(pixel_size),
                     true_circle)
        source.setdefault(stem, name)
    if not named_stems & labeled and (needed is None or needed):
        named = sorted(named_stems)[:3]
        raise DatasetLayoutError(path, f"none of its {table.num_rows} rows names a labeled "
                                       f"image of {root} (its files: "
                                       f"{', '.join(named) or 'none named'}"
                                       f"{', ...' if len(named_stems) > 3 else ''}; the images: "
                                       f"{', '.join(stems[:3])}{', ...' if len(stems) > 3 else ''}"
                                       f"): a table of other frames; give --no-angles to score "
                                       f"the masks alone")
    return out, contradicted


@dataclass
class _References:
    """The reference angles of DATA's labeled frames (:func:`_reference_angles`)."""

    #: stem: (angle deg, pixel size nm, true circle), as :func:`_truth_angles` gives them
    angles: _TableAngles
    #: stem: its geometry file, read (frames whose geometry file decides their angle)
    saved: dict[str, SavedFrame]
    #: stem: why its geometry file is not taken
    not_used: dict[str, str]
    #: stems whose truth.parquet row disagrees with their geometry file
    table_differs: list[str]
    table_found: bool


def _reference_angles(root: Path, stems: list[str]) -> _References | None:
    """The reference angle of each labeled frame of ``stems``: the angle the shapes of its
    ``geometry/<stem>.json`` give where the labelling tool saved one (the file truth.parquet
    is rebuilt from at every save, so the file decides where the table is stale: frames
    copied in from another session, a table edited by hand), else truth.parquet's row
    (:func:`_truth_angles`: ``nwwatch synth insitu``'s exact angles, a table written by hand).
    None when DATA has neither a truth.parquet nor a geometry file of a labeled frame.

    A geometry file :func:`nwwatch.label.store.load_saved_frame` refuses gives its frame no
    angle, whatever the table says: the labels it was saved with cannot be told, nor its
    angle trusted."""
    from nwwatch.label.geometry import GeometryError
    from nwwatch.label.store import TRUTH_FILE, load_saved_frame

    saved: dict[str, SavedFrame] = {}
    not_used: dict[str, str] = {}
    for stem in stems:
        try:
            found = load_saved_frame(root, stem)
        except GeometryError as exc:
            not_used[stem] = str(exc)
            continue
        if found is not None:
            saved[stem] = found
    table_found = (root / TRUTH_FILE).is_file()
    if not table_found and not saved and not not_used:
        return None
    table, contradicted = (_truth_angles(root, stems, [s for s in stems if s not in saved
                                                       and s not in not_used])
                           if table_found else ({}, set()))
    angles = {stem: value for stem, value in table.items()
              if stem not in saved and stem not in not_used}
    differs = []
    for stem, frame in saved.items():
        angle, in_table = frame.contact_angle_deg, table.get(stem, (None,))[0]
        if stem in contradicted or (angle is None) != (in_table is None) or (
                angle is not None and not math.isclose(angle, in_table, abs_tol=1e-9)):
            differs.append(stem)
        if angle is not None:  # the tool's own table holds no circle of a true droplet
            angles[stem] = (angle, frame.geometry.pixel_size_nm, None)
    return _References(angles, saved, not_used, differs, table_found)


def _under(path: Path, root: Path) -> str:
    """``path`` relative to the DATA folder ``root`` (POSIX separators), else as given."""
    return (path.relative_to(root) if path.is_relative_to(root) else path).as_posix()


def evaluate_folder(model_path: str | Path, data: str | Path, providers: tuple[str, ...] = ("cpu",),
                    threads: int | None = None, angles: bool = True,
                    working_scale: WorkingScale | None = None,
                    flip_average: bool = False) -> EvaluationReport:
    """Segment every labeled image of ``data`` with the ONNX model and score it.

    ``working_scale`` replaces the model's own (:mod:`nwwatch.segment.scale`), e.g.
    ``WorkingScale(None)`` to run every frame at its own size. ``flip_average``: average the
    softmax over the mirror images (:class:`nwwatch.segment.session.Segmenter`).

    Returns an :class:`EvaluationReport`; ``angles`` needs DATA/truth.parquet (in-situ models).

    Raises
    ------
    DatasetLayoutError : a DATA folder or file that cannot be used, naming it.
    ModelKindError : the model's kind or number of classes is not the folder's
        (DATA/dataset.toml; in-situ without one), checked before any image is read.
    """
    from nwwatch.segment.session import Segmenter

    root = Path(data)
    pairs = pair_folder(root)
    segmenter = Segmenter(model_path, providers=providers, threads=threads,
                          flip_average=flip_average)
    if working_scale is not None:
        segmenter.working_scale = working_scale
    meta = segmenter.metadata
    num_classes = len(meta.class_names)
    kind, class_names, _ = read_dataset_toml(root)
    said = "its dataset.toml" if (root / "dataset.toml").is_file() else "no dataset.toml"
    if meta.kind == kind and num_classes != len(class_names):
        raise ModelKindError(
            f"{model_path}: the model has {num_classes} classes {list(meta.class_names)}, "
            f"but {root} names {len(class_names)} classes {list(class_names)} ({said}): "
            f"evaluate it with a model trained on these classes, or correct the classes of "
            f"{root / 'dataset.toml'}")
    if meta.kind != kind:
        raise ModelKindError(
            f"{model_path}: the model's kind is {meta.kind!r} (classes "
            f"{list(meta.class_names)}), but {root} holds {kind!r} data (classes "
            f"{list(class_names)}; {said}): evaluate it with a model of kind {kind!r}")
    misplaced = misplaced_insitu_class(meta.class_names) if kind == "insitu" else None
    if misplaced:  # scored, its classes 1 and 2 were compared under the wrong names
        raise ModelKindError(f"{model_path}: {misplaced}; the service, replay and measure "
                             "refuse it for that: export it with its classes in that order")
    seen, seen_why = _seen_by_model(meta.extra or {}, root, [stem for stem, _, _ in pairs])
    references = (_reference_angles(root, [stem for stem, _, _ in pairs])
                  if angles and num_classes == 3 else None)
    truth = None if references is None else dict(references.angles)
    if num_classes == 3:
        from nwwatch.measure import VALID_STATUSES, measure_contact_angle
        from nwwatch.measure.exchanged import EXCHANGE_CHECKED, angle_if_exchanged
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    errors, errors_truth = [], []
    failures, failures_truth = Counter(), Counter()
    measured = 0
    not_measured: dict[str, str] = {}  # true labels without an angle: why, by label file
    exchanged: list[str] = []  # true labels refused as drawn that 1 <-> 2 would measure
    checked_exchange = 0  # labels without an angle of their own checked for it
    other_labels: list[str] = []  # stems whose labels changed since their angle was saved
    scored: set[str] = set()  # stems whose reference angle was compared with a measurement
    offsets: list[np.ndarray] = []
    elapsed = 0.0
    from nwwatch.volume.fill import data_volumes

    # A volume's constant fill is no data, as in training and at run time: the grey range is
    # that of its data, a label on it is not scored (255), and a tomogram model segments the
    # volume as the service does, whatever the scope (found once per volume).
    scope = meta.normalization_scope
    volumes, fills = data_volumes(root, meta.kind, scope)
    masks: dict[Path, np.ndarray] = {}  # tomogram models: the runtime's mask of each volume
    for stem, image_path, label_path in pairs:
        raw, label = read_pair(image_path, label_path, num_classes)
        if not (label != UNLABELED).any():  # as nwwatch train refuses it: nothing to score
            raise DatasetLayoutError(label_path, "no labeled pixel (every pixel 255, "
                                                 "unlabeled): label some, or move the image "
                                                 "to DATA/unlabeled/")
        started = time.perf_counter()
        value_range = volumes.range_for(image_path, raw) if scope == "volume" else None
        volume_path, original = None, raw
        if volumes is not None:
            raw, label, volume_path, _ = volumes.slice_with_data(image_path, raw, label,
                                                                 required=scope == "volume")
        if volume_path is not None and meta.kind == "tomogram":
            # As the service segments it (Z blur, slabs, mirror margin, min_input_px,
            # cleanup): a slice fed alone is another input than the model sees at run time.
            from nwwatch.volume import segment_volume

            _, z = volumes.locate(image_path, original)
            if volume_path not in masks:
                masks[volume_path] = segment_volume(
                    segmenter, volumes.with_data(volume_path),
                    fill=fills.found.get(volume_path, ())).mask
            predicted = masks[volume_path][z]
            elapsed += time.perf_counter() - started
            confusion += confusion_matrix(label, predicted, num_classes)
            continue
        result = segmenter.segment(normalize_image(raw, value_range,
                                                   nan_fill=NAN_FILL[meta.kind]),
                                   probabilities=True)
        elapsed += time.perf_counter() - started
        predicted = result.labels[0]
        confusion += confusion_matrix(label, predicted, num_classes)
        if num_classes == 3:
            offsets.append(interface_offsets_px(label, predicted, wire=NANOWIRE, droplet=DROPLET))
        other_size = (references.saved[stem].size_problem(label.shape,
                                                          f"the label image of {stem}")
                      if references is not None and stem in references.saved else "")
        if other_size:  # the shapes of a frame of another size: not these labels', nor angle
            references.not_used[stem] = other_size
            truth.pop(stem, None)
        if num_classes == 3 and (truth is None or stem not in truth) and (
                checked_exchange < EXCHANGE_CHECKED):
            # no angle of its own to compare: the labels checked for another tool's class
            # order as nwwatch train checks them (a model scored against them is "bad")
            try:
                drawn = fill_unsure_band(label)
            except UnsureBandError:
                drawn = None
            if drawn is not None:
                checked_exchange += 1
                if angle_if_exchanged(drawn, measure_contact_angle(drawn)) is not None:
                    exchanged.append(_under(label_path, root))
        if truth is not None and stem in truth and num_classes == 3 and _labels_changed(
                references.saved[stem].labels_sha256 if stem in references.saved else None,
                label):
            other_labels.append(stem)
        elif truth is not None and stem in truth and num_classes == 3:
            angle_true, pixel_size, true_circle = truth[stem]
            measured += 1
            scored.add(stem)
            droplet_probability = result.probabilities[0, 2]
            # The model's labels are measured as the service measures them (with the raw
            # frame); the true labels are exact and are measured alone, their unlabeled
            # pixels filled as nwwatch measure fills them, or not measured where it refuses.
            measurements = [(predicted, droplet_probability, raw, errors, failures)]
            try:
                measurements.append((fill_unsure_band(label), None, None, errors_truth,
                                     failures_truth))
            except UnsureBandError as exc:
                not_measured[_under(label_path, root)] = str(exc)
            for labels, probability, image, errs, fails in measurements:
                found = measure_contact_angle(labels, probability, pixel_size, image=image)
                if (found.status in VALID_STATUSES and found.contact_angle_deg is not None
                        and _another_droplet(found, true_circle)):
                    fails["another_droplet"] += 1  # no error of this droplet's angle
                elif found.status in VALID_STATUSES and found.contact_angle_deg is not None:
                    errs.append(found.contact_angle_deg - angle_true)
                else:
                    fails[found.reason_code] += 1
                    if fails is failures_truth and angle_if_exchanged(
                            labels, found, pixel_size) is not None:
                        exchanged.append(_under(label_path, root))
    report = EvaluationReport(str(model_path), len(pairs), tuple(meta.class_names),
                              metrics_from_confusion(confusion),
                              seconds_per_image=elapsed / max(len(pairs), 1),
                              provider=segmenter.provider, flip_average=flip_average,
                              seen_by_model=seen, seen_why=seen_why,
                              model_sha256=segmenter.model_sha256,
                              data=os.path.abspath(root))
    if num_classes == 3:
        report.interface = InterfaceOffsets.from_frames(offsets)
        report.truth_labels_exchanged = exchanged
    if truth is not None:
        report.angles = AngleErrors.from_errors(errors, measured, failures)
        report.angles_on_truth_labels = AngleErrors.from_errors(
            errors_truth, measured - len(not_measured), failures_truth)
        report.truth_labels_not_measured = not_measured
        report.no_reference_angle = [stem for stem, _, _ in pairs if stem not in truth
                                     and stem not in references.not_used]
        report.no_saved_angle = [stem for stem in report.no_reference_angle
                                 if stem in references.saved]
        report.truth_angle_of_other_labels = other_labels
        report.truth_table_differs = [stem for stem in references.table_differs
                                      if stem not in references.not_used]
        report.truth_table_found = references.table_found
        report.geometry_not_used = {stem: references.not_used[stem] for stem, _, _ in pairs
                                    if stem in references.not_used}
        report.geometry_angle_differs = {
            stem: references.saved[stem].angle_note for stem, _, _ in pairs
            if stem in references.saved and stem not in references.not_used
            and references.saved[stem].angle_note}
        # from the angles compared, once every geometry file and label image was checked
        report.angle_reference = " and ".join(
            name for name, used in (("geometry", scored & references.saved.keys()),
                                    ("truth.parquet", scored - references.saved.keys()))
            if used)
    return report


def _another_droplet(found, true_circle: tuple[float, float, float] | None) -> bool:
    """Whether the measured circle is another droplet's: its centre outside the true circle
    (a badly fitted true droplet, one cut by the frame, stays well inside it: its error is
    scored); ``true_circle`` None: the frame holds no other droplet, or the truth does not
    say where its droplet is."""
    if true_circle is None or found.circle_center_row is None:
        return False
    row, col, radius = true_circle
    away = math.hypot(found.circle_center_row - row, found.circle_center_col - col)
    return away > max(3.0, radius)


def _labels_changed(saved: str | None, label: np.ndarray) -> bool:
    """True when ``nwwatch label`` saved the frame's shapes (and their angle) with another
    label image than ``label`` (edited in another tool since); ``saved``: the
    ``labels_sha256`` of its geometry file (None: none recorded, not checked)."""
    from nwwatch.label.store import labels_digest

    return saved is not None and saved != labels_digest(label)


#: true-label images not measured that the text report names (``--json`` names them all)
_NOT_MEASURED_SHOWN = 5


def _shown(names: list[str], key: str) -> str:
    """The first :data:`_NOT_MEASURED_SHOWN` of ``names``, and how many more ``--json``'s
    ``key`` lists."""
    more = len(names) - _NOT_MEASURED_SHOWN
    return ", ".join(names[:_NOT_MEASURED_SHOWN]) + (
        f", ... ({more} more: {key} in --json)" if more > 0 else "")


def _listed(reasons: list[str], key: str) -> list[str]:
    """Report lines for the first :data:`_NOT_MEASURED_SHOWN` of ``reasons``, one each, and
    how many more ``--json``'s ``key`` lists."""
    lines = [f"    {reason}" for reason in reasons[:_NOT_MEASURED_SHOWN]]
    if len(reasons) > _NOT_MEASURED_SHOWN:
        lines.append(f"    ... and {len(reasons) - _NOT_MEASURED_SHOWN} more ({key} in --json)")
    return lines


def _seen_by_model(extra: dict[str, Any], root: Path, stems: list[str]
                   ) -> tuple[list[str], str]:
    """The stems of ``stems`` (DATA's labeled images) the model has seen, and why
    (:attr:`EvaluationReport.seen_by_model`): every one when DATA is its training folder, or
    those of them it recorded (``labeled_stems``: a model of this version), so that frames
    labelled there since are scored as new."""
    source = extra.get("training_source")
    if isinstance(source, str) and source and "#" not in source:  # ("vol.tif#z=...": a volume)
        try:
            same = os.path.samefile(source, root)
        except OSError:  # moved, or another machine's path
            same = False
        known = extra.get("labeled_stems")
        if same and isinstance(known, list):  # images labelled since are not its own
            known = set(map(str, known))
            return [s for s in stems if s in known], f"{root} is the folder it was trained on"
        if same:
            return list(stems), f"{root} is the folder it was trained on"
    return [], ""


def format_report(report: EvaluationReport) -> str:
    """Human-readable summary (percentages, degrees)."""
    m = report.metrics
    noun = "image" if report.images == 1 else "images"  # a tomogram's one labeled slice
    lines = [f"model {report.model}: {report.images} {noun}, "
             f"{report.seconds_per_image * 1000:.0f} ms/image"
             + (f" on {report.provider}" if report.provider else "")
             + (", flip-averaged (the frame and its mirror images)" if report.flip_average
                else ""),
             f"  mIoU {100 * m.mean_iou:.2f} %  mean Dice {100 * m.mean_dice:.2f} %  "
             f"pixel accuracy {100 * m.pixel_accuracy:.2f} %"]
    if report.seen_by_model:
        n = len(report.seen_by_model)
        lines.append(f"  note: {n} of the {report.images} images {'is' if n == 1 else 'are'} "
                     f"the model's own ({report.seen_why}: "
                     f"{', '.join(report.seen_by_model[:5])}"
                     f"{', …' if n > 5 else ''}): these scores are not of held-out images")
    for name, iou, dice in zip(report.class_names, m.iou, m.dice, strict=True):
        if not math.isnan(iou):
            lines.append(f"  {name:>12}: IoU {100 * iou:.2f} %  Dice {100 * dice:.2f} %")
    off = report.interface
    if off is not None and off.frames:
        lines.append(f"  wire/droplet interface offset (+ = into the true wire): bias "
                     f"{off.bias_px:+.2f} px, RMS of frame means {off.rms_px:.2f} px, "
                     f"mean |offset| {off.mean_abs_px:.2f} px over {off.frames} "
                     f"frame{'' if off.frames == 1 else 's'}")
    for title, errs in (("contact angle (predicted labels)", report.angles),
                        ("contact angle (true labels)", report.angles_on_truth_labels)):
        if errs is not None:
            fails = ", ".join(f"{k} {v}" for k, v in sorted(errs.failures.items())) or "none"
            if not errs.valid:  # no error to summarise: say so, not "RMSE nan deg"
                lines.append(f"  {title}: 0/{errs.frames} measured; failures: {fails}")
                continue
            lines.append(f"  {title}: {errs.valid}/{errs.frames} measured, RMSE "
                         f"{errs.rmse_deg:.2f} deg, mean |err| {errs.mean_abs_deg:.2f} deg, bias "
                         f"{errs.bias_deg:+.2f} deg, max |err| {errs.max_abs_deg:.2f} deg; "
                         f"failures: {fails}")
    unsaved = [stem for stem in report.no_reference_angle if stem not in report.no_saved_angle]
    if unsaved:
        # frames without a geometry file: only the table could have given their angle
        why = ("truth.parquet gives no angle for them" if report.truth_table_found else
               "they have no geometry/<stem>.json of nwwatch label and DATA has no "
               "truth.parquet (labelled in another tool?)")
        lines.append(f"  angles not scored on {len(unsaved)} of {report.images} images: "
                     f"{why} ({_shown(unsaved, 'no_reference_angle')})")
    if report.no_saved_angle:
        stems = report.no_saved_angle
        lines.append(f"  angles not scored on {len(stems)} of {report.images} images: "
                     f"nwwatch label saved no angle for them (their shapes give none: "
                     f"contact_angle_reason in geometry/<stem>.json) "
                     f"({_shown(stems, 'no_saved_angle')})")
    differs = [stem for stem in report.truth_table_differs if stem not in report.no_saved_angle]
    if differs:
        table = ("truth.parquet lacks or contradicts the angle of their geometry/<stem>.json "
                 "(the shapes nwwatch label saved; it rebuilds truth.parquet from them at "
                 "every save: files copied in from another session, or edited by hand?)"
                 if report.truth_table_found else
                 "DATA has no truth.parquet (nwwatch label writes it from geometry/ at every "
                 "save)")
        lines.append(f"  note: {table}: the angles of geometry/<stem>.json are the reference "
                     f"on {len(differs)} of {report.images} images "
                     f"({_shown(differs, 'truth_table_differs')})")
    stale = [stem for stem in report.truth_table_differs if stem in report.no_saved_angle]
    if stale:
        lines.append(f"  note: truth.parquet gives an angle for {len(stale)} of "
                     f"{report.images} images whose geometry/<stem>.json gives none (a table "
                     f"not rebuilt since their last save?): not scored, the geometry file "
                     f"decides ({_shown(stale, 'truth_table_differs')})")
    if report.geometry_not_used:
        problems = report.geometry_not_used
        lines.append(f"  angles not scored on {len(problems)} of {report.images} images: "
                     f"their geometry file cannot be read as their saved shapes (as nwwatch "
                     f"label says on opening them), so their human angle cannot be trusted "
                     f"(their masks are scored):")
        lines += _listed(list(problems.values()), "geometry_not_used")
    if report.geometry_angle_differs:
        notes = report.geometry_angle_differs
        lines.append(f"  note: {len(notes)} of {report.images} geometry files hold a "
                     f"contact_angle_deg that is not the angle of their shapes: the shapes' "
                     f"angle (the one nwwatch label shows) is the reference:")
        lines += _listed(list(notes.values()), "geometry_angle_differs")
    if report.truth_angle_of_other_labels:
        stems = report.truth_angle_of_other_labels
        lines.append(f"  angles not scored on {len(stems)} of {report.images} images: their "
                     f"label image changed since nwwatch label saved the shapes their angle "
                     f"comes from (edited in another tool?); open them in nwwatch label "
                     f"and save, or write their angle from the new masks "
                     f"({_shown(stems, 'truth_angle_of_other_labels')})")
    unmeasured = report.truth_labels_not_measured
    if unmeasured:
        images = "label image" if len(unmeasured) == 1 else "label images"
        lines.append(f"  not measured on the true labels: {len(unmeasured)} {images} whose "
                     f"unlabeled (255) pixels nwwatch measure refuses too (their masks and "
                     f"predicted angles are scored):")
        for name, reason in list(unmeasured.items())[:_NOT_MEASURED_SHOWN]:
            lines.append(f"    {name}: {reason}")
        if len(unmeasured) > _NOT_MEASURED_SHOWN:
            lines.append(f"    ... and {len(unmeasured) - _NOT_MEASURED_SHOWN} more "
                         f"(truth_labels_not_measured in --json)")
    exchanged = report.truth_labels_exchanged
    if exchanged:
        shown = _shown(exchanged, "truth_labels_exchanged")
        lines.append(f"  note: {len(exchanged)} true label image(s) refused as drawn give an "
                     f"angle with 1 and 2 exchanged (1 droplet, 2 nanowire): in-situ labels "
                     f"are read as 1 nanowire, 2 droplet; if your tool numbers them the "
                     f"other way, renumber the masks (docs/measurement.md, 'Masks from other "
                     f"tools') ({shown})")
    return "\n".join(lines)


#: A report is a few kB; a larger file is read no further.
_JSON_REPORT_MAX_BYTES = 16 * 1024 * 1024
#: Keys of every ``--json`` report (:meth:`EvaluationReport.as_dict`).
_REPORT_KEYS = {"model", "images", "metrics", "seconds_per_image", "provider"}


def _is_json_report(path: Path) -> bool:
    """True when ``path`` is empty or holds an earlier report (a JSON object with the keys
    every report has), replaced by the new one; anything else (a model, a frame, the model's
    card ``MODEL.json``, another program's JSON) is a file a mistyped ``--json`` names."""
    if path.stat().st_size > _JSON_REPORT_MAX_BYTES:
        return False
    try:
        text = path.read_bytes().decode()
        if not text.strip():
            return True
        report = json.loads(text)
    except ValueError:  # not UTF-8, not JSON
        return False
    return isinstance(report, dict) and _REPORT_KEYS <= report.keys()



def _data_folder(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """DATA: a folder; for a file, what DATA is (click said only "Directory ... is a file")."""
    if value.is_file():
        raise click.BadParameter(f"{value} is a file: DATA is a folder of labeled frames "
                                 "(images/ and labels/, as nwwatch label --out DATA writes "
                                 "it)", ctx, param)
    return value


@click.command("evaluate")
@click.argument("model", callback=model_file)
@click.argument("data", type=click.Path(exists=True, path_type=Path), callback=_data_folder)
@click.option("--provider", "providers", multiple=True, default=("cpu",), show_default=True,
              help="Execution provider preference (cpu, cuda, tensorrt); repeatable.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for ONNX Runtime (default: all).")
@click.option("--no-angles", is_flag=True, help="Skip contact-angle errors even with truth.")
@click.option("--json", "json_out", type=OutputFile("report.json"),
              help="Also write the report as JSON (its folder is created).")
@click.option("--flip-average", is_flag=True,
              help="Average the softmax over the frame and its mirror images (4x slower).")
def evaluate(model: Path, data: Path, providers: tuple[str, ...], threads: int | None,
             no_angles: bool, json_out: Path | None, flip_average: bool) -> None:
    """Score MODEL (ONNX, or insitu-default: the shipped model) on the labeled images of
    DATA: IoU, Dice, pixel accuracy, angles.

    A tomogram model's labeled slices are scored on the mask the service makes of the
    DATA/unlabeled/ volume that holds them."""
    from nwwatch.io.dataset import (
        folder_class_names,
        loose_images_warning,
        mask_like_labels,
        nested_images_warning,
    )
    from nwwatch.options import mask_warning, refuse_inside_results, require_writable
    from nwwatch.segment.session import PROVIDERS, ModelLoadError

    unknown = [name for name in providers if name not in PROVIDERS]
    if unknown:  # the session would raise a KeyError, with a traceback
        raise click.BadParameter(f"unknown provider(s) {', '.join(unknown)}; choose from "
                                 f"{', '.join(PROVIDERS)}", param_hint="'--provider'")
    if json_out is not None:  # checked (its folder made) before the run, not after it
        if json_out.is_file() and not _is_json_report(json_out):
            # e.g. '--json mine.onnx' or '--json frames/f.tif': replaced, the file was lost
            raise click.BadParameter(f"{json_out} exists and is not a JSON report; it is not "
                                     f"replaced", param_hint="'--json'")
        refuse_inside_results(json_out, "'--json'")  # no Parquet: it breaks their readers
        require_writable(json_out, "'--json'")
    for label_path in mask_like_labels(data):
        say(mask_warning(label_path, folder_class_names(data)))
    loose = loose_images_warning(data)
    if loose:  # as train says it: not scored without a word
        say(f"warning: {loose}")
    nested = nested_images_warning(data)
    if nested:  # a DATA folder is flat: as train says it, not left out without a word
        say(f"warning: {nested}")
    try:
        report = evaluate_folder(model, data, tuple(providers), threads, not no_angles,
                                 flip_average=flip_average)
    except (DatasetLayoutError, ModelLoadError, ModelKindError) as exc:
        raise click.ClickException(str(exc)) from None
    say(format_report(report))
    if not no_angles and report.interface is not None and report.angles is None:
        # hand-made labels (GIMP, another tool) have no reference angles: say why no angle
        # line follows
        say(f"  contact angle: not scored: {data} has no truth.parquet (the reference "
            f"angles nwwatch label and nwwatch synth insitu write beside labels/); "
            f"nwwatch measure {data / 'labels'}/* gives your labels' angles")
    if json_out is not None:
        try:
            atomic_write_json(json_out, strict_json(report.as_dict()), indent=2,
                              default=float, allow_nan=False)
        except OSError as exc:  # e.g. a disk filled during the run, after the check above
            raise click.ClickException(f"{json_out}: cannot write the JSON report "
                                       f"({exc.strerror or exc}); the report above is "
                                       f"complete") from None
