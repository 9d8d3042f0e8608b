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


@pytest.mark.parametrize("args", [["train", "data", "--out", "m.onnx"],
                                  ["train", "data", "--out", "--help"],
                                  ["train", "data", "--", "--help"]])
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


@pytest.mark.parametrize("command, extra, option", [("train", "train", "--epochs"),
                                                     ("report", "report", "--acquisition")])
def test_help_without_the_extra_lists_the_options_and_the_extra(command, extra, option):
    # `nwwatch train --help` and `report --help` exited 1 with only "needs the 'train' extra"
    # (README: every command has --help). Their options are defined in modules that import
    # neither torch nor matplotlib: here those cannot be imported at all.
    code = ("import sys\n"
            "for m in ('torch', 'onnx', 'onnxscript', 'matplotlib'): sys.modules[m] = None\n"
            "from click.testing import CliRunner\nfrom nwwatch.cli import main\n"
            f"r = CliRunner().invoke(main, [{command!r}, '--help'])\n"
            "print(r.exit_code)\nprint(r.output)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    assert out.startswith("0\n"), out
    assert option in out and "--help" in out, out
    assert f"'nwwatch {command}' needs the '{extra}' extra" in " ".join(out.split()), out
    assert f"pip install 'nwwatch[{extra}]'" in " ".join(out.split()), out


def test_help_of_a_command_whose_module_needs_the_extra_says_its_purpose(monkeypatch):
    # a module defining the command that imports the missing extra at its top: --help gives
    # the command's purpose and the extra to install, and exits 0
    import importlib
    import importlib.util

    from nwwatch.cli import main

    real_find_spec, real_import = importlib.util.find_spec, importlib.import_module

    def no_torch(name, *a, **k):
        return None if name.split(".")[0] == "torch" else real_find_spec(name, *a, **k)

    def torch_at_the_top(name, *a, **k):
        if name == "training.cli":
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real_import(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", no_torch)
    monkeypatch.setattr(importlib, "import_module", torch_at_the_top)
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0, result.output
    assert "Train a segmentation model" in result.output
    assert "pip install 'nwwatch[train]'" in " ".join(result.output.split())
    result = CliRunner().invoke(main, ["train", "data", "--out", "m.onnx"])
    assert result.exit_code == 1 and "torch not installed" in result.output


def test_ci_installs_pinned_then_lints_and_runs_the_whole_suite(tmp_path):
    # What CI's entry point makes happen, as make itself resolves it (a dry run on a copy:
    # nothing is built): the pinned install with every extra, ruff, then pytest on tests/.
    import shutil

    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    run = [line.split() for line in (ROOT / ".ci" / "run").read_text().splitlines()
           if line.startswith("make ")]
    assert len(run) == 1, "CI runs one make target"
    out = subprocess.run(["make", "-n", *run[0][1:]], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    install = [i for i, line in enumerate(out) if "pip install" in line]
    lint = [i for i, line in enumerate(out) if "ruff check nwwatch training tests bench" in line]
    tests = [i for i, line in enumerate(out)
             if "-m pytest" in line and line.split()[-1] == "tests"]
    assert install and lint and tests, out
    assert "-c constraints.txt" in out[install[0]] and "train,dev,cluster" in out[install[0]]
    assert install[0] < lint[0] < tests[0]


def test_the_version_is_written_once_in_nwwatch_init():
    """pyproject.toml and nwwatch/__init__.py each held the version: the wheel said one, the
    rows' nwwatch_version and `nwwatch --version` the other, and neither was raised, so
    `pip install -U` of a newer wheel kept the installed one. pyproject reads __version__."""
    import tomllib

    import nwwatch

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"], pyproject["project"].get("version")
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "nwwatch.__version__"}
    # setuptools reads it without importing nwwatch (its dependencies are not in a build
    # environment): a plain string literal
    import ast

    tree = ast.parse((ROOT / "nwwatch" / "__init__.py").read_text())
    literal = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
               and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
               and isinstance(node.value, ast.Constant)]
    assert literal == [nwwatch.__version__]


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


def test_the_demo_plot_without_matplotlib_is_skipped_not_a_crash(tmp_path):
    # matplotlib is the `report` extra: without it the demo's plot is skipped (the demo says
    # how to get it; tests/test_runtime_install.py runs the whole demo without it).
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import numpy as np\n"
            "from nwwatch.demo import plot_angle_vs_time\n"
            f"print(plot_angle_vs_time(np.arange(3.0), np.ones(3), np.ones(3), "
            f"{str(tmp_path / 'p.png')!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "False" and not (tmp_path / "p.png").exists()
    from nwwatch.demo import plot_angle_vs_time

    assert plot_angle_vs_time([0.0, 1.0], [100.0, 110.0], [101.0, float("nan")],
                              tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0


@pytest.mark.parametrize("module", ["nwwatch", "nwwatch.cli"])
def test_python_dash_m_runs_the_command(module, tmp_path):
    # `python -m nwwatch.cli synth ...` did nothing and exited 0: no output, no folder.
    out = tmp_path / "syn"
    done = subprocess.run([sys.executable, "-m", module, "synth", "insitu", str(out),
                           "--frames", "1", "--size", "64"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "frame_00000.tif").is_file() and "wrote 1 frame to" in done.stdout
    done = subprocess.run([sys.executable, "-m", module, "no-such-command"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and "no-such-command" in done.stderr


@pytest.mark.parametrize("module", ["nwwatch", "nwwatch.cli"])
def test_python_dash_m_does_not_import_the_users_files_in_the_current_folder(module,
                                                                            tmp_path):
    # `python -m nwwatch train` in a folder holding the user's training.py failed with "No
    # module named 'training.cli'; 'training' is not a package": python -m puts the current
    # folder first on sys.path, and that file shadowed the product's `training` package.
    (tmp_path / "training.py").write_text("def my_training_loop():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", module, "train", "--help"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "--out" in done.stdout and "not a package" not in done.stderr


def test_python_dash_m_runs_in_a_current_folder_that_was_removed(tmp_path):
    # a shell left in a folder since removed: getcwd() raises, which the step that drops
    # the current folder from sys.path turned into a traceback
    gone = tmp_path / "gone"
    gone.mkdir()
    done = subprocess.run(["bash", "-c", f'cd "{gone}" && rmdir "{gone}" && exec '
                           f'"{sys.executable}" -m nwwatch --version'],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    from nwwatch import __version__

    assert __version__ in done.stdout
