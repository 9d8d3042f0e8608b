"""Benchmarks of nwwatch (python -m bench.NAME): their results lie in bench/results."""

# before any benchmark imports onnxruntime: nwwatch turns its telemetry off (nwwatch/__init__)
import nwwatch  # noqa: F401
