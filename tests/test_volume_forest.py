"""The ``features`` candidate of ``nwwatch train --volume``: a random forest on multiscale
features, exported as one ONNX graph that the runtime runs like any model."""

from __future__ import annotations

import numpy as np
import pytest

from nwwatch.segment.contract import ModelMetadata
from nwwatch.segment.session import Segmenter
from nwwatch.volume import segment_volume

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
from training.volume_forest import (  # noqa: E402  (after the skip guard)
    VACUUM_DISTANCE_PX,
    VACUUM_PIXELS_PER_SLICE,
    export_feature_forest,
    fit_feature_forest,
    vacuum_pseudo_labels,
)


def _checker_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(volume float32 (12, 40, 40), truth bool): solid is a +-1 checkerboard around the
    pore's grey, so no threshold separates the classes and the raw intensity does."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    shape = (12, 40, 40)
    field = ndi.gaussian_filter(rng.standard_normal(shape), 3.0)
    truth = field > np.quantile(field, 0.6)
    checker = np.indices(shape).sum(axis=0) % 2 * 2.0 - 1.0
    volume = np.where(truth, checker, 0.0) + rng.normal(0, 0.05, shape)
    return volume.astype(np.float32), truth


def _metadata(model) -> ModelMetadata:
    return ModelMetadata(kind="tomogram", class_names=("pore", "solid"), arch=model.arch,
                         paradigm="features", size_multiple=1, normalization_scope="volume",
                         extra={"model_config": model.config})


def test_the_forest_round_trips_through_onnx_and_segments_a_volume(tmp_path):
    volume, truth = _checker_volume()
    z = 6
    labels = np.where(truth[z], 1, 0).astype(np.uint8)
    labels[::2] = 255  # half the rows labeled
    image = np.clip(volume[z], -1, 1)
    model = fit_feature_forest([(image, labels)], seed=0)
    path = export_feature_forest(model, tmp_path / "forest.onnx", _metadata(model))
    segmenter = Segmenter(path, providers=("cpu",), threads=1)
    assert segmenter.metadata.arch == "feature-forest"
    # With the runtime's 16 px mirror margin (the widest kernel needs slices over 48 px).
    batch = np.pad(np.clip(volume[:3], -1, 1), ((0, 0), (16, 16), (16, 16)), mode="reflect")
    onnx_probs = segmenter.segment(batch).probabilities
    want = model.probabilities(torch.from_numpy(batch[:, None]))
    # End to end only a feature that torch and ONNX Runtime round to opposite sides of a
    # split can send one of the 40 trees the other way (1/40 of the probability).
    diff = np.abs(onnx_probs - want)
    assert np.mean(diff > 1e-4) < 1e-3 and diff.max() <= 1 / 40 + 1e-4
    seg = segment_volume(segmenter, volume, margin_px=16)
    keep = np.arange(truth.shape[0]) != z
    pred, true = seg.mask[keep].astype(bool), truth[keep]
    assert np.count_nonzero(pred & true) / np.count_nonzero(pred | true) > 0.8
    # A thin volume through tri-planar fusion: its Y and X slices are 6 px high, 38 px with
    # the margin, and ONNX Runtime refused the 48 px reflect pad; the model's min_input_px
    # (1 + the widest kernel's radius) makes the runtime mirror them wider.
    from training.volume_models import min_input_px

    assert min_input_px(model) == 49
    meta = _metadata(model)
    meta = ModelMetadata(**{**meta.__dict__, "extra": {**meta.extra, "min_input_px": 49}})
    thin = Segmenter(export_feature_forest(model, tmp_path / "thin.onnx", meta),
                     providers=("cpu",), threads=1)
    seg = segment_volume(thin, volume[3:9], triplanar=True)
    assert seg.mask.shape == (6, 40, 40)


def test_a_killed_forest_exports_temporary_file_is_removed_by_the_next(tmp_path):
    """The forest is written under the exporters' temporary name: what a killed export (a
    SIGKILL, a power cut) left beside the model goes at the next export to that path."""
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".forest.onnx.{dead.pid}-0123abcd.tmp"
    stale.write_bytes(b"half a model")
    volume, _ = _checker_volume()
    labels = (np.indices(volume.shape[1:]).sum(axis=0) % 3 == 0).astype(np.uint8)
    model = fit_feature_forest([(np.clip(volume[0], -1, 1), labels)], seed=0)
    export_feature_forest(model, tmp_path / "forest.onnx", _metadata(model))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forest.onnx"]


def test_a_split_between_adjacent_float32_values_goes_the_same_way_in_onnx(tmp_path):
    """scikit-learn splits half-way between neighbouring values a < b; when they are adjacent
    float32 numbers the midpoint rounds to nearest up to b, so a float32 split value stored
    that way would send x == b left. The export rounds split values down."""
    from sklearn.ensemble import RandomForestClassifier

    from training.volume_forest import FeatureForest, _verification_session

    # a has an odd last mantissa bit, so the float64 midpoint is a tie that rounds to b; above
    # 1 adjacent float32 values are more than scikit-learn's 1e-7 apart, so it splits them.
    a = np.nextafter(np.float32(2.0), np.float32(3))
    b = np.nextafter(a, np.float32(3))
    assert np.float32((np.float64(a) + np.float64(b)) / 2) == b
    n_features = FeatureForest(None).features(torch.zeros((1, 1, 64, 64))).shape[1]
    # Only the intensity (feature 0) varies, so every split is on it, between a and b.
    x = np.zeros((100, n_features), np.float32)
    x[:, 0] = np.repeat([a, b], 50)
    y = np.repeat([0, 1], 50)
    forest = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(x, y)
    assert all(e.tree_.threshold[0] > a and np.float32(e.tree_.threshold[0]) == b
               for e in forest.estimators_)
    model = FeatureForest(forest).eval()
    path = export_feature_forest(model, tmp_path / "tie.onnx", _metadata(model))
    image = np.where(np.indices((1, 1, 64, 64)).sum(axis=0) % 2 == 1, b, a).astype(np.float32)
    labels, probs, feats = _verification_session(path).run(
        ["labels", "probabilities", "features"], {"image": image})
    assert set(np.unique(feats[:, 0]).tolist()) == {float(a), float(b)}
    want = forest.predict_proba(feats).reshape(1, 64, 64, 2).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(probs, want, atol=1e-6)
    np.testing.assert_array_equal(labels[0], (image[0, 0] == b).astype(np.uint8))
    assert Segmenter(path, providers=("cpu",), threads=1).segment(image[:, 0]).labels[0].tolist() \
        == (image[0, 0] == b).astype(np.uint8).tolist()


def test_vacuum_pseudo_labels_lie_far_from_the_reference_solid():
    from scipy import ndimage as ndi

    volume = np.full((20, 48, 48), -0.8, np.float32)
    volume[6:14, 16:32, 16:32] = 0.8  # a bright block in dark vacuum
    volume += np.random.default_rng(1).normal(0, 0.05, volume.shape).astype(np.float32)
    out = vacuum_pseudo_labels(volume, solid_brighter=True, slices=[10], seed=0)
    assert 10 in out and set(out) == {3, 10, 17}  # the labeled slice, 15 % and 85 % of 20
    distance = ndi.distance_transform_edt(volume <= 0)
    for z, labels in out.items():
        assert set(np.unique(labels).tolist()) <= {0, 255}
        assert 0 < np.count_nonzero(labels == 0) <= VACUUM_PIXELS_PER_SLICE
        assert distance[z][labels == 0].min() > VACUUM_DISTANCE_PX
    # Dark solid (bright-field contrast): the vacuum is the bright side.
    inverted = vacuum_pseudo_labels(-volume, solid_brighter=False, slices=[10], seed=0)
    assert all(distance[z][labels == 0].min() > VACUUM_DISTANCE_PX
               for z, labels in inverted.items())


def _z_alternating_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(volume float32 (14, 40, 40), truth bool): solid is +1 on even slices and -1 on odd
    ones, pore 0: every slice alone shows the solid, but averaged along Z it vanishes, so
    only the Z derivatives of a slab tell it from pore once the slices are Z-smoothed."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    shape = (14, 40, 40)
    field = ndi.gaussian_filter(rng.standard_normal(shape), 3.0)
    truth = field > np.quantile(field, 0.6)
    sign = np.where(np.arange(shape[0]) % 2 == 0, 1.0, -1.0)[:, None, None]
    volume = np.where(truth, sign, 0.0) + rng.normal(0, 0.05, shape)
    return volume.astype(np.float32), truth


def test_the_slab_forest_sees_z_and_round_trips_through_onnx(tmp_path):
    from nwwatch.volume import slab_stack, smooth_along_z
    from training.volume_forest import FOREST_SLAB_SLICES

    volume, truth = _z_alternating_volume()
    s = FOREST_SLAB_SLICES
    labeled_z = (6, 7)

    def labels(z):
        out = np.where(truth[z], 1, 0).astype(np.uint8)
        out[::2] = 255
        return out

    model = fit_feature_forest([(slab_stack(volume, [z], s)[0], labels(z)) for z in labeled_z])
    assert model.input_slices == s and model.config["input_slices"] == s
    meta = _metadata(model)
    with pytest.raises(ValueError, match="input_slices"):
        export_feature_forest(model, tmp_path / "no_key.onnx", meta)
    meta = ModelMetadata(**{**meta.__dict__, "extra": {**meta.extra, "input_slices": s}})
    path = export_feature_forest(model, tmp_path / "slab.onnx", meta)
    assert not (tmp_path / "no_key.onnx").exists()
    segmenter = Segmenter(path, providers=("cpu",), threads=1)
    # The graph takes N slabs as N * S images, and gives N outputs.
    slabs = np.pad(slab_stack(volume, [2, 9], s), ((0, 0), (0, 0), (16, 16), (16, 16)),
                   mode="reflect")
    onnx_probs = segmenter.segment(slabs.reshape(-1, 72, 72)).probabilities
    want = model.probabilities(torch.from_numpy(slabs.reshape(-1, 1, 72, 72)))
    assert onnx_probs.shape == want.shape == (2, 2, 72, 72)
    diff = np.abs(onnx_probs - want)
    assert np.mean(diff > 1e-4) < 1e-3 and diff.max() <= 1 / 40 + 1e-4

    def iou(mask):
        inner = [z for z in range(s // 2, volume.shape[0] - s // 2) if z not in labeled_z]
        pred, true = mask[inner].astype(bool), truth[inner]
        return np.count_nonzero(pred & true) / np.count_nonzero(pred | true)

    seg = segment_volume(segmenter, volume, margin_px=16)
    assert iou(seg.mask) > 0.8
    # The same labels on single Z-blurred slices (2-D features) cannot see the solid.
    blurred = smooth_along_z(volume, 1.0)
    flat = fit_feature_forest([(blurred[z], labels(z)) for z in labeled_z])
    padded = np.pad(blurred, ((0, 0), (16, 16), (16, 16)), mode="reflect")[:, None]
    probs = flat.probabilities(torch.from_numpy(padded))[:, 1, 16:-16, 16:-16]
    assert iou(probs > 0.5) < 0.65


def test_vote_ties_fall_on_the_same_side_of_the_cut_in_training_and_at_runtime(tmp_path):
    """A forest of 40 one-split trees on the intensity: tree t votes solid above
    t / 40 - 0.4875, so a pixel of intensity k / 40 - 0.5 gets k solid votes, k = 0 .. 40.
    The exported probabilities equal scikit-learn's ``predict_proba`` bit for bit (k = 20
    is exactly 0.5, not 20 x float32(0.025)), so the runtime's cut (``solid > 0.5``,
    nwwatch.volume.segment_volume), the graph's labels and the training side's cut
    (``predict_solid > 0.5``) all call the 20-20 tie pore."""
    from sklearn.ensemble import RandomForestClassifier

    from training.volume_candidates import predict_solid
    from training.volume_forest import FeatureForest

    n_features = FeatureForest(None).features(torch.zeros((1, 1, 64, 64))).shape[1]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, n_features)).astype(np.float32)
    forest = RandomForestClassifier(n_estimators=40, max_depth=1, random_state=0).fit(
        x, (x[:, 0] > 0).astype(int))
    for t, estimator in enumerate(forest.estimators_):
        tree = estimator.tree_
        assert tree.node_count == 3
        tree.feature[0], tree.threshold[0] = 0, t / 40 - 0.5 + 0.0125
        tree.value[1, 0], tree.value[2, 0] = (1.0, 0.0), (0.0, 1.0)  # left pore, right solid
    model = FeatureForest(forest).eval()
    levels = (np.arange(41) / 40 - 0.5).astype(np.float32)
    image = levels[np.arange(64 * 64).reshape(64, 64) % 41]
    votes = np.rint(forest.predict_proba(image.reshape(-1, 1) * np.eye(n_features)[0])[:, 1]
                    * 40).reshape(64, 64)
    np.testing.assert_array_equal(votes, np.rint((image + 0.5) * 40))  # k votes at level k
    path = export_feature_forest(model, tmp_path / "votes.onnx", _metadata(model))
    runtime = Segmenter(path, providers=("cpu",), threads=1).segment_native(image[None])
    sklearn = model.probabilities(torch.from_numpy(image[None, None]))  # predict_proba
    np.testing.assert_array_equal(runtime.probabilities, sklearn)
    np.testing.assert_array_equal(sklearn[0, 1], (votes / 40).astype(np.float32))
    training = predict_solid(model, image)  # through the logits: not bit for bit away from 0.5
    tie = votes == 20
    assert tie.any() and np.all(runtime.probabilities[0, 1][tie] == 0.5)
    np.testing.assert_array_equal(runtime.probabilities[0, 1] > 0.5, training > 0.5)
    np.testing.assert_array_equal(runtime.labels[0], votes > 20)


def test_a_volume_of_slices_under_17_px_trains_and_predicts_as_the_runtime_segments(tmp_path):
    """With the 16 px mirror margin a 12 px slice is 44 px wide, shorter than the widest
    kernel's 48 px mirrored pad: the fit and the held-out prediction widen the margin to the
    model's min_input_px as the runtime does, instead of failing in torch's reflect pad."""
    from nwwatch.normalize import intensity_range, normalize_image
    from training.volume_candidates import predict_solid
    from training.volume_models import min_input_px

    volume, truth = _checker_volume()
    volume, truth = volume[:, :12, :12], truth[:, :12, :12]  # 25 % solid on slice 6
    z = 6
    normalised = normalize_image(volume, intensity_range(volume))
    labels = np.where(truth[z], 1, 0).astype(np.uint8)
    labels[::2] = 255
    model = fit_feature_forest([(normalised[z], labels)], seed=0)
    training = predict_solid(model, normalised[z])
    assert training.shape == (12, 12)
    meta = _metadata(model)
    meta = ModelMetadata(**{**meta.__dict__, "extra": {**meta.extra,
                                                       "min_input_px": min_input_px(model)}})
    path = export_feature_forest(model, tmp_path / "small.onnx", meta)
    seg = segment_volume(Segmenter(path, providers=("cpu",), threads=1), volume,
                         return_probability=True)
    runtime = seg.solid_probability[z]
    # The same margin in training and at run time: the same features, so the same votes up
    # to a tree that torch and ONNX Runtime send different ways (1/40).
    assert np.abs(runtime - training).max() <= 1 / 40 + 1e-4
