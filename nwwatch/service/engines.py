"""What the daemon and ``nwwatch replay`` both do around :func:`process`: build the engines
(one segmenter per model file), vet input files before they are opened, quarantine the bad
ones, and at a start try again the tomograms refused for memory that now fit."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from nwwatch.classes import insitu_model_problem
from nwwatch.io import InputError, TiffInfo
from nwwatch.resources import Limit, usable_cores_limit
from nwwatch.service import streammemory
from nwwatch.service.config import (
    ConfigError,
    OverlaySettings,
    TomogramSettings,
)
from nwwatch.service.flush import FlushPolicy, RowBuffer
from nwwatch.service.inference import InferenceConfig, InferencePlan
from nwwatch.service.inputs import SERVICE_LINK_REASON, check_input
from nwwatch.service.ledger import Failure, Ledger
from nwwatch.service.names import path_key, source_name
from nwwatch.service.pipeline import Engine, refresh_quarantine

_log = structlog.get_logger("nwwatch.service")

if TYPE_CHECKING:  # onnxruntime: imported when a model is loaded, not to read a configuration
    from nwwatch.segment.session import Segmenter

#: What to do when a model's kind is not its folder's (after the mismatch itself).
KIND_MISMATCH_HINT = {
    "tomogram": ": tomograms need a model trained on a few labeled patches of the volume "
                "with `nwwatch train --volume` (docs/tomography.md)",
    "insitu": ": a tomogram model segments tomograms only (replay --kind tomogram, or a "
              "[[watch]] with kind = \"tomogram\")",
}


@dataclass(frozen=True)
class EngineSpec:
    """One engine to build: the folder's kind, its model, where the setting came from."""

    kind: str
    model: Path
    key: str = "model"  # configuration key named in errors, e.g. "watch[1].model"
    kind_name: str = "the folder's kind"  # what set the kind, in errors ("--kind": a replay)


def build_engines(specs: Sequence[EngineSpec], ledger: Ledger, results_dir: Path, *,
                  inference: InferenceConfig, max_attempts: int,
                  tomogram: TomogramSettings, log, source: Path | None = None,
                  overlays: OverlaySettings | None = None,
                  flush: FlushPolicy | None = None,
                  memory_checked_here: bool = True,
                  overlays_from: tuple[Path | None, str] | None = None,
                  **volume_overrides: object) -> list[Engine]:
    """One :class:`Engine` per spec, sharing the segmenter of the same model file.

    Raises :class:`ConfigError` when a model's kind does not match its spec, or a tomogram
    model cannot segment tomograms (naming ``source`` and the spec's key), and
    ``GpuUnavailableError`` / ``ModelLoadError`` from
    the segmenter. ``flush``: when each engine writes its held rows (default: at the end of
    every ``process`` call). ``memory_checked_here``: False when tomograms are segmented in
    other processes (Dask workers) whose memory this one does not know: every tomogram
    refused for memory is then tried again, for the worker to check it against its own.
    ``overlays_from``: (configuration file or None, key) of the setting that asked for QA
    pictures, named when their folder cannot be written (default: ``output.overlays`` of
    ``source``, ``--overlays`` without one).
    """
    from nwwatch.results.parquet import warm_up_arrow
    from nwwatch.segment.session import (
        PROVIDERS,
        ModelLoadError,
        Segmenter,
        gpu_possible,
        read_model_file,
    )

    warm_up_arrow()  # before the first batch: its write would carry pyarrow's first imports
    segmenters: dict[Path, tuple[Segmenter, Segmenter | None, InferencePlan]] = {}
    # One buffer for every watch: they share the ledger, and content whose rows are held
    # must be seen as processed by every watch (a copy in another folder is skipped).
    buffer = RowBuffer(flush)
    engines = []
    volume_options = tomogram.volume_options(**volume_overrides)
    budget: Limit | None = None  # "auto": memory for the extra streams, read once

    def session(model: Path, threads: int | None, content: bytes) -> Segmenter:
        return Segmenter(model, providers=inference.providers,
                         require_gpu=inference.require_gpu, threads=threads,
                         model_bytes=content)

    for spec in specs:
        model = Path(spec.model).resolve()
        if model not in segmenters:
            # One read for every session of the model: a file replaced between two reads
            # would give sessions of two models, and rows of one under the other's hash.
            try:
                content = read_model_file(model)
            except ModelLoadError as exc:
                if source is None:  # a replay's --model: the message names the file
                    raise
                raise ModelLoadError(f"{source}: {spec.key}: {exc}") from None
            # The threads of a session are fixed when it is made: plan for the provider it
            # will most likely get, and make it again in the rare case it got another.
            streams = spec.kind == "insitu"
            plan = inference.plan(gpu=gpu_possible(inference.providers),
                                  frame_streams=streams)
            try:
                seg = session(model, plan.threads, content)
            except ModelLoadError as exc:
                if source is None:  # a replay's --model: the message names the file
                    raise
                # the service: say which setting of which configuration names the file
                raise ModelLoadError(f"{source}: {spec.key}: {exc}") from None
            if inference.plan(gpu=seg.uses_gpu, frame_streams=streams) != plan:
                plan = inference.plan(gpu=seg.uses_gpu, frame_streams=streams)
                seg = session(model, plan.threads, content)
            # Concurrent streams: a second session of the (small) model with one intra-op
            # thread; a group that runs alone keeps `seg` and its full thread count.
            shared = (session(model, plan.stream_threads, content) if plan.streams > 1
                      else None)
            segmenters[model] = seg, shared, plan
            limits = {}
            if plan.streams > 1 and inference.streams == "auto":
                if budget is None:
                    budget = streammemory.auto_stream_budget()
                # "auto" was sized from these: say what bounded them (affinity or a cgroup
                # quota; /proc/meminfo or the unit's MemoryMax), as the machine's figures may
                # differ.
                limits = {"cores_source": "threads" if inference.threads is not None
                          else usable_cores_limit().source,
                          "stream_memory_source": budget.source if budget else None}
            if seg.provider not in [PROVIDERS[name] for name in inference.providers]:
                # the CPU is always the last resort, also when the list leaves it out
                log.warning("provider_fallback", model=str(model), provider=seg.provider,
                            providers=list(inference.providers),
                            reason=f"none of the providers asked for in [inference] "
                                   f"providers can run here: {model.name} runs on "
                                   f"{seg.provider} (require_gpu = true refuses that)")
            log.info("model_loaded", model=str(model), model_sha256=seg.model_sha256,
                     provider=seg.provider, kind=seg.metadata.kind, streams=plan.streams,
                     intra_op_threads=plan.threads, stream_intra_op_threads=plan.stream_threads,
                     stream_memory_bytes=int(budget.value) if budget else None, **limits)
        seg, shared, plan = segmenters[model]
        insitu_budget = int(budget.value) if budget and spec.kind == "insitu" else None
        _judge(seg, spec, model, source)
        engines.append(Engine(kind=spec.kind, segmenter=seg, ledger=ledger,
                              results_dir=results_dir, batch_size=inference.batch_size,
                              streams=plan.streams if spec.kind == "insitu" else 1,
                              stream_segmenter=shared if spec.kind == "insitu" else None,
                              stream_memory_bytes=insitu_budget,
                              max_attempts=max_attempts, log=log,
                              volume_options=volume_options,
                              overlays=overlays or OverlaySettings(),
                              buffer=buffer))
    pictures = overlays or OverlaySettings()
    if pictures.mode != "none" and any(e.kind == "insitu" for e in engines):
        _check_pictures_folder(results_dir / pictures.folder, *(overlays_from or (
            source, "output.overlays" if source is not None else "--overlays")))
    if any(e.kind == "tomogram" for e in engines):
        # Tomograms refused for memory that fit now (the limit raised since) go back to be
        # processed; imported here, as an in-situ run needs none of the volume code.
        from nwwatch.service.volumes import retry_tomograms_that_fit

        retry_tomograms_that_fit(ledger, log, check_memory=memory_checked_here,
                                 slices_per_call=inference.batch_size)
    if any(e.kind == "insitu" for e in engines):
        # Likewise in-situ files read whole that were refused for memory.
        from nwwatch.service.stackmemory import retry_stacks_that_fit

        retry_stacks_that_fit(ledger, log, check_memory=memory_checked_here)
    return engines


def _check_pictures_folder(folder: Path, source: Path | None, key: str) -> None:
    """:class:`ConfigError` naming the QA pictures' ``folder`` and the setting ``key`` that
    asked for them when it cannot be written: found at the start, not as an
    ``overlay_write_failed`` line for every frame of a run that exits 0."""
    from nwwatch.atomic import probe_writable

    made = not os.path.lexists(folder)
    try:
        probe_writable(folder)
    except OSError as exc:
        raise ConfigError(source, key, f"QA pictures cannot be written to {folder} "
                          f"({exc.strerror or exc})") from None
    if made:  # made by the first picture (a run of done files draws none)
        with contextlib.suppress(OSError):
            folder.rmdir()


def _judge(seg: Segmenter, spec: EngineSpec, model: Path, source: Path | None) -> None:
    """Raise :class:`ConfigError` naming ``source`` and ``spec.key`` when the model of ``seg``
    is of another kind than the spec's, or one the service refuses (:func:`model_problem`)."""
    if seg.metadata.kind != spec.kind:
        raise ConfigError(source, spec.key,
                          f"{model.name} is {'an' if seg.metadata.kind == 'insitu' else 'a'} "
                          f"{seg.metadata.kind!r} model but {spec.kind_name} is "
                          f"{spec.kind!r}{KIND_MISMATCH_HINT.get(spec.kind, '')}")
    if problem := model_problem(seg):
        raise ConfigError(source, spec.key, problem)


def check_models(specs: Sequence[EngineSpec], inference: InferenceConfig,
                 source: Path | None) -> None:
    """What :func:`build_engines` would refuse in the models of ``specs``, found before
    anything is created: each model loaded once on the CPU and judged as there, and
    ``[inference] require_gpu`` against a GPU provider being possible at all (whether the
    provider then loads shows only when the service's sessions are made).

    Raises :class:`ConfigError` or :class:`nwwatch.segment.session.ModelLoadError` naming
    ``source`` (the configuration file) and the key, as :func:`build_engines` does.
    """
    from nwwatch.segment.session import ModelLoadError, Segmenter, gpu_possible

    if inference.require_gpu and not gpu_possible(inference.providers):
        raise ConfigError(source, "inference.require_gpu",
                          f"a GPU provider is required, but none of {list(inference.providers)} "
                          "can run on a GPU here (a GPU provider and an NVIDIA driver are "
                          "needed): set require_gpu = false, or run on a machine with one")
    loaded: dict[Path, Segmenter] = {}
    for spec in specs:
        model = Path(spec.model).resolve()
        if model not in loaded:
            try:
                loaded[model] = Segmenter(model, providers=("cpu",), threads=1)
            except ModelLoadError as exc:
                if source is None:
                    raise
                raise ModelLoadError(f"{source}: {spec.key}: {exc}") from None
        _judge(loaded[model], spec, model, source)


def model_problem(seg: Segmenter) -> str | None:
    """Why the service would refuse the model of ``seg`` (a :class:`Segmenter`, which has
    already checked the file against the model contract) for folders of the model's own kind,
    or None. Such a model fails every file alike, so the service refuses it when it loads it
    (exit 78; a replay 1) instead of charging the error to each file:

    - in-situ: fewer than three classes, or class names that contradict the ids every in-situ
      reader uses (else every frame fails alike, an IndexError on the droplet class);
    - tomogram: what :func:`nwwatch.volume.segment_volume` would refuse (no solid class, a bad
      ``extra`` value).

    ``nwwatch model`` reports the same verdict."""
    if seg.metadata.kind == "tomogram":
        from nwwatch.volume import VolumeModelError, check_volume_model

        try:
            check_volume_model(seg)
        except VolumeModelError as exc:
            return f"cannot segment tomograms: {exc}"
        return None
    problem = insitu_model_problem(seg.metadata.class_names)
    return f"cannot measure frames: {seg.model_path}: {problem}" if problem else None


def inspect_input(path: Path, root: Path, follow_symlinks: bool = False, *,
                  link_reason: str = SERVICE_LINK_REASON) -> TiffInfo:
    """The structural check of an input file (:func:`nwwatch.io.inspect_tiff`), after
    :func:`nwwatch.service.inputs.check_input` (regular file, inside ``root``; ``link_reason``:
    the refusal of a link out of it): never blocks on a FIFO or device, never reads through
    a link out of the watched folder. Running out of memory there is the file's fault (a
    header check reads headers only: a header declaring absurd sizes that a library
    allocated before any check) and an InputError, and so is any other exception but an
    OSError (a reader's fault on these bytes, logged as ``inspect_crashed`` with its
    traceback): uncaught it ended the service, whose restart met the same file again."""
    from nwwatch.io import inspect_tiff

    check_input(path, root, follow_symlinks, link_reason=link_reason)
    try:
        return inspect_tiff(path)
    except MemoryError:
        raise InputError(path, "checking its headers ran out of memory: a corrupt header "
                               "declaring absurd sizes?") from None
    except (InputError, OSError):
        raise
    except Exception as exc:
        # a reader's own fault on this file's bytes: logged with its traceback, and the file
        # is bad input (quarantined once its size settles) instead of the end of the service,
        # which systemd's restart would meet again at the same file
        _log.exception("inspect_crashed", source=str(path), error=repr(exc))
        raise InputError(path, f"its structural check failed unexpectedly ({exc!r}): a file "
                               "nwwatch's reader does not handle; please report it with the "
                               "file") from exc


@dataclass(frozen=True)
class BadInput:
    """A file that failed :func:`inspect_input`."""

    path: Path
    error: InputError
    size: int | None = None
    mtime_ns: int | None = None


def quarantine_inputs(engine: Engine, bad: Sequence[BadInput], log) -> int:
    """Record bad input files as quarantined (ledger and ``quarantine.parquet``), one
    ``file_quarantined`` line each. Returns how many."""
    if not bad:
        return 0
    failures = []
    for b in bad:
        size, mtime = b.size, b.mtime_ns
        if size is None:
            try:
                st = os.stat(b.path)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                pass
        failures.append(Failure(None, path_key(b.path), b.error.reason,
                                type(b.error).__name__, True, size, mtime))
        log.warning("file_quarantined", source=source_name(b.path), reason=b.error.reason,
                    error_type=type(b.error).__name__)
    engine.ledger.record_failures(failures, engine.max_attempts)
    refresh_quarantine(engine.ledger, engine.results_dir, log)
    return len(failures)

