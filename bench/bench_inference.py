"""CPU inference latency of every architecture: ONNX Runtime vs torch eager, fp32 and INT8.

Each registered architecture is built with its default configuration (random weights: the
latency does not depend on them), exported with :func:`training.export.export_onnx`
(verified) and timed on one 512x512 frame:

- ``ort_ms``: wall time of :meth:`Segmenter.segment` (pad, run, crop, labels and
  probabilities), ONNX Runtime CPU with ``--threads`` intra-op threads; median of the runs.
- ``ort_labels_ms``: the bare session asked for ``labels`` only.
- ``ort_cpu1_ms``: process CPU time of one run with a single thread (median); unlike wall time
  it barely moves when other processes share the cores, so it ranks designs reliably on a
  loaded machine.
- ``torch_ms``: torch eager (same thread count, ``no_grad``) of the same wrapped network;
  ``torch_cpu1_ms`` its single-thread CPU time (torch's OpenMP threads stall badly when the
  cores are shared, so only this column compares fairly with ``ort_cpu1_ms`` on a busy machine).
- the INT8 rows: :func:`training.quantize.quantize_int8`, calibrated on synthetic frames.
  With random weights the label agreement is meaningless, so the INT8 model is kept whatever
  its agreement (``min_agreement=0``) and only its speed is reported.

Usage::

    python -m bench.bench_inference                      # all architectures, table to stdout
    python -m bench.bench_inference --arch unet --int8 --repeats 30 --json bench/out/inf.json
    python -m bench.bench_inference --model nwwatch/models/insitu-default.onnx --json J

``--model PATH`` times existing ONNX files (e.g. the shipped model, trained weights) instead of
building the architectures; their rows have ``arch`` ``file:NAME`` and no torch columns.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from nwwatch.classes import BACKGROUND, DROPLET, NANOWIRE
from nwwatch.normalize import normalize_image
from nwwatch.segment.contract import INPUT_NAME, OUTPUT_LABELS, ModelMetadata
from nwwatch.segment.session import Segmenter
from training.export import ContractWrapper, export_onnx
from training.models import MODELS, build_model
from training.quantize import quantize_int8

CLASS_NAMES = {BACKGROUND: "background", NANOWIRE: "nanowire", DROPLET: "droplet"}


def synthetic_frames(n: int, size: int, seed: int = 7) -> np.ndarray:
    """Normalised synthetic in-situ frames float32 (n, size, size) for INT8 calibration."""
    from nwwatch.synth.insitu import frame_params, render_insitu_frame

    frames = []
    for i in range(n):
        image, _, _ = render_insitu_frame(frame_params(seed, i, size), np.random.default_rng(i))
        frames.append(normalize_image(image))
    return np.stack(frames)


def _median_ms(fn, repeats: int, clock=time.perf_counter) -> float:
    fn()
    fn()  # warm-up: allocations, thread pool, kernel selection
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return 1e3 * statistics.median(times)


def time_onnx(path: Path, image: np.ndarray, threads: int, repeats: int) -> dict[str, float]:
    segmenter = Segmenter(path, providers=("cpu",), threads=threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    single = ort.SessionOptions()
    single.intra_op_num_threads, single.inter_op_num_threads = 1, 1
    single_session = ort.InferenceSession(str(path), single, providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: image[None, None]}
    return {
        "ort_ms": _median_ms(lambda: segmenter.segment(image), repeats),
        "ort_labels_ms": _median_ms(lambda: session.run([OUTPUT_LABELS], feed), repeats),
        "ort_cpu1_ms": _median_ms(
            lambda: single_session.run(None, feed), max(3, repeats // 2), time.process_time
        ),
    }


def time_torch(
    model: torch.nn.Module, image: np.ndarray, threads: int, repeats: int
) -> dict[str, float]:
    wrapper = ContractWrapper(model.eval())
    x = torch.from_numpy(image[None, None])

    def run() -> None:
        with torch.no_grad():
            wrapper(x)

    torch.set_num_threads(threads)
    wall = _median_ms(run, repeats)
    torch.set_num_threads(1)
    cpu1 = _median_ms(run, repeats, time.process_time)
    torch.set_num_threads(threads)
    return {"torch_ms": wall, "torch_cpu1_ms": cpu1}


def bench_arch(arch: str, out_dir: Path, image: np.ndarray, args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    model = build_model(arch).eval()
    metadata = ModelMetadata(
        kind="insitu",
        class_names=tuple(CLASS_NAMES[k] for k in sorted(CLASS_NAMES)),
        arch=arch,
        paradigm="benchmark",
        size_multiple=model.size_multiple,
    )
    path = out_dir / f"{arch}.onnx"
    report = export_onnx(model, path, metadata, exporter=args.exporter)
    params = sum(p.numel() for p in model.parameters())
    row = {
        "arch": arch,
        "precision": "fp32",
        "params": params,
        "size_multiple": model.size_multiple,
        "file_mb": report.file_size_bytes / 1e6,
        "export_s": report.export_s,
        "max_abs_diff": report.max_abs_diff,
        **time_onnx(path, image, args.threads, args.repeats),
        **time_torch(model, image, args.threads, max(3, args.repeats // 4)),
    }
    rows = [row]
    print(json.dumps(row), flush=True)
    if arch in args.int8:
        calibration = synthetic_frames(args.calibration, image.shape[0])
        int8_path = out_dir / f"{arch}-int8.onnx"
        q = quantize_int8(path, int8_path, calibration, min_agreement=0.0, threads=args.threads)
        int8_row = {
            "arch": arch,
            "precision": "int8",
            "params": params,
            "size_multiple": model.size_multiple,
            "file_mb": q.int8_size_bytes / 1e6,
            "label_agreement_random_weights": q.agreement,
            **time_onnx(int8_path, image, args.threads, args.repeats),
        }
        rows.append(int8_row)
        print(json.dumps(int8_row), flush=True)
    return rows


def bench_file(path: Path, image: np.ndarray, args: argparse.Namespace) -> dict:
    """The ONNX timings of an existing model file (its own weights, as shipped)."""
    metadata = Segmenter(path, providers=("cpu",)).metadata
    size_multiple = metadata.size_multiple
    if image.shape[0] % size_multiple:
        raise SystemExit(f"{path}: --size {image.shape[0]} is not a multiple of {size_multiple}")
    return {
        "arch": f"file:{path.name}",
        "precision": "fp32",
        "file_mb": path.stat().st_size / 1e6,
        "size_multiple": size_multiple,
        **time_onnx(path, image, args.threads, args.repeats),
    }


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"ONNX Runtime {ort.__version__} CPU, torch {torch.__version__}, {args.threads} threads, "
        f"1 x {args.size} x {args.size}, median of {args.repeats}; "
        f"load average during the run {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
        "| arch | precision | params | size multiple | file MB | ORT segment ms | "
        "ORT labels-only ms | ORT 1-thread CPU ms | torch eager ms | torch 1-thread CPU ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        torch_ms = f"{r['torch_ms']:.0f}" if "torch_ms" in r else "-"
        torch_cpu = f"{r['torch_cpu1_ms']:.0f}" if "torch_cpu1_ms" in r else "-"
        lines.append(
            f"| {r['arch']} | {r['precision']} | {r['params'] / 1e6:.2f} M | "
            f"{r['size_multiple']} | {r['file_mb']:.2f} | {r['ort_ms']:.1f} | "
            f"{r['ort_labels_ms']:.1f} | {r['ort_cpu1_ms']:.1f} | {torch_ms} | {torch_cpu} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=sorted(MODELS), choices=sorted(MODELS))
    parser.add_argument(
        "--int8", nargs="*", default=["unet", "unet-paper"], help="archs to also time in INT8"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--calibration", type=int, default=8, help="INT8 calibration frames")
    parser.add_argument("--exporter", default="dynamo", choices=("dynamo", "legacy"))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--model", type=Path, nargs="+", default=None,
                        help="time these ONNX files instead of building --arch")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (args.size, args.size)).astype(np.float32)
    rows: list[dict] = []
    if args.model:
        rows = [bench_file(path, image, args) for path in args.model]
        print("\n".join(json.dumps(r) for r in rows))
    else:
        with tempfile.TemporaryDirectory(prefix="nwwatch-bench-") as work:
            for arch in args.arch:
                rows += bench_arch(arch, Path(work), image, args)
        print(markdown(rows, args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"command": "python -m bench.bench_inference " + " ".join(argv or sys.argv[1:]),
                  "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                  "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
                  "cpu_count": os.cpu_count(), "onnxruntime": ort.__version__, "rows": rows}
        args.json.write_text(json.dumps(record if args.model else rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
