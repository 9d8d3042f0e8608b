"""Training batches: random augmented crops, drawn in order from one generator per epoch,
made by the calling thread (``workers=0``) or by worker threads ahead of the loop.

A batch is made in two parts (:mod:`training.augment`): its random draws (which image,
window, symmetry, intensity transforms, noise image), taken from the epoch's generator in
the order of the one-thread sampler, and the array work that applies them. With workers,
the draws of one epoch's batches are still taken one batch after the other (each thread
waits for the previous batch's draws), while the array work and other epochs' batches run
side by side: the batches are those of ``workers=0`` bit for bit, whatever the number.

Threads, not processes: the array work is numpy and OpenCV, which release the GIL for it,
and processes must send every batch back (docs/training.md, "Sampler workers").
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from training.augment import (
    AugmentConfig,
    IntensityDraw,
    LabeledPixels,
    apply_geometric,
    apply_intensity,
    crop_window,
    draw_geometric,
    draw_intensity,
    draw_window,
    padded_shape,
)
from training.data import LabeledImage

#: (images float32 (B, 1, crop, crop), labels uint8 (B, crop, crop), unlabeled images
#:  float32 (U, 1, crop, crop) or None). Labels stay uint8 to the device (an eighth of the
#:  int64 bytes to copy); the loss takes ``labels.long()``.
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


class SamplerError(RuntimeError):
    """A batch could not be drawn (in a worker thread or not); the message names the batch."""


@dataclass(frozen=True)
class CropDraw:
    """The random choices of one crop: the source image, window origin, symmetry and
    intensity transforms (None: not augmented)."""

    image: np.ndarray
    label: np.ndarray | None
    r0: int
    c0: int
    turns: int = 0
    flip: bool = False
    intensity: IntensityDraw | None = None


@dataclass(frozen=True)
class BatchDraw:
    """The draws of one batch; ``name`` says which (for error messages)."""

    name: str
    crop: int
    labeled: list[CropDraw]
    unlabeled: list[CropDraw] | None


class BatchSampler:
    """Random augmented crops of side ``crop`` from labeled items and from unlabeled images.

    ``unlabeled_size``: crops per unlabeled batch (``batch_size`` when None); without
    unlabeled images, no unlabeled batch."""

    def __init__(self, items: list[LabeledImage], unlabeled: list[np.ndarray], crop: int,
                 batch_size: int, unlabeled_size: int | None = None,
                 augmented: bool = True) -> None:
        self.items, self.unlabeled = items, unlabeled
        self.crop, self.batch_size, self.augmented = crop, batch_size, augmented
        self.unlabeled_size = unlabeled_size or batch_size
        self._augment = AugmentConfig()
        self._labeled_pixels: dict[int, LabeledPixels] = {}  # by item index

    def _draw_crop(self, image: np.ndarray, label: np.ndarray | None,
                   labeled: LabeledPixels | None, rng: np.random.Generator) -> CropDraw:
        r0, c0 = draw_window(padded_shape(image.shape, self.crop), labeled, self.crop, rng)
        if not self.augmented:
            return CropDraw(image, label, r0, c0)
        turns, flip = draw_geometric(rng, self._augment)
        return CropDraw(image, label, r0, c0, turns, flip,
                        draw_intensity((self.crop, self.crop), rng, self._augment))

    def draw(self, rng: np.random.Generator, name: str = "batch") -> BatchDraw:
        """The draws of the next batch from ``rng``: the labeled crops, then (with unlabeled
        images) the unlabeled ones. Threads may draw from different generators at once; one
        generator is drawn from by one thread at a time, batch after batch."""
        labeled = []
        for k in rng.integers(0, len(self.items), self.batch_size):
            k = int(k)
            if k not in self._labeled_pixels:
                self._labeled_pixels[k] = LabeledPixels(self.items[k].label)
            labeled.append(self._draw_crop(self.items[k].image, self.items[k].label,
                                           self._labeled_pixels[k], rng))
        unlabeled = None
        if self.unlabeled:
            unlabeled = [self._draw_crop(self.unlabeled[k], None, None, rng)
                         for k in rng.integers(0, len(self.unlabeled), self.unlabeled_size)]
        return BatchDraw(name, self.crop, labeled, unlabeled)


def _apply(draw: CropDraw, crop: int) -> tuple[np.ndarray, np.ndarray | None]:
    image, label = crop_window(draw.image, draw.label, crop, draw.r0, draw.c0)
    if draw.intensity is None:
        return image, label
    image, label = apply_geometric(image, label, draw.turns, draw.flip)
    return apply_intensity(image, draw.intensity), label


def make_batch(draw: BatchDraw) -> Batch:
    """Apply a batch's draws: (images, labels, unlabeled images or None) as in :data:`Batch`."""
    crops = [_apply(crop, draw.crop) for crop in draw.labeled]
    images = torch.from_numpy(np.stack([image for image, _ in crops]))[:, None]
    labels = torch.from_numpy(np.stack([label for _, label in crops]))
    extra = None
    if draw.unlabeled is not None:
        extra = torch.from_numpy(np.stack([_apply(crop, draw.crop)[0]
                                           for crop in draw.unlabeled]))[:, None]
    return images, labels, extra


@dataclass(frozen=True)
class BatchSpec:
    """One batch to make: ``sampler`` draws it from the generator ``default_rng(stream)``
    after the batches before it with the same ``stream``; ``name`` says which batch."""

    name: str
    sampler: BatchSampler
    stream: tuple[int, ...]
    #: (sampler, n): before this stream's first batch, its generator takes the draws of
    #: ``n`` batches of ``sampler`` (those an earlier run drew from it; nothing is made)
    replay: tuple[BatchSampler, int] | None = None


def run_batches(sampler: BatchSampler, seed: int, epochs: range, steps: int,
                refit: BatchSampler | None = None) -> Iterator[BatchSpec]:
    """A run's batches: ``steps`` per epoch from ``default_rng([seed, epoch])`` (so a resumed
    run draws the same crops as an uninterrupted one), then, with ``refit``, endless
    batches of ``refit`` (a sampler without unlabeled images) continuing the last epoch's
    generator (the contrastive classifier refit). With no epoch left to run (a resume of a
    run stopped after its last epoch, ``epochs`` empty from there), the refit continues
    epoch ``epochs.start - 1``'s generator after that epoch's ``steps`` batches of
    ``sampler``, as the uninterrupted run's refit does; ``[seed, 2**32 - 1]`` when there is
    no epoch before either."""
    stream = None
    for epoch in epochs:
        stream = (seed, epoch)
        for step in range(steps):
            yield BatchSpec(f"batch {step} of epoch {epoch}", sampler, stream)
    if refit is None:
        return
    replay = None
    if stream is None and epochs.start > 0:
        stream, replay = (seed, epochs.start - 1), (sampler, steps)
    elif stream is None:
        stream = (seed, 2**32 - 1)
    for step in itertools.count():
        yield BatchSpec(f"refit batch {step}", refit, stream, replay if step == 0 else None)


class BatchStream:
    """The batches of ``specs``, in order. ``workers=0``: each is made when asked for, in
    the calling thread. ``workers=N``: N threads make them, up to ``2 N`` batches ahead (a
    bounded queue). Batches of one generator take their draws one after the other (a
    thread waits for the previous batch's draws, not for its array work); batches of
    different generators (epochs) are made side by side. A failure raises
    :class:`SamplerError`, naming the batch, where that batch is asked for. Use as a context
    manager: leaving it (at the end, by an exception or Ctrl-C) cancels the batches not
    started and waits for those being made (one per thread at most).
    """

    def __init__(self, specs: Iterator[BatchSpec], workers: int = 0) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, not {workers}")
        self._specs, self.workers, self._closed = specs, workers, False
        # The generator of the current stream, and the event its latest submitted batch
        # sets once it has taken its draws (None: none of this stream submitted yet).
        self._stream: tuple[int, ...] | None = None
        self._rng: np.random.Generator | None = None
        self._drawn: threading.Event | None = None
        self._pending: collections.deque[tuple[Future[Batch], threading.Event]] = \
            collections.deque()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="nwwatch-sampler") \
            if workers else None
        for _ in range(2 * workers):
            if not self._submit():
                break

    def _generator(self, spec: BatchSpec) -> np.random.Generator:
        if spec.stream != self._stream:
            self._stream, self._drawn = spec.stream, None
            self._rng = np.random.default_rng(list(spec.stream))
            if spec.replay is not None:
                # the draws alone (no array work): the generator's state after those batches
                sampler, count = spec.replay
                for k in range(count):
                    sampler.draw(self._rng, f"replayed batch {k} of {spec.name}")
        assert self._rng is not None
        return self._rng

    def _make(self, spec: BatchSpec, rng: np.random.Generator,
              previous: threading.Event | None, drawn: threading.Event | None) -> Batch | None:
        try:
            try:
                if previous is not None:
                    previous.wait()  # the generator is in its state after the previous batch
                if self._closed:
                    return None
                draw = spec.sampler.draw(rng, spec.name)
            finally:
                if drawn is not None:
                    drawn.set()  # the next batch of this generator may draw (or give up)
            return make_batch(draw)
        except Exception as exc:
            raise SamplerError(f"making training {spec.name} failed: "
                               f"{type(exc).__name__}: {exc}") from exc

    def _submit(self) -> bool:
        assert self._pool is not None
        spec = next(self._specs, None)
        if spec is None:
            return False
        rng = self._generator(spec)
        previous, drawn = self._drawn, threading.Event()
        self._drawn = drawn
        self._pending.append((self._pool.submit(self._make, spec, rng, previous, drawn), drawn))
        return True

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self._closed:
            raise SamplerError("this batch stream is closed")
        if self._pool is None:
            spec = next(self._specs)
            batch = self._make(spec, self._generator(spec), None, None)
        else:
            if not self._pending:
                raise StopIteration
            # Left in the queue until made, so that close() (Ctrl-C) still finds it.
            batch = self._pending[0][0].result()
            self._pending.popleft()
            self._submit()
        assert batch is not None
        return batch

    def labeled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch's images and int64 labels (the contrastive refit's
        ``sample_batch``)."""
        images, labels, _ = next(self)
        return images, labels.long()

    def close(self) -> None:
        """Cancel the batches not started; wait for the threads to finish theirs."""
        self._closed = True
        if self._pool is not None:
            for future, drawn in self._pending:
                future.cancel()
                drawn.set()  # wakes a thread waiting for a cancelled batch's draws
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
        self._pool = None

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
