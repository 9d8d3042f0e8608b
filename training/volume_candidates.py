"""Training one tomogram candidate of ``nwwatch train --volume`` on a set of labels, and its
held-out prediction (:mod:`training.volume_select` cross-validates and chooses with these).

Every candidate sees the volume as the runtime will feed it: the threshold and the feature
forest the slices blurred along Z (2.5-D; a slab forest its slab of slices), the networks
the slices as they are; predictions use the runtime's mirror margin and padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from nwwatch.filehash import file_sha256
from nwwatch.io.png import write_image_file
from training.config import TrainConfig
from training.data import TrainingData

#: The training paradigm of each network candidate.
NETWORK_PARADIGMS = {"unet": "supervised", "contrastive": "contrastive"}
#: Mirror margin (px) of held-out predictions: the runtime's default.
MARGIN_PX = 16


def predict_solid(model: torch.nn.Module, image: np.ndarray,
                  margin_px: int = MARGIN_PX) -> np.ndarray:
    """float32 (H, W) p(solid) of a logits model on one normalised slice (H, W), or for a
    slab model on its slab (S, H, W), with the runtime's mirror margin (widened to the
    model's ``min_input_px`` as there) and padding to the model's size multiple."""
    from nwwatch.segment.session import pad_to_multiple
    from nwwatch.volume.runner import mirror_margin_px
    from training.volume_models import min_input_px

    stack = image if image.ndim == 3 else image[None]
    height, width = stack.shape[1:]
    # Widened for slices narrower than the model's widest kernel, as the runtime does.
    m = mirror_margin_px(margin_px, min_input_px(model), height, width)
    padded = np.pad(stack, ((0, 0), (m, m), (m, m)), mode="reflect") if m else stack
    padded = pad_to_multiple(padded, int(getattr(model, "size_multiple", 1)))
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(np.ascontiguousarray(padded))[:, None])
    prob = torch.softmax(logits, dim=1)[0, 1].numpy()
    return prob[m:m + height, m:m + width]


class CandidateTrainer:
    """Trains one candidate on a set of labels; returns a torch logits model."""

    def __init__(self, config: TrainConfig, data: TrainingData, work: Path,
                 z_sigma_px: float, forest_slices: int = 1) -> None:
        from nwwatch.volume import slab_stack, smooth_along_z
        from nwwatch.volume.nodata import fill_slices_without_data

        self.config, self.data, self.work = config, data, work
        self.otsu_cache: dict[float, float] = {}
        self.vacuum_cache: dict[bool, dict[int, np.ndarray]] = {}
        self.slices = (config.slice_index if isinstance(config.slice_index, list)
                       else [config.slice_index])
        self.runs = 0
        # The volume in Z order (data.labeled follows the sorted slice indices, data.unlabeled
        # is every other slice in order), blurred along Z for the small candidates (2.5-D).
        order, rest = sorted(self.slices), iter(data.unlabeled)
        labeled = dict(zip(order, (item.image for item in data.labeled), strict=True))
        depth = len(data.labeled) + len(data.unlabeled)
        self.z_sigma_px = float(z_sigma_px)
        raw = np.stack([labeled[z] if z in labeled else next(rest) for z in range(depth)])
        if data.valid is not None:  # a slice without data: the nearest data slice's grey
            fill_slices_without_data(raw, data.valid.any(axis=(1, 2)))
        # Voxels without data (NaN) left out of the blur, as segment_volume leaves them.
        self.volume = smooth_along_z(raw, self.z_sigma_px, valid=data.valid)
        self.smoothed = [self.volume[z] for z in order]
        # The forest's input with a slab (forest_slices > 1): the slab of each slice, from
        # the normalised volume as it is (the forest smooths along Z itself).
        self.forest_slices = int(forest_slices)
        self.slab = (lambda zs: slab_stack(raw, zs, self.forest_slices)) \
            if self.forest_slices > 1 else None
        self.slabs = list(self.slab(order)) if self.slab else None

    def image(self, method: str, index: int) -> np.ndarray:
        """The labeled slice ``index`` as candidate ``method`` sees it (the threshold, and the
        forest without a slab: blurred along Z; the slab forest: its slab (S, Y, X); the
        networks: as it is)."""
        if method == "features" and self.slabs is not None:
            return self.slabs[index]
        return self.data.labeled[index].image if method in NETWORK_PARADIGMS \
            else self.smoothed[index]

    def fit(self, method: str, labels: Sequence[np.ndarray], final_out: Path | None = None,
            validated: bool = True, selection: dict | None = None):
        """``validated=False``: nothing was held out, so the threshold keeps the reference
        blur (pure patches favour the widest blur, which the boundaries pay for).
        ``selection``: a network's final training records it (``extra["selection"]``)."""
        from training.volume_forest import fit_feature_forest
        from training.volume_models import DEFAULT_SIGMA_PX, fit_threshold

        labeled = [(image, label) for image, label in zip(self.smoothed, labels, strict=True)]
        if method == "threshold":
            sigmas = {} if validated else {"sigmas_px": (DEFAULT_SIGMA_PX,)}
            return fit_threshold(self.volume, labeled, otsu_cache=self.otsu_cache,
                                 valid=self.data.valid, **sigmas)
        if method == "features":
            inputs = self.slabs if self.slabs is not None else self.smoothed
            pairs = [(image, label) for image, label in zip(inputs, labels, strict=True)]
            return fit_feature_forest(pairs + self._vacuum(labeled), seed=self.config.seed)
        return self._network(method, labels, final_out, selection)

    def _vacuum(self, labeled: list[tuple[np.ndarray, np.ndarray]]
                ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The feature forest's vacuum pseudo-labels (pore, far from the label-free
        reference's solid) as (Z-blurred slice, labels) pairs: added to the labeled slices'
        unlabeled pixels and on the slices above and below
        (:func:`training.volume_forest.vacuum_pseudo_labels`)."""
        from training.volume_forest import vacuum_pseudo_labels

        solid = np.concatenate([image[label == 1] for image, label in labeled])
        pore = np.concatenate([image[label == 0] for image, label in labeled])
        brighter = bool(solid.mean() > pore.mean())
        valid = self.data.valid
        if brighter not in self.vacuum_cache:
            # voxels without data are neither the reference's vacuum nor its solid
            volume = self.volume if valid is None else np.where(valid, self.volume, np.nan)
            self.vacuum_cache[brighter] = vacuum_pseudo_labels(
                volume, brighter, sorted(self.slices), seed=self.config.seed)
        pseudo = self.vacuum_cache[brighter]
        out = []
        for z, labels in pseudo.items():
            if valid is not None:
                labels = np.where(valid[z], labels, 255).astype(np.uint8)
            if z in self.slices:
                # Only where nothing is labeled, held out or not: a held-out pixel must not
                # come back as a pseudo-label.
                own = self.data.labeled[sorted(self.slices).index(z)].label
                labels = np.where(own == 255, labels, 255).astype(np.uint8)
            out.append((self.slab([z])[0] if self.slab else self.volume[z], labels))
        return out

    def _as_given(self, labels: Sequence[np.ndarray]) -> bool:
        """Whether ``labels`` (in sorted slice order) are the labels loaded from the user's
        files, every pixel, and those files (and the volume) still hold what was loaded: the
        kept network's final training reads them again, and a label image saved meanwhile
        (e.g. from ``nwwatch label``) must not train a network the selection never scored."""
        if len(labels) != len(self.data.labeled) or not all(
                np.array_equal(label, item.label)
                for label, item in zip(labels, self.data.labeled, strict=True)):
            return False
        given = self.config.labels
        paths = [given] if isinstance(given, str) else list(given or [])
        order = self.config.slice_index
        slices = [order] if isinstance(order, int) else list(order or [])
        by_slice = dict(zip(slices, paths, strict=False))
        try:
            return (len(by_slice) == len(self.data.labeled)
                    and self.config.volume is not None
                    and file_sha256(Path(self.config.volume)) == self.data.labeled[0].image_sha256
                    and all(file_sha256(Path(by_slice[z])) == item.label_sha256
                            for z, item in zip(sorted(by_slice), self.data.labeled,
                                               strict=True)))
        except OSError:  # a file moved or removed meanwhile: train on the copies
            return False

    def _network(self, method: str, labels: Sequence[np.ndarray], final_out: Path | None,
                 selection: dict | None = None):
        from training.checkpoint import load_inference_model
        from training.engine import train

        # load_volume_slices sorts the slices; the label files follow that order.
        order = sorted(self.slices)
        self.runs += 1
        out = final_out or self.work / f"{method}_{self.runs}.onnx"
        config = replace(self.config, paradigm=NETWORK_PARADIGMS[method], out=str(out),
                         export=final_out is not None)
        if not self._as_given(labels):
            # A fold's labels (some held out): written to the selection's own folder.
            paths = []
            for z, label in zip(order, labels, strict=True):
                path = self.work / f"labels_{self.runs}_z{z}.png"
                write_image_file(path, label)
                paths.append(str(path))
            config = replace(config, slice_index=order, labels=paths)
        # Else the user's own --slice and --labels, as the CLI records them: the checkpoint
        # then names files that outlive the selection's temporary folder, and --resume reads
        # (and converts, as load_volume_slices does: labels on a constant fill unlabeled) the
        # same labels.
        result = train(config, progress=False, selection=selection)
        return load_inference_model(result.checkpoint) if final_out is None else result
