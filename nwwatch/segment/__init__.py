"""Segmentation at run time through ONNX Runtime (never torch)."""
