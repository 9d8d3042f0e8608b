"""The whole-volume intensity ranges of a ``normalization_scope = "volume"`` DATA folder
(:mod:`nwwatch.io.dataset`): the range each labeled slice is normalised with."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nwwatch.classes import UNLABELED as _UNLABELED
from nwwatch.io.dataset import DatasetLayoutError, list_unlabeled, read_pages
from nwwatch.normalize import intensity_range


class VolumeRanges:
    """The whole-volume intensity range for labeled slices of a ``normalization_scope =
    "volume"`` DATA folder, as the runtime normalises tomograms (``nwwatch.volume.segment``).

    A labeled image in DATA/images/ is one 2D slice; its own range is not the range the
    runtime uses for it, so it is looked up among DATA/unlabeled/'s files: the file holding a
    page equal to the image (value by value, NaN equal to NaN) is its volume, and that
    volume's :func:`nwwatch.normalize.intensity_range` is its range. ``nwwatch synth
    tomogram`` writes the volume there beside its labeled slice.

    ``pages`` : path -> (Z, H, W) native-dtype pages of every DATA/unlabeled/ file, read once.
    ``no_data`` : optional, (file path, its (Z, H, W) pages) -> the same pages with the voxels
        without data as NaN (``nwwatch.volume.fill.without_constant_fill``'s array, which a
        layer above passes: the runtime's constant fill); the ranges are those of
        :meth:`with_data`'s pages.
    """

    def __init__(self, root: str | os.PathLike[str],
                 no_data: Callable[[Path, np.ndarray], np.ndarray] | None = None) -> None:
        self.root = Path(root)
        folder = self.root / "unlabeled"
        self.pages = ({path: read_pages(path) for path in list_unlabeled(folder)}
                      if folder.is_dir() else {})
        self._ranges: dict[Path, tuple[float, float]] = {}
        self._no_data = no_data
        self._with_data: dict[Path, np.ndarray] = {}

    def with_data(self, path: Path) -> np.ndarray:
        """(Z, H, W) pages of ``path``: a volume of 2 pages or more through ``no_data``
        (computed once), else as read."""
        pages = self.pages[path]
        if self._no_data is None or pages.shape[0] < 2:
            return pages
        if path not in self._with_data:
            self._with_data[path] = self._no_data(path, pages)
        return self._with_data[path]

    def slice_with_data(self, image_path: Path, image: np.ndarray, label: np.ndarray,
                        required: bool = True) -> tuple[np.ndarray, np.ndarray, Path | None, int]:
        """A labeled slice ``image`` (H, W) as the runtime sees it: (the page of its volume
        through ``no_data`` (``image`` itself where that leaves it whole), ``label`` with 255
        (unlabeled) where the page has no data and ``image`` had, the volume's path, how many
        labeled pixels were set to 255). A slice no DATA/unlabeled/ file holds raises as
        :meth:`range_for` when ``required``, else comes back unchanged with the path None.
        A label on a constant fill is no error (the fill looks like data in a viewer), but it
        must not be learned nor scored."""
        try:
            path, z = self.locate(image_path, image)
        except DatasetLayoutError:
            if required:
                raise
            return image, label, None, 0
        page = self.with_data(path)[z]
        off, count = labels_off_no_data(label, page, image)
        if off is label:  # nothing of it is a fill: the slice as given
            return image, label, path, 0
        return page, off, path, count

    def range_for(self, image_path: Path, image: np.ndarray) -> tuple[float, float]:
        """(low, high) of the unlabeled volume holding ``image`` (H, W) as one of its slices.

        Raises
        ------
        DatasetLayoutError : naming ``image_path`` when no DATA/unlabeled/ file holds it.
        """
        path, _ = self.locate(image_path, image)
        if path not in self._ranges:
            self._ranges[path] = intensity_range(self.with_data(path))
        return self._ranges[path]

    def locate(self, image_path: Path, image: np.ndarray) -> tuple[Path, int]:
        """(the DATA/unlabeled/ file, the index along Z of its first page equal to ``image``);
        raises as :meth:`range_for`."""
        equal_nan = bool(np.issubdtype(image.dtype, np.floating))
        for path, pages in self.pages.items():
            if pages.shape[1:] != image.shape:
                continue
            nan_ok = equal_nan and bool(np.issubdtype(pages.dtype, np.floating))
            for z, page in enumerate(pages):
                if np.array_equal(page, image, equal_nan=nan_ok):
                    return path, z
        raise DatasetLayoutError(
            image_path, "normalization_scope is 'volume' (dataset.toml's, or the default "
                        "of kind = \"tomogram\"), but no file in "
                        f"{self.root / 'unlabeled'} holds this image as one of its slices: "
                        "put the volume it was cut from there, unchanged (the runtime "
                        "normalises every slice with its volume's intensity range), or set "
                        "normalization_scope = \"image\"")


def labels_off_no_data(label: np.ndarray, page: np.ndarray,
                       raw: np.ndarray) -> tuple[np.ndarray, int]:
    """``label`` (H, W) uint8 with 255 (unlabeled) where ``page`` (the slice with its
    constant fill as NaN) has no data and ``raw`` (the slice as read) had, and how many
    labeled pixels that took; ``label`` itself when no pixel of ``raw`` is taken out. A label
    on a constant fill is no error (the fill looks like data in a viewer), but it must not
    be learned nor scored."""
    on_fill = np.isnan(page) & ~np.isnan(np.asarray(raw, dtype=np.float64))
    count = int(np.count_nonzero(on_fill & (label != _UNLABELED)))
    if not on_fill.any():
        return label, 0
    return np.where(on_fill, np.uint8(_UNLABELED), label).astype(np.uint8), count
