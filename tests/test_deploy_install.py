"""deploy/install.sh run for real (bash), with systemctl, useradd, `python3.11 -m venv` and the
venv's pip replaced by recorders: the installed unit starts what the script installed, as the
user it made. One test makes real venvs and installs nwwatch into them with pip."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _script(path: Path, text: str) -> None:
    path.write_text("#!/bin/bash\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture()
def sandbox(tmp_path):
    if shutil.which("bash") is None or shutil.which("install") is None:
        pytest.skip("needs bash and coreutils install")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    calls = tmp_path / "calls"
    for tool in ("systemctl", "useradd", "usermod"):
        _script(bin_ / tool, f'echo "{tool} $*" >> {calls}\n')
    _script(bin_ / "getent", "exit 2\n")
    # a system user gets a group of its own name (useradd's user private group)
    _script(bin_ / "id", '[[ $1 == -u ]] && { echo 0; exit 0; }\n'
            '[[ $1 == -gn ]] && { echo "$2"; exit 0; }; exit 0\n')
    # the service user runs the venv's python: as root here, as themselves
    _script(bin_ / "runuser", 'echo "runuser $*" >> ' + str(calls) + '\n'
            '[[ $1 == -u ]] && shift 2; [[ $1 == -- ]] && shift; exec "$@"\n')
    real_install = shutil.which("install")
    # the service user does not exist here: drop -o/-g, keep everything else
    _script(bin_ / "install", 'args=(); while (($#)); do case $1 in -o|-g) shift 2;; '
            '*) args+=("$1"); shift;; esac; done\n'
            f'exec {real_install} "${{args[@]}}"\n')
    # The unit's PrivateTmp=yes hides /tmp and /var/tmp from the service, so install.sh
    # refuses the venv, the configuration and the data folders there (pytest's tmp_path is
    # one): they lie in /dev/shm.
    if not Path("/dev/shm").is_dir():
        pytest.skip("needs /dev/shm for folders outside /tmp")
    data = Path(tempfile.mkdtemp(prefix="nwwatch-install-", dir="/dev/shm"))
    prefix = data / "srv" / "nwwatch"
    # `PYTHON -m venv DIR` makes DIR/bin/python from this template (tests change it), and the
    # scripts a real venv holds that name DIR: pip's console script `nwwatch` (its shebang)
    # and activate. pyvenv.cfg names the interpreter it was made with, as Python 3.11's does.
    _script(tmp_path / "venv-python",
            '[[ $1 == -P && $2 == -m && $3 == pip ]] && { echo "pip ${*:4}" >> '
            + str(calls) + '; exit 0; }\n'
            f'exec env PYTHONPATH={REPO} {sys.executable} "$@"\n')
    _script(tmp_path / "python3.11",
            f'[[ $1 == -m && $2 == venv ]] || exec {sys.executable} "$@"\n'
            f'echo "venv $3" >> {calls}\n'
            f'mkdir -p "$3/bin" && cp {tmp_path / "venv-python"} "$3/bin/python"\n'
            'printf \'#!%s/bin/python\\nimport sys\\nfrom nwwatch.cli import main\\n'
            'sys.exit(main())\\n\' "$3" > "$3/bin/nwwatch"\n'
            'printf \'VIRTUAL_ENV="%s"\\n\' "$3" > "$3/bin/activate"\n'
            'chmod +x "$3/bin/python" "$3/bin/nwwatch"\n'
            'printf \'home = /usr/bin\\nexecutable = %s\\n\' "$0" > "$3/pyvenv.cfg"\n')
    config = data / "conf" / "site.toml"
    config.parent.mkdir()
    config.write_text(f'[[watch]]\npath = "{data / "acq"}"\n\n'
                      f'[output]\nresults = "{data / "results"}"\n')
    (tmp_path / "units").mkdir()
    env = dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}", PREFIX=str(prefix),
               CONFIG=str(config), SERVICE_USER="microscopy", UNIT_DIR=str(tmp_path / "units"),
               PYTHON=str(tmp_path / "python3.11"))
    env.pop("EXTRA_PIP_ARGS", None)
    try:
        yield tmp_path, env, prefix, config, calls, data
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_the_unit_runs_what_install_sh_installed_and_an_update_restarts_it(sandbox):
    # Before the fix the unit was copied as shipped: with PREFIX, CONFIG or SERVICE_USER set,
    # ExecStart named /opt/nwwatch/venv/bin/nwwatch and /etc/nwwatch/nwwatch.toml (203/EXEC,
    # a restart loop), and `enable --now` left a running service on its old code after an
    # update of the checkout.
    tmp, env, prefix, config, calls, data = sandbox
    for _ in range(2):  # install, then run again as after an update
        done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh")], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    unit = (tmp / "units" / "nwwatch.service").read_text().splitlines()
    assert f"ExecStart={prefix}/venv/bin/nwwatch run --config {config}" in unit
    assert "User=microscopy" in unit and "Group=microscopy" in unit
    assert f"Documentation=file://{prefix}/docs/service.md" in unit
    assert not [line for line in unit if "/opt/nwwatch" in line or "/etc/nwwatch" in line]
    assert (prefix / "docs" / "service.md").is_file()
    dropin = (tmp / "units" / "nwwatch.service.d" / "paths.conf").read_text()
    assert str(data / "results") in dropin and (data / "results").is_dir()
    made = calls.read_text().splitlines()
    assert made.count("systemctl restart nwwatch") == 2, made
    assert "systemctl enable --now nwwatch" not in made
    # after a crash loop (start-limit-hit) systemd refuses a manual restart for
    # StartLimitIntervalSec unless the counter is reset: an update resets it first
    restarts = [i for i, c in enumerate(made) if c == "systemctl restart nwwatch"]
    assert all(made[i - 1] == "systemctl reset-failed nwwatch" for i in restarts), made


def test_a_prefix_the_unit_cannot_hold_is_refused(sandbox):
    tmp, env, prefix, config, calls, data = sandbox
    env["PREFIX"] = str(tmp / "with space")
    done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "PREFIX, CONFIG and SERVICE_USER" in done.stderr
    assert not (tmp / "units" / "nwwatch.service").exists()


def test_an_existing_service_user_runs_under_its_own_primary_group(sandbox):
    """SERVICE_USER may be an existing account (the lab's, which can read the share): the
    unit said Group=<user> and the results folders were made with -g <user>, a group such
    an account need not have (systemd then fails the start with 216/GROUP; install fails
    with "invalid group"). Its primary group is used."""
    tmp, env, prefix, config, calls, data = sandbox
    bin_ = tmp / "bin"
    _script(bin_ / "id", '[[ $1 == -u ]] && { echo 0; exit 0; }\n'
            '[[ $1 == -gn ]] && { echo lab; exit 0; }; exit 0\n')
    real = (bin_ / "install").read_text()
    (bin_ / "install").write_text(real.replace("args=();", f'echo "install $*" >> {calls}; '
                                               'args=();', 1))
    done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    unit = (tmp / "units" / "nwwatch.service").read_text().splitlines()
    assert "User=microscopy" in unit and "Group=lab" in unit, unit
    made = [c for c in calls.read_text().splitlines()
            if c.startswith("install ") and " -o " in c]
    assert made and all("-o microscopy -g lab" in c for c in made), made


def test_results_in_the_units_private_tmp_are_refused(sandbox):
    """PrivateTmp=yes: results under /var/tmp would be written into the service's private
    folder, deleted at every stop; the drop-in step names the key instead."""
    tmp, env, prefix, config, calls, data = sandbox
    config.write_text(f'[[watch]]\npath = "{data / "acq"}"\n\n'
                      '[output]\nresults = "/var/tmp/nwwatch-results"\n')
    done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "output.results: /var/tmp/nwwatch-results lies in /var/tmp" in done.stderr
    assert "PrivateTmp=yes" in done.stderr
    assert not Path("/var/tmp/nwwatch-results").exists()


def _install(env: dict, cwd: Path) -> subprocess.CompletedProcess:
    # cwd: a relative PREFIX or CONFIG would land there
    return subprocess.run(["bash", str(REPO / "deploy" / "install.sh")], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("key, value", [("PREFIX", "srv/nwwatch"), ("CONFIG", "site.toml"),
                                        ("PREFIX", "/tmp/nwwatch"),
                                        ("CONFIG", "/var/tmp/nwwatch.toml"),
                                        ("SERVICE_USER", "-dw")])
def test_values_the_unit_cannot_run_with_are_refused(sandbox, key, value):
    """A relative PREFIX was written into ExecStart= (systemd refuses the unit: "Neither a
    valid executable name nor an absolute path"), a relative CONFIG was looked up in
    WorkingDirectory=/var/lib/nwwatch, and a venv or configuration in /tmp or /var/tmp is
    hidden from the service by PrivateTmp=yes (203/EXEC); all were installed and started. A
    SERVICE_USER starting with - was passed to useradd as options."""
    tmp, env, prefix, config, calls, data = sandbox
    env[key] = value
    done = _install(env, tmp)
    assert done.returncode == 1, done.stderr
    assert f"'{value}'" in done.stderr and key in done.stderr, done.stderr
    assert not calls.exists(), calls.read_text()
    assert not (tmp / "units" / "nwwatch.service").exists()


def test_a_venv_the_service_user_cannot_run_is_refused_before_the_unit(sandbox):
    """PYTHON=python3.11 can resolve to an interpreter in root's home (pyenv): the venv's
    python links there, and every start as the service user failed with 203/EXEC while
    install.sh reported success; an update kept that venv."""
    tmp, env, prefix, config, calls, data = sandbox
    _script(tmp / "bin" / "runuser", 'echo "runuser $*" >> ' + str(calls) + '\n'
            'echo "runuser: failed to execute python: Permission denied" >&2; exit 126\n')
    done = _install(env, tmp)
    assert done.returncode == 1
    assert f"microscopy cannot run {prefix}/venv.new/bin/python" in done.stderr, done.stderr
    assert "PYTHON=" in done.stderr
    made = calls.read_text().splitlines()
    assert f"runuser -u microscopy -- {prefix}/venv.new/bin/python -c " in made, made
    assert not [c for c in made if c.startswith("systemctl")], made
    assert not (tmp / "units" / "nwwatch.service").exists()
    assert not (prefix / "venv.new").exists() and not (prefix / "venv").exists()


@pytest.mark.parametrize("args", [[], ["--reconfigure"]])
def test_an_update_without_the_environment_keeps_the_installed_units_values(sandbox, args):
    """deploy/README's update and --reconfigure commands name no PREFIX, CONFIG or
    SERVICE_USER. After an install with them, `install.sh` used the shipped defaults again:
    a second venv in /opt/nwwatch, /etc/nwwatch/nwwatch.toml from the example and the unit
    pointed there (the service then watched the example's folders); --reconfigure said "fix
    /etc/nwwatch/nwwatch.toml", a file that does not exist. They come from the installed unit."""
    tmp, env, prefix, config, calls, data = sandbox
    assert _install(env, tmp).returncode == 0
    unit = tmp / "units" / "nwwatch.service"
    before = unit.read_text()
    config_before = config.read_text()
    # PYTHON too: the update makes its venv with the interpreter the installed one names
    again = {k: v for k, v in env.items()
             if k not in ("PREFIX", "CONFIG", "SERVICE_USER", "PYTHON")}
    # the shipped defaults are this machine's real folders: refuse to touch them
    real_install = (tmp / "bin" / "install").read_text()
    (tmp / "bin" / "install").write_text(real_install.replace(
        "args=();", 'for a; do [[ $a == /opt/nwwatch* || $a == /etc/nwwatch* ]] && '
                    '{ echo "install into $a" >&2; exit 1; }; done; args=();', 1))
    calls.write_text("")
    done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh"), *args], env=again,
                          cwd=tmp, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"PREFIX={prefix} CONFIG={config} SERVICE_USER=microscopy" in done.stdout
    assert unit.read_text() == before and config.read_text() == config_before
    made = calls.read_text().splitlines()
    assert "systemctl restart nwwatch" in made, made
    assert made[made.index("systemctl restart nwwatch") - 1] == "systemctl reset-failed nwwatch"
    assert not [c for c in made if "/opt/nwwatch" in c or "/etc/nwwatch" in c], made
    assert (f"venv {prefix}/venv.new" in made) == (not args), made


@pytest.mark.parametrize("args", [[], ["--reconfigure"]])
def test_a_results_folder_that_cannot_be_made_stops_the_install_with_its_name(sandbox, args):
    """install.sh ran the drop-in step as an `if` condition, where bash ignores errors: a
    results folder `install -d` could not make (a share refusing chown, a path through a
    file) left the script exiting 0 after its drop-in already named the folder, without
    enabling or restarting the service (an update kept running the old code, and the next
    start failed on the missing ReadWritePaths= folder)."""
    tmp, env, prefix, config, calls, data = sandbox
    assert _install(env, tmp).returncode == 0
    dropin = tmp / "units" / "nwwatch.service.d" / "paths.conf"
    before = dropin.read_text()
    (data / "afile").write_text("")
    config.write_text(f'[[watch]]\npath = "{data / "acq"}"\n\n'
                      f'[output]\nresults = "{data / "afile" / "results"}"\n')
    calls.write_text("")
    done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh"), *args], env=env,
                          cwd=tmp, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"cannot make {data / 'afile' / 'results'}" in done.stderr, done.stderr
    # after a refused update the service runs the earlier version: --reconfigure would check
    # the configuration with that one
    assert ("--reconfigure" in done.stderr) == bool(args), done.stderr
    assert dropin.read_text() == before
    assert not [c for c in calls.read_text().splitlines() if "restart" in c or "enable" in c]


def test_a_folder_in_use_that_the_service_user_cannot_write_is_not_taken_over(sandbox):
    """A ledger configured as /var/lib/nwwatch-ledger.sqlite (or /data/ledger.sqlite beside
    the acquisition folder /data/acq): install.sh ran `install -d -m 0750 -o USER` on its
    folder, /var/lib itself, without a word, and the microscope's user lost access to it."""
    tmp, env, prefix, config, calls, data = sandbox
    # the service user may write nothing under data/foreign* (root may: the stub runs as it)
    _script(tmp / "bin" / "runuser", 'echo "runuser $*" >> ' + str(calls) + '\n'
            '[[ $1 == -u ]] && shift 2; [[ $1 == -- ]] && shift\n'
            '[[ $1 == test && $3 == *foreign* ]] && exit 1; exec "$@"\n')
    in_use, empty = data / "foreign", data / "foreign-empty"
    for folder in (in_use, empty):
        folder.mkdir()
        folder.chmod(0o755)  # whatever the umask
    (in_use / "other.txt").write_text("someone's")
    config.write_text(f'[[watch]]\npath = "{data / "acq"}"\n\n'
                      f'[output]\nresults = "{data / "results"}"\n\n'
                      f'[state]\nledger = "{in_use / "ledger.sqlite"}"\n')
    done = _install(env, tmp)
    assert done.returncode == 1, done.stderr
    assert (f"{in_use} (a results or ledger folder of {config}) holds files and microscopy "
            "cannot write it") in done.stderr, done.stderr
    assert in_use.stat().st_mode & 0o7777 == 0o755
    assert not (tmp / "units" / "nwwatch.service").exists()
    # an empty folder is nobody's yet (a new disk's lost+found aside): made the service
    # user's, as a missing one is
    (empty / "lost+found").mkdir()
    config.write_text(f'[[watch]]\npath = "{data / "acq"}"\n\n'
                      f'[output]\nresults = "{data / "results"}"\n\n'
                      f'[state]\nledger = "{empty / "ledger.sqlite"}"\n')
    done = _install(env, tmp)
    assert done.returncode == 0, done.stderr
    assert empty.stat().st_mode & 0o7777 == 0o750


def test_a_watched_folder_the_service_user_cannot_list_stops_the_install(sandbox):
    """A watched folder in a home of mode 0700: install.sh (root) passed, and the service, as
    its user, stopped at its start with exit 78 ('cannot look at ... Permission denied')."""
    tmp, env, prefix, config, calls, data = sandbox
    _script(tmp / "bin" / "runuser", 'echo "runuser $*" >> ' + str(calls) + '\n'
            '[[ $1 == -u ]] && shift 2; [[ $1 == -- ]] && shift\n'
            '[[ $1 == test && $3 == *private* ]] && exit 1; exec "$@"\n')
    private = data / "private-acq"
    private.mkdir()
    config.write_text(f'[[watch]]\npath = "{private}"\n\n'
                      f'[output]\nresults = "{data / "results"}"\n')
    done = _install(env, tmp)
    assert done.returncode == 1, done.stderr
    assert f"microscopy cannot list {private} (a watched folder of {config})" in done.stderr
    assert not (tmp / "units" / "nwwatch.service").exists()
    # one not made yet is waited for by the service: not checked
    config.write_text(f'[[watch]]\npath = "{data / "private-later"}"\n\n'
                      f'[output]\nresults = "{data / "results"}"\n')
    assert _install(env, tmp).returncode == 0


def test_an_update_keeps_the_mode_and_group_of_results_folders_the_service_can_write(sandbox):
    """Every update and --reconfigure ran `install -d -m 0750 -o USER -g GROUP` on the results
    folder: a lab that had given it to its own group (setgid, group-writable) lost that
    access at the next update. A folder the service user can write is now left as it is."""
    tmp, env, prefix, config, calls, data = sandbox
    assert _install(env, tmp).returncode == 0
    results = data / "results"
    results.chmod(0o2770)
    for args in ([], ["--reconfigure"]):
        done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh"), *args], env=env,
                              cwd=tmp, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert results.stat().st_mode & 0o7777 == 0o2770, oct(results.stat().st_mode)


def test_the_venv_is_installed_readable_by_the_service_user_under_a_strict_umask(sandbox):
    """sudo runs install.sh with the admin's umask where it is stricter than 022 (027 on
    hardened systems): the venv and pip's files were made 0750/0640 root:root, so the service
    user could not import nwwatch (a restart loop after an update); the check that the
    service user can run the venv's python did not import anything. Files are made 022."""
    tmp, env, prefix, config, calls, data = sandbox
    _script(tmp / "venv-python",
            '[[ $1 == -P && $2 == -m && $3 == pip ]] && { echo "pip umask $(umask)" >> '
            + str(calls) + '; exit 0; }\n'
            f'exec env PYTHONPATH={REPO} {sys.executable} "$@"\n')
    done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh")], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: os.umask(0o027))
    assert done.returncode == 0, done.stderr
    made = calls.read_text().splitlines()
    pips = [c for c in made if c.startswith("pip ")]
    assert pips and all(c == "pip umask 0022" for c in pips), made
    assert (prefix / "docs" / "service.md").stat().st_mode & 0o777 == 0o644
    # the service user's check imports the package, not only the interpreter
    python = prefix / "venv.new" / "bin" / "python"
    assert [c for c in made if c.startswith(f"runuser -u microscopy -- {python} -c ")
            and "import nwwatch" in c], made


def test_wheels_make_pip_install_from_that_folder_alone(sandbox):
    """pip took nwwatch's requirements (and setuptools to build it) from PyPI with no other
    way: on an acquisition PC without network access the install failed with pip's
    "ResolutionImpossible" after its retries, and nothing said what was needed. WHEELS=DIR
    makes every pip call look in DIR alone."""
    tmp, env, prefix, config, calls, data = sandbox
    wheels = data / "wheels"
    wheels.mkdir()
    env["WHEELS"] = str(wheels)
    done = _install(env, tmp)
    assert done.returncode == 0, done.stderr
    pips = [c for c in calls.read_text().splitlines() if c.startswith("pip ")]
    assert len(pips) == 2, pips
    assert all(f"--no-index --find-links {wheels}" in c for c in pips), pips
    assert f"-c {REPO / 'constraints.txt'} /" in pips[1], pips


def test_pip_builds_a_fresh_copy_of_the_package_not_the_checkout(sandbox):
    """pip built the checkout in place: root's build/ and nwwatch.egg-info were left in it,
    and setuptools packed what an earlier build left in build/lib, so a module or model removed
    from the checkout stayed installed after the update (seen with a real venv)."""
    tmp, env, prefix, config, calls, data = sandbox
    _script(tmp / "venv-python",
            '[[ $1 == -P && $2 == -m && $3 == pip ]] && { last=${@: -1}\n'
            '  [[ -d $last ]] && echo "src $last $(cd "$last" && echo *)" >> ' + str(calls)
            + '\n  exit 0; }\n'
            f'exec env PYTHONPATH={REPO} {sys.executable} "$@"\n')
    done = _install(env, tmp)
    assert done.returncode == 0, done.stderr
    built = [c.split() for c in calls.read_text().splitlines() if c.startswith("src ")]
    assert len(built) == 1, built
    folder, items = Path(built[0][1]), built[0][2:]
    assert folder != REPO and not folder.exists(), folder  # a copy, removed afterwards
    assert items == ["README.md", "nwwatch", "pyproject.toml", "training"], items
    # the copy holds what the build reads: the readme and every package it finds
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["readme"] in items
    found = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(p.rstrip("*") for p in found) == ["nwwatch", "training"], found


@pytest.mark.parametrize("wheels", [False, True])
def test_a_failed_pip_install_says_what_it_needs_and_installs_no_unit(sandbox, wheels):
    tmp, env, prefix, config, calls, data = sandbox
    if wheels:
        (data / "wheels").mkdir()
        env["WHEELS"] = str(data / "wheels")
    # pip's own upgrade finds nothing newer offline and succeeds; installing nwwatch fails
    _script(tmp / "venv-python",
            '[[ $1 == -P && $2 == -m && $3 == pip ]] && { echo "pip ${*:4}" >> ' + str(calls) + '\n'
            '  [[ $* == *constraints* ]] && { echo "ERROR: ResolutionImpossible" >&2; exit 1; }\n'
            '  exit 0; }\n'
            f'exec env PYTHONPATH={REPO} {sys.executable} "$@"\n')
    done = _install(env, tmp)
    assert done.returncode == 1
    if wheels:
        assert f"from the wheels in {data / 'wheels'}" in done.stderr, done.stderr
    else:
        assert "from PyPI" in done.stderr and "WHEELS=" in done.stderr, done.stderr
    assert '"Without network access"' in done.stderr
    assert "Without network access" in (REPO / "deploy" / "README.md").read_text()
    assert not [c for c in calls.read_text().splitlines() if c.startswith("systemctl")]
    assert not (tmp / "units" / "nwwatch.service").exists()


def test_a_missing_interpreter_is_named_before_anything_is_changed(sandbox):
    """PYTHON missing (no python3.11 on the PC): bash's "python3.11: command not found" came
    after the service user had been made."""
    tmp, env, prefix, config, calls, data = sandbox
    env["PYTHON"] = "python3.11-not-here"
    done = _install(env, tmp)
    assert done.returncode == 1
    assert "PYTHON=python3.11-not-here: no such interpreter" in done.stderr, done.stderr
    assert "Python 3.11 or newer" in done.stderr
    assert not calls.exists(), calls.read_text()
    assert not (prefix / "venv").exists()


def test_a_failed_venv_creation_is_removed_so_the_next_run_makes_it(sandbox):
    """Debian's python3.11 without python3.11-venv makes the venv's folders and python, then
    fails in ensurepip: the next run (after `apt install python3.11-venv`) took that venv for
    a finished one and failed on "No module named pip". The partial venv is removed."""
    tmp, env, prefix, config, calls, data = sandbox
    good_python = env["PYTHON"]
    fake = tmp / "python3.11-no-venv-module"
    # what python3.11 -m venv does without ensurepip: folders and the interpreter link, exit 1
    _script(fake, '[[ $1 == -m && $2 == venv ]] || exec ' + sys.executable + ' "$@"\n'
            'mkdir -p "$3/bin" && ln -s /usr/bin/false "$3/bin/python"\n'
            'echo "The virtual environment was not created successfully because ensurepip is'
            ' not available." >&2; exit 1\n')
    env["PYTHON"] = str(fake)
    done = _install(env, tmp)
    assert done.returncode == 1
    assert f"could not make the virtual environment {prefix}/venv.new" in done.stderr, \
        done.stderr
    assert "ensurepip is not available" in done.stderr
    assert not (prefix / "venv.new").exists() and not (prefix / "venv").exists()
    assert not (tmp / "units" / "nwwatch.service").exists()
    # python3.11-venv installed: this run makes the venv
    env["PYTHON"] = good_python
    done = _install(env, tmp)
    assert done.returncode == 0, done.stderr
    assert (tmp / "units" / "nwwatch.service").is_file()


def test_a_model_in_the_units_private_tmp_is_refused(sandbox, tmp_path):
    """A model under /tmp was found by install.sh's check (as root, outside the unit) and
    missing for the service (PrivateTmp=yes): exit 78 at every start after a clean install."""
    tmp, env, prefix, config, calls, data = sandbox
    model = tmp_path / "custom.onnx"  # pytest's tmp_path lies in /tmp
    if not str(model).startswith("/tmp/"):
        pytest.skip("pytest's tmp_path is not under /tmp here")
    shutil.copy(REPO / "nwwatch" / "models" / "insitu-default.onnx", model)
    config.write_text(f'[[watch]]\npath = "{data / "acq"}"\nmodel = "{model}"\n\n'
                      f'[output]\nresults = "{data / "results"}"\n')
    done = _install(env, tmp)
    assert done.returncode == 1
    assert f"watch[0].model: {model} lies in /tmp" in done.stderr, done.stderr
    assert not [c for c in calls.read_text().splitlines() if "restart" in c]


def test_an_interpreter_older_than_3_11_is_named_before_anything_is_changed(sandbox):
    tmp, env, prefix, config, calls, data = sandbox
    old = tmp / "python3.10"
    _script(old, '[[ $* == *version_info* ]] && exit 1\n'
            '[[ $* == *python_version* ]] && { echo 3.10.12; exit 0; }\n'
            'echo "python3.10 $*" >> ' + str(calls) + '\n')
    env["PYTHON"] = str(old)
    done = _install(env, tmp)
    assert done.returncode == 1
    assert f"PYTHON={old} is Python 3.10.12; nwwatch needs 3.11 or newer" in done.stderr, \
        done.stderr
    assert not calls.exists(), calls.read_text()
    assert not (prefix / "venv").exists()


def _log_systemctl_with_venvs(tmp: Path, calls: Path, prefix: Path) -> None:
    # each systemctl call with the venv folders present at that moment
    _script(tmp / "bin" / "systemctl",
            f'echo "systemctl $* [$(cd {prefix} && echo venv*)]" >> {calls}\n')


def test_an_update_builds_beside_the_running_venv_and_swaps_with_the_service_stopped(sandbox):
    """pip installed an update into the venv the running service executes from: a run that
    then stopped (the new version refusing the configuration) left the service on old code in
    memory with new files for its lazy imports, and no earlier venv was kept. The new venv is
    made and checked in venv.new, the service stopped only for the swap, the old venv kept."""
    tmp, env, prefix, config, calls, data = sandbox
    assert _install(env, tmp).returncode == 0
    (prefix / "venv" / "first").write_text("")
    calls.write_text("")
    _log_systemctl_with_venvs(tmp, calls, prefix)
    done = _install(env, tmp)
    assert done.returncode == 0, done.stderr
    made = calls.read_text().splitlines()
    new = prefix / "venv.new"
    # built, its nwwatch run by the service user, all while the service ran
    assert made.index(f"venv {new}") < made.index(f"runuser -u microscopy -- {new}/bin/nwwatch "
                                                  "--version") < made.index(
        "systemctl stop nwwatch [venv venv.new]"), made
    stop = made.index("systemctl stop nwwatch [venv venv.new]")
    assert made[stop + 1:] == [
        "systemctl daemon-reload [venv venv.previous]",
        "systemctl enable nwwatch [venv venv.previous]",
        "systemctl reset-failed nwwatch [venv venv.previous]",
        "systemctl restart nwwatch [venv venv.previous]",
        "systemctl --no-pager status nwwatch [venv venv.previous]"], made
    assert (prefix / "venv.previous" / "first").exists()
    assert not (prefix / "venv" / "first").exists()
    # pip's scripts and activate name the folder they were made in: they now name venv
    live = prefix / "venv"
    assert (live / "bin" / "nwwatch").read_text().startswith(f"#!{live}/bin/python\n")
    assert (live / "bin" / "activate").read_text() == f'VIRTUAL_ENV="{live}"\n'
    version = subprocess.run([str(live / "bin" / "nwwatch"), "--version"], capture_output=True,
                             text=True, timeout=60)
    assert version.returncode == 0 and "nwwatch, version" in version.stdout, version.stderr
    # a third run replaces the kept venv with the one it replaces
    assert _install(env, tmp).returncode == 0
    assert not (prefix / "venv.previous" / "first").exists()
    assert sorted(p.name for p in prefix.glob("venv*")) == ["venv", "venv.previous"]


@pytest.mark.parametrize("failure", ["config", "pip", "entry point"])
def test_an_update_that_fails_leaves_the_running_service_and_its_venv_as_they_were(
        sandbox, failure):
    tmp, env, prefix, config, calls, data = sandbox
    assert _install(env, tmp).returncode == 0
    (prefix / "venv" / "first").write_text("")
    before = {p.name: p.read_bytes() for p in (prefix / "venv" / "bin").iterdir()}
    if failure == "config":  # the new version refuses a key the installed one took
        config.write_text(config.read_text() + "\n[service]\nno_such_key = 1\n")
    elif failure == "pip":
        _script(tmp / "venv-python",
                '[[ $1 == -P && $2 == -m && $3 == pip && $* == *constraints* ]] && exit 1\n'
                '[[ $1 == -P && $2 == -m && $3 == pip ]] && exit 0\n'
                f'exec env PYTHONPATH={REPO} {sys.executable} "$@"\n')
    else:
        _script(tmp / "venv-python", '[[ $1 == -P && $2 == -m && $3 == pip ]] && exit 0\n'
                '[[ $1 == */bin/nwwatch ]] && { echo "ImportError: broken" >&2; exit 1; }\n'
                f'exec env PYTHONPATH={REPO} {sys.executable} "$@"\n')
    calls.write_text("")
    done = _install(env, tmp)
    assert done.returncode == 1, done.stderr
    made = calls.read_text().splitlines()
    assert f"venv {prefix}/venv.new" in made, made
    assert not [c for c in made if c.startswith("systemctl")], made
    assert sorted(p.name for p in prefix.glob("venv*")) == ["venv"]
    assert (prefix / "venv" / "first").exists()
    assert {p.name: p.read_bytes() for p in (prefix / "venv" / "bin").iterdir()} == before
    if failure == "config":
        assert "no_such_key" in done.stderr, done.stderr
        # run the update again once fixed: --reconfigure would check with the installed code
        assert done.stderr.rstrip().endswith(f"and run: sudo {REPO / 'deploy' / 'install.sh'}")


def test_an_update_whose_service_does_not_stop_keeps_the_venv_to_roll_back_to(sandbox):
    tmp, env, prefix, config, calls, data = sandbox
    assert _install(env, tmp).returncode == 0
    (prefix / "venv" / "first").write_text("")
    assert _install(env, tmp).returncode == 0
    (prefix / "venv" / "second").write_text("")
    _script(tmp / "bin" / "systemctl", f'echo "systemctl $*" >> {calls}\n'
            '[[ $1 == stop ]] && { echo "Failed to stop nwwatch.service" >&2; exit 1; }\n'
            'exit 0\n')
    done = _install(env, tmp)
    assert done.returncode == 1 and "could not stop nwwatch" in done.stderr, done.stderr
    # the service still runs its venv, and --rollback still has the one before it
    assert (prefix / "venv" / "second").exists()
    assert (prefix / "venv.previous" / "first").exists()
    assert sorted(p.name for p in prefix.glob("venv*")) == ["venv", "venv.previous"]


def test_rollback_swaps_the_kept_venv_back_and_again_forward(sandbox):
    tmp, env, prefix, config, calls, data = sandbox
    rollback = ["bash", str(REPO / "deploy" / "install.sh"), "--rollback"]
    assert _install(env, tmp).returncode == 0
    # nothing kept after a first install: refused, nothing stopped
    calls.write_text("")
    done = subprocess.run(rollback, env=env, cwd=tmp, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no earlier venv" in done.stderr, done.stderr
    assert not [c for c in calls.read_text().splitlines() if c.startswith("systemctl")]
    (prefix / "venv" / "first").write_text("")
    assert _install(env, tmp).returncode == 0
    (prefix / "venv" / "second").write_text("")
    for live, kept in (("first", "second"), ("second", "first")):
        calls.write_text("")
        _log_systemctl_with_venvs(tmp, calls, prefix)
        done = subprocess.run(rollback, env=env, cwd=tmp, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert (prefix / "venv" / live).exists() and (prefix / "venv.previous" / kept).exists()
        made = [c for c in calls.read_text().splitlines() if c.startswith("systemctl")]
        assert made[:4] == ["systemctl stop nwwatch [venv venv.previous]",
                            "systemctl daemon-reload [venv venv.previous]",
                            "systemctl reset-failed nwwatch [venv venv.previous]",
                            "systemctl restart nwwatch [venv venv.previous]"], made
        assert "--rollback" in done.stdout
    # the kept version refuses the configuration: named, nothing stopped or moved
    _script(prefix / "venv.previous" / "bin" / "python",
            '[[ $* == *nwwatch.service.dropin* ]] && '
            '{ echo "service.new_key: unknown key" >&2; exit 78; }\n'
            f'exec env PYTHONPATH={REPO} {sys.executable} "$@"\n')
    calls.write_text("")
    done = subprocess.run(rollback, env=env, cwd=tmp, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "service.new_key: unknown key" in done.stderr
    assert done.stderr.rstrip().endswith("--rollback"), done.stderr
    assert not [c for c in calls.read_text().splitlines() if "stop" in c or "restart" in c]
    assert (prefix / "venv" / "second").exists() and (prefix / "venv.previous" / "first").exists()
    # a kept version from before the watched-folder check does not know --watched (exit 2):
    # the rollback goes on without that check (it stopped, blaming the configuration)
    _script(prefix / "venv.previous" / "bin" / "python",
            '[[ $* == *--watched* ]] && { echo "error: no such option: --watched" >&2; '
            'exit 2; }\n'
            f'exec env PYTHONPATH={REPO} {sys.executable} "$@"\n')
    done = subprocess.run(rollback, env=env, cwd=tmp, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (prefix / "venv" / "first").exists()


@pytest.mark.parametrize("mode", ["--reconfigure", "--rollback"])
def test_the_configuration_is_checked_with_the_venvs_code_from_the_checkout_root(sandbox, mode):
    """deploy/README.md runs `sudo deploy/install.sh --reconfigure` (or --rollback) from the
    checkout root: `python -m nwwatch.service.dropin` put the current folder first on sys.path,
    so a newer checkout's nwwatch accepted a key the venv's code refuses, wrote the drop-in,
    and the service was restarted on a configuration it then refused (exit 78)."""
    tmp, env, prefix, config, calls, data = sandbox
    assert _install(env, tmp).returncode == 0
    if mode == "--rollback":
        assert _install(env, tmp).returncode == 0  # an update keeps venv.previous
    # a newer checkout, whose nwwatch accepts any configuration (the venvs run this tree's)
    checkout = tmp / "checkout"
    for folder in ("deploy", "systemd"):
        shutil.copytree(REPO / folder, checkout / folder)
    (checkout / "nwwatch" / "service").mkdir(parents=True)
    (checkout / "nwwatch" / "__init__.py").write_text('__version__ = "checkout"\n')
    (checkout / "nwwatch" / "service" / "__init__.py").write_text("")
    (checkout / "nwwatch" / "service" / "dropin.py").write_text(
        "import sys\n"
        "if not {'--writable', '--watched'} & set(sys.argv):\n"
        "    print('[Service]\\n# written by the checkout')\n")
    config.write_text(config.read_text() + 'new_key = "x"\n')  # in [output]
    dropin = tmp / "units" / "nwwatch.service.d" / "paths.conf"
    before = dropin.read_text()
    venvs = {p.name: sorted(q.name for q in p.iterdir()) for p in prefix.glob("venv*")}
    calls.write_text("")
    done = subprocess.run(["bash", "deploy/install.sh", mode], env=env, cwd=checkout,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "output.new_key: unknown key" in done.stderr, done.stderr
    assert dropin.read_text() == before
    assert not [c for c in calls.read_text().splitlines() if c.startswith("systemctl")]
    assert {p.name: sorted(q.name for q in p.iterdir()) for p in prefix.glob("venv*")} == venvs
    # fixed, it goes on with the venv's code: its drop-in, its version named
    config.write_text(config.read_text().replace('new_key = "x"\n', ""))
    done = subprocess.run(["bash", "deploy/install.sh", mode], env=env, cwd=checkout,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "written by the checkout" not in dropin.read_text()
    if mode == "--rollback":
        import nwwatch
        assert f"nwwatch {nwwatch.__version__} now runs" in done.stdout, done.stdout


def test_real_venvs_are_swapped_and_their_scripts_run_from_venv(sandbox):
    """Real `python -m venv` and pip: the console script pip writes into venv.new/bin names
    venv.new/bin/python in its shebang; once moved to venv it must run from there (the unit's
    ExecStart is venv/bin/nwwatch). Offline: the venv sees this environment's packages
    through a .pth file and nwwatch is built with its setuptools (--no-build-isolation)."""
    import importlib.metadata
    import sysconfig
    try:  # not imported here: setuptools replaces distutils in the process that imports it
        versions = [importlib.metadata.version(name) for name in ("pip", "setuptools")]
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("needs pip and setuptools in this environment to install nwwatch offline")
    if tuple(int(x) for x in versions[1].split(".")[:2]) < (70, 1):
        pytest.skip("needs setuptools with bdist_wheel (70.1+) to build nwwatch offline")
    tmp, env, prefix, config, calls, data = sandbox
    site = sysconfig.get_paths()["purelib"]
    _script(tmp / "python-real",
            f'[[ $1 == -m && $2 == venv ]] || exec {sys.executable} "$@"\n'
            f'{sys.executable} -m venv --without-pip "$3" || exit 1\n'
            f'echo {site} > "$3"/lib/python3.{sys.version_info[1]}/site-packages/deps.pth\n')
    (data / "wheels").mkdir()
    env.update(PYTHON=str(tmp / "python-real"), WHEELS=str(data / "wheels"),
               EXTRA_PIP_ARGS="--no-build-isolation")
    # the venv's own nwwatch is what runs (not this checkout's on PYTHONPATH)
    for key in ("PIP_FIND_LINKS", "PYTHONPATH"):
        env.pop(key, None)
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    live = prefix / "venv"
    for _ in ("install", "update"):
        done = _install(env, tmp)
        assert done.returncode == 0, done.stdout + done.stderr
        # an update reuses the installed venv's extra pip arguments
        env.pop("EXTRA_PIP_ARGS", None)
        assert (live / "bin" / "nwwatch").read_text().startswith(f"#!{live}/bin/python\n")
        assert f"{prefix}/venv.new" not in (live / "bin" / "activate").read_text()
        where = subprocess.run([str(live / "bin" / "nwwatch"), "--version"],
                               capture_output=True, text=True, timeout=60, cwd="/", env=clean)
        assert where.returncode == 0 and "nwwatch, version" in where.stdout, where.stderr
    imported = subprocess.run([str(live / "bin" / "python"), "-c",
                               "import nwwatch, sys; print(sys.prefix, nwwatch.__file__)"],
                              capture_output=True, text=True, timeout=60, cwd="/", env=clean)
    assert imported.stdout.split() == [str(live), f"{live}/lib/python3.{sys.version_info[1]}"
                                       "/site-packages/nwwatch/__init__.py"], imported
    assert (prefix / "venv.previous" / "bin" / "nwwatch").is_file()
    done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh"), "--rollback"], env=env,
                          cwd=tmp, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after = subprocess.run([str(live / "bin" / "nwwatch"), "--version"], capture_output=True,
                           text=True, timeout=60, cwd="/", env=clean)
    assert after.returncode == 0, after.stderr


def test_an_update_reinstalls_the_extra_pip_arguments_of_the_installed_venv(sandbox):
    """Each update makes a fresh venv: one installed with EXTRA_PIP_ARGS (the CUDA libraries)
    would lose them at an update run as deploy/README says, without the variable."""
    tmp, env, prefix, config, calls, data = sandbox
    env["EXTRA_PIP_ARGS"] = "onnxruntime-gpu[cuda,cudnn] --no-cache-dir"
    assert _install(env, tmp).returncode == 0
    del env["EXTRA_PIP_ARGS"]
    for record in (True, False):
        if not record:  # a venv made before install.sh recorded them, CUDA libraries from pip
            (prefix / "venv" / "extra-pip-args").unlink()
            (prefix / "venv" / "lib" / "python3.11" / "site-packages" / "nvidia" / "cudnn").mkdir(
                parents=True)
        calls.write_text("")
        done = _install(env, tmp)
        assert done.returncode == 0, done.stderr
        pips = [c for c in calls.read_text().splitlines() if c.startswith("pip ") and " -c " in c]
        wanted = " onnxruntime-gpu[cuda,cudnn]" + (" --no-cache-dir" if record else "")
        assert len(pips) == 1 and pips[0].endswith(wanted), pips
    # an update with it set empty installs without them
    env["EXTRA_PIP_ARGS"] = ""
    calls.write_text("")
    assert _install(env, tmp).returncode == 0
    pips = [c for c in calls.read_text().splitlines() if c.startswith("pip ") and " -c " in c]
    assert "onnxruntime" not in pips[0], pips


def test_a_rollback_stopped_between_its_moves_is_undone_or_finished_by_the_next_run(sandbox):
    # --rollback swaps venv and venv.previous through venv.swap; killed after its first move
    # it left no venv (the service cannot start) and the next --rollback answered "no earlier
    # venv"; killed after its second, its rm -rf of venv.swap deleted the replaced venv
    tmp, env, prefix, config, calls, data = sandbox
    rollback = ["bash", str(REPO / "deploy" / "install.sh"), "--rollback"]
    live, previous, swap = prefix / "venv", prefix / "venv.previous", prefix / "venv.swap"
    assert _install(env, tmp).returncode == 0
    (live / "first").write_text("")
    assert _install(env, tmp).returncode == 0
    (live / "second").write_text("")
    live.rename(swap)  # stopped after its first move: undone, then the rollback runs
    done = subprocess.run(rollback, env=env, cwd=tmp, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{live} put back from {swap}" in done.stderr
    assert (live / "first").exists() and (previous / "second").exists() and not swap.exists()
    live.rename(swap)  # stopped after its second move: finished (venv.previous in place)
    previous.rename(live)
    assert subprocess.run(["bash", str(REPO / "deploy" / "install.sh"), "--reconfigure"],
                          env=env, cwd=tmp, capture_output=True, text=True,
                          timeout=60).returncode == 0
    assert (live / "second").exists() and (previous / "first").exists() and not swap.exists()
    swap.mkdir()  # no stopped rollback leaves three venvs: nothing guessed, nothing moved
    calls.write_text("")
    done = subprocess.run(rollback, env=env, cwd=tmp, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and f"{swap} is left beside" in done.stderr, done.stderr
    assert (live / "second").exists() and (previous / "first").exists() and swap.exists()
    assert not [c for c in calls.read_text().splitlines() if c.startswith("systemctl")]


def test_an_update_stopped_between_its_renames_is_finished_by_the_next_run(sandbox):
    # killed after venv -> venv.previous and before venv.new -> venv: the service had no venv,
    # --rollback said "no earlier venv" and the next update removed venv.previous
    tmp, env, prefix, config, calls, data = sandbox
    live, previous, new = prefix / "venv", prefix / "venv.previous", prefix / "venv.new"
    assert _install(env, tmp).returncode == 0
    assert _install(env, tmp).returncode == 0
    assert not (live / ".install-checked").exists()  # the mark of a checked venv.new goes
    (live / "second").write_text("")
    shutil.copytree(live, new, symlinks=True)  # the update's checked venv.new
    (new / "third").write_text("")
    (new / ".install-checked").write_text("")
    shutil.rmtree(previous)
    live.rename(previous)
    done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh"), "--reconfigure"],
                          env=env, cwd=tmp, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{live} put in place from {new} (an update stopped between its moves)" in done.stderr
    assert (live / "third").exists() and (previous / "second").exists()
    assert not new.exists() and not (live / ".install-checked").exists()


def test_reconfigure_before_any_install_says_to_install_first(sandbox):
    # before: "python: No such file or directory", then "fix CONFIG and run: sudo install.sh
    # --reconfigure", which failed the same way again
    tmp, env, prefix, config, calls, _ = sandbox
    done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh"), "--reconfigure"],
                          env=env, cwd=tmp, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert (f"nwwatch is not installed at {prefix} ({prefix}/venv: no venv): run sudo "
            in done.stderr), done.stderr
    assert "No such file" not in done.stderr and "--reconfigure" not in done.stderr.split(
        "run sudo")[-1]
    assert not (tmp / "units" / "nwwatch.service").exists()


def test_a_first_install_on_the_untouched_example_makes_no_folder_and_starts_nothing(sandbox):
    """The example's placeholder results folder was made (/data/nwwatch-results on the root
    file system, maybe under a future mount point) and the service started on it."""
    tmp, env, prefix, config, calls, data = sandbox
    example = (REPO / "deploy" / "nwwatch.example.toml").read_text()
    fresh = data / "fresh" / "nwwatch.toml"
    env = dict(env, CONFIG=str(fresh))
    existed = Path(re.search(r'^results = "(.*)"', example, re.M).group(1)).exists()
    done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert fresh.read_text() == example
    assert "installed, not started" in done.stdout, done.stdout
    made = calls.read_text().splitlines()
    assert not [c for c in made if c in ("systemctl enable nwwatch", "systemctl restart nwwatch")]
    results = re.search(r'^results = "(.*)"', example, re.M).group(1)  # the placeholder
    assert not existed or Path(results).exists()
    assert existed or not Path(results).exists()
    # --reconfigure refuses the example, then starts the service once it is edited
    again = subprocess.run(["bash", str(REPO / "deploy" / "install.sh"), "--reconfigure"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "still the example" in again.stderr, again.stderr
    # ... also when a later release's example differs from the one it was written from
    import hashlib

    older = example + "# an earlier release's example\n"
    fresh.write_text(older)
    (prefix / "config-from-example.sha256").write_text(
        hashlib.sha256(older.encode()).hexdigest() + "  -\n")
    again = subprocess.run(["bash", str(REPO / "deploy" / "install.sh"), "--reconfigure"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "still the example" in again.stderr, again.stderr
    fresh.write_text(f'[[watch]]\npath = "{data / "acq"}"\n\n'
                     f'[output]\nresults = "{data / "results2"}"\n')
    again = subprocess.run(["bash", str(REPO / "deploy" / "install.sh"), "--reconfigure"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    made = calls.read_text().splitlines()
    assert "systemctl enable nwwatch" in made and "systemctl restart nwwatch" in made
    assert (data / "results2").is_dir()


def test_the_documented_offline_wheel_command_builds_a_copy_not_the_checkout(tmp_path):
    """deploy/README.md's `pip wheel ... . setuptools wheel` built the checkout in place: it
    left build/ and nwwatch.egg-info there, and the next build packed a module removed from
    the checkout since (left in build/lib). The documented commands run here in a copy of
    the checkout; python3.11's pip builds, offline, the source folders they name."""
    readme = (REPO / "deploy" / "README.md").read_text()
    section = readme[readme.index("## Without network access"):]
    block = section[section.index("```sh\n") + 6:section.index("```", section.index("```sh\n") + 6)]
    assert "pip wheel" in block, block
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for item in ("pyproject.toml", "README.md", "constraints.txt", "nwwatch", "training"):
        copy = shutil.copytree if (REPO / item).is_dir() else shutil.copy
        copy(REPO / item, checkout / item)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    # the requirements come from PyPI there: here only the source folders named are built
    _script(bin_ / "python3.11",
            f'[[ $1 == -m && $2 == pip && $3 == wheel ]] || exec {sys.executable} "$@"\n'
            'shift 3; out=; dirs=()\n'
            'while (($#)); do case $1 in -w) out=$2; shift 2;; -c) shift 2;;\n'
            '  *) [[ -d $1 ]] && dirs+=("$1"); shift;; esac; done\n'
            f'exec {sys.executable} -m pip wheel -q --no-deps --no-index --no-build-isolation'
            ' -w "$out" "${dirs[@]}"\n')
    env = dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}")
    (checkout / "nwwatch" / "obsolete_mod.py").write_text("X = 1\n")
    for wheels in ("w1", "w2"):
        script = block.replace("nwwatch-wheels", wheels)
        done = subprocess.run(["bash", "-euc", script], cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        (checkout / "nwwatch" / "obsolete_mod.py").unlink(missing_ok=True)
    assert not (checkout / "build").exists() and not list(checkout.glob("*.egg-info"))
    import zipfile

    import nwwatch

    for wheels, obsolete in (("w1", True), ("w2", False)):
        found = list((checkout / wheels).glob("nwwatch-*.whl"))
        assert [w.name for w in found] == [f"nwwatch-{nwwatch.__version__}-py3-none-any.whl"]
        names = zipfile.ZipFile(found[0]).namelist()
        assert ("nwwatch/obsolete_mod.py" in names) == obsolete, wheels
