"""The runtime must work without torch, and the CLI must say how to get training."""

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def test_runtime_never_imports_torch():
    # Import every runtime module in a fresh interpreter and check torch stayed out.
    code = (
        "import importlib, pkgutil, sys, nwwatch\n"
        "for m in pkgutil.walk_packages(nwwatch.__path__, 'nwwatch.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in "
        "{'torch', 'scipy', 'skimage', 'sklearn', 'training'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"runtime imported: {out.stdout}"


def test_no_plain_onnxruntime_installed():
    from importlib.metadata import PackageNotFoundError, version

    with pytest.raises(PackageNotFoundError):
        version("onnxruntime")
    assert version("onnxruntime-gpu")


def test_cli_help_lists_commands_without_importing_torch():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom nwwatch.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\nassert r.exit_code == 0, r.output\n"
        "print(r.output)\nprint('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for name in ("synth", "measure", "train", "evaluate", "run", "replay", "status", "demo"):
        assert name in out.stdout
    assert out.stdout.strip().endswith("False")


def test_train_without_torch_names_the_extra(monkeypatch):
    import builtins

    from nwwatch.cli import main

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real_import(name, *args, **kwargs)

    for key in [k for k in sys.modules if k.split(".")[0] in {"training", "torch"}]:
        monkeypatch.delitem(sys.modules, key)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code != 0
    assert "pip install 'nwwatch[train]'" in result.output


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
