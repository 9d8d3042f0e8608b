"""Names of the files a training run writes beside ``MODEL.onnx`` (its checkpoint, its INT8
copy) and the hidden names models are written under before they are verified and renamed,
with the removal of those a killed process left behind. Without torch: ``nwwatch train``
reads these names before its slow imports."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def checkpoint_path(out: str | os.PathLike[str]) -> Path:
    """``MODEL.onnx`` -> ``MODEL.pt`` (same folder)."""
    return Path(out).with_suffix(".pt")


def int8_path(out: str | os.PathLike[str]) -> Path:
    """``MODEL.onnx`` -> ``MODEL-int8.onnx``, where ``--quantize int8`` writes (same folder)."""
    return Path(out).with_name(f"{Path(out).stem}-int8.onnx")


def _process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts: it may be exporting)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temporary_model_path(path: Path) -> Path:
    """The hidden name a model is written under before it is verified and renamed to
    ``path``: ``.NAME.PID-XXXXXXXX.tmp`` (the exporter may add ``.data`` beside it). Leftovers
    of processes that died there (a SIGKILL, a power cut) are removed first; those of a live
    process, which may be exporting to the same path now, are kept."""
    path = Path(path)
    prefix = f".{path.name}."
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            name = entry.name
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):].removesuffix(".data")
            pid, _, tail = rest.partition("-")
            if (not tail.endswith(".tmp") or len(tail) != len("01234567.tmp")
                    or not pid.isdigit() or int(pid) == os.getpid() or _process_alive(int(pid))):
                continue
            with contextlib.suppress(FileNotFoundError):  # another export removed it first
                entry.unlink()
    return path.with_name(f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
