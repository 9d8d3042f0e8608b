"""Training data: a DATA folder loaded for training, a tomogram's labeled slices, splits.

The DATA layout, its pairing and its image reader are the runtime's
(:mod:`nwwatch.io.dataset`, shared with ``nwwatch evaluate`` and ``nwwatch label``). Every
image is normalised with :func:`nwwatch.normalize.normalize_image` (the runtime's function),
per image, or, when ``normalization_scope = "volume"`` in DATA/dataset.toml, with the
intensity range of the whole volume it belongs to, as the runtime normalises tomograms: an
unlabeled file with its own range, a labeled slice with the range of the DATA/unlabeled/
volume that holds it (:class:`nwwatch.io.volumeranges.VolumeRanges`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nwwatch.classes import TOMOGRAM_CLASSES, UNLABELED, insitu_model_problem
from nwwatch.filehash import file_sha256
from nwwatch.io import InputError
from nwwatch.io.dataset import (
    IMAGE_SUFFIXES,
    DatasetLayoutError,
    check_label,
    list_unlabeled,
    pair_folder,
    read_dataset_toml,
    read_label_image,
    read_pages,
    read_pair,
    read_tiff_volume,
)
from nwwatch.io.volumeranges import labels_off_no_data
from nwwatch.normalize import NAN_FILL, intensity_range, normalize_image
from nwwatch.volume.fill import ConstantFill, data_volumes, fill_text, without_constant_fill
from nwwatch.volume.memory import tomogram_memory
from nwwatch.volume.metrics import voxels_with_data
from nwwatch.volume.verdict import MIN_LABELED_PIXELS, labeled_pixels

__all__ = ["IMAGE_SUFFIXES", "DatasetLayoutError", "LabeledImage", "Split", "TrainingData",
           "check_label", "check_volume_memory", "load_folder", "load_volume_slice",
           "load_volume_slices", "make_split", "read_pages"]

@dataclass(frozen=True)
class LabeledImage:
    """One labeled training image.

    image : float32 (H, W), normalised to [-1, 1].
    label : uint8 (H, W), class ids, 255 unlabeled.
    """

    stem: str
    image: np.ndarray
    label: np.ndarray
    image_sha256: str = ""
    label_sha256: str = ""
    #: How messages name it: the labels file (and the slice of the volume), else ``stem``.
    shown_as: str = ""
    #: What identifies its pixels from one run to the next (the runs that start from a
    #: model's weights keep the images it was trained on out of validation): a volume
    #: slice's volume sha256 and index; empty: ``image_sha256``, its file's.
    slice_key: str = ""

    @property
    def content_key(self) -> str:
        """The image's identity across runs: ``slice_key`` or ``image_sha256``."""
        return self.slice_key or self.image_sha256


@dataclass
class TrainingData:
    """Everything a paradigm trains on; images already normalised.

    unlabeled : float32 (H, W) normalised images (every page/slice of the unlabeled files).
    valid : bool (Z, Y, X) of the ``--volume`` workflow's volume: its voxels with data (not
        NaN or infinite); None when all have data (or for a DATA folder). The Z blur leaves
        the others out, as the runtime does (:func:`nwwatch.volume.smooth_along_z`).
    notes : warnings about what was read (a constant fill taken as no data, labels on it left
        out), said with :func:`label_warnings`'.
    voxel_size_nm : (z, y, x) nm of the ``--volume`` workflow's volume as its file declares
        it (``Volume.declared_voxel_size_nm``: None on an axis it declares none for), None
        for a DATA folder, whose labeled slices are 2-D images: the runtime flags volumes of
        another voxel size (``voxel_size_mismatch``).
    voxel_size_source : where ``voxel_size_nm`` comes from, recorded beside it so that a null
        tells a volume that declared none from a DATA folder: "volume" (the ``--volume``
        workflow's file) or "data_folder".
    """

    kind: str
    class_names: tuple[str, ...]
    normalization_scope: str
    labeled: list[LabeledImage]
    unlabeled: list[np.ndarray] = field(default_factory=list)
    source: str = ""
    valid: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    voxel_size_nm: tuple[float | None, float | None, float | None] | None = None
    voxel_size_source: str = "data_folder"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def sha256(self) -> str:
        """Hash over the sorted (stem, image sha256, label sha256) triples of the labeled set."""
        digest = hashlib.sha256()
        for item in sorted(self.labeled, key=lambda s: s.stem):
            # surrogateescape: a file name that is not UTF-8 hashes as its bytes (a UTF-8
            # name as its UTF-8 encoding)
            digest.update(f"{item.stem}\0{item.image_sha256}\0{item.label_sha256}\n"
                          .encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    def normalised_sha256(self) -> str:
        """Hash over the labeled images as normalised (stem, shape, float32 values): what the
        network is given, which for a volume's slices depends on the volume's range as well
        as on their files."""
        digest = hashlib.sha256()
        for item in sorted(self.labeled, key=lambda s: s.stem):
            array = np.ascontiguousarray(item.image, dtype=np.float32)
            digest.update(f"{item.stem}\0{array.shape}\n".encode("utf-8", "surrogateescape"))
            digest.update(array.tobytes())
        return digest.hexdigest()

    def unlabeled_sha256(self) -> str:
        """Hash over the normalised unlabeled images, in order (shape and float32 values):
        what CCT, contrastive and pseudo-labeling train on besides the labeled set."""
        digest = hashlib.sha256()
        for image in self.unlabeled:
            array = np.ascontiguousarray(image, dtype=np.float32)
            digest.update(f"{array.shape}\n".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()


def _normalise_pages(pages: np.ndarray, scope: str, kind: str) -> list[np.ndarray]:
    fill = NAN_FILL[kind]
    if scope == "volume":
        value_range = intensity_range(pages)
        return [normalize_image(page, value_range, nan_fill=fill) for page in pages]
    return [normalize_image(page, nan_fill=fill) for page in pages]


def load_folder(root: str | os.PathLike[str], load_unlabeled: bool = True) -> TrainingData:
    """Load a DATA folder (see module docstring).

    Raises
    ------
    DatasetLayoutError : naming the file: missing folder, empty folder, image without label,
        label without image, two files with one stem, shape mismatch, label values out of range,
        a label with no labeled pixel.
    """
    root = Path(root)
    pairs = pair_folder(root)  # checks the folder before reading dataset.toml's classes
    kind, class_names, scope = read_dataset_toml(root)
    problem = insitu_model_problem(class_names) if kind == "insitu" else None
    if problem:  # the rule measure, replay and the service apply to the model
        raise DatasetLayoutError(root / "dataset.toml", problem)
    volumes, fills = data_volumes(root, kind, scope)
    labeled = []
    notes: list[str] = []
    for stem, image_path, label_path in pairs:
        raw, label = read_pair(image_path, label_path, len(class_names))
        if not (label != UNLABELED).any():  # nothing to learn or score; NaN metrics
            raise DatasetLayoutError(label_path, "no labeled pixel (every pixel 255, "
                                                 "unlabeled): label some, or move the image "
                                                 "to DATA/unlabeled/")
        value_range = volumes.range_for(image_path, raw) if scope == "volume" else None
        if volumes is not None:  # its volume's constant fill, as the runtime sees it
            raw, label, path, count = volumes.slice_with_data(image_path, raw, label,
                                                              required=scope == "volume")
            if count:
                notes.append(f"{count} labeled pixels of {label_path.name} lie on the "
                             f"constant fill of {path.name} (no data): left out, as "
                             f"unlabeled ({UNLABELED})")
        image = normalize_image(raw, value_range, nan_fill=NAN_FILL[kind])
        labeled.append(LabeledImage(stem, image, label,
                                    file_sha256(image_path), file_sha256(label_path),
                                    shown_as=str(label_path)))
    if kind == "tomogram":  # as `--volume` refuses them; in-situ frames may lack a class
        require_every_class([item.label for item in labeled], class_names,
                            pairs[0][2] if len(pairs) == 1 else root / "labels")
    unlabeled: list[np.ndarray] = []
    unlabeled_dir = root / "unlabeled"
    if load_unlabeled and unlabeled_dir.is_dir():
        for path in list_unlabeled(unlabeled_dir):
            pages = volumes.with_data(path) if volumes is not None else read_pages(path)
            unlabeled.extend(_normalise_pages(pages, scope, kind))
    return TrainingData(kind, class_names, scope, labeled, unlabeled, source=str(root),
                        notes=[fill_note(path, fill) for path, fill in fills.found.items()]
                        + notes)


def fill_note(path: Path, fill: tuple[ConstantFill, ...]) -> str:
    """The warning that ``path``'s volume holds a constant fill, taken as no data."""
    return (f"{path.name}: constant fill {fill_text(fill)} taken as no data (as NaN: never "
            f"solid, out of the grey range), as the service takes it")


def _label_values(labels: Sequence[np.ndarray]) -> list[set[int]]:
    """The values each label image holds."""
    return [set(np.unique(label).tolist()) for label in labels]


def classes_labeled_nowhere(data: TrainingData,
                            items: Sequence[LabeledImage] | None = None) -> list[str]:
    """Names of the classes no label image of ``items`` (default: every labeled image of
    ``data``) holds a pixel of (in class order)."""
    present = set().union(*_label_values([item.label for item in (
        data.labeled if items is None else items)]))
    return [name for k, name in enumerate(data.class_names) if k not in present]


def labels_exchanged(data: TrainingData) -> tuple[int, list[str]]:
    """How many of the first :data:`~nwwatch.measure.exchanged.EXCHANGE_CHECKED` in-situ
    label images of ``data`` were measured, and the names of those refused as drawn that
    give a contact angle with 1 and 2 exchanged: another tool's order (1 droplet, 2
    nanowire), which would train a model whose every frame the measurement refuses. Images
    whose unlabeled (255) pixels cannot be given a class are not measured."""
    from nwwatch.classes import UnsureBandError, fill_unsure_band
    from nwwatch.measure import measure_contact_angle
    from nwwatch.measure.exchanged import EXCHANGE_CHECKED, angle_if_exchanged

    measured, exchanged = 0, []
    for item in data.labeled[:EXCHANGE_CHECKED]:
        try:
            labels = fill_unsure_band(item.label)
        except UnsureBandError:
            continue
        measured += 1
        if angle_if_exchanged(labels, measure_contact_angle(labels)) is not None:
            exchanged.append(item.shown_as or item.stem)
    return measured, exchanged


def require_every_class(labels: Sequence[np.ndarray], class_names: tuple[str, ...],
                        where: str | os.PathLike[str]) -> None:
    """Raise :class:`DatasetLayoutError` naming ``where`` when a class has no labeled pixel
    in any of ``labels`` (uint8 (H, W) class ids, 255 unlabeled): a tomogram model would
    never see that class (a 0/255 binary mask, whose 255 reads as unlabeled, is named)."""
    values = _label_values(labels)
    present = set().union(*values)
    missing = [k for k in range(len(class_names)) if k not in present]
    if not missing:
        return
    class_id, hint = missing[0], ""
    # a binary mask's foreground reads as unlabeled
    if all(v <= {0, UNLABELED} for v in values) and any(0 in v for v in values):
        hint = (f" ({'it holds' if len(labels) == 1 else 'the labels hold'} only 0 "
                f"and 255 (unlabeled): a 0/255 mask? label images hold class ids: "
                f"{', '.join(f'{i} {n}' for i, n in enumerate(class_names))}, "
                f"{UNLABELED} unlabeled)")
    elif all(v == {UNLABELED} for v in values):
        hint = f" (every pixel is {UNLABELED}, unlabeled)"
    raise DatasetLayoutError(where, f"no labeled pixel of class {class_id} "
                                    f"({class_names[class_id]}); label a few pixels of every "
                                    f"class{hint}")


def load_volume_slice(
    volume_path: str | os.PathLike[str],
    slice_index: int,
    labels_path: str | os.PathLike[str],
    class_names: tuple[str, ...] = TOMOGRAM_CLASSES,
) -> TrainingData:
    """The tomogram workflow: one partially labeled slice, every other slice unlabeled.

    The one-slice case of :func:`load_volume_slices`; see there.
    """
    return load_volume_slices(volume_path, [(slice_index, labels_path)], class_names)


def load_volume_slices(
    volume_path: str | os.PathLike[str],
    slices: Sequence[tuple[int, str | os.PathLike[str]]],
    class_names: tuple[str, ...] = TOMOGRAM_CLASSES,
) -> TrainingData:
    """The tomogram workflow: partially labeled slices, every other slice unlabeled.

    All slices are normalised with the intensity range of the whole volume
    (``normalization_scope = "volume"``), exactly as the runtime does for tomograms.

    Parameters
    ----------
    volume_path : 3D TIFF or MRC (Z, Y, X), read by :func:`nwwatch.io.read_volume` as the service
        reads tomograms (a file it refuses is refused here with the same reason).
    slices : (index along Z, labels path) pairs; each labels file is a uint8 (Y, X) image,
        0 pore, 1 solid, 255 unlabeled. A second slice far from the first (e.g. one with
        vacuum above or below the grain) constrains what one slice cannot.
    class_names : the classes, in label-value order.

    Raises
    ------
    DatasetLayoutError : a volume the service would refuse, no slice given, a slice out of
        range or given twice, labels of the wrong shape, label values out of range, a label
        on a NaN or infinite voxel, or a class without any labeled pixel in all the slices
        together.
    """
    volume_path = Path(volume_path)
    if not slices:
        raise DatasetLayoutError(volume_path, "no labeled slice given")
    check_volume_memory(volume_path)
    read = read_tiff_volume(volume_path)
    # per axis, as the file declares it: a depth it does not declare (an ImageJ stack
    # without spacing=) is recorded as unknown, not as Fiji's default of 1 unit
    raw, voxel_size_nm = read.data, read.declared_voxel_size_nm
    del read
    depth = raw.shape[0]
    labels: dict[int, tuple[Path, np.ndarray]] = {}
    for slice_index, labels_path in slices:
        labels_path = Path(labels_path)
        if not 0 <= slice_index < depth:
            raise DatasetLayoutError(volume_path, f"slice index {slice_index} out of range: the "
                                                  f"volume has {depth} slices (0..{depth - 1})")
        if slice_index in labels:
            raise DatasetLayoutError(labels_path, f"slice {slice_index} is labeled twice (also "
                                                  f"by {labels[slice_index][0]})")
        label = read_label_image(labels_path, len(class_names))
        if label.shape != raw.shape[1:]:
            turned = " (transposed?)" if label.shape == raw.shape[:0:-1] else ""
            if label.shape in ((raw.shape[0], raw.shape[2]),
                               (raw.shape[0], raw.shape[1])) and not turned:
                # (Z, X) or (Z, Y): drawn on a section across the slices
                turned = (" (the shape of a section across the slices: label a slice of "
                          "the volume, the Z index --slice gives)")
            raise DatasetLayoutError(labels_path, f"labels have shape {label.shape}, slices of "
                                                  f"{volume_path.name} have {raw.shape[1:]}"
                                                  f"{turned}")
        # Normalisation gives NaN a neighbour's grey: a label there would teach that grey
        # the labeled class.
        blind = np.count_nonzero((label != UNLABELED) & ~np.isfinite(raw[slice_index]))
        if blind:
            raise DatasetLayoutError(labels_path, f"{blind} labeled pixels lie where slice "
                                                  f"{slice_index} of {volume_path.name} is NaN "
                                                  f"or infinite (no data): mark them 255")
        labels[slice_index] = (labels_path, label)
    volume, notes = _without_fill(raw, volume_path, labels)
    del raw
    require_every_class([label for _, label in labels.values()], class_names,
                        next(iter(labels.values()))[0] if len(labels) == 1 else volume_path)
    pages = _normalise_pages(volume, "volume", "tomogram")
    volume_sha = file_sha256(volume_path)
    labeled = [LabeledImage(f"{volume_path.stem}_z{z:05d}", pages[z], label, volume_sha,
                            file_sha256(path),
                            shown_as=f"{Path(path).name} (slice {z} of {volume_path.name})",
                            slice_key=f"{volume_sha}:z{z}")
               for z, (path, label) in sorted(labels.items())]
    unlabeled = [page for z, page in enumerate(pages) if z not in labels]
    where = ",".join(str(z) for z in sorted(labels))
    return TrainingData("tomogram", class_names, "volume", labeled, unlabeled,
                        source=f"{volume_path}#z={where}",
                        valid=voxels_with_data(volume), notes=notes,
                        voxel_size_nm=voxel_size_nm, voxel_size_source="volume")


def _without_fill(raw: np.ndarray, volume_path: Path,
                  labels: dict[int, tuple[Path, np.ndarray]]) -> tuple[np.ndarray, list[str]]:
    """``raw`` (Z, Y, X) with its constant fill as NaN, as the runtime segments it
    (:func:`nwwatch.volume.fill.without_constant_fill`), and the warnings to say: the fill,
    and per labels file the labeled pixels on it, which are set to 255 (unlabeled) in
    ``labels`` (slice index -> (path, uint8 (Y, X) labels), replaced in the dict): the fill looks
    like data in a viewer, so a label there is no error, but it must not teach the fill."""
    volume, fill = without_constant_fill(raw)
    if not fill:
        return volume, []
    notes = [fill_note(volume_path, fill)]
    for z, (path, label) in labels.items():
        off, count = labels_off_no_data(label, volume[z], raw[z])
        labels[z] = (path, off)
        if count:
            notes.append(f"{count} labeled pixels of {path.name} lie on the constant fill of "
                         f"slice {z} (no data): left out, as unlabeled ({UNLABELED})")
    return volume, notes


def check_volume_memory(volume_path: str | os.PathLike[str]) -> None:
    """Refuse, from its TIFF header, a volume that cannot fit in the memory this process may
    use, as the service refuses it (:func:`nwwatch.volume.memory.tomogram_memory`): a
    volume the service could not segment even with the least hungry model cannot be trained
    on either (training's peak grows by about 32.7 bytes a voxel, the check's lower figure by
    32.3; docs/tomography.md, "Memory"), and was killed by the kernel's OOM killer part-way
    instead. The reason names the file and the GiB needed and available.

    Raises
    ------
    DatasetLayoutError : it cannot fit; or the file is not a readable regular TIFF (a
        socket or FIFO: ``not a regular file``), or cannot be opened at all (a path through
        a file: ``cannot be read (strerror)``).
    """
    try:
        tomogram_memory(volume_path, training=True)
    except InputError as exc:  # permission denied included (nwwatch.io.UnreadableFileError)
        raise DatasetLayoutError(exc.path, exc.reason) from exc
    except FileNotFoundError as exc:
        raise DatasetLayoutError(volume_path, "file not found") from exc
    except OSError as exc:  # any other error of the open or read, e.g. ENOTDIR
        raise DatasetLayoutError(volume_path, f"cannot be read ({exc.strerror or exc})") from exc


@dataclass(frozen=True)
class Split:
    """Stems of the training and validation images (saved with the model)."""

    train: tuple[str, ...]
    val: tuple[str, ...]


def make_split(stems: list[str], val_fraction: float, seed: int,
               min_images: int = 2, keep_training: Collection[str] = ()) -> Split:
    """Seeded random split by stem. At least one training image; validation may be empty.

    With fewer than ``min_images`` images (at least 2: e.g. one labeled tomogram slice)
    everything trains; otherwise a positive ``val_fraction`` holds out at least one image.
    ``keep_training``: stems never held out (images the starting weights trained on: their
    scores would not be held-out ones); validation then holds ``val_fraction`` of the other
    images, at least one, but never all of them (one new image alone trains: nothing is held
    out), and no more than it would have held of all. Without it, the split of the same
    stems and seed is the one it always was.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction {val_fraction} must be in [0, 1)")
    ordered = sorted(stems)
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_val = int(round(val_fraction * len(ordered)))
    if val_fraction > 0 and len(ordered) >= max(2, min_images):
        n_val = min(max(n_val, 1), len(ordered) - 1)
    else:
        n_val = 0
    kept = set(keep_training)
    eligible = [i for i in order if ordered[i] not in kept]
    if len(eligible) < len(ordered) and n_val:
        # the fraction of the new images, at least one, never all of them: the new labels
        # are what the run is for
        n_val = min(n_val, max(int(round(val_fraction * len(eligible))), 1),
                    len(eligible) - 1)
    chosen = set(eligible[:n_val])
    val = sorted(ordered[i] for i in chosen)
    train = sorted(ordered[i] for i in order if i not in chosen)
    return Split(tuple(train), tuple(val))


def label_warnings(data: TrainingData) -> list[str]:
    """A warning with advice for each class with fewer than ``MIN_LABELED_PIXELS`` labeled
    pixels: the model has too little to learn that class from, and its masks are flagged
    ``few_labeled_pixels`` at run time. And one for each slice labeled in every pixel: that
    is what labels exported with 0 as "unlabeled" (napari, ilastik) look like here, where 0
    is pore, and no error can tell them from a slice labeled in full on purpose. And one for
    each slice labeled nowhere (possible beside other labeled slices): most likely the wrong
    file. And one when several slices are labeled and none holds two classes: the
    cross-validation then holds out one class's patches against another slice's, typically
    vacuum far from the grain, and scores the pores inside the grain not at all (a method
    scored 1.000 gave a mask with half as much solid again). The data's own notes come
    first (``TrainingData.notes``: a constant fill taken as no data, labels on it left out)."""
    out = list(data.notes)
    for class_id, name in enumerate(data.class_names):
        count = sum(int(np.count_nonzero(item.label == class_id)) for item in data.labeled)
        if count < MIN_LABELED_PIXELS:
            out.append(f"only {labeled_pixels(count, name)} (fewer than {MIN_LABELED_PIXELS}): "
                       f"label one more patch of {name}, on this slice or another one")
    for item in data.labeled:
        if np.all(item.label == UNLABELED):  # beside other slices' labels; alone: refused
            out.append(f"{item.shown_as or item.stem} labels no pixel (every pixel is "
                       f"{UNLABELED}): it adds nothing to training; the wrong file?")
        elif not np.any(item.label == UNLABELED):
            out.append(f"every pixel of {item.shown_as or item.stem} is labeled (none is "
                       f"{UNLABELED}): if 0 meant 'unlabeled' (napari, ilastik), mark those "
                       f"pixels {UNLABELED}; 0 is {data.class_names[0]} here")
    holding = [{c for c in range(len(data.class_names)) if np.any(item.label == c)}
               for item in data.labeled]
    if len(holding) > 1 and all(len(classes) < 2 for classes in holding):
        out.append(f"no labeled slice holds more than one class ({', '.join(data.class_names)}"
                   f" each on slices of their own): the held-out scores then compare patches "
                   f"of different slices, often vacuum far from the grain, and cannot check "
                   f"the {data.class_names[0]} next to {data.class_names[1]}; label both "
                   f"classes, side by side, on at least one slice")
    return out
