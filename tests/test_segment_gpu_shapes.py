"""On a GPU provider the Segmenter pads each call's batch to a power of two and keeps a
session per recurring input shape (nwwatch/segment/gpushapes.py). Checked here on the CPU by
taking the GPU code path with the CPU provider underneath: the arrays are those of the plain
one-session path, bit for bit; the sessions stay bounded; two threads get correct results."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest
from onnx_models import build_threshold_model

from nwwatch.segment import gpushapes
from nwwatch.segment.gpushapes import GPU_SESSIONS, ShapeSessions, pad_batch, stable_batch
from nwwatch.segment.session import Segmenter


def _gpu_path(model, monkeypatch) -> Segmenter:
    """A Segmenter on the CPU provider that counts it as a GPU provider, so it takes the GPU
    code path (IO binding, padded batches, sessions per shape)."""
    from nwwatch.segment import session

    with monkeypatch.context() as patch:
        patch.setattr(session, "_GPU_PROVIDERS",
                      session._GPU_PROVIDERS | {"CPUExecutionProvider"})
        return Segmenter(model, providers=("cpu",), threads=1)


def _tiny(tmp_path):
    # A 3x3 convolution, so padding and the batch's neighbours would show if they leaked.
    return build_threshold_model(tmp_path / "m.onnx", smooth=True, size_multiple=32)


def _images(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, shape).astype(np.float32) for shape in shapes]


def _same(a, b):
    assert a.labels.dtype == b.labels.dtype and np.array_equal(a.labels, b.labels)
    if a.probabilities is None:
        assert b.probabilities is None
    else:
        assert a.probabilities.dtype == b.probabilities.dtype
        assert np.array_equal(a.probabilities, b.probabilities)


def test_stable_batch_is_the_next_power_of_two_and_padding_appends_zeros():
    assert [stable_batch(n) for n in range(1, 10)] == [1, 2, 4, 4, 8, 8, 8, 8, 16]
    with pytest.raises(ValueError):
        stable_batch(0)
    feed = np.ones((3, 1, 4, 5), np.float32)
    padded = pad_batch(feed, 4)
    assert padded.shape == (4, 1, 4, 5) and padded.dtype == np.float32
    assert np.array_equal(padded[:3], feed) and not padded[3].any()
    assert pad_batch(feed, 3) is feed


def test_gpu_path_gives_the_plain_arrays_for_every_shape(tmp_path, monkeypatch):
    model = _tiny(tmp_path)
    plain = Segmenter(model, providers=("cpu",), threads=1)
    assert not plain.uses_gpu and plain._shapes is None  # the CPU path is untouched
    gpu = _gpu_path(model, monkeypatch)
    assert gpu.uses_gpu and gpu.provider == plain.provider == "CPUExecutionProvider"
    assert gpu.model_sha256 == plain.model_sha256
    shapes = [(8, 512, 512), (1, 384, 384), (3, 512, 512), (1, 540, 540), (1, 384, 384),
              (8, 512, 512), (5, 512, 512), (1, 540, 540), (2, 100, 70)]
    for i, images in enumerate(_images(shapes)):
        wanted = i % 4 != 3  # labels alone too
        _same(gpu.segment_native(images, wanted), plain.segment_native(images, wanted))
    # Seen twice (5 frames run as 8): a session of their own, least recently used first;
    # 3 frames (run as 4) and 2 x 100 x 70 were seen once and ran on the first session.
    assert gpu._shapes.shapes == [(1, 1, 384, 384), (8, 1, 512, 512), (1, 1, 544, 544)]
    assert gpu._shapes.session_for((1, 1, 384, 384)) is gpu._session  # the first admitted


def test_shipped_model_segment_is_unchanged_through_the_gpu_path(tmp_path, monkeypatch):
    # Whole frames through ``segment``: working scale, whole-droplet second passes (single
    # frames at another shape), merged softmax; batches of 3 (run as 4), 1 and 2 frames.
    from nwwatch import DEFAULT_INSITU_MODEL
    from nwwatch.io import read_frames
    from nwwatch.normalize import normalize_image
    from nwwatch.synth import generate_insitu

    generate_insitu(tmp_path, 3, seed=304, first=37)
    images = np.stack([normalize_image(read_frames(p)[0].image)
                       for p in sorted(tmp_path.glob("frame_*.tif"))])
    plain = Segmenter(DEFAULT_INSITU_MODEL, providers=("cpu",), threads=1)
    gpu = _gpu_path(DEFAULT_INSITU_MODEL, monkeypatch)
    fed: list[tuple[int, ...]] = []
    native = gpu.segment_native
    gpu.segment_native = lambda b, p=True: fed.append(b.shape) or native(b, p)
    for batch in (images, images[:1], images, images[1:]):
        _same(gpu.segment(batch), plain.segment(batch))
    assert len({shape[1:] for shape in fed}) >= 2  # a second pass at another shape ran
    assert gpu._shapes.shapes  # and recurring shapes got sessions of their own


def test_sessions_stay_bounded_and_results_right_beyond_the_bound(tmp_path, monkeypatch):
    model = _tiny(tmp_path)
    plain = Segmenter(model, providers=("cpu",), threads=1)
    gpu = _gpu_path(model, monkeypatch)
    shapes = [(1, 32 * k, 64) for k in range(1, GPU_SESSIONS + 4)]
    images = _images(shapes)
    for _ in range(3):
        for image in images:
            _same(gpu.segment_native(image), plain.segment_native(image))
    assert len(gpu._shapes.shapes) == GPU_SESSIONS
    assert gpu._shapes.shapes[-1] == (1, 1, 32 * (GPU_SESSIONS + 3), 64)


def test_shape_sessions_admit_on_the_second_sighting_and_forget_the_oldest(tmp_path):
    path = str(_tiny(tmp_path))
    made = []

    def make():
        made.append(ort.InferenceSession(path, providers=["CPUExecutionProvider"]))
        return made[-1]

    shared = make()
    made.clear()
    a, b = (1, 1, 8, 8), (2, 1, 8, 8)
    sessions = ShapeSessions(make, shared, capacity=2, remember=3)
    assert sessions.session_for(a) is shared  # seen once: the first session
    assert sessions.session_for(a) is shared and made == []  # admitted: holds the first one
    assert sessions.session_for(b) is shared  # seen once
    own_b = sessions.session_for(b)  # admitted: a session of its own
    assert own_b is not shared and made == [own_b]
    assert sessions.session_for(b) is own_b and sessions.session_for(a) is shared
    assert sessions.shapes == [b, a] and len(made) == 1
    for side in (16, 24, 32, 40):  # seen once each; the oldest beyond 3 forgotten
        assert sessions.session_for((1, 1, side, side)) is shared
    assert sessions.session_for((1, 1, 16, 16)) is shared  # forgotten: seen once again
    own_40 = sessions.session_for((1, 1, 40, 40))  # admitted; b, least recent, dropped
    assert own_40 is not shared and sessions.shapes == [a, (1, 1, 40, 40)]
    own_32 = sessions.session_for((1, 1, 32, 32))  # admitted; a dropped, its session freed
    assert own_32 is not shared and made == [own_b, own_40, own_32]
    assert sessions.shapes == [(1, 1, 40, 40), (1, 1, 32, 32)]
    assert sessions.session_for((1, 1, 16, 16)) is shared  # admitted: holds the freed one
    assert sessions.shapes == [(1, 1, 32, 32), (1, 1, 16, 16)] and len(made) == 3


def test_a_session_that_cannot_be_made_leaves_the_first_one_running_other_shapes(
        tmp_path, caplog):
    path = str(_tiny(tmp_path))
    a, b = (1, 1, 8, 8), (2, 1, 8, 8)

    class OtherProvider:
        def get_providers(self):
            return ["CPUExecutionProvider"]

    calls = []

    def failing():
        calls.append(1)
        raise RuntimeError("out of GPU memory")

    with caplog.at_level(logging.WARNING, logger=gpushapes.__name__):
        for make, reason in ((failing, "out of GPU memory"), (OtherProvider, "got")):
            shared = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            sessions = ShapeSessions(make, shared)
            sessions._provider = "CUDAExecutionProvider"  # as for a CUDA session
            for _ in range(2):
                assert sessions.session_for(a) is shared  # a holds the first session
            for _ in range(4):
                assert sessions.session_for(b) is shared
            assert sessions.shapes == [a] and reason in caplog.text
    assert calls == [1]  # tried once, not again


def test_two_threads_get_the_plain_results(tmp_path, monkeypatch):
    model = _tiny(tmp_path)
    plain = Segmenter(model, providers=("cpu",), threads=1)
    gpu = _gpu_path(model, monkeypatch)
    shapes = [(8, 256, 256), (1, 192, 192), (3, 256, 256), (1, 270, 270), (6, 256, 256)]
    images = _images(shapes, seed=1)
    expected = [plain.segment_native(image) for image in images]

    def work(order):
        for _ in range(4):
            for i in order:
                _same(gpu.segment_native(images[i]), expected[i])
        return True

    orders = [list(range(len(images))), list(reversed(range(len(images))))]
    with ThreadPoolExecutor(2) as pool:
        assert all(pool.map(work, orders))
    assert len(gpu._shapes.shapes) <= GPU_SESSIONS


def test_a_model_file_replaced_in_place_does_not_reach_later_sessions(tmp_path, monkeypatch):
    """A fine-tuned model copied over the configured path while the service runs: the rows
    carry the hash of the file as loaded, so every session made later for a new input shape
    must run that model too, not the file now at the path (it made them from the path)."""
    model = _tiny(tmp_path)
    gpu = _gpu_path(model, monkeypatch)
    loaded_sha = gpu.model_sha256
    plain = Segmenter(model, providers=("cpu",), threads=1)
    a, b = _images([(1, 64, 64), (1, 96, 96)])
    for _ in range(2):  # the first recurring shape takes the first session
        gpu.segment_native(a)
    # the new file: other class centres, so its labels differ on these images
    build_threshold_model(tmp_path / "m.onnx", smooth=True, size_multiple=32,
                          centres=(0.9, 0.0, -0.9))
    other = Segmenter(model, providers=("cpu",), threads=1)
    assert other.model_sha256 != loaded_sha
    assert not np.array_equal(other.segment_native(b).labels, plain.segment_native(b).labels)
    for _ in range(2):  # the second sighting of b makes a session of its own
        out = gpu.segment_native(b)
    assert (1, 1, 96, 96) in gpu._shapes.shapes and gpu.model_sha256 == loaded_sha
    _same(out, plain.segment_native(b))
