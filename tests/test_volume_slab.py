"""The slab input: a model that takes 2k + 1 neighbouring slices gets the right ones, with
the volume's end slices repeated; a one-slice model is fed as before."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import build_threshold_model

from nwwatch.normalize import intensity_range, normalize_image
from nwwatch.segment.contract import (
    INPUT_NAME,
    METADATA_KEY,
    OPSET,
    OUTPUT_LABELS,
    OUTPUT_PROBABILITIES,
    ModelMetadata,
)
from nwwatch.segment.session import Segmenter
from nwwatch.volume import (
    VolumeModelError,
    model_input_slices,
    segment_volume,
    slab_indices,
    slab_stack,
)


def build_slab_model(path, weights, input_slices=None) -> Segmenter:
    """A slab model whose solid logit is ``sum_c weights[c] * slice_c`` of each slab (pore
    logit 0), so ``logit(p(solid))`` gives back the weighted sum of the slices it was fed."""
    s = len(weights)
    w = np.zeros((2, s, 1, 1), np.float32)
    w[1, :, 0, 0] = weights
    nodes = [
        helper.make_node("Shape", [INPUT_NAME], ["shape"]),
        helper.make_node("Slice", ["shape", "two", "four"], ["hw"]),
        helper.make_node("Concat", ["minus_one_s", "hw"], ["slab_shape"], axis=0),
        helper.make_node("Reshape", [INPUT_NAME, "slab_shape"], ["slabs"]),
        helper.make_node("Conv", ["slabs", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_PROBABILITIES], axis=1),
        helper.make_node("ArgMax", ["logits"], ["argmax"], axis=1, keepdims=0),
        helper.make_node("Cast", ["argmax"], [OUTPUT_LABELS], to=TensorProto.UINT8),
    ]
    inits = [numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(np.array([2], np.int64), "two"),
             numpy_helper.from_array(np.array([4], np.int64), "four"),
             numpy_helper.from_array(np.array([-1, s], np.int64), "minus_one_s")]
    graph = helper.make_graph(
        nodes, "slab-test",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["M", 1, "H", "W"])],
        [helper.make_tensor_value_info(OUTPUT_LABELS, TensorProto.UINT8, ["N", "H", "W"]),
         helper.make_tensor_value_info(OUTPUT_PROBABILITIES, TensorProto.FLOAT,
                                       ["N", 2, "H", "W"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=10)
    extra = {} if input_slices is None else {"input_slices": input_slices}
    meta = ModelMetadata(kind="tomogram", class_names=("pore", "solid"), arch="slab-test",
                         paradigm="test", size_multiple=1, normalization_scope="volume",
                         extra=extra)
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    path.write_bytes(model.SerializeToString())
    return Segmenter(path, providers=("cpu",), threads=1)


def _fed(segmentation, slices=slice(None)) -> np.ndarray:
    """The weighted sum the slab model saw in ``slices``, from its solid probability."""
    p = segmentation.solid_probability[slices].astype(np.float64)
    return np.log(p / (1 - p))


def test_slab_indices_repeat_the_end_slices():
    np.testing.assert_array_equal(slab_indices(4, [0, 1, 3], 5),
                                  [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [1, 2, 3, 3, 3]])
    np.testing.assert_array_equal(slab_indices(1, [0], 3), [[0, 0, 0]])
    np.testing.assert_array_equal(slab_indices(6, [2], 1), [[2]])
    volume = np.arange(3 * 2 * 2).reshape(3, 2, 2)
    slabs = slab_stack(volume, [0, 2], 3)
    assert slabs.shape == (2, 3, 2, 2)
    np.testing.assert_array_equal(slabs[0], volume[[0, 0, 1]])
    np.testing.assert_array_equal(slabs[1], volume[[1, 2, 2]])
    with pytest.raises(ValueError, match="odd"):
        slab_indices(4, [0], 2)


@pytest.mark.parametrize("tile", [None, 16])
def test_a_three_slice_model_sees_each_slice_with_its_neighbours(tmp_path, tile):
    rng = np.random.default_rng(0)
    volume = rng.normal(100, 20, (6, 20, 24)).astype(np.float32)
    weights = (0.5, 0.25, -1.0)
    model = build_slab_model(tmp_path / "slab.onnx", weights, input_slices=3)
    assert model_input_slices(model) == 3
    seg = segment_volume(model, volume, min_component_voxels=0, return_probability=True,
                         margin_px=4, tile=tile, batch_size=3)
    v = normalize_image(volume, intensity_range(volume)).astype(np.float64)
    below, above = v[[0, 0, 1, 2, 3, 4]], v[[1, 2, 3, 4, 5, 5]]  # ends repeated
    np.testing.assert_allclose(_fed(seg), 0.5 * below + 0.25 * v - 1.0 * above, atol=2e-4)
    # Tri-planar fusion: along Y and X the slab holds the neighbouring rows / columns.
    fused = segment_volume(model, volume, min_component_voxels=0, return_probability=True,
                           margin_px=0, triplanar=True).solid_probability

    def along(axis):
        moved = np.moveaxis(v, axis, 0)
        n = moved.shape[0]
        lo, hi = moved[np.maximum(np.arange(n) - 1, 0)], moved[np.minimum(np.arange(n) + 1,
                                                                             n - 1)]
        logit = 0.5 * lo + 0.25 * moved - hi
        return np.moveaxis(1 / (1 + np.exp(-logit)), 0, axis)

    np.testing.assert_allclose(fused, (along(0) + along(1) + along(2)) / 3, atol=1e-5)


def test_a_slab_beside_slices_without_data_sees_the_nearest_data_slice(tmp_path):
    # A slice without any data (NaN: the ends of an aligned stack) was the darkest grey in
    # the slab of the data slice beside it, a neighbour no data slice has. It takes the
    # nearest data slice's grey: the slab there is the slab at the end of the data.
    rng = np.random.default_rng(2)
    volume = rng.normal(100, 20, (7, 12, 16)).astype(np.float32)
    volume[[0, 1, 4]] = np.nan
    weights = (0.5, 0.25, -1.0)
    model = build_slab_model(tmp_path / "slab.onnx", weights, input_slices=3)
    seg = segment_volume(model, volume, min_component_voxels=0, return_probability=True,
                         margin_px=0)
    v = normalize_image(volume, intensity_range(volume)).astype(np.float64)
    # slices 0 and 1 are slice 2's grey, slice 4 slice 3's (the lower of two as near)
    data = [2, 3, 5, 6]
    below, above = v[[2, 2, 3, 5]], v[[3, 3, 6, 6]]
    np.testing.assert_allclose(_fed(seg, data), 0.5 * below + 0.25 * v[data] - 1.0 * above,
                               atol=2e-4)
    assert np.all(seg.solid_probability[[0, 1, 4]] == 0)  # no data is never solid


def test_a_one_slice_model_is_fed_single_slices_as_before(tmp_path):
    rng = np.random.default_rng(1)
    volume = rng.normal(100, 20, (5, 16, 16)).astype(np.float32)
    for extra in (None, 1):  # no key, or input_slices 1
        model = build_slab_model(tmp_path / f"one{extra}.onnx", (2.0,), input_slices=extra)
        assert model_input_slices(model) == 1
        seg = segment_volume(model, volume, min_component_voxels=0, return_probability=True)
        v = normalize_image(volume, intensity_range(volume)).astype(np.float64)
        np.testing.assert_allclose(_fed(seg), 2.0 * v, atol=2e-4)
    # A model exported before slabs (the threshold test model) is unchanged.
    threshold = Segmenter(build_threshold_model(tmp_path / "t.onnx", kind="tomogram"),
                          providers=("cpu",), threads=1)
    assert model_input_slices(threshold) == 1


@pytest.mark.parametrize("bad", [2, 0, -3, 1.0, "3", True])
def test_a_bad_input_slices_is_refused_naming_the_model(tmp_path, bad):
    path = build_threshold_model(tmp_path / "bad.onnx", kind="tomogram",
                                 metadata={"extra": {"input_slices": bad}})
    with pytest.raises(VolumeModelError, match="bad.onnx.*input_slices"):
        segment_volume(Segmenter(path, providers=("cpu",), threads=1), np.zeros((4, 8, 8)))


def test_the_service_feeds_a_slab_model_its_neighbours(tmp_path):
    """``nwwatch replay`` (the service's path) segments with a slab model: solid where the
    volume falls along Z, which no single slice shows."""
    import pyarrow.dataset as ds

    from nwwatch.io import read_volume, write_volume_tiff
    from nwwatch.service import replay

    z, _, x = np.indices((6, 24, 24))
    falling = x >= 12
    volume = (100 + np.where(falling, -z, z)).astype(np.float32)
    acq = tmp_path / "acq"
    acq.mkdir()
    write_volume_tiff(acq / "volume.tif", volume)
    # p(solid) = sigmoid(20 * (slice below - slice above)): solid where the volume falls.
    build_slab_model(tmp_path / "slab.onnx", (20.0, 0.0, -20.0), input_slices=3)
    assert replay(acq, tmp_path / "out", kind="tomogram", model=tmp_path / "slab.onnx").done == 1
    row = ds.dataset(tmp_path / "out" / "volumes").to_table().to_pandas().iloc[0]
    mask = read_volume(tmp_path / "out" / row.mask_path).data
    np.testing.assert_array_equal(mask, falling.astype(np.uint8))


def test_a_slab_model_runs_on_the_gpu_path_and_flip_averaged(tmp_path):
    # before: the GPU path padded the N x S slices to a power of two (never a multiple of an
    # odd S > 1: the graph's regrouping failed, every tomogram quarantined), and a
    # flip-averaged Segmenter (evaluate --flip-average) looped over N x S outputs (IndexError)
    from nwwatch.segment.gpushapes import ShapeSessions

    volume = np.random.default_rng(0).integers(0, 255, (4, 20, 24)).astype(np.uint8)
    seg = build_slab_model(tmp_path / "slab.onnx", [0.0, 1.0, 0.0], input_slices=3)
    cpu = segment_volume(seg, volume, min_component_voxels=0, return_probability=True)
    seg.uses_gpu = True  # the GPU path's own calls (I/O binding, sessions per shape), on CPU
    seg._shapes = ShapeSessions(lambda: seg._session, seg._session)
    gpu = segment_volume(seg, volume, min_component_voxels=0, return_probability=True)
    np.testing.assert_array_equal(gpu.solid_probability, cpu.solid_probability)
    flipped = Segmenter(tmp_path / "slab.onnx", providers=("cpu",), threads=1,
                        flip_average=True)
    assert segment_volume(flipped, volume, min_component_voxels=0).mask.shape == volume.shape
