"""The nwwatch metadata of an ONNX model file, read with ``onnx`` (no inference session, the
weights left unread): for the training commands that look at a model before using it."""

from __future__ import annotations

import os

from nwwatch.segment.contract import ModelMetadata, ModelMetadataError, read_metadata


def model_file_metadata(path: str | os.PathLike[str]) -> ModelMetadata:
    """The :class:`ModelMetadata` of the ONNX file ``path``. Raises :class:`ModelMetadataError`
    naming the file when it cannot be read as ONNX, has no nwwatch metadata or invalid metadata
    (:func:`nwwatch.segment.contract.read_metadata`); ``OSError`` when it cannot be opened."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except OSError:
        raise
    except Exception as exc:  # protobuf raises its own types for a file of another kind
        raise ModelMetadataError(f"{path}: not a readable ONNX model ({exc})") from None
    return read_metadata(proto.metadata_props, path)
