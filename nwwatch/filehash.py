"""The content hash of a file: the one hash of inputs (the ledger's key), models and training
data. Standard library only, so hashing needs neither ONNX Runtime nor OpenCV."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of the bytes of the file at ``path``, as 64 lowercase hex digits, read in
    1 MiB chunks (a file of any size in bounded memory). OSError as ``open`` raises it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
