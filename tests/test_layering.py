"""Dependencies point one way: io -> segment -> measure/volume -> results -> service -> cli.
Checked in fresh interpreters by what each layer loads, and with the heavy or optional
packages made unimportable."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Makes a top-level package unimportable in a fresh interpreter (an ImportError as on a
# machine where it is not installed), before anything of nwwatch is imported.
_BLOCK = """
import sys
class _Block:
    def __init__(self, names):
        self.names = set(names)
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in self.names:
            raise ImportError(f'{name} blocked by the test')
        return None
sys.meta_path.insert(0, _Block(NAMES))
"""


def _run(code: str, block: tuple[str, ...] = ()) -> str:
    out = subprocess.run([sys.executable, "-c", _BLOCK.replace("NAMES", repr(block)) + code],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


#: Layers of the data path, lowest first; a module imports only from its own layer and those
#: below. Command-line modules (``cli.py``) are entry points and may import any layer.
LAYERS = [
    {"atomic", "classes", "filehash", "normalize", "logsetup", "options", "paths", "pathtext",
     "resources", "stopsignals", "tomlfile"},
    {"io"},
    {"segment", "synth"},
    {"measure", "volume"},
    {"results"},
    {"service", "dashboard"},  # the dashboard reads the service's ledger; the service feeds
                               # the dashboard's metrics and starts its thread
    {"label", "evaluate", "modelinfo", "demo", "cli", "__main__"},
]


def _rank(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def test_every_import_points_down_the_data_path():
    # Lazy imports inside functions count: they are dependencies all the same.
    wrong = []
    for path in sorted((ROOT / "nwwatch").rglob("*.py")):
        rel = path.relative_to(ROOT / "nwwatch")
        own = rel.parts[0].removesuffix(".py")
        if rel.name == "cli.py" or own == "models":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom)
                     and node.level == 0 else [])
            for name in names:
                parts = name.split(".")
                if parts[0] == "nwwatch" and len(parts) > 1 and _rank(parts[1]) > _rank(own):
                    wrong.append(f"nwwatch/{rel.as_posix()}:{node.lineno} imports {name}")
    assert wrong == []


def test_training_imports_no_service():
    # training runs the runtime's operations (nwwatch train --volume's memory check is
    # nwwatch.volume.memory's), never the daemon's modules.
    wrong = []
    for path in sorted((ROOT / "training").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            wrong += [f"{path.relative_to(ROOT).as_posix()}:{node.lineno} imports {name}"
                      for name in names if name.split(".")[:2] in (["nwwatch", "service"],
                                                                   ["nwwatch", "dashboard"])]
    assert wrong == []


def test_results_imports_no_producer_and_no_service():
    loaded = _run(
        "import importlib, pkgutil, nwwatch.results as r\n"
        "for m in pkgutil.walk_packages(r.__path__, 'nwwatch.results.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(' '.join(sorted(k for k in sys.modules if k.startswith('nwwatch.'))))\n"
    ).split()
    assert "nwwatch.results.schema" in loaded and "nwwatch.results.pictures" in loaded
    above = [m for m in loaded if m.split(".")[1] in
             ("measure", "volume", "segment", "service", "dashboard", "cli")]
    assert above == []


def test_the_service_configuration_validates_without_onnxruntime(tmp_path):
    from servicekit import model, write_config

    acq = tmp_path / "acq"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, tmp_path / "res", model(tmp_path),
                       extra="[tomogram]\nflips = true\n")
    text = cfg.read_text() + '[[watch]]\npath = "{}"\nkind = "tomogram"\nmodel = "{}"\n'.format(
        tmp_path / "tomo", model(tmp_path / "t"))
    cfg.write_text(text)
    # The configuration and the drop-in made from it, with onnxruntime and scipy
    # unimportable: reading the file loads neither the runtime nor the volume code (the
    # `python -m nwwatch.service.dropin` command goes on to judge the models, which needs the
    # runtime: tests/test_service_model_faults.py).
    out = _run("from nwwatch.service.config import load_config\n"
               "from nwwatch.service.dropin import unit_dropin\n"
               f"print(unit_dropin(load_config({str(cfg)!r})))\n"
               "print('LOADED', ' '.join(k for k in sys.modules if k.startswith('nwwatch.')))\n",
               block=("onnxruntime", "scipy"))
    assert f"ReadOnlyPaths=-{tmp_path / 'tomo'}" in out
    loaded = out.split("LOADED", 1)[1].split()
    assert not [m for m in loaded if m.startswith(("nwwatch.segment", "nwwatch.volume"))]
    # ... and the blocker does block: the segmenter cannot be loaded in that interpreter
    with pytest.raises(AssertionError, match="blocked by the test"):
        _run("import nwwatch.segment.session\n", block=("onnxruntime",))


def test_every_kind_of_the_configuration_has_one_job():
    from nwwatch.service.config import KINDS
    from nwwatch.service.jobs import job_for

    for kind in KINDS:
        job = job_for(kind)
        assert job.kind == kind and job_for(kind) is job
    assert len({job_for(k).folder for k in KINDS}) == len(KINDS)
    with pytest.raises(KeyError, match="insitu.*tomogram"):
        job_for("cryo")


def test_onnx_runtime_telemetry_is_off_unless_the_user_sets_it(tmp_path):
    # ONNX Runtime 1.29+ writes a device id under ~/.cache and uploads a process event from
    # Linux; with a home it cannot write (a service user under ProtectHome=) it also printed
    # a colour-coded warning into the service's JSON log at import
    import os

    code = ("import os, nwwatch.segment.session, onnxruntime; "
            "print(os.environ['ORT_DISABLE_TELEMETRY'])")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    done = subprocess.run([sys.executable, "-c", code], env={**env, "HOME": "/proc"},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1" and "telemetry" not in done.stderr, done.stderr
    # the training side's entry points import onnxruntime first (python -m training.calibrate)
    first = ("import os, training.calibrate, onnxruntime; "
             "print(os.environ['ORT_DISABLE_TELEMETRY'])")
    done = subprocess.run([sys.executable, "-c", first], env={**env, "HOME": "/proc"},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.stdout.strip() == "1" and "telemetry" not in done.stderr, done.stderr
    kept = subprocess.run([sys.executable, "-c", code],
                          env={**env, "ORT_DISABLE_TELEMETRY": "0"},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert kept.stdout.strip() == "0", kept.stderr
