"""The ``features`` candidate of ``nwwatch train --volume``: a random forest on multiscale
pixel features, exported as one ONNX graph (features, then ``ai.onnx.ml``
``TreeEnsembleClassifier``) under the model contract.

The features (:class:`training.volume_models.PixelFeatures`) are the intensity and, at
``FOREST_SIGMAS_PX``, the Gaussian-blurred intensity, gradient magnitude and both Hessian
eigenvalues of each (Z-blurred) slice: scikit-image's ``multiscale_basic_features`` at
σ 0.7 to 16 px. The widest scales see how far a pixel lies inside the grain, which is what a
forest needs to tell the darker core of a cupped (HAADF-saturated) grain from pores; a global
threshold cannot (docs/tomography.md).

With ``input_slices`` S > 1 (:data:`FOREST_SLAB_SLICES`, the slab input of
:mod:`nwwatch.volume.slab`; not the default, docs/tomography.md) the features are 3-D
(:class:`training.volume_models.SlabFeatures`): the slab is smoothed and differentiated
along Z by weights over its slices inside the graph, and the Z derivatives and mixed Hessian
terms join the in-plane features of the Z-smoothed slice.

The graph: input ``image`` (N * S, 1, H, W) -> features (N, F, H, W) (traced from torch) ->
(N * H * W, F) -> ``TreeEnsembleClassifier`` (the sum of the class fractions of each tree's
leaf) / the number of trees, the forest's ``predict_proba``, exact for votes of one-class
leaves, so a tie is 0.5 as in scikit-learn and every cut at 0.5 agrees with training) ->
``probabilities`` (N, 2, H, W) and ``labels`` = argmax (uint8). ONNX Runtime's CPU provider
runs it like any other model, so the runtime and the service do not change.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from nwwatch.segment.contract import (
    INPUT_NAME,
    OPSET,
    OUTPUT_LABELS,
    OUTPUT_PROBABILITIES,
    ModelMetadata,
)
from nwwatch.volume.runner import mirror_margin_px
from training.volume_models import FIT_MARGIN_PX, PixelFeatures, SlabFeatures, min_input_px

#: Scales (px) of the forest's features (scikit-image's five scales from 0.7 to 16 px).
FOREST_SIGMAS_PX = (0.7, 1.5, 3.3, 7.3, 16.0)
#: Gaussian kernels are cut at this many sigma: the widest (48 px) stays shorter than a slice
#: with the runtime's 16 px mirror margin on each side down to 17 px slices.
FOREST_TRUNCATE = 3.0
#: Slices of the forest's input: 1, single Z-blurred slices. The slab forest
#: (``FOREST_SLAB_SLICES``, ``extra["input_slices"]``, nwwatch.volume.slab) sees each slice
#: with the 3 slices on either side, which hold the Gaussian of ``FOREST_Z_SIGMA_PX`` slices
#: to 3 sigma (``FOREST_TRUNCATE``), as the in-plane kernels; on the benchmark it gained
#: 0.005 IoU on average at r = 0.25 and lost up to 0.015 on volumes outside it, for 1.3x the
#: training time (docs/tomography.md), so it is an option, not the default.
FOREST_INPUT_SLICES = 1
FOREST_SLAB_SLICES = 7
FOREST_Z_SIGMA_PX = 1.0
#: In-plane scales (px) of the Z features (|d/dz|, d²/dz², mixed Hessian terms): the small
#: ones, where a boundary across Z shows; the large scales see the depth in the grain in-plane.
FOREST_Z_FEATURE_SIGMAS_PX = (0.7, 1.5, 3.3)
#: Forest size: 40 trees of depth 16 (the benchmark forest has 100; at 96³ 40 gave the same
#: IoU within 0.007 for 2.5x less segmentation time: 45 s of CPU at 256³ instead of ~110 s).
N_TREES = 40
MAX_DEPTH = 16
#: ``ai.onnx.ml`` opset of ``TreeEnsembleClassifier``.
ML_OPSET = 3
#: Vacuum pseudo-labels (:func:`vacuum_pseudo_labels`): voxels farther than this (voxels, 3D)
#: from the label-free reference's solid count as certain vacuum ...
VACUUM_DISTANCE_PX = 8.0
#: ... and at most this many of them per slice are labeled pore, on the labeled slices and on
#: the slices at these fractions of the depth (the vacuum above and below the grain).
VACUUM_PIXELS_PER_SLICE = 300
VACUUM_SLICE_FRACTIONS = (0.15, 0.85)
#: Export check: ONNX Runtime's features may differ from torch's by this much (convolutions
#: rounded differently) ...
FEATURE_ATOL = 1e-5
#: ... and its probabilities from ``predict_proba`` on ONNX Runtime's own features by this
#: much (float32 sums of the leaf weights).
TREE_ATOL = 1e-5


class FeatureForest(nn.Module):
    """Normalised slices (N, 1, H, W) -> logits (N, 2, H, W): log of the forest's
    ``predict_proba`` on :class:`PixelFeatures`. Runs the forest in scikit-learn (training,
    cross-validation, export check); :func:`export_feature_forest` writes the ONNX graph."""

    arch = "feature-forest"
    size_multiple = 1

    def __init__(self, forest, input_slices: int = 1) -> None:
        super().__init__()
        self.input_slices = int(input_slices)
        self.features = feature_bank(self.input_slices)
        self.forest = forest
        self.config = {"sigmas_px": list(FOREST_SIGMAS_PX), "trees": N_TREES,
                       "max_depth": MAX_DEPTH, "truncate": FOREST_TRUNCATE,
                       "input_slices": self.input_slices}
        if self.input_slices > 1:
            self.config.update(z_sigma_px=FOREST_Z_SIGMA_PX,
                               z_feature_sigmas_px=list(FOREST_Z_FEATURE_SIGMAS_PX))

    def probabilities(self, x: torch.Tensor) -> np.ndarray:
        """float32 (N, 2, H, W) class probabilities (pore, solid) of ``x`` (N * S, 1, H, W):
        N slabs of S = ``input_slices`` consecutive slices (S = 1: N slices)."""
        with torch.no_grad():
            feats = self.features(x)
        n, f, h, w = feats.shape
        flat = feats.permute(0, 2, 3, 1).reshape(-1, f).numpy()
        prob = self.forest.predict_proba(flat).astype(np.float32)
        return np.ascontiguousarray(prob.reshape(n, h, w, 2).transpose(0, 3, 1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.from_numpy(self.probabilities(x)).clamp_min(1e-6))


def feature_bank(input_slices: int = 1) -> nn.Module:
    """The forest's features: :class:`PixelFeatures` of single slices (``input_slices`` 1),
    or :class:`SlabFeatures` (3-D) of slabs of ``input_slices`` slices."""
    if input_slices == 1:
        return PixelFeatures(FOREST_SIGMAS_PX, truncate=FOREST_TRUNCATE)
    return SlabFeatures(input_slices, FOREST_SIGMAS_PX, FOREST_Z_FEATURE_SIGMAS_PX,
                        z_sigma_px=FOREST_Z_SIGMA_PX, truncate=FOREST_TRUNCATE)


def fit_feature_forest(labeled: Sequence[tuple[np.ndarray, np.ndarray]],
                       seed: int = 0) -> FeatureForest:
    """Train a :class:`FeatureForest` on the labeled pixels.

    labeled : (input, labels uint8 (Y, X): 0 pore, 1 solid, 255 none) pairs; the input is a
        normalised slice float32 (Y, X), or for a slab forest its slab (S, Y, X) (the slice
        in the middle, nwwatch.volume.slab_stack), the same S for every pair. Features are
        computed with the fit margin the runtime also uses.
    """
    from sklearn.ensemble import RandomForestClassifier

    images = np.stack([image if image.ndim == 3 else image[None] for image, _ in labeled])
    slices, height, width = images.shape[1:]
    bank = feature_bank(slices)
    # Slices under 17 px need more than the 16 px margin for the widest kernel's mirrored
    # pad; the runtime widens it by the same rule (the model's min_input_px).
    m = mirror_margin_px(FIT_MARGIN_PX, min_input_px(bank), height, width)
    padded = np.pad(images, ((0, 0), (0, 0), (m, m), (m, m)), mode="reflect")
    flat = padded.reshape(-1, 1, *padded.shape[2:])
    with torch.no_grad():
        feats = bank(torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32)))
    feats = feats[:, :, m:m + height, m:m + width].permute(0, 2, 3, 1).numpy()
    mask = np.stack([label != 255 for _, label in labeled])
    y = np.stack([label for _, label in labeled])[mask]
    if set(np.unique(y).tolist()) != {0, 1}:
        raise ValueError("the feature forest needs labeled pixels of both classes")
    forest = RandomForestClassifier(n_estimators=N_TREES, max_depth=MAX_DEPTH, n_jobs=1,
                                    random_state=seed)
    forest.fit(feats[mask], y)
    return FeatureForest(forest, slices).eval()


def vacuum_pseudo_labels(volume: np.ndarray, solid_brighter: bool, slices: Sequence[int],
                         seed: int = 0) -> dict[int, np.ndarray]:
    """Pore labels on certain vacuum, from a label-free threshold: {z: uint8 (Y, X)}.

    Labeled patches lie inside the grain, so a classifier trained on them alone has never
    seen the vacuum around it and may call part of it solid (on the benchmark's default
    volumes the forest called 2.5 % of the vacuum solid, the smoothed threshold 1.2 %). The
    reference (Otsu after a σ = 1 px blur of every slice, :mod:`nwwatch.volume.crosscheck`)
    is reliable far from the grain: voxels farther than ``VACUUM_DISTANCE_PX`` from its solid
    are vacuum whatever the method. Up to ``VACUUM_PIXELS_PER_SLICE`` of them (seeded) are
    labeled pore (0) on each of ``slices`` and on the slices at ``VACUUM_SLICE_FRACTIONS`` of
    the depth; every other pixel is 255.

    volume : float32 (Z, Y, X), normalised (as the candidate sees it).
    solid_brighter : the labels' polarity.
    """
    from scipy import ndimage as ndi

    from nwwatch.volume.crosscheck import reference_mask

    reference = reference_mask(volume, solid_brighter)
    depth = volume.shape[0]
    wanted = sorted(set(slices) | {min(depth - 1, int(depth * f))
                                   for f in VACUUM_SLICE_FRACTIONS})
    out: dict[int, np.ndarray] = {}
    if not reference.any():
        return out
    far = ndi.distance_transform_edt(~reference) > VACUUM_DISTANCE_PX
    rng = np.random.default_rng(seed)
    for z in wanted:
        where = np.flatnonzero(far[z])
        if where.size == 0:
            continue
        take = rng.choice(where, size=min(where.size, VACUUM_PIXELS_PER_SLICE), replace=False)
        labels = np.full(volume.shape[1:], 255, np.uint8)
        labels.reshape(-1)[take] = 0
        out[z] = labels
    return out


def _float32_at_most(threshold: float) -> float:
    """The largest float32 <= ``threshold``.

    ONNX stores split values as float32. scikit-learn puts a split half-way between two
    neighbouring feature values a < b (float32, as the features are); when a and b are
    adjacent float32 numbers the float64 midpoint rounds to nearest up to b, and ONNX would
    send x == b left where scikit-learn sends it right. Rounding down keeps, for every float32
    x, ``x <= t32`` exactly when ``x <= threshold``.
    """
    t32 = np.float32(threshold)
    if float(t32) > threshold:
        t32 = np.nextafter(t32, np.float32(-np.inf))
    return float(t32)


def _tree_ensemble_node(forest, features: str, votes: str) -> onnx.NodeProto:
    """``TreeEnsembleClassifier`` summing the class fractions of each tree's leaf (two
    classes): ``forest.predict_proba`` times the number of trees, as scikit-learn sums before
    it divides. Leaves of one class add whole numbers, which float32 sums exactly, so after
    the division a vote of k trees of n is k / n as in scikit-learn (leaves holding
    fraction / n would add 20 x float32(0.025) = 0.50000006 for a 20-20 tie, solid where
    scikit-learn says 0.5)."""
    attrs: dict[str, list] = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
        "nodes_truenodeids", "nodes_falsenodeids", "class_treeids", "class_nodeids",
        "class_ids", "class_weights")}
    for t, estimator in enumerate(forest.estimators_):
        tree = estimator.tree_
        for node in range(tree.node_count):
            leaf = tree.children_left[node] == -1
            attrs["nodes_treeids"].append(t)
            attrs["nodes_nodeids"].append(node)
            attrs["nodes_featureids"].append(0 if leaf else int(tree.feature[node]))
            attrs["nodes_values"].append(0.0 if leaf else _float32_at_most(tree.threshold[node]))
            attrs["nodes_modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            # scikit-learn sends x <= threshold to the left child.
            attrs["nodes_truenodeids"].append(0 if leaf else int(tree.children_left[node]))
            attrs["nodes_falsenodeids"].append(0 if leaf else int(tree.children_right[node]))
            if leaf:
                value = tree.value[node][0].astype(np.float64)
                value = value / max(value.sum(), 1e-12)
                for column, class_id in enumerate(forest.classes_):
                    attrs["class_treeids"].append(t)
                    attrs["class_nodeids"].append(node)
                    attrs["class_ids"].append(int(class_id))
                    attrs["class_weights"].append(float(value[column]))
    return helper.make_node(
        "TreeEnsembleClassifier", [features], ["forest_label", votes],
        domain="ai.onnx.ml", classlabels_int64s=[0, 1], post_transform="NONE", **attrs)


class _FeatureGraph(nn.Module):
    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        feats = self.features(image)
        return feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])


def _forest_graph(model: FeatureForest, path: Path) -> None:
    """Write the contract graph (without metadata) of ``model`` to ``path``."""
    sample = torch.rand((2 * model.input_slices, 1, 96, 128),
                        generator=torch.Generator().manual_seed(1)) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # The slab's Z weights are one Conv; the exporter's note on its channel slices is moot.
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(_FeatureGraph(model.features).eval(), (sample,), str(path),
                          dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=["features"],
                          dynamic_axes={INPUT_NAME: {0: "N", 2: "H", 3: "W"},
                                        "features": {0: "P"}})
    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    c = helper.make_tensor
    graph.initializer.extend([
        c("n", TensorProto.INT64, [1], [-1]),
        c("hw_starts", TensorProto.INT64, [1], [2]), c("hw_ends", TensorProto.INT64, [1], [4]),
        c("two", TensorProto.INT64, [1], [2]),
        c("n_trees", TensorProto.FLOAT, [], [float(len(model.forest.estimators_))])])
    # N (the outputs' batch) is the input's divided by the slab's slices: left to Reshape.
    graph.node.extend([
        _tree_ensemble_node(model.forest, "features", "forest_votes"),
        helper.make_node("Div", ["forest_votes", "n_trees"], ["forest_prob"]),
        helper.make_node("Shape", [INPUT_NAME], ["in_shape"]),
        helper.make_node("Slice", ["in_shape", "hw_starts", "hw_ends"], ["hw"]),
        helper.make_node("Concat", ["n", "hw", "two"], ["nhwc_shape"], axis=0),
        helper.make_node("Reshape", ["forest_prob", "nhwc_shape"], ["nhwc"]),
        helper.make_node("Transpose", ["nhwc"], [OUTPUT_PROBABILITIES], perm=[0, 3, 1, 2]),
        helper.make_node("ArgMax", [OUTPUT_PROBABILITIES], ["argmax"], axis=1, keepdims=0),
        helper.make_node("Cast", ["argmax"], [OUTPUT_LABELS], to=TensorProto.UINT8),
    ])
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info(OUTPUT_LABELS, TensorProto.UINT8, ["N", "H", "W"]),
        helper.make_tensor_value_info(OUTPUT_PROBABILITIES, TensorProto.FLOAT,
                                      ["N", 2, "H", "W"])])
    graph_model.opset_import.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    onnx.save_model(graph_model, str(path))


def _verification_session(path: Path):
    """ONNX Runtime session of the file at ``path`` that also returns the graph's features
    ``(N * H * W, F)`` (not part of the contract; used only to check the export)."""
    import onnxruntime as ort

    graph_model = onnx.load(str(path))
    graph_model.graph.output.append(
        helper.make_tensor_value_info("features", TensorProto.FLOAT, ["P", "F"]))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    return ort.InferenceSession(graph_model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def export_feature_forest(model: FeatureForest, path: str | os.PathLike[str],
                          metadata: ModelMetadata, *, atol: float = TREE_ATOL,
                          feature_atol: float = FEATURE_ATOL,
                          verify_shapes: Sequence[tuple[int, int, int]] = (
                              (1, 64, 160), (3, 160, 96))) -> Path:
    """Export ``model`` to an nwwatch ONNX file at ``path``, verified before it is written.

    ``metadata.extra["input_slices"]`` (absent: 1) must be the model's ``input_slices``.
    ONNX Runtime is run on random normalised inputs of each (N, H, W) of ``verify_shapes``
    (N slabs of ``input_slices`` slices),
    and the two halves of the graph are checked separately:

    - features: ONNX Runtime's feature bank against torch's (:class:`PixelFeatures`), every
      value within ``feature_atol`` (the two runtimes' convolutions round differently);
    - trees: ``probabilities`` against the forest's ``predict_proba`` on ONNX Runtime's own
      features, every value within ``atol`` (float32 sums of the leaf weights), and
      ``labels`` equal to their argmax wherever the two probabilities are further apart than
      ``2 * atol``. The split values are float32 rounded down (:func:`_float32_at_most`), so
      every tree takes scikit-learn's branch for every float32 feature vector.

    End to end (torch features, scikit-learn trees), a pixel whose feature lies within the
    runtimes' rounding of a split can still send one tree the other way; the check does not
    hide that, it separates it from the trees. The file is written under a temporary name,
    verified, then renamed; a failed check raises
    :class:`training.export.ExportVerificationError` and leaves nothing at ``path``.
    """
    from training.export import (
        ExportVerificationError,
        finish_model_file,
        install_model_file,
    )
    from training.modelfiles import temporary_model_path

    declared = metadata.extra.get("input_slices", 1)
    if declared != model.input_slices:
        raise ValueError(f"metadata extra.input_slices is {declared!r}, the forest takes "
                         f"{model.input_slices} slices")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_model_path(path)
    try:
        _forest_graph(model, tmp)
        finish_model_file(tmp, metadata, 1)
        session = _verification_session(tmp)
        generator = torch.Generator().manual_seed(0)
        for n, h, w in verify_shapes:
            image = torch.rand((n * model.input_slices, 1, h, w), generator=generator) * 2 - 1
            labels, probs, feats = session.run(
                [OUTPUT_LABELS, OUTPUT_PROBABILITIES, "features"], {INPUT_NAME: image.numpy()})
            where = f"shape (N, H, W) = {(n, h, w)}"
            if labels.dtype != np.uint8 or labels.shape != (n, h, w) or \
                    probs.shape != (n, 2, h, w):
                raise ExportVerificationError(f"{where}: outputs {labels.dtype} {labels.shape}"
                                              f" / {probs.shape} break the contract")
            with torch.no_grad():
                torch_feats = _FeatureGraph(model.features)(image).numpy()
            feature_diff = float(np.abs(feats - torch_feats).max())
            if feature_diff > feature_atol:
                raise ExportVerificationError(
                    f"{where}: ONNX features differ from torch's by up to {feature_diff:.3g}"
                    f" (more than {feature_atol:g})")
            want = model.forest.predict_proba(feats).astype(np.float32)
            want = want.reshape(n, h, w, 2).transpose(0, 3, 1, 2)
            diff = np.abs(probs - want)
            if diff.max() > atol:
                raise ExportVerificationError(
                    f"{where}: ONNX probabilities differ from the forest's on the same "
                    f"features by up to {diff.max():.3g} on {np.mean(diff > atol):.2%} of "
                    f"the values (more than {atol:g})")
            decisive = np.abs(want[:, 1] - want[:, 0]) > 2 * atol
            if np.any((labels != np.argmax(want, axis=1)) & decisive):
                raise ExportVerificationError(f"{where}: labels differ from the forest")
        install_model_file(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
