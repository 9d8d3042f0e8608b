"""Write the JSON card shipped next to a model (``nwwatch/models/<name>.json``).

The card repeats what the model file holds (hash, size, classes, arch, paradigm, training
command, training-data hash, validation metrics) and adds what only a separate evaluation can
say: scores on fresh labeled folders (``nwwatch evaluate``, with its CPU time per image) and a
status line.

    python -m training.model_card nwwatch/models/insitu-default.onnx \\
        --eval /data/eval40 "40 frames, nwwatch synth insitu --seed 7 (not seen in training)" \\
        --training-data "1200 synthetic 512x512 frames, ..." --status "..." \\
        --out nwwatch/models/insitu-default.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nwwatch.atomic import atomic_write
from nwwatch.evaluate import ModelKindError, evaluate_folder, strict_json
from nwwatch.io.dataset import DatasetLayoutError
from nwwatch.segment.session import ModelLoadError, Segmenter


def build_card(model: Path, evaluations: list[tuple[Path, str]], training_data: str,
               status: str, threads: int = 1) -> dict[str, Any]:
    """The card of ``model``: its metadata plus one evaluation per (folder, description)."""
    segmenter = Segmenter(model, providers=("cpu",), threads=threads)
    meta = segmenter.metadata
    card: dict[str, Any] = {
        "file": model.name, "sha256": segmenter.model_sha256,
        "size_bytes": model.stat().st_size,
        "kind": meta.kind, "class_names": list(meta.class_names), "arch": meta.arch,
        "architecture": meta.extra.get("model_config"), "paradigm": meta.paradigm,
        "size_multiple": meta.size_multiple, "normalization": meta.normalization,
        "working_scale": segmenter.working_scale.to_dict(),
        "training_command": meta.training_command,
        "training_data_sha256": meta.training_data_sha256, "training_data": training_data,
        "validation_metrics": meta.validation_metrics, "fresh_synthetic_evaluations": [],
    }
    for folder, description in evaluations:
        report = evaluate_folder(model, folder, threads=threads).as_dict()
        report["model"] = str(model)
        report["data"] = description
        card["fresh_synthetic_evaluations"].append(report)
    card["status"] = status
    return strict_json(card)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--eval", nargs=2, action="append", default=[],
                        metavar=("FOLDER", "DESCRIPTION"))
    parser.add_argument("--training-data", required=True)
    parser.add_argument("--status", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        card = build_card(args.model, [(Path(f), d) for f, d in args.eval], args.training_data,
                          args.status, args.threads)
    except (DatasetLayoutError, ModelLoadError, ModelKindError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with atomic_write(args.out) as handle:  # a card is never half written
        handle.write((json.dumps(card, indent=1) + "\n").encode())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
