"""ONNX Runtime on a GPU: which provider nwwatch obtains, how fast it segments, and whether
replay's rows match the CPU's.

    python -m bench.bench_gpu --json OUT.json [--model M] [--replay-frames 400]

Run on a machine with an NVIDIA GPU and ``onnxruntime-gpu``. Stages (each recorded, a failed
stage does not stop the next):

1. provider probes, each in a fresh process: plain ONNX Runtime asking for CUDA, the same
   after ``onnxruntime.preload_dlls()``, and nwwatch's ``Segmenter(require_gpu=True)``;
2. ``Segmenter.segment`` throughput (frames/s, softmax included, as the service asks) on the
   GPU provider and on the CPU provider with every core, batches of 1-16, 512² to 2048²;
3. ``nwwatch replay`` of synthetic frames on the GPU and with ``providers = ["cpu"]``: wall
   time and the rows compared (status, angle).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "nwwatch" / "models" / "insitu-default.onnx"

_PROBES = {
    "plain": ("import onnxruntime as ort\n"
              "s = ort.InferenceSession({model!r}, providers=['CUDAExecutionProvider', "
              "'CPUExecutionProvider'])\nprint(s.get_providers()[0])"),
    "preload_dlls": ("import onnxruntime as ort\nort.preload_dlls()\n"
                     "s = ort.InferenceSession({model!r}, providers=['CUDAExecutionProvider', "
                     "'CPUExecutionProvider'])\nprint(s.get_providers()[0])"),
    "nwwatch": ("from nwwatch.segment.session import Segmenter\n"
                "print(Segmenter({model!r}, providers=('cuda', 'cpu'), require_gpu=True)"
                ".provider)"),
}


def probe(name: str, model: Path) -> dict:
    """Run one provider probe in a fresh process (libraries load once per process)."""
    code = _PROBES[name].format(model=str(model))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    lines = done.stdout.strip().splitlines()
    return {"returncode": done.returncode, "provider": lines[-1] if lines else None,
            "seconds": round(time.perf_counter() - started, 2),
            "stderr_tail": done.stderr[-1500:], "stdout_tail": done.stdout[-800:]}


def throughput(model: Path, providers: tuple[str, ...], shapes: list[tuple[int, int]],
               seconds: float = 4.0) -> list[dict]:
    """frames/s of ``Segmenter.segment`` for (batch, side) pairs, softmax included."""
    from nwwatch.segment.session import Segmenter

    segmenter = Segmenter(model, providers=providers)
    rng = np.random.default_rng(0)
    out = []
    for batch, side in shapes:
        images = rng.normal(0, 0.3, (batch, side, side)).astype(np.float32)
        for _ in range(3):
            segmenter.segment(images)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or calls < 3:
            segmenter.segment(images)
            calls += 1
        elapsed = time.perf_counter() - started
        out.append({"provider": segmenter.provider, "batch": batch, "side_px": side,
                    "frames_per_s": round(calls * batch / elapsed, 1),
                    "ms_per_call": round(1000 * elapsed / calls, 2)})
        print(json.dumps(out[-1]), flush=True)
    return out


def replay_pair(frames: int, workdir: Path) -> dict:
    """Replay the same synthetic frames on the GPU and on the CPU provider; compare rows."""
    import pyarrow.parquet as pq

    nw = [sys.executable, "-c", "import sys; from nwwatch.cli import main; sys.exit(main())"]
    data = workdir / "frames"
    subprocess.run(nw + ["synth", "insitu", str(data), "--frames", str(frames), "--size", "512",
                         "--seed", "302"], check=True, capture_output=True)
    cpu_config = workdir / "cpu.toml"
    cpu_results = workdir / "results_cpu"
    cpu_config.write_text(f'[[watch]]\npath = "{data}"\n[output]\nresults = "{cpu_results}"\n'
                          '[inference]\nproviders = ["cpu"]\n')
    result: dict = {"frames": frames}
    tables = {}
    for name, extra in (("gpu", []), ("cpu", ["--config", str(cpu_config)])):
        out = workdir / f"results_{name}"
        started = time.perf_counter()
        done = subprocess.run(nw + ["replay", str(data), "--out", str(out)] + extra,
                              capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        result[name] = {"returncode": done.returncode, "seconds": round(elapsed, 2),
                        "frames_per_s": round(frames / elapsed, 1),
                        "last_lines": done.stdout.strip().splitlines()[-3:],
                        "stderr_tail": done.stderr[-800:]}
        files = sorted((out / "frames").rglob("*.parquet"))
        if files:
            table = pq.ParquetDataset([str(f) for f in files]).read().to_pandas()
            tables[name] = table.set_index(["source", "frame"]).sort_index()
            result[name]["providers"] = sorted(set(tables[name].get("provider", [])))
    if {"gpu", "cpu"} <= tables.keys():
        gpu, cpu = tables["gpu"], tables["cpu"]
        common = gpu.index.intersection(cpu.index)
        same_status = int((gpu.loc[common, "status"] == cpu.loc[common, "status"]).sum())
        both = common[gpu.loc[common, "angle_valid"].to_numpy(bool)
                      & cpu.loc[common, "angle_valid"].to_numpy(bool)]
        diff = np.abs(gpu.loc[both, "contact_angle_deg"].to_numpy()
                      - cpu.loc[both, "contact_angle_deg"].to_numpy())
        result["compare"] = {"rows": len(common), "same_status": same_status,
                             "both_valid": len(both), "valid_gpu": int(gpu["angle_valid"].sum()),
                             "valid_cpu": int(cpu["angle_valid"].sum()),
                             "max_angle_diff_deg": float(diff.max()) if len(diff) else None,
                             "median_angle_diff_deg": float(np.median(diff)) if len(diff) else None}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--replay-frames", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=4.0, help="timing per configuration")
    args = parser.parse_args(argv)
    report: dict = {"model": str(args.model)}

    def save() -> None:
        args.json.write_text(json.dumps(report, indent=1, default=str))

    try:
        import onnxruntime as ort

        report["onnxruntime"] = {"version": ort.__version__, "file": ort.__file__,
                                 "available_providers": ort.get_available_providers()}
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True)
        report["gpu"] = smi.stdout.strip() or smi.stderr.strip()
        report["cpu_count"] = os.cpu_count()
    except Exception as exc:  # record and go on: every stage is worth its own answer
        report["environment_error"] = repr(exc)
    save()
    report["probes"] = {}
    for name in _PROBES:
        try:
            report["probes"][name] = probe(name, args.model)
        except Exception as exc:
            report["probes"][name] = {"error": repr(exc)}
        print(name, json.dumps(report["probes"][name])[:600], flush=True)
        save()
    shapes = [(1, 512), (4, 512), (16, 512), (1, 1024), (4, 1024), (1, 2048)]
    for key, providers in (("gpu", ("cuda", "cpu")), ("cpu", ("cpu",))):
        try:
            report[f"throughput_{key}"] = throughput(args.model, providers, shapes, args.seconds)
        except Exception as exc:
            report[f"throughput_{key}"] = {"error": repr(exc)}
        save()
    if args.replay_frames:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                report["replay"] = replay_pair(args.replay_frames, Path(tmp))
        except Exception as exc:
            report["replay"] = {"error": repr(exc)}
        print("replay", json.dumps(report["replay"])[:1500], flush=True)
        save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
