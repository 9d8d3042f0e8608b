"""The ``nwwatch`` command line: a click group whose subcommands load on first use.

Loading lazily keeps ``nwwatch --help`` fast and lets ``nwwatch train`` say how to install
the training extra instead of failing with an ImportError when torch is absent.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import signal
import sys

import click

from nwwatch import __version__
from nwwatch.stopsignals import STOP_SIGNALS, catch_stop_signals_early, early_stop_signal

# name -> (module, attribute, extra that provides the module's dependencies or None)
_COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "synth": ("nwwatch.synth.cli", "synth", None),
    "measure": ("nwwatch.measure.cli", "measure", None),
    "train": ("training.cli", "train", "train"),
    "evaluate": ("nwwatch.evaluate", "evaluate", None),
    "model": ("nwwatch.modelinfo", "model", None),
    "run": ("nwwatch.service.cli", "run", None),
    "replay": ("nwwatch.service.cli", "replay", None),
    "status": ("nwwatch.service.cli", "status", None),
    "ledger": ("nwwatch.service.cli", "ledger", None),
    "compact": ("nwwatch.service.cli", "compact", None),
    "demo": ("nwwatch.demo", "demo", None),
    "dashboard": ("nwwatch.dashboard.cli", "dashboard", None),
    "report": ("nwwatch.dashboard.report", "report", "report"),
    "label": ("nwwatch.label.cli", "label", None),
}

_HELP = {
    "synth": "Generate synthetic acquisitions with exact ground truth.",
    "measure": "Measure contact angles on label images or raw frames.",
    "train": "Train a segmentation model and export it to ONNX.",
    "evaluate": "Score an ONNX model on a labeled data folder.",
    "model": "Show what an ONNX model is and whether the service would load it.",
    "run": "Run the resident watching service.",
    "replay": "Process an existing folder or file through the service's code path.",
    "status": "Show what the service has processed, failed and quarantined.",
    "ledger": "Maintain the service's ledger (rebuild it from the results).",
    "compact": "Merge the small result files of each acquisition into one file.",
    "demo": "Run the main job end to end on synthetic data.",
    "dashboard": "Serve the web dashboard of a results folder.",
    "report": "Write a static HTML report (with PNG plots) of a results folder.",
    "label": "Correct the model's labels in the browser and save training data.",
}


#: Commands that stop cleanly on these signals (their last line says what was kept, the exit
#: status which signal): the signals are recorded from the moment the command is known,
#: before its modules load, and each takes them over as its first step. ``train`` stops so on
#: Ctrl-C and SIGTERM only.
_STOPPED_BY_SIGNALS: dict[str, tuple[int, ...]] = {
    **dict.fromkeys(("run", "replay", "label", "dashboard", "measure"), STOP_SIGNALS),
    "train": (signal.SIGINT, signal.SIGTERM),
}

#: Modules each extra provides; a command that needs an extra checks them before loading.
_EXTRA_MODULES: dict[str, tuple[str, ...]] = {"train": ("torch", "onnx", "onnxscript"),
                                               "report": ("matplotlib",)}


def _missing_modules(extra: str) -> list[str]:
    return [name for name in _EXTRA_MODULES[extra] if importlib.util.find_spec(name) is None]


#: ctx.meta key: the command's --help is asked (set by resolve_command for get_command)
_HELP_ASKED = "nwwatch.help_asked"


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        if name in _STOPPED_BY_SIGNALS:
            # its modules take a while to import
            catch_stop_signals_early(_STOPPED_BY_SIGNALS[name])
        module_name, attr, extra = _COMMANDS[name]
        if extra is not None:
            missing = _missing_modules(extra)
            if missing:
                needs = (f"'nwwatch {name}' needs the {extra!r} extra ({', '.join(missing)} not "
                         f"installed): pip install 'nwwatch[{extra}]'")
                if not ctx.meta.get(_HELP_ASKED):
                    raise click.ClickException(needs)
                return _help_without_extra(name, module_name, attr, missing, needs)
        return getattr(importlib.import_module(module_name), attr)

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        # get_command sees the command's name alone: whether its --help is asked (before a
        # `--`) decides what a command whose extra is missing gives
        rest = args[1:]
        rest = rest[:rest.index("--")] if "--" in rest else rest
        ctx.meta[_HELP_ASKED] = "--help" in rest
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        try:
            result = super().invoke(ctx)
        except SystemExit as exc:
            if _said_unwritten() and exc.code in (0, None):
                raise SystemExit(1) from None
            raise
        except BaseException:
            _said_unwritten()
            raise
        finally:
            # a command that never ran (a usage error, --help) leaves the handlers as they were
            early_stop_signal()
        if _said_unwritten():
            sys.exit(1)
        return result

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing help must not import torch: describe commands from the static table.
        rows = [(name, _HELP[name]) for name in sorted(_COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _help_without_extra(name: str, module_name: str, attr: str, missing: list[str],
                        needs: str) -> click.Command:
    """``nwwatch NAME --help`` where NAME's extra is missing: its options and the extra to
    install (README: every command has --help). The modules that define ``train`` and
    ``report`` import neither torch nor matplotlib at the top; one that does gets the
    command's purpose and the extra alone. Run anyway (``--out --help``), it says ``needs``."""

    def refuse(**_params: object) -> None:
        raise click.ClickException(needs)

    try:
        command = copy.copy(getattr(importlib.import_module(module_name), attr))
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in missing:
            raise
        return click.Command(name, callback=refuse, help=f"{_HELP[name]}\n\n{needs}",
                             context_settings={"ignore_unknown_options": True},
                             params=[click.Argument(["args"], nargs=-1)])
    command.callback = refuse
    command.epilog = f"{command.epilog}\n\n{needs}" if command.epilog else needs
    return command


def _said_unwritten() -> bool:
    """Say on stderr why the command's lines could not be written (a full disk behind
    stdout: :func:`nwwatch.options.say`), if they could not; whether they could not."""
    from nwwatch.options import unwritten_output

    why = unwritten_output()
    if why is not None:
        with contextlib.suppress(OSError, ValueError):
            click.echo(f"nwwatch: {why}", err=True)
    return why is not None


@click.group(cls=_LazyGroup)
@click.version_option(__version__, prog_name="nwwatch")
def main() -> None:
    """nwwatch: segment and measure in-situ TEM frames and tomograms while they are acquired."""
    from nwwatch.logsetup import configure_logging

    # One log format for every command: JSON lines on stderr, warnings and above (``run``
    # sets its configured level and keeps JSON, the journal's format), plain lines when
    # stderr is a terminal. Without this a command that never sets it up (``demo``,
    # ``measure``) would print structlog's console lines, at every level.
    configure_logging("warning", plain=sys.stderr.isatty())


if __name__ == "__main__":  # `python -m nwwatch.cli ARGS`, as the console script
    from nwwatch.__main__ import drop_current_folder_from_path

    drop_current_folder_from_path()  # before a command imports `training` (as -m nwwatch)
    main()
