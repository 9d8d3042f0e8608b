"""Working scale: frames resized into the model's trained object scale, results in frame
pixels; the scale read from metadata and derived from training labels."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from onnx_models import INSITU_GREY, build_threshold_model

from nwwatch import DEFAULT_INSITU_MODEL
from nwwatch.classes import BACKGROUND, DROPLET, NANOWIRE
from nwwatch.normalize import normalize_image
from nwwatch.segment.scale import (
    DEFAULT_FRAME_PX,
    WorkingScale,
    largest_droplet_radius_px,
    scale_from_labels,
)
from nwwatch.segment.session import ModelLoadError, Segmenter


def _painted(size: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frame painted with the threshold model's class greys: a wire along the bottom
    half, a droplet disk on its end; and its exact labels."""
    labels = np.zeros((size, size), np.uint8)
    rows, cols = np.mgrid[:size, :size]
    centre = size / 2
    labels[(rows > centre) & (np.abs(cols - centre) < 0.6 * radius)] = NANOWIRE
    labels[np.hypot(rows - centre, cols - centre) <= radius] = DROPLET
    raw = np.vectorize(INSITU_GREY.get)(labels).astype(np.uint8)
    return raw, labels


def _near_boundary(labels: np.ndarray, px: int) -> np.ndarray:
    grad = cv2.morphologyEx(labels, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    return cv2.dilate(grad.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)) > 0


def test_large_frame_is_segmented_at_working_size_and_answered_in_frame_pixels(tmp_path):
    model = build_threshold_model(tmp_path / "m.onnx")
    segmenter = Segmenter(model, providers=("cpu",), threads=1)
    assert segmenter.working_scale == WorkingScale(
        DEFAULT_FRAME_PX, whole_droplet_radius_px=0.375 * DEFAULT_FRAME_PX)
    shapes = []
    native = segmenter.segment_native
    segmenter.segment_native = lambda b, p=True: shapes.append(b.shape) or native(b, p)
    raw, truth = _painted(1024, 200.0)
    out = segmenter.segment(normalize_image(raw))
    assert shapes == [(1, 512, 512)]
    assert out.labels.shape == (1, 1024, 1024)
    assert out.probabilities.shape == (1, 3, 1024, 1024)
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1.0, atol=1e-5)
    far = ~_near_boundary(truth, 3)
    assert np.array_equal(out.labels[0][far], truth[far])
    radius = largest_droplet_radius_px(out.labels[0])
    assert abs(radius - largest_droplet_radius_px(truth)) < 1.0


def test_small_frames_run_as_they_are(tmp_path):
    segmenter = Segmenter(build_threshold_model(tmp_path / "m.onnx"), providers=("cpu",))
    raw, truth = _painted(200, 40.0)
    out = segmenter.segment(normalize_image(raw), probabilities=False)
    assert out.probabilities is None
    assert np.array_equal(out.labels[0], truth)


def test_droplet_outside_the_trained_range_gets_a_second_pass_at_its_scale(tmp_path):
    meta = {"extra": {"working_scale": {"frame_px": 512, "droplet_radius_px": [60.0, 120.0]}}}
    segmenter = Segmenter(build_threshold_model(tmp_path / "m.onnx", metadata=meta),
                          providers=("cpu",), threads=1)
    assert segmenter.working_scale == WorkingScale(512, (60.0, 120.0), None, 192.0)
    shapes = []
    native = segmenter.segment_native
    segmenter.segment_native = lambda b, p=True: shapes.append(b.shape) or native(b, p)
    raw, truth = _painted(256, 20.0)  # equivalent radius ~ 20 px < 60: scale up 3x
    out = segmenter.segment(normalize_image(raw))
    assert shapes == [(1, 256, 256), (1, 768, 768)]
    far = ~_near_boundary(truth, 2)
    assert np.array_equal(out.labels[0][far], truth[far])
    shapes.clear()
    raw, _ = _painted(256, 80.0)  # inside the range: one pass
    segmenter.segment(normalize_image(raw))
    assert shapes == [(1, 256, 256)]


def _spy_shapes(segmenter: Segmenter) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    native = segmenter.segment_native
    segmenter.segment_native = lambda b, p=True: shapes.append(b.shape) or native(b, p)
    return shapes


def test_droplet_too_large_to_have_been_seen_whole_gets_a_smaller_second_pass(tmp_path):
    # Trained on 256 px crops: droplets up to 0.375 * 256 = 96 px radius were seen whole.
    meta = {"extra": {"working_scale": {"frame_px": 512, "droplet_radius_px": [10.0, 200.0],
                                        "min_frame_px": 256}}}
    segmenter = Segmenter(build_threshold_model(tmp_path / "m.onnx", metadata=meta,
                                                size_multiple=32), providers=("cpu",), threads=1)
    assert segmenter.working_scale.whole_droplet_radius_px == 96.0
    shapes = _spy_shapes(segmenter)
    raw, truth = _painted(512, 150.0)
    out = segmenter.segment(normalize_image(raw))
    # 0.75 of the frame, a multiple of the model's 32 px: no padded border
    assert shapes == [(1, 512, 512), (1, 384, 384)]
    assert out.labels.shape == (1, 512, 512)
    far = ~_near_boundary(truth, 3)
    assert np.array_equal(out.labels[0][far], truth[far])
    # A normal frame in the same batch: one pass for it, the second only for the large one.
    shapes.clear()
    normal, normal_truth = _painted(512, 60.0)
    both = segmenter.segment(np.stack([normalize_image(normal), normalize_image(raw)]))
    assert shapes == [(2, 512, 512), (1, 384, 384)]
    assert np.array_equal(both.labels[0], normal_truth)
    assert np.array_equal(both.labels[1], out.labels[0])
    np.testing.assert_array_equal(both.probabilities[1], out.probabilities[0])


def _one_hot(labels: np.ndarray) -> np.ndarray:
    return np.stack([(labels == k).astype(np.float32) for k in range(3)])


def test_keep_fine_boundaries_takes_the_layout_from_the_coarse_pass():
    from nwwatch.segment.scale import keep_fine_boundaries
    from nwwatch.segment.session import class_argmax

    _, truth = _painted(200, 50.0)
    fine = truth.copy()
    fine[10:40, 10:40] = DROPLET  # a wrong region far from every true boundary
    _, coarse = _painted(200, 53.0)  # right layout, droplet edge 3 px out
    out = keep_fine_boundaries(_one_hot(fine), _one_hot(coarse), fine, coarse, band_px=4)
    assert out.shape == (3, 200, 200)
    assert np.array_equal(class_argmax(out[None])[0], truth)
    # A band narrower than the coarse pass's error leaves part of that error.
    narrow = keep_fine_boundaries(_one_hot(fine), _one_hot(coarse), fine, coarse, band_px=1)
    assert not np.array_equal(class_argmax(narrow[None])[0], truth)


def _edges(labels: np.ndarray) -> np.ndarray:
    return cv2.morphologyEx(labels, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0


@pytest.mark.parametrize("coarse_radius", [52.0, 58.0, 64.0])
def test_keep_fine_boundaries_puts_no_boundary_on_the_band_edge(coarse_radius):
    from nwwatch.segment.scale import keep_fine_boundaries
    from nwwatch.segment.session import class_argmax

    _, fine = _painted(200, 50.0)
    fine[150:170, 20:40] = DROPLET  # a wrong region of the fine pass, far from the band
    _, coarse = _painted(200, coarse_radius)  # the passes disagree by 2, 8 or 14 px
    out = class_argmax(keep_fine_boundaries(_one_hot(fine), _one_hot(coarse), fine, coarse,
                                            band_px=4)[None])[0]
    # Every class boundary is one of the passes' own, none runs along the band's edge.
    assert not (_edges(out) & ~_edges(fine) & ~_edges(coarse)).any()
    # Within the band the first pass's droplet edge; beyond it the smaller pass's; the
    # first pass's wrong region, far from the smaller pass's boundaries, is dropped.
    expected = fine.copy() if coarse_radius - 50.0 <= 4 else coarse.copy()
    expected[150:170, 20:40] = coarse[150:170, 20:40]
    assert np.array_equal(out, expected)


def _sure(labels: np.ndarray, top: float) -> np.ndarray:
    """float32 (3, H, W): ``top`` on each pixel's class of ``labels``, the rest split evenly
    (margin ``top - (1 - top) / 2`` everywhere)."""
    probs = np.full((3, *labels.shape), (1.0 - top) / 2, np.float32)
    for k in range(3):
        probs[k][labels == k] = top
    return probs


@pytest.mark.parametrize("disagree", [False, True])
def test_margin_is_capped_where_the_passes_disagree_beyond_the_band(tmp_path, disagree):
    from nwwatch.segment.confidence import band_margin
    from nwwatch.segment.scale import (
        BOUNDARY_BAND_PX,
        CAP_DISAGREEMENT_FRACTION,
        passes_disagreement,
    )
    from nwwatch.segment.session import Segmentation

    meta = {"extra": {"working_scale": {"frame_px": 512, "min_frame_px": 256}}}  # whole: 96 px
    segmenter = Segmenter(build_threshold_model(tmp_path / "m.onnx", metadata=meta),
                          providers=("cpu",), threads=1)
    _, fine = _painted(512, 150.0)
    _, coarse = _painted(512, 153.0)  # same layout, edges 2-3 px apart: inside the band
    if disagree:
        fine[20:80, 20:80] = DROPLET  # a region only the first pass sees, far from every edge
    passes = {True: (fine, 0.95), False: (coarse, 0.7)}  # the smaller pass is less sure

    def constructed(batch, factor):
        labels, top = passes[factor == 1.0]
        return Segmentation(labels=labels[None].copy(), probabilities=_sure(labels, top)[None])

    segmenter._segment_at = constructed
    out = segmenter.segment(np.zeros((512, 512), np.float32))
    confidence = band_margin(out.probabilities[0], out.labels[0])
    first, smaller = (band_margin(_sure(lab, top), lab) for lab, top in passes.values())
    objects = np.count_nonzero((fine != BACKGROUND) | (coarse != BACKGROUND))
    disagreement = passes_disagreement(fine, coarse, BOUNDARY_BAND_PX)
    assert disagreement == pytest.approx(60 * 60 / objects if disagree else 0.0)
    assert (disagreement > CAP_DISAGREEMENT_FRACTION) == disagree
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1.0, atol=1e-5)
    if disagree:
        # The merged frame keeps the first pass's sure boundaries, but is no surer than the
        # smaller pass.
        assert confidence == pytest.approx(smaller, rel=1e-4)
        assert not (out.labels[0][20:80, 20:80] == DROPLET).any()
    else:
        # Same layout: the merged softmax's own margins (the first pass's, on its edges).
        assert confidence == pytest.approx(first, rel=1e-4)
        assert confidence > smaller + 0.3


def test_cap_confidence_keeps_labels_and_the_half_probability_sides():
    from nwwatch.segment.confidence import band_margin, cap_confidence
    from nwwatch.segment.session import class_argmax

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (3, 64, 64)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=0)
    labels = class_argmax(probs[None])[0]
    before = band_margin(probs, labels)
    capped = cap_confidence(probs, labels, before / 2)
    assert band_margin(capped, labels) == pytest.approx(before / 2, rel=1e-4)
    assert np.array_equal(class_argmax(capped[None])[0], labels)
    assert np.array_equal(capped > 0.5, probs > 0.5)
    np.testing.assert_allclose(capped.sum(axis=0), 1.0, atol=1e-5)
    assert cap_confidence(probs, labels, 1.0) is probs


def test_whole_droplet_rule_compares_working_pixels(tmp_path):
    # A 1024 px frame runs at 512; its 150 px droplet is 75 px there, inside 96: one pass.
    meta = {"extra": {"working_scale": {"frame_px": 512, "min_frame_px": 256}}}
    segmenter = Segmenter(build_threshold_model(tmp_path / "m.onnx", metadata=meta),
                          providers=("cpu",), threads=1)
    shapes = _spy_shapes(segmenter)
    raw, _ = _painted(1024, 150.0)
    segmenter.segment(normalize_image(raw))
    assert shapes == [(1, 512, 512)]


def test_whole_droplet_radius_is_read_written_and_defaulted():
    scale = WorkingScale(512, (14.0, 200.0), 384, 120.0)
    assert WorkingScale.from_metadata("insitu", {"working_scale": scale.to_dict()}) == scale
    # Files without the key: 3/8 of the training crop, else of the frame; tomograms never.
    crop_only = {"working_scale": {"frame_px": 512, "min_frame_px": 384}}
    assert WorkingScale.from_metadata("insitu", crop_only).whole_droplet_radius_px == 144.0
    frame_only = {"working_scale": {"frame_px": 400}}
    assert WorkingScale.from_metadata("insitu", frame_only).whole_droplet_radius_px == 150.0
    assert WorkingScale.from_metadata("tomogram", frame_only).whole_droplet_radius_px is None
    off = {"working_scale": {"frame_px": 512, "min_frame_px": 384,
                             "whole_droplet_radius_px": None}}
    assert WorkingScale.from_metadata("insitu", off).whole_droplet_radius_px is None
    assert scale_from_labels([np.zeros((512, 512), np.uint8)], 384).whole_droplet_radius_px == 144.0
    assert scale.droplet_factor(100.0, 512, 512, 1.0, 64) is None
    assert scale.droplet_factor(130.0, 512, 512, 1.0, 64) == 0.75
    assert scale.droplet_factor(130.0, 500, 300, 1.0, 64) == 384 / 500
    # A frame already at the training crop (scaled up to it) is not shrunk below it.
    assert scale.droplet_factor(150.0, 119, 119, 384 / 119, 64) is None
    assert WorkingScale(512, None, 256, 120.0).droplet_factor(150.0, 512, 512, 1.0, 64) == 0.75


@pytest.mark.parametrize("bad", [{"frame_px": 10}, {"frame_px": "512"}, [512],
                                 {"frame_px": 512, "droplet_radius_px": [50, 20]},
                                 {"frame_px": 512, "min_frame_px": 1024},
                                 {"frame_px": 512, "whole_droplet_radius_px": -3},
                                 {"frame_px": 512, "whole_droplet_radius_px": "big"},
                                 {"frame_px": 512, "whole_droplet_radius_px": math.nan},
                                 {"frame_px": 512, "whole_droplet_radius_px": math.inf}])
def test_bad_working_scale_is_refused_with_the_key(tmp_path, bad):
    model = build_threshold_model(tmp_path / "m.onnx", metadata={"extra": {"working_scale": bad}})
    with pytest.raises(ModelLoadError, match="working_scale"):
        Segmenter(model, providers=("cpu",))


def test_tomogram_model_may_not_set_the_whole_droplet_radius(tmp_path):
    # The rule reads class 2 as the droplet; a tomogram model's class 2 is not one.
    meta = {"extra": {"working_scale": {"frame_px": 512, "whole_droplet_radius_px": 100.0}}}
    model = build_threshold_model(tmp_path / "t.onnx", kind="tomogram", metadata=meta)
    with pytest.raises(ModelLoadError, match="whole_droplet_radius_px.*in-situ"):
        Segmenter(model, providers=("cpu",))


def test_a_droplet_speck_on_a_large_frame_gets_no_large_pass(tmp_path):
    meta = {"extra": {"working_scale": {"frame_px": 512, "droplet_radius_px": [14.0, 200.0],
                                        "min_frame_px": 384}}}
    segmenter = Segmenter(build_threshold_model(tmp_path / "m.onnx", metadata=meta,
                                                size_multiple=64), providers=("cpu",), threads=1)
    shapes = _spy_shapes(segmenter)
    raw = np.full((2048, 2048), INSITU_GREY[BACKGROUND], np.uint8)
    raw[1024:, 1004:1044] = INSITU_GREY[NANOWIRE]
    rows, cols = np.mgrid[:2048, :2048]
    # A speck of droplet grey, 50 frame px = 3 working px: below MIN_DROPLET_AREA_PX.
    raw[np.hypot(rows - 300, cols - 300) <= 4.0] = INSITU_GREY[DROPLET]
    segmenter.segment(normalize_image(raw))
    assert shapes == [(1, 512, 512)]
    # A small droplet that is trusted: the pass asked for is at most 4x the working scale.
    scale = segmenter.working_scale
    assert scale.droplet_factor(2.0, 2048, 2048, 0.25, 64) == 1.0
    assert scale.droplet_factor(2.0, 4096, 4096, 0.125, 64) == 0.5


def test_frames_below_min_frame_px_are_scaled_up_to_it():
    scale = WorkingScale(512, None, 384)
    assert scale.size_factor(128, 100) == 3.0
    assert scale.size_factor(64, 50) == 4.0  # MAX_UPSCALE
    assert scale.size_factor(400, 300) == 1.0
    assert scale.size_factor(2048, 1024) == 0.25
    assert WorkingScale.from_metadata("insitu", {"working_scale": scale.to_dict()}) == scale


def test_tomogram_models_are_never_resized(tmp_path):
    segmenter = Segmenter(build_threshold_model(tmp_path / "t.onnx", kind="tomogram"),
                          providers=("cpu",))
    assert segmenter.working_scale.size_factor(4096, 4096) == 1.0


def test_scale_from_labels_recovers_frame_size_and_droplet_radii():
    labels = []
    rng = np.random.default_rng(0)
    radii = rng.uniform(20.0, 90.0, 40)
    for r in radii:
        lab = np.full((300, 400), BACKGROUND, np.uint8)
        cv2.circle(lab, (200, 150), int(round(r)), DROPLET, -1)
        cv2.circle(lab, (20, 20), 3, DROPLET, -1)  # a smaller stray droplet is ignored
        labels.append(lab)
    scale = scale_from_labels(labels)
    assert scale.frame_px == 400
    low, high = scale.droplet_radius_px
    expected = np.percentile(np.rint(radii), (1, 99))
    assert math.isclose(low, expected[0], abs_tol=1.0)
    assert math.isclose(high, expected[1], abs_tol=1.0)


def test_flip_average_removes_a_direction_bias(tmp_path):
    shift = np.zeros((3, 3), np.float32)
    shift[1, 2] = 1.0  # the model sees each pixel's right neighbour: labels move left
    model = build_threshold_model(tmp_path / "m.onnx", kernel=shift)
    raw, truth = _painted(96, 20.0)
    image = normalize_image(raw)
    plain = Segmenter(model, providers=("cpu",)).segment(image)
    averaged = Segmenter(model, providers=("cpu",), flip_average=True).segment(image)
    mirrored = Segmenter(model, providers=("cpu",), flip_average=True).segment(image[:, ::-1])
    assert not np.array_equal(plain.labels[0], truth)
    np.testing.assert_allclose(averaged.probabilities[0][:, :, ::-1], mirrored.probabilities[0],
                               atol=1e-5)
    assert (averaged.labels[0] != truth).sum() < (plain.labels[0] != truth).sum()


def test_class_argmax_equals_numpy_argmax_including_ties():
    from nwwatch.segment.session import class_argmax

    rng = np.random.default_rng(0)
    probs = rng.random((3, 4, 17, 23)).astype(np.float32)
    probs[:, 2] = np.where(rng.random((3, 17, 23)) < 0.3, probs[:, 1], probs[:, 2])  # ties
    probs[0, :, 0, 0] = 0.25  # all equal: the first class, as np.argmax
    expected = np.argmax(probs, axis=1).astype(np.uint8)
    got = class_argmax(probs)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)


@pytest.mark.skipif(not DEFAULT_INSITU_MODEL.is_file(), reason="no shipped default model")
def test_a_second_pass_frame_computes_the_boundary_band_once_with_the_same_results(
        tmp_path, monkeypatch):
    """Seed 304 frame 37 (512 px) gets the whole-droplet second pass and the confidence cap
    with the shipped model. The runtime computes the smaller pass's boundary band once and
    gives it to both steps; labels, softmax, confidence and the measurement row are bit for
    bit those of each step computing its own band."""
    import nwwatch.segment.scale as scale
    import nwwatch.segment.session as session
    from nwwatch.io import read_frames
    from nwwatch.measure import measure_contact_angle
    from nwwatch.segment.confidence import frame_confidence
    from nwwatch.synth import generate_insitu

    generate_insitu(tmp_path, 1, seed=304, first=37)
    frame = read_frames(tmp_path / "frame_00037.tif")[0]
    segmenter = Segmenter(DEFAULT_INSITU_MODEL, providers=("cpu",), threads=1)
    calls: list[str] = []

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)
        return wrapper

    def results():
        calls.clear()
        out = segmenter.segment(normalize_image(frame.image))
        labels, probs = out.labels[0], out.probabilities[0]
        row = measure_contact_angle(labels, probs[DROPLET], frame.pixel_size_nm,
                                    image=frame.image).as_row()
        return labels, probs, frame_confidence(probs, labels, True), row, list(calls)

    for name in ("coarse_band", "keep_fine_boundaries", "cap_confidence"):
        monkeypatch.setattr(session, name, counted(name, getattr(session, name)))
    # The steps' own band, computed only when none is given.
    monkeypatch.setattr(scale, "coarse_band", counted("step's own band", scale.coarse_band))
    labels, probs, confidence, row, once = results()
    assert once.count("coarse_band") == 1 and "step's own band" not in once
    assert {"keep_fine_boundaries", "cap_confidence"} <= set(once)  # both steps ran

    # Each step computing its own band (no ``band`` given), as before.
    for name in ("keep_fine_boundaries", "passes_disagreement"):
        original = getattr(session, name)
        monkeypatch.setattr(session, name, lambda *a, _f=original, band=None, **k: _f(*a, **k))
    labels_2, probs_2, confidence_2, row_2, twice = results()
    assert twice.count("step's own band") == 2
    np.testing.assert_array_equal(labels, labels_2)
    assert probs.dtype == probs_2.dtype and np.array_equal(probs, probs_2)
    assert confidence == confidence_2
    assert row.keys() == row_2.keys()
    assert all(row[k] == row_2[k] or (row[k] != row[k] and row_2[k] != row_2[k]) for k in row)
