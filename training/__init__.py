"""Training side of nwwatch (needs the ``train`` extra: torch, onnx, onnxscript).

``training.models`` builds the segmentation networks, ``training.export`` writes verified ONNX
files that follow :mod:`nwwatch.segment.contract`, ``training.quantize`` makes verified INT8
variants; the data loading, losses, paradigms and the ``nwwatch train`` command live beside them.
``training`` imports ``nwwatch``; ``nwwatch`` never imports ``training`` or torch.
"""

# First, as every entry point here (python -m training.calibrate, the exporters) imports
# onnxruntime: nwwatch turns ONNX Runtime's telemetry off before that import (nwwatch/__init__).
import nwwatch  # noqa: E402, F401
