"""docs/service.md names what the product writes: the frame rows' columns and types, the
volume rows' columns, the metrics at /metrics and the service's log events."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
DOC = (ROOT / "docs" / "service.md").read_text()

#: The table's words for the Arrow types of the results.
ARROW_TYPES = {"string": "string", "double": "double", "int32": "int32", "bool": "bool",
               "timestamp UTC": "timestamp[us, tz=UTC]"}


def _section(start: str) -> str:
    """The text of docs/service.md from the heading or bold lead ``start`` to the next
    heading."""
    return DOC.split(start, 1)[1].split("\n#", 1)[0]


def test_the_frame_row_table_is_the_frame_schema():
    """Every column of a frame row is in the table with its type, and the table names no
    other; a row of n columns gives one type or n of them (``double/double/int32``)."""
    from nwwatch.measure.result import MEASUREMENT_FIELDS
    from nwwatch.results.schema import frame_schema

    documented = {}
    for names, types in re.findall(r"^\| ((?:`[^`]+`(?:, )?)+) \| ([^|]+?) \|",
                                   _section("### Frame rows (`frames/`)"), flags=re.M):
        names = re.findall(r"`([^`]+)`", names)
        types = [t.strip() for t in types.split("/")]
        assert len(types) in (1, len(names)), f"{names}: {len(types)} types for {len(names)}"
        for name, kind in zip(names, types * len(names) if len(types) == 1 else types,
                              strict=False):
            documented[name] = ARROW_TYPES.get(kind, kind)
    actual = {f.name: str(f.type) for f in frame_schema(MEASUREMENT_FIELDS)}
    assert documented == actual


def test_the_volume_rows_paragraph_names_every_volume_column():
    from nwwatch.results.schema import PROVENANCE_FIELDS, volume_schema
    from nwwatch.volume import VOLUME_METRIC_FIELDS

    text = _section("### Volume rows (`volumes/`)")
    named = set()
    for word in re.findall(r"`([a-z0-9_{},]+)`", text):
        parts = re.split(r"\{([^}]*)\}", word)  # size_{z,y,x}_px: three columns
        for choice in itertools.product(*(p.split(",") for p in parts[1::2])):
            named.add("".join(itertools.chain.from_iterable(
                itertools.zip_longest(parts[::2], choice, fillvalue=""))))
    provenance = {f.name for f in PROVENANCE_FIELDS}  # "the same provenance columns"
    missing = {f.name for f in volume_schema(VOLUME_METRIC_FIELDS)} - named - provenance
    assert not missing


def test_the_metrics_table_is_what_metrics_serves():
    """The metrics and labels of the table are those the service's registry exposes."""
    from prometheus_client.metrics import MetricWrapperBase

    from nwwatch.dashboard import metrics

    documented = {}
    section = DOC.split("**`/metrics`**", 1)[1].split("\n\n", 2)[1]
    for name, labels in re.findall(r"^\| `(nwwatch_\w+)(?:\{([\w,]*)\})?` \|", section,
                                   flags=re.M):
        documented[name] = set(labels.split(",")) - {""}
    served = {}
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            assert metric in metrics.REGISTRY._collector_to_names
            name = metric._name + ("_total" if metric._type == "counter" else "")
            served[name] = set(metric._labelnames)  # also of a gauge not set yet
    assert documented == served


def test_every_event_the_service_logs_is_named_in_the_doc():
    """Each literal event name the service and its dashboard log (the Dask driver's are
    docs/cluster.md's) is named in backquotes in docs/service.md, and so are the per-file
    lines whose name is made from the file's state."""
    events = {"file_failed", "file_quarantined", "file_skipped", "file_gone"}
    call = re.compile(r"\blog\.(?:debug|info|warning|error|exception|critical)\(\s*"
                      r"\"([a-z_]+)\"")
    for path in [*(ROOT / "nwwatch" / "service").glob("*.py"),
                 *(ROOT / "nwwatch" / "dashboard").glob("*.py")]:
        if not path.name.startswith("cluster"):
            events.update(call.findall(path.read_text()))
    assert len(events) > 40  # the pattern still finds the calls
    assert sorted(e for e in events if f"`{e}`" not in DOC) == []


def test_every_event_the_dask_driver_logs_is_named_in_the_cluster_doc():
    """The Dask driver's own event names (nwwatch/service/cluster*.py) are named in
    backquotes in docs/cluster.md (or, those it shares with local replay, in
    docs/service.md)."""
    cluster_doc = (ROOT / "docs" / "cluster.md").read_text()
    call = re.compile(r"\blog\.(?:debug|info|warning|error|exception|critical)\(\s*"
                      r"\"([a-z_]+)\"")
    events = set()
    for path in (ROOT / "nwwatch" / "service").glob("cluster*.py"):
        events.update(call.findall(path.read_text()))
    assert {"dask_dashboard", "cluster_task_failed"} <= events  # the pattern finds the calls
    assert sorted(e for e in events
                  if f"`{e}`" not in cluster_doc and f"`{e}`" not in DOC) == []


def _reader_calls(results: Path) -> list[str]:
    """The calls of the python blocks of "Results: Parquet schema", one expression each,
    with RESULTS the folder ``results``."""
    blocks = re.findall(r"```python\n(.*?)```", _section("## Results: Parquet schema"), re.S)
    calls, pending = [], ""
    for line in "\n".join(blocks).splitlines():
        pending += " " + line.split("  #", 1)[0].strip()
        if pending.count("(") == pending.count(")"):  # a call's last line
            calls.append(pending.strip().replace("RESULTS", str(results)))
            pending = ""
    return [c for c in calls if c]


def _results_of(root: Path, folders: list[str]) -> dict[str, str]:
    """A results folder at ``root`` with one frame row per acquisition folder (rows written
    as the service writes them); their partition values by source."""
    from datetime import UTC, datetime

    from nwwatch.measure import MEASUREMENT_FIELDS
    from nwwatch.results.parquet import acquisition_partition, write_batch
    from nwwatch.results.schema import frame_schema

    partitions = {}
    for k, folder in enumerate(folders):
        source = f"{folder}/f{k}.tif"
        partition = acquisition_partition(source)
        row = {"source": source, "frame": 0, "status": "ok", "reason_code": "ok",
               "reason": "", "angle_valid": True, "droplet_cut": False,
               "contact_angle_deg": 100.0 + k, "source_sha256": f"s{k}",
               "processed_at": datetime(2026, 5, 1, tzinfo=UTC), "model_sha256": "m" * 64,
               "measurement_version": "9.9"}
        write_batch([row], frame_schema(MEASUREMENT_FIELDS), root / "frames" / partition,
                    "frames")
        partitions[source] = partition.split("=", 1)[1]
    return partitions


def _digits_only(name: str) -> str:
    """An acquisition folder named ``name`` whose 8-hex hash is all digits."""
    import hashlib

    return next(f"/acq/s{i}/{name}" for i in range(10_000)
                if hashlib.sha1(f"/acq/s{i}/{name}".encode()).hexdigest()[:8].isdigit())


def test_the_documented_readers_read_the_acquisition_as_text(tmp_path):
    """Folders named 1e and 2E whose hash is all digits (acquisition=1e-78836267): polars
    guessed a number from the names and read both as 0.0, one acquisition."""
    import pyarrow.dataset  # the doc's pyarrow.dataset.dataset

    namespace = {"pandas": pytest.importorskip("pandas"), "pyarrow": pyarrow,
                 "polars": pytest.importorskip("polars"),
                 "duckdb": pytest.importorskip("duckdb")}
    # only these two: one name that is no number made polars read every name as text
    partitions = _results_of(tmp_path, [_digits_only("1e"), _digits_only("2E")])
    assert all(p.split("-")[-1].isdigit() for p in partitions.values())
    calls = _reader_calls(tmp_path)
    readers = {c.split(".")[0]: c for c in calls[:4]}
    assert sorted(readers) == ["duckdb", "pandas", "polars", "pyarrow"], calls
    assert "'run42-%'" in readers["duckdb"]  # its one acquisition: here the folder 1e's
    readers["duckdb"] = readers["duckdb"].replace("'run42-%'", "'1e-%'")
    for name, call in readers.items():
        table = eval(call, namespace)  # noqa: S307 (the doc's own text)
        table = (table.to_table().to_pandas() if name == "pyarrow" else table.df()
                 if name == "duckdb" else table.to_pandas() if name == "polars" else table)
        got = dict(zip(table.source, table.acquisition.astype(str), strict=True))
        want = {s: p for s, p in partitions.items() if name != "duckdb" or "/1e/" in s}
        assert got == want, (name, call)


def test_the_documented_duckdb_read_takes_no_folder_above_the_results(tmp_path):
    """A results folder under acquisition=campaign1/ and frame=7/: DuckDB's hive partitioning
    gave every row that acquisition and frame 7; the doc's remedy reads the rows' own."""
    duckdb = pytest.importorskip("duckdb")
    results = tmp_path / "frame=7" / "acquisition=campaign1" / "RESULTS"
    partitions = _results_of(results, ["/acq/a", "/acq/b"])
    glob = f"{results}/frames/*/*.parquet"
    trap = duckdb.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true)").df()
    assert set(trap.acquisition) == {"campaign1"} and set(trap.frame) == {7}  # as documented
    remedy = [c for c in _reader_calls(results) if "filename = true" in c]
    assert len(remedy) == 1
    table = eval(remedy[0], {"duckdb": duckdb}).df()  # noqa: S307 (the doc's own text)
    assert dict(zip(table.source, table.acquisition, strict=True)) == partitions
    assert set(table.frame) == {0}


def test_every_mention_of_the_wind_down_bound_is_its_value():
    """The stop_timeout_seconds row, the Operations list and the shipped unit said the
    wind-down had 4 s after the batch; nwwatch.service.stopping gives it WIND_DOWN_S (3 s)."""
    from nwwatch.service.cli import run as cli_run
    from nwwatch.service.stopping import WIND_DOWN_S

    texts = {"docs/service.md": DOC, "README.md": (ROOT / "README.md").read_text(),
             "systemd/nwwatch.service": (ROOT / "systemd" / "nwwatch.service").read_text(),
             "nwwatch.service.cli.run": cli_run.__doc__ or ""}
    # the bound is always stated from the end of the batch: "<n> s after the batch" / "after it"
    pattern = re.compile(r"(\d+(?:\.\d+)?) s after (?:the batch|it\b)")
    found = {}
    for name, text in texts.items():
        flat = " ".join(line.lstrip("# ") for line in text.splitlines())
        found[name] = [float(m.group(1)) for m in pattern.finditer(flat)]
    # the stop_timeout_seconds row, Faults and recovery, and Operations
    assert len(found["docs/service.md"]) == 3, found
    assert found["systemd/nwwatch.service"] and found["nwwatch.service.cli.run"], found
    for name, values in found.items():
        assert values == [WIND_DOWN_S] * len(values), (name, values)


def _cut_droplet_refused(code: str) -> np.ndarray:
    """A 256² label image refused as ``code`` while the wire and droplet are chosen, with a
    droplet disk cut by the left border wherever there is a droplet."""
    from nwwatch.classes import DROPLET, NANOWIRE

    rr, cc = np.mgrid[:256, :256]
    labels = np.zeros((256, 256), np.uint8)
    disk = (rr - 120) ** 2 + (cc - 40) ** 2 <= 60 ** 2  # cut by the left border
    if code == "labels_noisy":
        return np.random.default_rng(0).integers(0, 3, (256, 256), dtype=np.uint8)
    if code == "no_droplet":
        labels[100:140, :120] = NANOWIRE  # a wire from the border, no droplet
        return labels
    labels[disk] = DROPLET
    if code == "droplet_not_on_wire":
        labels[100:140, 200:250] = NANOWIRE  # far from the droplet
    elif code == "wire_inside_droplet":
        labels[110:130, 20:40] = NANOWIRE  # all of it within the droplet's outline
    return labels


def test_the_rows_that_carry_no_droplet_cut_are_those_the_docs_name():
    """The droplet_cut row and measurement step 4 said every row refused before a facet line
    calls the droplet cut where its label touches the border; rows refused while the wire
    and droplet are chosen (a no_wire frame whose droplet the left border cuts) carry false.
    Both pages name those codes, and each gives false with a droplet cut by the border."""
    from nwwatch.measure import measure_contact_angle

    row = next(line for line in DOC.splitlines()
               if line.startswith("| `n_droplets`, `droplet_cut`"))
    clause = re.search(r"false on rows refused while they are chosen, whose droplet is not "
                       r"measured: (.*?), and on `numerical_failure` rows", row)
    assert clause, row
    codes = re.findall(r"`([a-z_]+)`", clause.group(1))
    step = " ".join((ROOT / "docs" / "measurement.md").read_text().split())
    named = re.search(r"a row refused while they are chosen — (.*?) — measures no droplet and "
                      r"has `droplet_cut` false", step)
    assert named, "docs/measurement.md step 4 names no such rows"
    assert re.findall(r"`([a-z_]+)`", named.group(1)) == codes
    assert set(codes) == {"labels_noisy", "no_wire", "no_droplet", "droplet_not_on_wire",
                          "wire_inside_droplet"}
    for code in codes:
        result = measure_contact_angle(_cut_droplet_refused(code))
        assert result.reason_code == code, (code, result.reason)
        assert result.droplet_cut is False, code
