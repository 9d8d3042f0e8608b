"""``nwwatch train``: train a segmentation model with one of four paradigms and export ONNX."""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from nwwatch.classes import TOMOGRAM_CLASSES
from nwwatch.io.dataset import (
    folder_class_names,
    mask_like_files,
    mask_like_labels,
    read_dataset_toml,
)
from nwwatch.options import (
    SEED,
    FiniteFloatRange,
    OutputFile,
    listed,
    mask_warning,
    stream_dropped,
)
from training.config import (
    FINETUNE_DEFAULTS,
    FOLDER_DEFAULTS,
    PARADIGM_NAMES,
    SELF_NEGATIVES,
    VOLUME_CANDIDATES,
    VOLUME_DEFAULTS,
    TrainConfig,
)
from training.exportnoise import known_noise_filtered


def _model_options(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})", param_hint="--model-options") from None
    if not isinstance(value, dict):
        raise click.BadParameter("expected a JSON object", param_hint="--model-options")
    return value


def _check_model(arch: str, model_options: dict, device: str) -> None:
    """Usage errors, naming the option and the choices, for an unknown architecture, model
    option or device; checked before any data are read."""
    import torch

    from training.models import MODELS, check_options

    if arch:  # "": --init, the weights' architecture and options (the engine compares)
        if arch not in MODELS:
            raise click.BadParameter(f"{arch!r}: choose one of {', '.join(sorted(MODELS))}",
                                     param_hint="--arch")
        try:
            check_options(arch, model_options)
        except KeyError as exc:
            raise click.BadParameter(str(exc.args[0]), param_hint="--model-options") from None
    if device != "auto":
        try:
            torch.device(device)
        except (RuntimeError, ValueError):
            raise click.BadParameter(f"{device!r}: choose auto, cpu, cuda or cuda:N (a torch "
                                     f"device name)", param_hint="--device") from None


def _volume_file(ctx: click.Context, param: click.Parameter, value: Path | None
                 ) -> Path | None:
    """``--volume``: a file; for a folder (one TIFF per slice?) how to make one."""
    if value is not None and value.is_dir():
        from nwwatch.io.errors import JOIN_SLICES_HINT

        raise click.BadParameter(f"{value} is a folder: --volume takes one multi-page TIFF "
                                 f"(pages = Z slices); one TIFF per slice? {JOIN_SLICES_HINT}",
                                 ctx, param)
    return value


def _data_folder(ctx: click.Context, param: click.Parameter, value: Path | None
                 ) -> Path | None:
    """DATA: a folder; for a file (a tomogram given as DATA?) what to give instead."""
    if value is not None and value.is_file() and value.suffix.lower() in (".onnx", ".pt"):
        # `nwwatch train mine.onnx --init insitu-default`: --out or --init given as DATA
        raise click.BadParameter(f"{value} is a model, not a DATA folder: DATA is the folder "
                                 "of labeled frames to train on (images/ and labels/), a model "
                                 "to start from is --init and the model to write --out "
                                 "(nwwatch train DATA --init insitu-default --out mine.onnx)",
                                 ctx, param)
    if value is not None and value.is_file():
        raise click.BadParameter(f"{value} is a file: DATA is a folder (images/ and labels/); "
                                 "a tomogram? give --volume " f"{value} --slice Z --labels "
                                 "L.png (docs/tomography.md)", ctx, param)
    return value


def _command_line(ctx: click.Context) -> str:
    """The options given on the command line, as a reproducible ``nwwatch train`` command."""
    parts = ["nwwatch", "train"]
    if ctx.params.get("data") is not None:
        parts.append(str(ctx.params["data"]))
    for param in ctx.command.params:
        if param.name == "data" or ctx.get_parameter_source(param.name) is not (
                ParameterSource.COMMANDLINE):
            continue
        value = ctx.params[param.name]
        if getattr(param, "is_flag", False):
            if value:
                parts.append(param.opts[0])
        elif getattr(param, "multiple", False):
            for item in value:
                parts += [param.opts[0], str(item)]
        else:
            parts += [param.opts[0], str(value)]
    return shlex.join(parts)


class RunEcho:
    """``click.echo`` for the lines of a run. Once standard output is closed (``nwwatch train
    ... | head -2``: the reader has ended) the run goes on without printing them, and says once
    on stderr where its files go: a pipe's reader ending is no reason to lose the training."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.closed = False

    def __call__(self, message: str = "") -> None:
        if self.closed:
            return
        try:
            click.echo(message)
        except BrokenPipeError:
            self.closed = True
            stream_dropped()
            from training.modelfiles import checkpoint_path

            with contextlib.suppress(OSError):  # stderr may be closed too
                click.echo(f"note: standard output was closed (its reader ended); the run goes "
                           f"on without printing: checkpoint {checkpoint_path(self.out)}, "
                           f"model {self.out}", err=True)


class ProgressStream:
    """Standard error for the progress bar. Once it is closed (``nwwatch train ... 2>&1 |
    head -3``: the reader has ended) the bar stops and the run goes on, as :class:`RunEcho`
    does for standard output: a progress bar is no reason to lose the training."""

    def __init__(self) -> None:
        self.closed = False

    def write(self, text: str) -> int:
        if self.closed:
            return len(text)
        try:
            return sys.stderr.write(text)
        except BrokenPipeError:
            self._close()
            return len(text)

    def flush(self) -> None:
        if self.closed:
            return
        try:
            sys.stderr.flush()
        except BrokenPipeError:
            self._close()

    def _close(self) -> None:
        self.closed = True
        stream_dropped(err=True)

    def __getattr__(self, name: str):  # fileno, isatty, encoding: tqdm sizes the bar by them
        return getattr(sys.stderr, name)


@click.command("train")
@click.argument("data", required=False, type=click.Path(path_type=Path),
                callback=_data_folder)
@click.option("--paradigm", type=click.Choice(PARADIGM_NAMES), default="supervised",
              show_default=True, help="supervised (A, D), cct (B, C, E), pseudo-label (F), "
                                      "contrastive (seed 003). With --volume and no "
                                      "--paradigm: see --candidates.")
@click.option("--arch", default=None,
              help="Architecture: unet (lean), unet-paper, pspnet  [default: unet; "
                   "unet-paper with --volume].")
@click.option("--model-options", default=None, help='Architecture options as JSON, e.g. '
              '\'{"widths": [8, 16, 32, 64, 128]}\'  [default: none; '
              '\'{"widths": [16, 32, 64], "dropout": 0.0}\' with --volume].')
@click.option("--out", required=True, type=OutputFile("model.onnx"),
              help="MODEL.onnx to write; a network's checkpoint MODEL.pt goes next to it "
                   "(the threshold and the forest of --volume have none). An earlier run's "
                   "files there are never replaced, except by --resume.")
@click.option("--volume", type=click.Path(exists=True, path_type=Path), callback=_volume_file,
              help="Tomogram workflow: the 3D TIFF or MRC volume (.rec, .mrc; every other slice "
                   "is unlabeled data).")
@click.option("--slice", "slice_index", type=int, multiple=True,
              help="Index along Z of the labeled slice, counted from 0 (Fiji's slice n is "
                   "n - 1), with --volume; repeat for several slices.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, help="Labels of that slice: 0 pore or vacuum, 1 solid, 255 "
                                  "unlabeled; one per --slice, in the same order.")
@click.option("--candidates", default=",".join(VOLUME_CANDIDATES), show_default=True,
              help="With --volume and no --paradigm: the methods cross-validated on the "
                   "labeled patches; the best is kept (docs/tomography.md).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs [default: 50; 6 with --volume; 80 with --init].")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None,
              help="Iterations per epoch [default: labeled images / batch size; 10 with --volume].")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Labeled crops per iteration  [default: 8; 4 with --volume or --init].")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=None,
              help="SGD with momentum (the papers') or AdamW  [default: sgd; adamw with "
                   "--init].")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Learning rate  [default: 0.01; 0.001 with --init].")
@click.option("--momentum", type=FiniteFloatRange(0, 1, max_open=True), default=0.9,
              show_default=True)
@click.option("--weight-decay", type=FiniteFloatRange(min=0), default=1e-4, show_default=True)
@click.option("--crop", type=click.IntRange(min=8), default=None,
              help="Side of the random training crops (pixels)  [default: 256; 64 with --volume; "
                   "384 with --init].")
@click.option("--val-fraction", type=FiniteFloatRange(0, 1, max_open=True), default=None,
              help="Share of labeled images held out for validation  [default: 0.2; 0 with "
                   "--volume; 0.1 with --init, none below 6 images].")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch [default: torch's]. On a shared machine 1 is often "
                   "fastest: OpenMP threads spin when cores are oversubscribed.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Threads that draw the augmented batches ahead of the training loop (0: "
                   "the loop draws them); for machines with idle cores, e.g. training on a GPU. "
                   "The batches are the same for every value.")
@click.option("--no-augment", is_flag=True, help="Disable online augmentation.")
@click.option("--dice-weight", type=FiniteFloatRange(min=0), default=None,
              help="Weight of the Dice term next to cross-entropy  [default: 1; 0 with --volume].")
@click.option("--boundary-weight", type=FiniteFloatRange(min=0), default=0.0, show_default=True,
              help="supervised: extra cross-entropy weight on pixels within 3 px of a class "
                   "boundary.")
@click.option("--unsupervised-weight", type=FiniteFloatRange(min=0), default=1.0,
              show_default=True,
              help="cct: weight of the consistency loss after ramp-up.")
@click.option("--rampup-epochs", type=FiniteFloatRange(min=0), default=10.0, show_default=True,
              help="cct: epochs over which the consistency weight ramps up.")
@click.option("--perturbations", default=None,
              help="cct: comma-separated perturbations [default: all seven for pspnet; "
                   "dropout,feature_drop,feature_noise for UNets].")
@click.option("--aux-per-perturbation", type=click.IntRange(min=1), default=1, show_default=True,
              help="cct: auxiliary decoders per perturbation.")
@click.option("--perturb-skips", is_flag=True, help="cct with a UNet: perturb skip features too.")
@click.option("--init", "init_weights", default=None, metavar="WEIGHTS",
              help="Start from trained weights instead of random ones (fine-tuning): a "
                   "MODEL.pt checkpoint, or the name of shipped weights (insitu-default). "
                   "The architecture is the weights' (--arch must match, --model-options may "
                   "be left out); optimiser and schedule start fresh.")
@click.option("--frozen-encoder", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="cct: MODEL.pt whose encoder is loaded and frozen: a supervised run's "
                   "(model C), or a cct or pseudo-label run's.")
@click.option("--teacher", metavar="MODEL",
              help="pseudo-label: teacher MODEL.pt or MODEL.onnx, or the name of shipped "
                   "weights (insitu-default), as --init reads it.")
@click.option("--confidence", type=FiniteFloatRange(0, 1), default=0.9, show_default=True,
              help="pseudo-label: pixels below this teacher confidence become 255.")
@click.option("--embedding-dim", type=click.IntRange(min=2), default=16, show_default=True,
              help="contrastive: channels of the pixel embedding (the backbone's output).")
@click.option("--temperature", type=FiniteFloatRange(min=0, min_open=True), default=1.0,
              show_default=True,
              help="contrastive: softmax temperature on cosine similarities (1 = the paper's "
                   "plain cosine; 0.1 scatters unlabeled background, docs/tomography.md).")
@click.option("--self-temperature", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="contrastive: temperature of the self-supervised loss  [default: "
                   "--temperature]")
@click.option("--self-negatives", type=click.Choice(SELF_NEGATIVES), default="all",
              show_default=True,
              help="contrastive: negatives of the self-supervised loss. all: every other pixel "
                   "(the paper); other-class: only pixels the classifier puts in another "
                   "class (against the vacuum drift of longer training; docs/training.md).")
@click.option("--contrastive-supervised-weight", type=FiniteFloatRange(min=0), default=1.0,
              show_default=True, help="contrastive: weight of the supervised contrastive loss.")
@click.option("--contrastive-self-weight", type=FiniteFloatRange(min=0), default=1.0,
              show_default=True, help="contrastive: weight of the self-supervised loss.")
@click.option("--classifier-steps", type=click.IntRange(min=0), default=None,
              help="contrastive: iterations refitting the 1x1 classifier on the frozen backbone "
                   " [default: 100; 50 with --volume].")
@click.option("--quantize", type=click.Choice(["int8", "none"]), default=None,
              help="int8: also write MODEL-int8.onnx if it keeps >= 99.9 % label agreement "
                   "(none: not, e.g. on --resume of a run that had int8).")
@click.option("--exporter", type=click.Choice(["dynamo", "legacy"]), default="dynamo",
              show_default=True, help="torch ONNX exporter (both verified against torch).")
@click.option("--resume", is_flag=True, help="Continue from MODEL.pt (its settings and split; "
                                             "an option given that differs is refused).")
@click.option("--export-only", is_flag=True,
              help="With --resume (required): train nothing, export MODEL.pt's best weights "
                   "now.")
@click.option("--quiet/--progress", default=False,
              help="No progress bar (--progress: show it). Left out, --resume keeps the "
                   "run's own.")
def train(**options) -> None:
    """Train a segmentation model on DATA and export it to ONNX.

    DATA/images/<stem>.tif|png (or the frames in DATA itself, as `nwwatch synth insitu`
    writes them) with DATA/labels/<stem>.png (255 = unlabeled), optional DATA/unlabeled/ and
    DATA/dataset.toml; or a tomogram: --volume V.tif --slice Z --labels L.png.
    """
    from training.runfiles import interrupt_explained

    # From the first line on, not only around the training: the torch import and the checks
    # take seconds, and a Ctrl-C or SIGTERM there must end the command as later (exit 130 or
    # 143, a message, the folders made for --out removed).
    with interrupt_explained(options["out"], before_run=True):
        _train(**options)


def _train(data, paradigm, arch, model_options, out, volume, slice_index, labels, candidates,
           epochs,
           steps_per_epoch, batch_size, optimizer, lr, momentum, weight_decay, crop, val_fraction,
           seed, device, threads, workers, no_augment, dice_weight, boundary_weight,
           unsupervised_weight, rampup_epochs,
           perturbations, aux_per_perturbation, perturb_skips, init_weights, frozen_encoder,
           teacher, confidence,
           embedding_dim, temperature, self_temperature, self_negatives,
           contrastive_supervised_weight,
           contrastive_self_weight, classifier_steps, quantize, exporter, resume, export_only,
           quiet) -> None:
    from nwwatch.options import require_writable
    from training.checkpoint import CheckpointError
    from training.data import DatasetLayoutError
    from training.engine import TrainingError
    from training.engine import train as run
    from training.exporting import export_line, int8_line
    from training.modelfiles import int8_path
    from training.resume import ResumeSettingError
    from training.runfiles import (
        absolute,
        check_init,
        check_init_and_frozen_encoder,
        check_inputs,
        check_momentum,
        check_out,
        check_paradigm_options,
        given_settings,
        interrupt_explained,
        remove_empty,
        resolve_teacher,
        series_note,
    )
    from training.sampler import SamplerError

    click.get_current_context().with_resource(known_noise_filtered())
    echo = RunEcho(out)

    check_inputs(data, volume, slice_index, labels, resume, export_only)
    ctx = click.get_current_context()
    if ctx.get_parameter_source("candidates") is ParameterSource.COMMANDLINE and (
            volume is None or init_weights is not None or resume
            or ctx.get_parameter_source("paradigm") is ParameterSource.COMMANDLINE):
        raise click.UsageError("--candidates chooses the method of --volume without --paradigm, "
                               "--init or --resume (a resume continues the kept network); here "
                               "it would be ignored")
    if not resume:  # a resume's paradigm is the checkpoint's
        check_paradigm_options(ctx, volume is not None and init_weights is None, candidates)
        check_init_and_frozen_encoder(init_weights, frozen_encoder)
    if perturbations is not None and not any(p.strip() for p in perturbations.split(",")):
        # an empty value trained the defaults without a word
        raise click.UsageError("--perturbations names no perturbation: give some, "
                               "comma-separated, or leave the option out for the defaults")
    if perturbations is not None:
        # Checked here, before any data are read, not when the cct paradigm is built.
        from training.perturbations import PERTURBATIONS

        unknown = [p.strip() for p in perturbations.split(",")
                   if p.strip() and p.strip() not in PERTURBATIONS]
        if unknown:
            raise click.BadParameter(f"{', '.join(map(repr, unknown))}: choose from "
                                     f"{', '.join(PERTURBATIONS)} (comma-separated)",
                                     param_hint="--perturbations")
    quantize = None if quantize == "none" else quantize  # given (a resume takes it): no INT8
    check_out(out, resume, quantize)
    teacher = resolve_teacher(teacher)
    check_init(init_weights)
    # Before the training, not at its first checkpoint: the .onnx and .pt go to one folder.
    # Folders made for it are removed again if the run ends with nothing written there.
    new_folders = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    ctx.call_on_close(lambda: remove_empty(new_folders))
    require_writable(out, "'--out'")
    given = {"arch": arch, "model_options": _model_options(model_options) or None,
             "epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
             "crop": crop, "dice_weight": dice_weight, "classifier_steps": classifier_steps,
             "val_fraction": val_fraction, "optimizer": optimizer, "lr": lr}
    defaults = dict(VOLUME_DEFAULTS if volume is not None else FOLDER_DEFAULTS)
    defaults.update(optimizer="sgd", lr=0.01, val_min_images=2)
    if init_weights is not None:  # "": the architecture is the weights' (engine checks)
        defaults.update(arch="", model_options={})
        if volume is None:  # fine-tuning a frame model on a few labeled frames
            defaults.update(FINETUNE_DEFAULTS)
    if arch is not None:  # the default options belong to the default architecture
        defaults["model_options"] = {}
    if resume:
        # The checkpoint's own epoch count stands unless --epochs raises it (engine takes the
        # larger); a default here would silently stretch a 6-epoch tomogram run to 50.
        defaults["epochs"] = 1
    chosen = {k: defaults[k] if v is None else v for k, v in given.items()}
    _check_model(chosen["arch"], chosen["model_options"], device)
    if not resume:  # a resume's optimiser is the checkpoint's
        check_momentum(ctx, chosen["optimizer"])
    # The fine-tuning split rule belongs to its default split, not to a --val-fraction given.
    val_min_images = defaults["val_min_images"] if val_fraction is None else 2
    config = TrainConfig(
        # Input paths absolute: a --resume from another folder reads the same files.
        out=str(out), data=absolute(data), paradigm=paradigm, arch=chosen["arch"],
        model_options=dict(chosen["model_options"]), init=init_weights,
        volume=absolute(volume),
        slice_index=(slice_index[0] if len(slice_index) == 1 else list(slice_index))
        if slice_index else None,
        labels=(absolute(labels[0]) if len(labels) == 1 else [absolute(p) for p in labels])
        if labels else None,
        epochs=chosen["epochs"], steps_per_epoch=chosen["steps_per_epoch"],
        batch_size=chosen["batch_size"], optimizer=chosen["optimizer"], lr=chosen["lr"],
        momentum=momentum, weight_decay=weight_decay, crop=chosen["crop"],
        val_fraction=chosen["val_fraction"], val_min_images=val_min_images, seed=seed,
        device=device, threads=threads, workers=workers, quiet=quiet,
        augment=not no_augment,
        dice_weight=chosen["dice_weight"], boundary_weight=boundary_weight,
        unsupervised_weight=unsupervised_weight,
        rampup_epochs=rampup_epochs,
        perturbations=tuple(p.strip() for p in perturbations.split(",")) if perturbations
        else None,
        aux_per_perturbation=aux_per_perturbation, perturb_skips=perturb_skips,
        frozen_encoder=absolute(frozen_encoder),
        teacher=teacher, confidence=confidence,
        embedding_dim=embedding_dim, temperature=temperature, self_temperature=self_temperature,
        self_negatives=self_negatives,
        contrastive_supervised_weight=contrastive_supervised_weight,
        contrastive_self_weight=contrastive_self_weight,
        classifier_steps=chosen["classifier_steps"], quantize=quantize, exporter=exporter,
        command=_command_line(click.get_current_context()),
    )
    if volume is not None and not resume:
        note = series_note(volume)
        if note:
            echo(note)
        for label_path in mask_like_files(list(labels)):  # as for a DATA folder's labels
            echo(mask_warning(label_path, TOMOGRAM_CLASSES))
        if (ctx.get_parameter_source("paradigm") is not ParameterSource.COMMANDLINE
                and init_weights is None):
            with interrupt_explained(out, epochs=False):
                _select_volume_method(config, candidates, echo)
            return
    if config.data is not None and not resume:
        for label_path in mask_like_labels(config.data):
            echo(mask_warning(label_path, folder_class_names(Path(config.data))))
        with contextlib.suppress(DatasetLayoutError):  # the run names a bad dataset.toml
            if read_dataset_toml(Path(config.data))[0] == "tomogram":
                echo("note: a tomogram DATA folder trains one network, with no choice of "
                     "method and no threshold to compare it with; `nwwatch train --volume "
                     "V --slice K --labels L` chooses (docs/tomography.md)")
    try:
        with interrupt_explained(out):
            result = run(config, resume=resume, progress=not quiet, progress_file=ProgressStream(),
                         echo=echo, export_only=export_only, given=given_settings(ctx))
    except ResumeSettingError as exc:
        raise click.UsageError(str(exc)) from None
    except (DatasetLayoutError, TrainingError, CheckpointError, SamplerError, ValueError,
            OSError) as exc:  # OSError: a full disk at export, a file gone (not a traceback)
        raise click.ClickException(str(exc)) from None
    except RuntimeError as exc:
        if type(exc).__name__ != "ExportVerificationError":  # its module imports torch
            raise
        # nothing was written: say what is kept and how to export again, not a traceback
        used = exporter
        if resume and ctx.get_parameter_source("exporter") is not ParameterSource.COMMANDLINE:
            used = _checkpoint_exporter(out, default=exporter)  # left out: the run's own
        raise click.ClickException(export_failed_message(exc, out, used)) from None
    echo(f"checkpoint: {result.checkpoint}")
    if result.out is not None:
        echo(f"model: {result.out}")
        if "export" in result.reports:
            echo(export_line(result.reports["export"]))
    if result.int8 is not None or "int8" in result.reports:  # asked now, or by the resumed run
        echo(int8_line(result.int8, result.reports.get("int8")))
    if result.out is not None and result.int8 is None and int8_path(out).exists():
        # an earlier export's, also when this one was not asked for an INT8 model
        # (--quantize none): beside the new model its name says it is this model's
        echo(f"warning: {int8_path(out)} is the INT8 model of the weights exported "
             f"before, not of {out}: remove it, or keep it under another name")
    if result.out is not None and result.exported_epoch is not None:
        echo(exported_line(result.exported_epoch, result.epochs, result.validation_images))
    for key, value in sorted(result.metrics.items()):
        echo(f"  {key}: {value:.4f}")
    if result.out is not None:
        from training.engine import starting_weights_warning

        warning = starting_weights_warning(result)
        if warning:
            echo(warning)


def _checkpoint_exporter(out: Path, default: str) -> str:
    """The exporter a resumed run used where ``--exporter`` was left out: its checkpoint's."""
    from training.checkpoint import load_checkpoint
    from training.modelfiles import checkpoint_path

    try:
        return str(load_checkpoint(checkpoint_path(out))["config"].get("exporter", default))
    except Exception:  # noqa: BLE001 - the message then names the default; the error stands
        return default


def export_failed_message(error: Exception, out: Path, exporter: str) -> str:
    """The export of a run failed its check against torch (or the exporter failed): no model
    was written; the checkpoint keeps the weights, and the export can be tried again with the
    exporter other than ``exporter`` (the one that failed)."""
    from training.modelfiles import checkpoint_path

    checkpoint = checkpoint_path(out)
    other = "legacy" if exporter == "dynamo" else "dynamo"
    kept = (f"{checkpoint} keeps the trained weights: `nwwatch train --resume --export-only "
            f"--exporter {other} --out {out}` exports them with the other exporter"
            if checkpoint.is_file() else "no checkpoint was saved")
    return f"{out} not written: {error}; {kept}"


def exported_line(epoch: int, epochs: int, held_out: list[str]) -> str:
    """Which epoch's weights the model holds, and what its metrics below were scored on."""
    if not held_out:
        return (f"exported: the weights of epoch {epoch} of {epochs}; no held-out images, the "
                "metrics below are on the training images")
    return (f"exported: the weights of epoch {epoch} of {epochs}; metrics below on the "
            f"{len(held_out)} held-out image(s) ({listed(held_out)}), one network pass each at the "
            "training scale (nwwatch evaluate scores the runtime's segmentation, on images "
            "not held out here)")


def _select_volume_method(config: TrainConfig, candidates: str, echo: RunEcho) -> None:
    """``--volume`` without ``--paradigm``: cross-validate the candidates, keep the best."""
    from training.data import DatasetLayoutError
    from training.engine import TrainingError, resolve_device
    from training.volume_candidates import NETWORK_PARADIGMS
    from training.volume_select import select_and_train

    names = [c.strip() for c in candidates.split(",") if c.strip()]
    try:
        # Only the networks use the device: an unusable one stops the run before any
        # candidate's folds, not at the first network's.
        if any(name in NETWORK_PARADIGMS for name in names):
            resolve_device(config.device)
        selection, out = select_and_train(config, names, echo=echo)
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--candidates") from None
    except (DatasetLayoutError, TrainingError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    echo(f"model: {out} ({selection.method})")
