"""The service configuration: one TOML file, validated once at start.

Every error is a :class:`ConfigError` that names the file, the key (``watch[1].kind``) and
what is wrong; unknown keys are errors too, so a typo never silently falls back to a default.
The format is documented in ``deploy/nwwatch.example.toml`` and ``docs/service.md``.

Validation imports neither ONNX Runtime nor the segmentation code (``deploy/install.sh``
validates a file with ``python -m nwwatch.service.dropin`` before the runtime is needed):
provider names are checked against :data:`PROVIDER_NAMES` (a test keeps it equal to
``nwwatch.segment.session.PROVIDERS``), and the ``[tomogram]`` table becomes
:class:`TomogramSettings`, turned into ``VolumeOptions`` only when tomograms are processed.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nwwatch import DEFAULT_INSITU_MODEL
from nwwatch.dashboard.settings import DashboardConfig, parse_listen
from nwwatch.options import model_name_problem, results_dataset_of
from nwwatch.paths import default_ledger, lies_inside
from nwwatch.service.configreader import ConfigError, TableReader, read_toml
from nwwatch.service.inference import InferenceConfig
from nwwatch.service.ledgerdb import ledger_path_problem

KINDS = ("insitu", "tomogram")
#: Which frames get a QA picture (``[output] overlays``): none, those without status "ok", all.
OVERLAY_MODES = ("none", "flagged", "all")
#: The names a [[watch]] table without ``patterns`` takes, per kind, in any case: TIFF, MRC
#: as the tools of each kind name it (SerialEM's movie stacks .mrcs, reconstructions .rec
#: from IMOD or AreTomo), and for in-situ frames Gatan's DigitalMicrograph files, Velox EMD
#: files and TIA series files (their 3-D images are series in time, not tomograms:
#: nwwatch.io.dm, .emd, .ser; TIA's companion .emi, its metadata, is no input).
DEFAULT_SUFFIXES = {"insitu": (".tif", ".tiff", ".mrc", ".mrcs", ".dm3", ".dm4", ".emd",
                               ".ser"),
                    "tomogram": (".tif", ".tiff", ".mrc", ".rec")}


def other_kind_reading(suffix: str, kind: str) -> str | None:
    """The kind whose default names (:data:`DEFAULT_SUFFIXES`) take a file ending in ``suffix``
    (any case) when ``kind``'s do not (".rec" for "insitu": "tomogram"), else None: what a
    watch or replay of ``kind`` that leaves such a file out advises."""
    suffix = suffix.lower()
    if suffix in DEFAULT_SUFFIXES[kind]:
        return None
    return next((other for other in KINDS if suffix in DEFAULT_SUFFIXES[other]), None)


def _any_case(suffix: str) -> str:
    # patterns are matched case-sensitively, and Windows acquisition software also writes
    # "Image 001.Tif"
    return "*." + "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c
                          for c in suffix.lstrip("."))


#: ``patterns`` when a [[watch]] table gives none (:data:`DEFAULT_SUFFIXES`, e.g.
#: "*.[tT][iI][fF]").
DEFAULT_PATTERNS = {kind: tuple(map(_any_case, suffixes))
                    for kind, suffixes in DEFAULT_SUFFIXES.items()}
#: Names that are never inputs: editors' and writers' temporary files, hidden files.
DEFAULT_IGNORE = (".*", "*.tmp", "*.part", "*.partial", "*.crdownload", "*~")
#: The model shipped with the package, used when an in-situ [[watch]] names none. Tomogram
#: models are trained per specimen from the user's labels (`nwwatch train --volume`), so none
#: ships and a tomogram watch must name its model.
DEFAULT_MODELS = {
    "insitu": DEFAULT_INSITU_MODEL,
}
#: Why a kind has no default model (the error a missing ``model`` key gets).
NO_DEFAULT_MODEL = {
    "tomogram": "required for tomograms: train one on a few labeled patches of your volume "
                "with `nwwatch train --volume` (docs/tomography.md)",
}

#: Upper bounds of the numeric keys (docs/service.md, Configuration reference), checked once
#: by load_config; each error names the key.
SETTLE_MAX_S = 3600.0  # watch.settle_seconds: a file would wait an hour to count as complete
RESCAN_MAX_S = 86400.0  # watch.rescan_seconds: a day between full listings
BATCH_SIZE_MAX = 256  # inference.batch_size: 256 frames of 2048² float32 already hold 4 GiB
BATCH_LATENCY_MAX_MS = 60_000.0  # inference.max_batch_latency_ms: a minute
#: inference.threads: the shipped unit's TasksMax=256 counts every thread; the session's,
#: up to STREAMS_MAX streams' and the service's own (watchers, writer, dashboard) must fit,
#: or the session's start blocks at the limit and the service never becomes ready
THREADS_MAX = 128
UNIT_TASKS_MAX = 256  # systemd/nwwatch.service TasksMax
STREAMS_MAX = 64  # inference.streams: each stream holds its frames in memory ("auto": <= 8)
#: The service's own threads besides its sessions' and streams' (main, writer, frame worker,
#: dashboard, stop deadline, the BLAS threads of the unit's OMP_NUM_THREADS=4), with room to
#: spare: 6 to 9 measured with one watch and no dashboard.
SERVICE_THREADS = 16
#: Threads of each [[watch]] (its observer and emitter: 3 measured with inotify, 2 polling).
THREADS_PER_WATCH = 3
MARGIN_MAX_PX, MIN_COMPONENT_MAX_VOXELS = 1024, 1_000_000_000  # [tomogram] (10⁹: a 1000³ volume)
FLUSH_ROWS_MAX = 1_000_000  # output.flush_rows: rows held in memory until written
FLUSH_MAX_S = 3600.0  # output.flush_seconds
MAX_ATTEMPTS_MAX = 100  # retry.max_attempts
BACKOFF_MAX_S = 3600.0  # retry.backoff_seconds
STALE_MAX_S = 86400.0  # dashboard.stale_after_s
#: systemd/nwwatch.service SIGKILLs TimeoutStopSec=30 s after SIGTERM: the service gives up on
#: the batch in flight 5 s before, time to log and exit (a test keeps both in step).
UNIT_TIMEOUT_STOP_S, STOP_TIMEOUT_MAX_S = 30, 25.0


#: Execution provider names of ``[inference] providers`` (the keys of
#: ``nwwatch.segment.session.PROVIDERS``, which imports ONNX Runtime).
PROVIDER_NAMES = ("tensorrt", "cuda", "cpu")


@dataclass(frozen=True)
class WatchConfig:
    """One acquisition folder."""

    path: Path
    kind: str = "insitu"
    #: None: the kind's DEFAULT_PATTERNS
    patterns: tuple[str, ...] | None = None
    ignore_patterns: tuple[str, ...] = DEFAULT_IGNORE
    recursive: bool = True
    model: Path | None = None  # resolved to the default model by load_config
    polling: str = "auto"  # "auto", "true", "false"
    settle_seconds: float = 5.0
    rescan_seconds: float = 60.0
    #: Follow symbolic links that lead outside the folder (off: such links are quarantined).
    follow_symlinks: bool = False

    def __post_init__(self) -> None:
        if self.patterns is None:
            object.__setattr__(self, "patterns", DEFAULT_PATTERNS.get(
                self.kind, DEFAULT_PATTERNS["insitu"]))


@dataclass(frozen=True)
class TomogramSettings:
    """The ``[tomogram]`` table as given; None: the default of ``VolumeOptions``."""

    triplanar: bool | None = None
    flips: bool | None = None
    margin_px: int | None = None
    min_component_voxels: int | None = None

    def volume_options(self, **overrides: object):
        """The ``nwwatch.volume.segment.VolumeOptions`` these settings make (``overrides``
        replace fields; None values are ignored)."""
        from nwwatch.volume.segment import VolumeOptions

        given = {k: v for k, v in vars(self).items() if v is not None}
        given.update({k: v for k, v in overrides.items() if v is not None})
        return VolumeOptions(**given)


@dataclass(frozen=True)
class OverlaySettings:
    """QA pictures of in-situ frames (``[output] overlays``, ``nwwatch replay --overlays``).

    ``mode``: one of :data:`OVERLAY_MODES`; ``folder``: where they go, relative to the results
    folder (always inside it); ``save_labels``: also the model's label image of each
    selected frame."""

    mode: str = "none"
    folder: Path = Path("overlays")
    save_labels: bool = False

    def wanted(self, status: str | None) -> bool:
        """Whether a frame of this ``status`` gets a picture."""
        return self.mode == "all" or (self.mode == "flagged" and status != "ok")


@dataclass(frozen=True)
class ServiceConfig:
    """The whole configuration; ``source`` is the file it came from (None when built in code)."""

    watches: tuple[WatchConfig, ...]
    results: Path
    ledger: Path
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    tomogram: TomogramSettings = field(default_factory=TomogramSettings)
    max_attempts: int = 3
    #: Seconds between tries while results or the ledger cannot be written (disk full).
    backoff_seconds: float = 5.0
    #: After SIGTERM, the longest wait for the batch in flight before the process exits
    #: anyway (<= STOP_TIMEOUT_MAX_S, below the unit's TimeoutStopSec=30).
    stop_timeout_seconds: float = 20.0
    log_level: str = "info"
    source: Path | None = None
    dashboard: DashboardConfig | None = None  # [dashboard]; None: no dashboard
    overlays: OverlaySettings = field(default_factory=OverlaySettings)  # [output] overlays
    #: [output] flush_rows / flush_seconds: rows are written to Parquet once this many are
    #: held, or once the oldest has waited this long (nwwatch.service.flush).
    flush_rows: int = 10_000
    flush_seconds: float = 10.0


def _looked_at(r: TableReader, key: str, path: Path) -> os.stat_result | None:
    """``path``'s stat, or None when nothing is there; a :class:`ConfigError` naming ``key``
    when it cannot be looked at (a folder above it the service user may not search, a name
    too long): ``Path.exists`` raised those, a traceback and exit 1 that systemd restarts."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise r.error(key, f"cannot look at {path} ({exc.strerror or exc}): the user the "
                           f"service runs as must be able to reach it") from None


def _watch(file: Path | None, index: int, table: Any, base: Path,
           models: bool = True) -> WatchConfig:
    r = TableReader(file, f"watch[{index}]", table)
    path = r.path("path", base, required=True)
    found = _looked_at(r, "path", path)
    if found is not None and not stat.S_ISDIR(found.st_mode):
        # missing is fine: a share not mounted yet
        raise r.error("path", f"not a folder: {path}")
    kind = r.get("kind", str, "insitu")
    if kind not in KINDS:
        raise r.error("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    model = r.path("model", base)
    if not models:
        # only the paths are wanted (status --config): a model file gone missing is what
        # stopped the service, when its results are looked at
        model = model or DEFAULT_MODELS.get(kind)
    elif model is None:
        if kind in NO_DEFAULT_MODEL:
            raise r.error("model", NO_DEFAULT_MODEL[kind])
        model = DEFAULT_MODELS[kind]
        if not model.is_file():
            raise r.error("model", f"not set and no shipped default model for {kind!r} at {model}")
    elif (model_stat := _looked_at(r, "model", model)) is not None and stat.S_ISDIR(
            model_stat.st_mode):
        raise r.error("model", f"a folder, not a model file: {model}")
    elif not model.is_file():
        raise r.error("model", f"not a regular file (a device, a FIFO): {model}"
                      if model.exists() else f"file not found: {model}")
    elif model_name_problem(model):
        raise r.error("model", model_name_problem(model))
    r.used.add("polling")
    polling = r.table.get("polling", "auto")
    if isinstance(polling, bool):
        polling = "true" if polling else "false"
    if not isinstance(polling, str) or polling not in ("auto", "true", "false"):
        raise r.error("polling", f"must be \"auto\", true or false, got {polling!r}")
    settle = r.positive("settle_seconds", float, 5.0, allow_zero=True, at_most=SETTLE_MAX_S)
    rescan = r.positive("rescan_seconds", float, 60.0, at_most=RESCAN_MAX_S)
    watch = WatchConfig(
        path=path,
        kind=kind,
        patterns=r.strings("patterns", DEFAULT_PATTERNS[kind], allow_empty=False,
                           file_names=True),
        ignore_patterns=r.strings("ignore_patterns", DEFAULT_IGNORE, file_names=True),
        recursive=r.get("recursive", bool, True),
        model=model,
        polling=polling,
        settle_seconds=settle,
        rescan_seconds=rescan,
        follow_symlinks=r.get("follow_symlinks", bool, False),
    )
    # An ignore pattern that takes every name, or each pattern itself, leaves the service
    # nothing to process, silently (as an empty `patterns` would)
    everything = [p for p in watch.ignore_patterns if set(p) == {"*"}]
    # names each pattern takes ("*.[tT][iI][fF]": frame.tif, a.tif, 0.tif, ...) that the
    # ignore patterns all take too ("*.*"): every file of that pattern is ignored
    ignored = [p for p in watch.patterns
               if all(any(fnmatch.fnmatchcase(name, i) for i in watch.ignore_patterns)
                      for name in _example_names(p))]
    if everything or set(watch.patterns) <= set(watch.ignore_patterns) or (
            len(ignored) == len(watch.patterns)):
        said = repr(everything[0]) if everything else str(list(watch.ignore_patterns))
        raise r.error("ignore_patterns", f"{said} ignores every file the patterns "
                                         f"{list(watch.patterns)} take: the watch would "
                                         "process nothing")
    r.finish()
    return watch


#: What ``*`` stands for in the names :func:`_example_names` makes: words, a letter, digits.
_EXAMPLE_WORDS = ("frame", "a", "0001", "Z_9")


def _example_names(pattern: str) -> list[str]:
    """File names ``pattern`` (fnmatch) takes: ``*`` as each of :data:`_EXAMPLE_WORDS`,
    ``?`` as "x", a set as its first character ("x" for a negated one)."""
    def one(match: re.Match) -> str:
        inside = match.group(1)
        return "x" if inside.startswith("!") else inside[0]

    name = re.sub(r"\[([^\]]+)\]", one, pattern).replace("?", "x")
    return [name.replace("*", word) for word in _EXAMPLE_WORDS]


def _inference(file: Path | None, table: Any) -> InferenceConfig:
    r = TableReader(file, "inference", table)
    providers = r.strings("providers", InferenceConfig.providers)
    if not providers:
        raise r.error("providers", f"must name at least one of {', '.join(PROVIDER_NAMES)} "
                                   "(an empty list would leave the choice to ONNX Runtime)")
    for name in providers:
        if name not in PROVIDER_NAMES:
            raise r.error("providers", f"{name!r} is not one of {', '.join(PROVIDER_NAMES)}")
    cfg = InferenceConfig(
        providers=providers,
        require_gpu=r.get("require_gpu", bool, False),
        batch_size=r.positive("batch_size", int, 8, at_most=BATCH_SIZE_MAX),
        max_batch_latency_ms=r.positive("max_batch_latency_ms", float, 200.0, allow_zero=True,
                                        at_most=BATCH_LATENCY_MAX_MS),
        threads=r.positive("threads", int, None, at_most=THREADS_MAX),
        streams=_streams(r),
    )
    r.finish()
    return cfg


def unit_threads(threads: int, sessions: int, streams: int, watches: int) -> int:
    """The most threads the service runs with ``[inference] threads``, ``sessions`` ONNX
    Runtime sessions of that many intra-op threads each (one per model file), ``streams``
    concurrent frame streams (a thread each) and ``watches`` [[watch]] folders, its own
    threads counted with a margin (:data:`SERVICE_THREADS`, :data:`THREADS_PER_WATCH`)."""
    return (threads * sessions + streams + SERVICE_THREADS + THREADS_PER_WATCH * watches)


def _threads_fit_the_unit(file: Path | None, inference: InferenceConfig,
                          watches: tuple[WatchConfig, ...]) -> None:
    """Refuse ``[inference] threads`` whose threads, over every model file's session, do not
    fit the shipped unit's TasksMax: the start of the session past the limit blocks, and
    the service never becomes ready (no error, no exit). ``threads`` unset (ONNX Runtime's
    default, the cores) is the machine's to tell, not checked here."""
    if inference.threads is None:
        return
    from nwwatch.service.inference import AUTO_MAX_STREAMS

    # one session per model file, as build_engines shares them (by resolved path; realpath
    # does not raise on a link loop, which the engines' own read of the file names)
    models = sorted({os.path.realpath(w.model) for w in watches if w.model is not None})
    sessions = max(1, len(models))
    streams = (min(inference.threads, AUTO_MAX_STREAMS) if inference.streams == "auto"
               else int(inference.streams))
    total = unit_threads(inference.threads, sessions, streams, len(watches))
    if total <= UNIT_TASKS_MAX:
        return
    own = SERVICE_THREADS + THREADS_PER_WATCH * len(watches)
    most = (UNIT_TASKS_MAX - streams - own) // sessions
    named = ", ".join(Path(m).name for m in models)
    fix = (f"at most {most} threads with these {sessions} model files" if most >= 1 else
           "fewer streams, model files or [[watch]] folders")
    raise ConfigError(file, "inference.threads", (
        f"{inference.threads} threads x {sessions} sessions (one per model file: {named}) "
        f"+ {streams} stream thread{'s' if streams > 1 else ''} + {own} of the service's own "
        f"({SERVICE_THREADS} + {THREADS_PER_WATCH} per [[watch]], {len(watches)}) = {total} "
        f"threads, more than the shipped unit's TasksMax={UNIT_TASKS_MAX}: the start of a "
        f"session past the limit hangs and the service never becomes ready; give {fix}"))


def _streams(r: TableReader) -> int | str:
    r.used.add("streams")
    value = r.table.get("streams", 1)
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool)
                           and 0 < value <= STREAMS_MAX):
        return value
    raise r.error("streams", f'must be "auto" or an integer > 0 and <= {STREAMS_MAX}, '
                             f'got {value!r}')


def _tomogram(file: Path | None, table: Any) -> TomogramSettings:
    r = TableReader(file, "tomogram", table)
    options = TomogramSettings(
        triplanar=r.get("triplanar", bool, None),
        flips=r.get("flips", bool, None),
        margin_px=r.positive("margin_px", int, None, allow_zero=True, at_most=MARGIN_MAX_PX),
        min_component_voxels=r.positive("min_component_voxels", int, None, allow_zero=True,
                                        at_most=MIN_COMPONENT_MAX_VOXELS),
    )
    r.finish()
    return options


def _dashboard(file: Path | None, table: Any, flush_seconds: float,
               overlays: str) -> DashboardConfig:
    r = TableReader(file, "dashboard", table)
    listen = r.get("listen", str, "127.0.0.1:8765")
    # Read before the try: its own ConfigError (a ValueError) names its own key.
    allow_remote = r.get("allow_remote", bool, False)
    try:
        host, port = parse_listen(listen, allow_remote)
    except ValueError as exc:
        raise r.error("listen", str(exc)) from None
    cfg = DashboardConfig(host, port, r.positive("stale_after_s", float, 120.0,
                                                 at_most=STALE_MAX_S),
                          rows_held_s=flush_seconds, overlays=overlays)
    r.finish()
    return cfg


def _written_by_the_service(path: Path, results: Path) -> str | None:
    """What ``path`` would be among the service's own files in ``results`` (its quarantine
    and reverted lists, replaced whole at each write; its masks, QA pictures and labelling
    queue), else None."""
    from nwwatch.results.label_queue import QUEUE_DIR
    from nwwatch.results.quarantine import QUARANTINE_FILE
    from nwwatch.results.versions import REVERTED_FILE

    top, resolved = results.resolve(), path.resolve()
    if resolved.parent == top and resolved.name in (QUARANTINE_FILE, REVERTED_FILE):
        return f"the results' {resolved.name}"
    for folder in ("masks", OverlaySettings().folder.name, QUEUE_DIR):
        if lies_inside(resolved, top / folder):
            return f"inside the results' {folder}/ folder"
    return None


def parse_config(data: dict[str, Any], file: Path | None = None, *,
                 models: bool = True, unit: bool = False) -> ServiceConfig:
    """Validate a parsed TOML document; relative paths are relative to the file's folder.

    Every path comes out absolute and normalised (the folder's symbolic links resolved, ``..``
    taken from there): the systemd drop-in refuses anything else. ``models`` False: the
    ``[[watch]] model`` files are not looked at (a missing one, or a tomogram watch without
    one, is no error; ``WatchConfig.model`` is then the path given, the kind's default or
    None), for readers of the results and ledger only."""
    base = file.parent.resolve() if file is not None else Path.cwd()
    top = TableReader(file, "", data)
    if isinstance(top.table.get("watch"), dict):  # [watch]: one table, not an array of them
        raise ConfigError(file, "watch", "is one table ([watch]); each watched folder is a "
                                         "table of the array [[watch]] (two brackets), even "
                                         "a single one")
    watches_raw = top.get("watch", list, [])
    if not watches_raw:
        raise ConfigError(file, "watch", "at least one [[watch]] table is required"
                                         f"{top.misspelt('watch')}")
    watches = tuple(_watch(file, i, t, base, models) for i, t in enumerate(watches_raw))
    paths = [w.path.resolve() for w in watches]
    for i, p in enumerate(paths):
        for j, q in enumerate(paths):
            if i < j and (lies_inside(p, q) or lies_inside(q, p)):
                raise ConfigError(file, f"watch[{j}].path", f"overlaps watch[{i}].path ({p})")

    output = TableReader(file, "output", top.get("output", dict, None, required=True))
    results = output.path("results", base, required=True)
    overlay_mode = output.get("overlays", str, "none")
    if overlay_mode not in OVERLAY_MODES:
        raise output.error("overlays", f"{overlay_mode!r} is not one of "
                                       f"{', '.join(OVERLAY_MODES)}")
    flush_rows = output.positive("flush_rows", int, 10_000, at_most=FLUSH_ROWS_MAX)
    flush_seconds = output.positive("flush_seconds", float, 10.0, allow_zero=True,
                                    at_most=FLUSH_MAX_S)
    output.finish()
    found = _looked_at(output, "results", results)
    if found is not None and not stat.S_ISDIR(found.st_mode):
        raise output.error("results", f"not a folder: {results}")
    _outside_watches(file, "output.results", results, paths)
    for i, p in enumerate(paths):  # its own outputs (masks) would come back as inputs
        if lies_inside(p, results):
            raise ConfigError(file, f"watch[{i}].path", f"lies inside the results folder "
                                                       f"{results}: {watches[i].path}; nwwatch "
                                                       "never reads its own outputs")

    inference = _inference(file, top.get("inference", dict, {}))
    if unit:  # the service as the shipped unit runs it (its TasksMax)
        _threads_fit_the_unit(file, inference, watches)
    tomogram = _tomogram(file, top.get("tomogram", dict, {}))

    state = TableReader(file, "state", top.get("state", dict, {}))
    ledger = state.path("ledger", base, default=default_ledger(results))
    written_as = state.table.get("ledger")
    if isinstance(written_as, str) and written_as.rstrip().endswith(("/", os.sep)):
        # normalised, "ledgerdir/" would be a ledger file named ledgerdir
        raise state.error("ledger", f"{written_as!r} names a folder: the ledger is a file, "
                                    f"e.g. {ledger / 'ledger.sqlite'}")
    state.finish()
    try:
        ledger_is_folder = ledger.is_dir()
    except OSError:
        # a folder this user may not search (another user's results): not a fault of the
        # file; opening the ledger says so, naming the key (the service: exit 78)
        ledger_is_folder = False
    if ledger_is_folder:
        raise state.error("ledger", f"is a folder, not the ledger file: {ledger}")
    if os.path.normcase(os.path.abspath(ledger)) == os.path.normcase(os.path.abspath(results)):
        # the results folder not made yet: opening "it" as the ledger made the folder and
        # then failed as a damaged ledger
        raise state.error("ledger", f"is the results folder {results}: the ledger is a file, "
                                    f"e.g. {default_ledger(results)} (the default)")
    if (problem := ledger_path_problem(ledger)) is not None:
        raise state.error("ledger", f"{ledger}: {problem}")
    _outside_watches(file, "state.ledger", ledger, paths)  # its lock file lies beside it
    dataset = results_dataset_of(ledger, results)
    if dataset is not None:  # the ledger and its lock would be read as Parquet results
        raise state.error("ledger", f"lies inside {dataset}, where every reader of the "
                                    f"results (pandas, pyarrow, polars, DuckDB) takes each file "
                                    f"for results: keep it in {results} (the default) or "
                                    f"outside the results folder")
    written = _written_by_the_service(ledger, results)
    if written is not None:
        raise state.error("ledger", f"is {written}, which the service writes: keep the ledger "
                                    f"in {results} under its default name, or outside it")

    retry = TableReader(file, "retry", top.get("retry", dict, {}))
    max_attempts = retry.positive("max_attempts", int, 3, at_most=MAX_ATTEMPTS_MAX)
    backoff = retry.positive("backoff_seconds", float, 5.0, at_most=BACKOFF_MAX_S)
    retry.finish()

    service = TableReader(file, "service", top.get("service", dict, {}))
    stop_timeout = service.positive(
        "stop_timeout_seconds", float, 20.0, at_most=STOP_TIMEOUT_MAX_S,
        why=f": the shipped unit (TimeoutStopSec={UNIT_TIMEOUT_STOP_S}) SIGKILLs the service "
            f"{UNIT_TIMEOUT_STOP_S} s after SIGTERM, mid-drain; it needs seconds to log and exit")
    service.finish()

    logging_ = TableReader(file, "logging", top.get("logging", dict, {}))
    given_level = logging_.get("level", str, "info")
    level = given_level.lower()
    if level not in ("debug", "info", "warning", "error"):
        raise logging_.error("level", f"{given_level!r} is not one of debug, info, warning, "
                                      "error")
    logging_.finish()
    dashboard_table = top.get("dashboard", dict, None)  # [dashboard]
    dashboard = None if dashboard_table is None else _dashboard(file, dashboard_table,
                                                                 flush_seconds, overlay_mode)
    top.finish()
    return ServiceConfig(
        watches=watches,
        results=results,
        ledger=ledger,
        inference=inference,
        tomogram=tomogram,
        max_attempts=max_attempts,
        backoff_seconds=backoff,
        stop_timeout_seconds=stop_timeout,
        log_level=level,
        source=file,
        dashboard=dashboard,
        overlays=OverlaySettings(mode=overlay_mode),
        flush_rows=flush_rows,
        flush_seconds=flush_seconds,
    )


def _outside_watches(file: Path | None, key: str, path: Path, watched: list[Path]) -> None:
    """Refuse an output path inside (or equal to) an acquisition folder, symlinks followed
    (``resolve`` also follows them in the part of the path that exists), and one whose
    symbolic links cannot be followed (a loop)."""
    for i, p in enumerate(watched):
        try:
            inside = lies_inside(path, p)
        except (RuntimeError, OSError) as exc:
            # a symbolic link loop on the way (RuntimeError before Python 3.13, OSError
            # after): a traceback and exit 1, which systemd restarts, without this
            raise ConfigError(file, key, f"cannot follow the symbolic links of {path}: "
                                         f"{getattr(exc, 'strerror', None) or exc}; fix or "
                                         "remove the link, or give another path") from None
        if inside:
            raise ConfigError(
                file, key, f"lies inside acquisition folder watch[{i}].path ({p}): {path}; "
                "nwwatch never writes into acquisition folders"
            )


def make_folder(config: ServiceConfig, key: str, folder: Path) -> None:
    """Create ``folder`` (of the configuration's ``key``); one that cannot be created (below
    a file, no permission) is a :class:`ConfigError` naming the key, not a traceback."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(config.source, key, f"cannot create the folder {folder}: "
                                              f"{exc.strerror or exc}") from None


def load_config(path: str | os.PathLike[str], *, models: bool = True,
                unit: bool = False) -> ServiceConfig:
    """Read (:func:`~nwwatch.service.configreader.read_toml`) and validate the TOML file at
    ``path``; raise :class:`ConfigError` on any problem. ``models`` False: leave the model
    files unchecked (:func:`parse_config`), for ``nwwatch status --config``, which reads
    only the results and the ledger. ``unit``: the configuration of the service under the
    shipped systemd unit (the drop-in at install, ``nwwatch run`` started by systemd):
    its threads must fit the unit's TasksMax; a replay, which loads one model, and a service
    run by hand are not bound by it."""
    return parse_config(read_toml(path), Path(path), models=models, unit=unit)


def one_folder_config(watch: str | os.PathLike[str], results: str | os.PathLike[str],
                      model: str | os.PathLike[str], *, kind: str = "insitu",
                      settle_seconds: float = 5.0, rescan_seconds: float = 60.0,
                      polling: str | bool = "auto", providers: tuple[str, ...] = ("cpu",),
                      threads: int | None = None, streams: int | str | None = None,
                      batch_size: int = 8,
                      max_batch_latency_ms: float = 200.0, max_attempts: int = 3,
                      flush_seconds: float | None = None, extra: str = "") -> str:
    """The TOML text of a configuration with one watched folder (tests, benchmarks, a first
    try); ``extra`` is appended after the ``[retry]`` table (keys of ``[retry]``, or further
    tables). Paths are written as given."""
    polling_toml = (str(polling).lower() if isinstance(polling, bool)
                    else json.dumps(polling))
    threads_line = "" if threads is None else f"threads = {threads}\n"
    if streams is not None:
        threads_line += f"streams = {json.dumps(streams)}\n"
    flush_line = "" if flush_seconds is None else f"flush_seconds = {flush_seconds}\n"
    return (
        f"[[watch]]\npath = {json.dumps(str(watch))}\nkind = {json.dumps(kind)}\n"
        f"model = {json.dumps(str(model))}\npolling = {polling_toml}\n"
        f"settle_seconds = {settle_seconds}\nrescan_seconds = {rescan_seconds}\n\n"
        f"[output]\nresults = {json.dumps(str(results))}\n{flush_line}\n"
        f"[inference]\nproviders = {json.dumps(list(providers))}\nbatch_size = {batch_size}\n"
        f"max_batch_latency_ms = {max_batch_latency_ms}\n{threads_line}\n"
        f"[retry]\nmax_attempts = {max_attempts}\n{extra}\n"
    )
