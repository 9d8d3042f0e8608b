"""Damaged copies of a good input file, for the readers' tests: whatever the bytes, a reader
raises an InputError naming the file (the service quarantines it, or waits for it), or reads
frames; any other exception would reach the service as a reader's fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nwwatch.io import InputError, read_frames


def assert_damage_reads_or_raises_input_errors(src: bytes, path: Path, copies: int,
                                               seed: int) -> None:
    """Write ``copies`` damaged versions of ``src`` to ``path`` (1-3 random bytes changed;
    every fourth also cut at a random length) and read each with ``read_frames``."""
    rng = np.random.default_rng(seed)
    for i in range(copies):
        damaged = bytearray(src)
        for _ in range(rng.integers(1, 4)):
            damaged[rng.integers(len(damaged))] = rng.integers(256)
        path.write_bytes(bytes(damaged[:rng.integers(len(damaged))] if i % 4 == 0
                               else damaged))
        try:
            frames = read_frames(path)
        except InputError as exc:
            assert exc.path == path
        else:
            assert frames and all(f.image.ndim == 2 for f in frames)
