"""`pip install nwwatch` alone (no extra) gives a working product: the wheel of this checkout,
installed by pip into a fresh virtual environment that holds the runtime requirements and
nothing else, runs `nwwatch --help`, `nwwatch replay` and `nwwatch demo`.

Nothing is downloaded: the wheel is built here without build isolation, and the runtime
requirements are the distributions already installed for the tests, linked file by file
(from their RECORD) into the new environment's site-packages — exactly the closure of
``[project] dependencies`` with their own requirements, no extras. pip installs the wheel
with ``--no-index``, so it fails if a declared requirement is missing there; a module the
product imports but does not declare (matplotlib, torch, pandas) fails the commands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def runtime_distributions() -> dict[str, metadata.Distribution]:
    """The installed distributions that ``pip install nwwatch`` (no extra) needs: the
    requirements of ``pyproject.toml`` and, transitively, theirs (markers evaluated for this
    interpreter, extras only where a requirement asks for them)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    todo = [(Requirement(d), "") for d in deps]
    found: dict[str, metadata.Distribution] = {}
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if name in found:
            continue
        dist = found[name] = metadata.distribution(req.name)
        for text in dist.requires or []:
            for wanted in ("", *req.extras):
                todo.append((Requirement(text), wanted))
    return found


def _link_into(dists: dict[str, metadata.Distribution], site: Path) -> None:
    for name, dist in dists.items():
        assert dist.files, f"{name}: installed without a RECORD"
        for rel in dist.files:
            if ".." in rel.parts:  # console scripts: pip writes the venv's own
                continue
            dest = site / rel
            if dest.exists():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(Path(dist.locate_file(rel)).resolve(), dest)


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("runtime")
    # The wheel from a copy of the tracked files (building in place would leave build/ and
    # *.egg-info in the checkout).
    src = tmp / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "-w", str(wheels), str(src)], check=True,
                   timeout=300)
    venv = tmp / "venv"
    # Without its own pip (ensurepip is most of a venv's creation time): this interpreter's
    # pip installs into it with --python, resolving against the new environment alone.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True,
                             check=True).stdout.strip()
    dists = runtime_distributions()
    assert "matplotlib" not in dists and "torch" not in dists
    _link_into(dists, Path(purelib))
    wheel = next(wheels.glob("nwwatch-*.whl"))
    # Without PYTHONPATH: a checkout on it makes pip see nwwatch as already installed.
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet",
                    "--no-index", "--disable-pip-version-check", str(wheel)],
                   check=True, timeout=300, env=clean_env)
    return venv


def _nwwatch(venv: Path, *args: str, cwd: Path, timeout: float = 300):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    return subprocess.run([str(venv / "bin" / "nwwatch"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_environment_holds_the_runtime_alone(runtime_venv):
    py = runtime_venv / "bin" / "python"
    code = ("import importlib.util, nwwatch\n"
            "print(nwwatch.__file__)\n"
            "print([m for m in ('matplotlib', 'torch', 'pandas', 'skimage', 'dask', 'pytest')"
            " if importlib.util.find_spec(m)])\n")
    code += ("from importlib.metadata import version\n"
             "print(version('nwwatch'), nwwatch.__version__)\n")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True,
                         cwd=runtime_venv, env={"PATH": os.environ["PATH"]}).stdout.split("\n")
    assert out[0].startswith(str(runtime_venv)), out  # the installed wheel, not this checkout
    assert out[1] == "[]"
    # the wheel's version is nwwatch.__version__ (pyproject.toml reads it from there)
    import nwwatch

    assert out[2] == f"{nwwatch.__version__} {nwwatch.__version__}", out
    assert sysconfig.get_paths()["purelib"] not in out[0]


def test_help_replay_and_demo_run_from_the_runtime_alone(runtime_venv, tmp_path):
    from servicekit import paint_insitu

    from nwwatch.io import write_frame_tiff

    r = _nwwatch(runtime_venv, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "replay" in r.stdout and "demo" in r.stdout

    acq = tmp_path / "acq"
    acq.mkdir()
    for i, angle in enumerate((110.0, 125.0)):
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(angle, size=128, half_width=16))
    r = _nwwatch(runtime_venv, "replay", str(acq), "--out", str(tmp_path / "res"),
                 cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    frames = list((tmp_path / "res" / "frames").rglob("*.parquet"))
    import pyarrow.parquet as pq

    assert sum(pq.read_metadata(f).num_rows for f in frames) == 2

    # The demo runs end to end; without matplotlib (the `report` extra) only its plot is
    # skipped, and it says how to get it.
    r = _nwwatch(runtime_venv, "demo", str(tmp_path / "demo"), "--frames", "4", "--size",
                 "128", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "plot skipped" in r.stdout and "pip install 'nwwatch[report]'" in r.stdout
    assert "4 frames from 4 files" in r.stdout and "/4 frames measured" in r.stdout
    assert "nan" not in r.stdout.lower()  # no valid angle is said, not printed as NaN
    assert (tmp_path / "demo" / "montage.png").is_file()
    assert len(list((tmp_path / "demo" / "overlays").glob("*.png"))) == 4
    assert not (tmp_path / "demo" / "contact_angle_vs_time.png").exists()
