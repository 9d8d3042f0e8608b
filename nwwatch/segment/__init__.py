"""Segmentation at run time through ONNX Runtime (never torch).

``Segmenter`` (``nwwatch.segment.session``) is exported lazily, so that importing a light
module of this package (``confidence``, ``metrics``, ``contract``) does not load ONNX Runtime.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Segmenter"]


def __getattr__(name: str) -> Any:
    if name == "Segmenter":
        from nwwatch.segment.session import Segmenter

        return Segmenter
    raise AttributeError(f"module 'nwwatch.segment' has no attribute {name!r}")
