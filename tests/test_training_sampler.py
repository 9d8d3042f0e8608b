"""Training batches drawn by worker threads: the same batches and the same training as the
loop drawing them itself; failures and interruptions end the threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from training_helpers import capture_train, make_folder

import training.sampler
from nwwatch.cli import main
from training.augment import augment, random_crop
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.data import load_folder
from training.engine import train
from training.sampler import BatchSampler, BatchStream, SamplerError, run_batches

torch.set_num_threads(1)
TINY = {"widths": [4, 8, 16], "encoder_convs": [1, 1, 1], "decoder_convs": [1, 1]}


def _sampler(tmp_path) -> BatchSampler:
    data = load_folder(make_folder(tmp_path / "data", n=4, size=40, unlabeled=3))
    return BatchSampler(data.labeled, data.unlabeled, crop=32, batch_size=3, unlabeled_size=2)


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("nwwatch-sampler")]


def _draw(sampler, workers, epochs=range(2)):
    with BatchStream(run_batches(sampler, 5, epochs, 3), workers) as stream:
        return list(stream)


def test_workers_draw_the_same_batches_as_the_loop(tmp_path):
    sampler = _sampler(tmp_path)
    alone = _draw(sampler, 0)
    assert len(alone) == 6
    assert not torch.equal(alone[0][0], alone[1][0])  # a batch per step, not one repeated
    for workers in (1, 2):
        drawn = _draw(sampler, workers)
        assert len(drawn) == 6
        for (images, labels, extra), (images0, labels0, extra0) in zip(drawn, alone,
                                                                       strict=True):
            assert torch.equal(images, images0) and torch.equal(labels, labels0)
            assert extra is not None and extra.shape == (2, 1, 32, 32)
            assert torch.equal(extra, extra0)
        assert images.dtype == torch.float32 and labels.dtype == torch.uint8
    # A resumed run starts at a later epoch and draws what the uninterrupted one drew there.
    tail = _draw(sampler, 2, range(1, 2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(tail, alone[3:], strict=True))
    assert not _sampler_threads()


def test_the_batches_are_those_of_the_one_thread_sampler(tmp_path):
    # The draws and their application, split for the workers, give the crops of
    # random_crop + augment on the epoch's generator (the sampler of earlier versions).
    sampler = _sampler(tmp_path)
    rng = np.random.default_rng([5, 0])
    for images, labels, extra in _draw(sampler, 2, range(1)):
        expected = []
        for k in rng.integers(0, len(sampler.items), sampler.batch_size):
            item = sampler.items[k]
            expected.append(augment(*random_crop(item.image, item.label, 32, rng), rng))
        assert np.array_equal(images[:, 0].numpy(), np.stack([i for i, _ in expected]))
        assert np.array_equal(labels.numpy(), np.stack([lab for _, lab in expected]))
        unlabeled = [augment(random_crop(sampler.unlabeled[k], None, 32, rng)[0], None, rng)[0]
                     for k in rng.integers(0, len(sampler.unlabeled), 2)]
        assert np.array_equal(extra[:, 0].numpy(), np.stack(unlabeled))


@pytest.mark.parametrize("where", ["draw_window", "apply_intensity"])
def test_a_failure_in_a_thread_is_raised_where_the_batch_is_asked_for(tmp_path, monkeypatch,
                                                                      where):
    # draw_window: in the drawing thread; apply_intensity: in a worker applying the draws.
    sampler = _sampler(tmp_path)
    real = getattr(training.sampler, where)
    calls = {"n": 0}
    lock = threading.Lock()

    def failing(*args):
        with lock:
            calls["n"] += 1
            if calls["n"] == 8:  # the 8th crop: in batch 1 (5 crops a batch)
                raise MemoryError("no room for the crop")
        return real(*args)

    monkeypatch.setattr(training.sampler, where, failing)
    with pytest.raises(SamplerError, match="failed: MemoryError: no room for the crop"):
        _draw(sampler, 2)
    assert not _sampler_threads()


def test_leaving_the_stream_early_ends_its_threads(tmp_path):
    sampler = _sampler(tmp_path)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the training loop
        with BatchStream(run_batches(sampler, 0, range(1), 2, refit=sampler), 2) as stream:
            for _ in range(3):  # the refit batches after the epoch's 2 are endless
                next(stream)
            assert _sampler_threads()
            raise KeyboardInterrupt
    assert not _sampler_threads()
    with pytest.raises(SamplerError, match="closed"):
        next(stream)


@pytest.mark.parametrize("paradigm", ["supervised", "cct", "contrastive"])
def test_training_with_workers_gives_the_same_weights(tmp_path, paradigm):
    data = make_folder(tmp_path / "data", n=4, size=40, unlabeled=2)
    states, histories = [], []
    for workers in (0, 2):
        config = TrainConfig(out=str(tmp_path / f"w{workers}.onnx"), data=str(data),
                             paradigm=paradigm, epochs=2, steps_per_epoch=2, batch_size=2,
                             crop=32, export=False, model_options=dict(TINY), seed=2,
                             classifier_steps=3, workers=workers, threads=1)
        result = train(config, progress=False)
        saved = load_checkpoint(result.checkpoint)
        assert saved["config"]["workers"] == workers
        states.append(saved["state"])
        histories.append([h["loss"] for h in result.history])
    assert histories[0] == histories[1]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not _sampler_threads()


def test_a_resumed_run_may_use_other_workers_and_trains_the_same(tmp_path):
    data = make_folder(tmp_path / "data", n=4, size=40)
    config = TrainConfig(out=str(tmp_path / "a.onnx"), data=str(data), epochs=3,
                         steps_per_epoch=2, batch_size=2, crop=32, export=False,
                         model_options=dict(TINY), threads=1)
    whole = load_checkpoint(train(config, progress=False).checkpoint)

    def interrupt_after_epoch_1(line):  # echoed once epoch 1's checkpoint is written
        if line.startswith("epoch 1/"):
            raise KeyboardInterrupt

    config.out, config.workers = str(tmp_path / "b.onnx"), 2
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C: the threads end with the run
        train(config, progress=False, echo=interrupt_after_epoch_1)
    assert not _sampler_threads()
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 1
    config.workers = 1
    resumed = load_checkpoint(train(config, resume=True, progress=False,
                                    given=("workers",)).checkpoint)
    assert resumed["config"]["workers"] == 1 and resumed["epoch"] == 3
    assert all(torch.equal(whole["state"][k], resumed["state"][k]) for k in whole["state"])


def test_an_error_in_a_worker_stops_training_with_it(tmp_path, monkeypatch):
    data = make_folder(tmp_path / "data", n=4, size=40)

    def broken(*_):
        raise ValueError("augmentation broke")

    monkeypatch.setattr(training.sampler, "apply_geometric", broken)
    config = TrainConfig(out=str(tmp_path / "x.onnx"), data=str(data), epochs=1,
                         steps_per_epoch=2, batch_size=2, crop=32, export=False,
                         model_options=dict(TINY), workers=2, threads=1)
    with pytest.raises(SamplerError, match="making training batch 0 of epoch 0 failed: "
                                           "ValueError: augmentation broke"):
        train(config, progress=False)
    assert not _sampler_threads()


def test_cli_workers_option(tmp_path, monkeypatch):
    seen = capture_train(monkeypatch)
    data = make_folder(tmp_path / "data", n=2, size=32)
    args = ["train", str(data), "--out", str(tmp_path / "m.onnx")]
    CliRunner().invoke(main, [*args, "--workers", "3"])
    assert seen["config"].workers == 3
    CliRunner().invoke(main, args)
    assert seen["config"].workers == 0
    bad = CliRunner().invoke(main, [*args, "--workers", "-1"])
    assert bad.exit_code == 2 and "--workers" in bad.output


def test_a_contrastive_resume_with_no_epoch_left_still_refits_its_classifier(tmp_path):
    # No epoch to run: the refit continues the last epoch's generator, replayed (it used to
    # need the last epoch's sampler and failed on a negative seed).
    data = make_folder(tmp_path / "data", n=4, size=40)
    config = TrainConfig(out=str(tmp_path / "c.onnx"), data=str(data), paradigm="contrastive",
                         epochs=1, steps_per_epoch=1, batch_size=2, crop=32, export=False,
                         model_options=dict(TINY), classifier_steps=2, threads=1, workers=1)
    train(config, progress=False)
    # a checkpoint saved before the refit (a run stopped between its last epoch and the
    # refit) is refit on resume; one saved after it is not refit again
    from training.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(tmp_path / "c.pt")
    payload["refit_done"] = False
    save_checkpoint(tmp_path / "c.pt", payload)
    lines = []
    again = train(config, resume=True, progress=False, echo=lines.append)
    assert "checkpoint already has 1 epoch; nothing to train" in lines
    assert load_checkpoint(tmp_path / "c.pt")["refit_done"] is True
    assert again.epochs == 1 and not _sampler_threads()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_stopped_in_its_classifier_refit_resumes_to_the_same_weights(tmp_path,
                                                                          monkeypatch, workers):
    # Was: the resumed refit (no epoch left) drew its crops from a generator of its own, not
    # the last epoch's that the uninterrupted refit continues: other classifier weights.
    data = make_folder(tmp_path / "data", n=4, size=40, unlabeled=2)
    config = TrainConfig(out=str(tmp_path / "whole.onnx"), data=str(data),
                         paradigm="contrastive", epochs=2, steps_per_epoch=2, batch_size=2,
                         crop=32, export=False, model_options=dict(TINY), classifier_steps=6,
                         threads=1, workers=workers)
    whole = load_checkpoint(train(config, progress=False).checkpoint)
    assert whole["refit_done"] is True

    drawn = []
    labeled = BatchStream.labeled

    def stopped_in_the_refit(stream):  # a stop (Ctrl-C, SIGTERM) after 3 refit batches
        if len(drawn) == 3:
            raise KeyboardInterrupt
        drawn.append(1)
        return labeled(stream)

    monkeypatch.setattr(BatchStream, "labeled", stopped_in_the_refit)
    config.out = str(tmp_path / "cut.onnx")
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    monkeypatch.setattr(BatchStream, "labeled", labeled)
    cut = load_checkpoint(tmp_path / "cut.pt")
    assert cut["epoch"] == 2 and cut["refit_done"] is False
    resumed = load_checkpoint(train(config, resume=True, progress=False).checkpoint)
    assert resumed["refit_done"] is True
    for key in ("state", "inference_state"):
        assert whole[key].keys() == resumed[key].keys()
        different = [k for k in whole[key] if not torch.equal(whole[key][k], resumed[key][k])]
        assert not different, (key, different)
    assert not _sampler_threads()


def test_the_refit_of_a_resume_with_no_epoch_left_draws_the_uninterrupted_refits_batches(
        tmp_path):
    sampler = _sampler(tmp_path)
    refit = BatchSampler(sampler.items, [], crop=32, batch_size=3)

    def refit_batches(epochs, workers):
        with BatchStream(run_batches(sampler, 5, epochs, 3, refit), workers) as stream:
            for _ in range(3 * len(epochs)):
                next(stream)
            return [stream.labeled() for _ in range(4)]

    whole = refit_batches(range(2), 0)
    for workers in (0, 2):
        resumed = refit_batches(range(2, 2), workers)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                   for a, b in zip(whole, resumed, strict=True))
