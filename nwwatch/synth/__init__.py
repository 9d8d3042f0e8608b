"""Synthetic acquisitions with exact ground truth.

- :func:`generate_insitu` / :func:`render_insitu_frame` / :func:`sample_frame_params`:
  in-situ TEM frames and growth videos of a nanowire with its catalyst droplet
  (:mod:`nwwatch.synth.insitu`).
- :func:`generate_tomogram`: synthetic tomograms (:mod:`nwwatch.synth.tomogram`).

Names load on first use so that importing one generator never imports the other.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "generate_insitu": "nwwatch.synth.insitu",
    "render_insitu_frame": "nwwatch.synth.insitu",
    "sample_frame_params": "nwwatch.synth.params",
    "video_frame_params": "nwwatch.synth.video",
    "FrameParams": "nwwatch.synth.params",
    "generate_tomogram": "nwwatch.synth.tomogram",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nwwatch.synth' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
