"""The content hash of a file: the one hash of inputs (the ledger's key), models and training
data. Standard library only, so hashing needs neither ONNX Runtime nor OpenCV."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

#: Bytes hashed between two calls of ``file_sha256``'s ``progress`` (64 MiB: a second or
#: less from a local disk, about half a second on 1 GbE).
PROGRESS_BYTES = 64 << 20


def file_sha256(path: str | os.PathLike[str],
                progress: Callable[[], None] | None = None) -> str:
    """The SHA-256 of the bytes of the file at ``path``, as 64 lowercase hex digits, read in
    1 MiB chunks (a file of any size in bounded memory). ``progress`` is called after every
    :data:`PROGRESS_BYTES` read: the service pings its watchdog from it, as a file of tens of
    GB on a share takes minutes to hash. OSError as ``open`` raises it."""
    digest = hashlib.sha256()
    chunk_bytes = 1 << 20
    with open(path, "rb") as handle:
        for k, chunk in enumerate(iter(lambda: handle.read(chunk_bytes), b""), start=1):
            digest.update(chunk)
            if progress is not None and k % (PROGRESS_BYTES // chunk_bytes) == 0:
                progress()
    return digest.hexdigest()
