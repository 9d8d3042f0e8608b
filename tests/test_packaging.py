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
        "{'torch', 'skimage', 'sklearn', 'training'})\n"  # scipy is a runtime dependency
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


@pytest.mark.parametrize("args", [["train", "--help"], ["train", "data", "--out", "m.onnx"]])
def test_train_without_torch_names_the_extra(monkeypatch, args):
    import importlib.util

    from nwwatch.cli import main

    real_find_spec = importlib.util.find_spec

    def no_torch(name, *a, **k):
        return None if name.split(".")[0] == "torch" else real_find_spec(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", no_torch)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "torch not installed" in result.output
    assert "pip install 'nwwatch[train]'" in result.output


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_shipped_binary_is_package_data():
    """Models and --init weights must reach a wheel install, not only this checkout."""
    import fnmatch
    import tomllib

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]
    shipped = [*ROOT.glob("nwwatch/models/*"), *ROOT.glob("training/pretrained/*")]
    assert any(p.suffix == ".pt" for p in shipped) and any(p.suffix == ".onnx" for p in shipped)
    for path in shipped:
        package, *rest = path.relative_to(ROOT).parts
        patterns = package_data.get(package, [])
        assert any(fnmatch.fnmatch("/".join(rest), p) for p in patterns), \
            f"{path.relative_to(ROOT)} is not matched by [tool.setuptools.package-data] {package}"
