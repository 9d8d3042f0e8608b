"""Training data: the DATA folder layout, a tomogram's labeled slice, splits and hashing.

Layout (issue 4)::

    DATA/images/<stem>.tif|png      2D grey images (any size)
    DATA/labels/<stem>.png|tif      uint8 class ids, 255 = unlabeled (partial labels allowed)
    DATA/unlabeled/*.tif|png        optional: 2D images, multi-page stacks or 3D volumes
    DATA/dataset.toml               optional: kind, class names, normalisation scope

``nwwatch synth insitu OUT`` writes its frames directly in ``OUT/`` (``OUT/labels/`` beside
them): when ``DATA/images/`` does not exist, the images are the ``.tif``/``.png`` files at the
top of DATA. Images and labels pair by file stem. Every image is normalised with
:func:`nwwatch.normalize.normalize_image` (the runtime's function), per image, or with the
intensity range of its whole file when ``normalization_scope = "volume"``.

dataset.toml::

    kind = "insitu"                 # or "tomogram"
    classes = ["background", "nanowire", "droplet"]
    normalization_scope = "image"   # or "volume"
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import tifffile

from nwwatch.classes import INSITU_CLASSES, TOMOGRAM_CLASSES, UNLABELED
from nwwatch.normalize import intensity_range, normalize_image
from nwwatch.segment.session import file_sha256

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


class DatasetLayoutError(ValueError):
    """Training data that cannot be used. ``.path`` names the file or folder, ``.reason`` why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


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


@dataclass
class TrainingData:
    """Everything a paradigm trains on; images already normalised.

    unlabeled : float32 (H, W) normalised images (every page/slice of the unlabeled files).
    """

    kind: str
    class_names: tuple[str, ...]
    normalization_scope: str
    labeled: list[LabeledImage]
    unlabeled: list[np.ndarray] = field(default_factory=list)
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def sha256(self) -> str:
        """Hash over the sorted (stem, image sha256, label sha256) triples of the labeled set."""
        digest = hashlib.sha256()
        for item in sorted(self.labeled, key=lambda s: s.stem):
            digest.update(f"{item.stem}\0{item.image_sha256}\0{item.label_sha256}\n".encode())
        return digest.hexdigest()


def read_pages(path: Path) -> np.ndarray:
    """Read a grey image file as a stack of pages.

    Returns
    -------
    ndarray (Z, H, W) in the file's dtype; Z = 1 for a plain 2D image.

    Raises
    ------
    DatasetLayoutError : unreadable file, colour image, or not 2D/3D.
    """
    try:
        if path.suffix.lower() == ".png":
            data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if data is None:
                raise DatasetLayoutError(path, "cannot be read as a PNG image")
        else:
            data = tifffile.imread(path)
    except DatasetLayoutError:
        raise
    except Exception as exc:  # tifffile raises several exception types for corrupt files
        raise DatasetLayoutError(path, f"cannot be read ({exc})") from None
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[-1] in (3, 4) and path.suffix.lower() == ".png":
        channels = data[..., :3]
        if not (np.array_equal(channels[..., 0], channels[..., 1])
                and np.array_equal(channels[..., 0], channels[..., 2])):
            raise DatasetLayoutError(path, "colour image; nwwatch needs single-channel grey images")
        data = channels[..., 0]
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3 or min(data.shape) == 0:
        raise DatasetLayoutError(path, f"expected a 2D image or a stack of 2D pages, got shape "
                                       f"{data.shape}")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise DatasetLayoutError(path, f"unsupported pixel type {data.dtype}")
    return data


def _read_image_2d(path: Path) -> np.ndarray:
    pages = read_pages(path)
    if pages.shape[0] != 1:
        raise DatasetLayoutError(path, f"labeled images must be 2D, this file has "
                                       f"{pages.shape[0]} pages")
    return pages[0]


def check_label(label: np.ndarray, num_classes: int, path: Path | str) -> np.ndarray:
    """Validate a label image: integer ids in [0, num_classes) or 255. Returns uint8 (H, W)."""
    if not np.issubdtype(label.dtype, np.integer):
        raise DatasetLayoutError(path, f"labels must be integer class ids, got {label.dtype}")
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != UNLABELED) | (values < 0)]
    if bad.size:
        raise DatasetLayoutError(
            path, f"label values {bad.tolist()[:10]} out of range: expected 0..{num_classes - 1} "
                  f"or {UNLABELED} (unlabeled)")
    return label.astype(np.uint8)


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file()
                  and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def read_dataset_toml(root: Path) -> tuple[str, tuple[str, ...], str]:
    """(kind, class_names, normalization_scope) from DATA/dataset.toml, or in-situ defaults."""
    path = root / "dataset.toml"
    if not path.is_file():
        return "insitu", INSITU_CLASSES, "image"
    try:
        config = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DatasetLayoutError(path, f"not valid TOML ({exc})") from None
    unknown = sorted(set(config) - {"kind", "classes", "normalization_scope"})
    if unknown:
        raise DatasetLayoutError(path, f"unknown keys {unknown}")
    kind = config.get("kind", "insitu")
    if kind not in ("insitu", "tomogram"):
        raise DatasetLayoutError(path, f"kind: {kind!r} must be 'insitu' or 'tomogram'")
    default = INSITU_CLASSES if kind == "insitu" else TOMOGRAM_CLASSES
    classes = config.get("classes", list(default))
    if (not isinstance(classes, list) or len(classes) < 2
            or not all(isinstance(c, str) for c in classes)):
        raise DatasetLayoutError(path, "classes: expected a list of at least two names")
    scope = config.get("normalization_scope", "image" if kind == "insitu" else "volume")
    if scope not in ("image", "volume"):
        raise DatasetLayoutError(path, f"normalization_scope: {scope!r} must be 'image' or "
                                       f"'volume'")
    return kind, tuple(classes), scope


def _normalise_pages(pages: np.ndarray, scope: str) -> list[np.ndarray]:
    if scope == "volume":
        value_range = intensity_range(pages)
        return [normalize_image(page, value_range) for page in pages]
    return [normalize_image(page) for page in pages]


def load_folder(root: str | os.PathLike[str], load_unlabeled: bool = True) -> TrainingData:
    """Load a DATA folder (see module docstring).

    Raises
    ------
    DatasetLayoutError : naming the file: missing folder, empty folder, image without label,
        label without image, two files with one stem, shape mismatch, label values out of range.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(root, "data folder not found")
    kind, class_names, scope = read_dataset_toml(root)
    image_dir = root / "images" if (root / "images").is_dir() else root
    label_dir = root / "labels"
    if not label_dir.is_dir():
        raise DatasetLayoutError(label_dir, "labels folder not found (DATA/labels/<stem>.png)")
    images = _list_images(image_dir)
    labels = _list_images(label_dir)
    if not images:
        raise DatasetLayoutError(image_dir, "no images (.tif, .tiff, .png) in this folder")
    image_by_stem = _by_stem(images)
    label_by_stem = _by_stem(labels)
    for stem, path in image_by_stem.items():
        if stem not in label_by_stem:
            raise DatasetLayoutError(path, f"no label for this image (expected "
                                           f"{label_dir / stem}.png)")
    for stem, path in label_by_stem.items():
        if stem not in image_by_stem:
            raise DatasetLayoutError(path, f"label without an image (expected {image_dir / stem}"
                                           f".tif)")
    labeled = []
    for stem in sorted(image_by_stem):
        image_path, label_path = image_by_stem[stem], label_by_stem[stem]
        raw = _read_image_2d(image_path)
        label = check_label(_read_image_2d(label_path), len(class_names), label_path)
        if label.shape != raw.shape:
            raise DatasetLayoutError(label_path, f"label shape {label.shape} != image shape "
                                                 f"{raw.shape} of {image_path.name}")
        labeled.append(LabeledImage(stem, normalize_image(raw), label,
                                    file_sha256(image_path), file_sha256(label_path)))
    unlabeled: list[np.ndarray] = []
    unlabeled_dir = root / "unlabeled"
    if load_unlabeled and unlabeled_dir.is_dir():
        for path in _list_images(unlabeled_dir):
            unlabeled.extend(_normalise_pages(read_pages(path), scope))
    return TrainingData(kind, class_names, scope, labeled, unlabeled, source=str(root))


def _by_stem(paths: list[Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in paths:
        if path.stem in out:
            raise DatasetLayoutError(path, f"two files with the stem {path.stem!r} "
                                           f"({out[path.stem].name} and {path.name})")
        out[path.stem] = path
    return out


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
    volume_path : 3D TIFF (Z, Y, X).
    slices : (index along Z, labels path) pairs; each labels file is a uint8 (Y, X) image,
        0 pore, 1 solid, 255 unlabeled. A second slice far from the first (e.g. one with
        vacuum above or below the grain) constrains what one slice cannot.
    class_names : the classes, in label-value order.

    Raises
    ------
    DatasetLayoutError : no slice given, a slice out of range or given twice, labels of the
        wrong shape, label values out of range, or a class without any labeled pixel in all
        the slices together.
    """
    volume_path = Path(volume_path)
    if not slices:
        raise DatasetLayoutError(volume_path, "no labeled slice given")
    volume = read_pages(volume_path)
    if volume.shape[0] < 2:
        raise DatasetLayoutError(volume_path, "expected a 3D volume (Z, Y, X), got a 2D image")
    depth = volume.shape[0]
    labels: dict[int, tuple[Path, np.ndarray]] = {}
    for slice_index, labels_path in slices:
        labels_path = Path(labels_path)
        if not 0 <= slice_index < depth:
            raise DatasetLayoutError(volume_path, f"slice index {slice_index} out of range: the "
                                                  f"volume has {depth} slices (0..{depth - 1})")
        if slice_index in labels:
            raise DatasetLayoutError(labels_path, f"slice {slice_index} is labeled twice (also "
                                                  f"by {labels[slice_index][0]})")
        label = check_label(_read_image_2d(labels_path), len(class_names), labels_path)
        if label.shape != volume.shape[1:]:
            raise DatasetLayoutError(labels_path, f"labels have shape {label.shape}, slices of "
                                                  f"{volume_path.name} have {volume.shape[1:]}")
        labels[slice_index] = (labels_path, label)
    for class_id, name in enumerate(class_names):
        if not any(np.any(label == class_id) for _, label in labels.values()):
            where = next(iter(labels.values()))[0] if len(labels) == 1 else volume_path
            raise DatasetLayoutError(where, f"no labeled pixel of class {class_id} ({name}); "
                                            f"label a few pixels of every class")
    pages = _normalise_pages(volume, "volume")
    volume_sha = file_sha256(volume_path)
    labeled = [LabeledImage(f"{volume_path.stem}_z{z:05d}", pages[z], label, volume_sha,
                            file_sha256(path)) for z, (path, label) in sorted(labels.items())]
    unlabeled = [page for z, page in enumerate(pages) if z not in labels]
    where = ",".join(str(z) for z in sorted(labels))
    return TrainingData("tomogram", class_names, "volume", labeled, unlabeled,
                        source=f"{volume_path}#z={where}")


@dataclass(frozen=True)
class Split:
    """Stems of the training and validation images (saved with the model)."""

    train: tuple[str, ...]
    val: tuple[str, ...]


def make_split(stems: list[str], val_fraction: float, seed: int,
               min_images: int = 2) -> Split:
    """Seeded random split by stem. At least one training image; validation may be empty.

    With fewer than ``min_images`` images (at least 2: e.g. one labeled tomogram slice)
    everything trains; otherwise a positive ``val_fraction`` holds out at least one image.
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
    val = sorted(ordered[i] for i in order[:n_val])
    train = sorted(ordered[i] for i in order[n_val:])
    return Split(tuple(train), tuple(val))
