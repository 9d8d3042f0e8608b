"""docs/ARCHITECTURE.md matches the code: every module it names exists, and every signature
it writes out has the parameters of the function it names, in order."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "ARCHITECTURE.md").read_text()

#: How the doc writes a call -> the object it documents.
DOCUMENTED = {
    "normalize_image": "nwwatch.normalize:normalize_image",
    "stretch_to_uint8": "nwwatch.normalize:stretch_to_uint8",
    "intensity_range": "nwwatch.normalize:intensity_range",
    "inspect_tiff": "nwwatch.io:inspect_tiff",
    "read_frames": "nwwatch.io:read_frames",
    "read_volume": "nwwatch.io:read_volume",
    "write_frame_tiff": "nwwatch.io:write_frame_tiff",
    "write_stack_tiff": "nwwatch.io:write_stack_tiff",
    "write_volume_tiff": "nwwatch.io:write_volume_tiff",
    "Segmenter": "nwwatch.segment:Segmenter",
    "measure_contact_angle": "nwwatch.measure:measure_contact_angle",
    "draw_overlay": "nwwatch.measure:draw_overlay",
    "frame_schema": "nwwatch.results.schema:frame_schema",
    "volume_schema": "nwwatch.results.schema:volume_schema",
    "write_batch": "nwwatch.results.parquet:write_batch",
    "write_frame_pictures": "nwwatch.results.pictures:write_frame_pictures",
    "segment_volume": "nwwatch.volume:segment_volume",
    "assess_mask": "nwwatch.volume.verdict:assess_mask",
    "volume_metrics": "nwwatch.volume:volume_metrics",
    "check_tomogram_memory": "nwwatch.volume.memory:check_tomogram_memory",
    "tomogram_memory": "nwwatch.volume.memory:tomogram_memory",
    "pipeline.process": "nwwatch.service.pipeline:process",
    "jobs.job_for": "nwwatch.service.jobs:job_for",
    "replay": "nwwatch.service.replay:replay",
    "clustertask.run_task": "nwwatch.service.clustertask:run_task",
    "engines.build_engines": "nwwatch.service.engines:build_engines",
    "engines.inspect_input": "nwwatch.service.engines:inspect_input",
    "engines.quarantine_inputs": "nwwatch.service.engines:quarantine_inputs",
    "ledger.Ledger": "nwwatch.service.ledger:Ledger",
    "rebuild.open_ledger": "nwwatch.service.rebuild:open_ledger",
    "rebuild.rebuild_ledger": "nwwatch.service.rebuild:rebuild_ledger",
    "config.load_config": "nwwatch.service.config:load_config",
}


def _documented_call(name: str) -> tuple[str, str]:
    """The argument text of the first ``name(...)`` in the doc's code blocks, else in its
    text, and the text after its closing parenthesis."""
    blocks = "\n".join(re.findall(r"```python\n(.*?)```", DOC, re.S)) + "\n" + DOC
    match = re.search(rf"(?<![\w.]){re.escape(name)}\(", blocks)
    assert match, f"{name}( is not in ARCHITECTURE.md"
    depth = 1
    for end in range(match.end(), len(blocks)):
        depth += {"(": 1, ")": -1}.get(blocks[end], 0)
        if depth == 0:
            return blocks[match.end():end], blocks[end + 1:]
    raise AssertionError(f"{name}( is not closed in ARCHITECTURE.md")


def _documented_parameters(name: str) -> list[str]:
    """Parameter names of the first ``name(...)`` in the doc (parentheses inside, such as
    ``volume (Z,Y,X)``, are skipped)."""
    arguments, _ = _documented_call(name)
    depth, pieces, current = 1, [], ""
    for ch in arguments + ")":
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                break
        if ch == "," and depth == 1:
            pieces.append(current)
            current = ""
        elif depth == 1:
            current += ch
    pieces.append(current)
    names = []
    for piece in pieces:
        m = re.match(r"\s*\**(\w+)", piece)
        if m:
            names.append(m.group(1))
    return names


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_documented_signature_is_the_codes(name):
    module, attr = DOCUMENTED[name].split(":")
    obj = getattr(importlib.import_module(module), attr)
    params = [p.name for p in inspect.signature(obj).parameters.values() if p.name != "self"]
    assert _documented_parameters(name) == params


def _documented_return_class(name: str) -> str | None:
    """The class the doc names as ``name``'s return type (``-> TiffInfo``), or None (an
    array description such as ``-> uint8 (H, W, 3)``, or none given)."""
    documented = re.match(r"\s*->\s*([A-Z]\w*)", _documented_call(name)[1])
    return documented.group(1) if documented else None


@pytest.mark.parametrize("name", sorted(n for n in DOCUMENTED if _documented_return_class(n)))
def test_documented_return_type_is_the_codes(name):
    """A return type the doc names as a class (``-> TiffInfo``) is the function's annotated
    one (array descriptions, ``-> uint8 (H, W, 3)``, are not checked)."""
    module, attr = DOCUMENTED[name].split(":")
    obj = getattr(importlib.import_module(module), attr)
    assert not inspect.isclass(obj), f"{name} is a class, documented with a return type"
    documented = re.match(r"(\w+)", _documented_return_class(name))
    annotation = inspect.signature(obj).return_annotation
    assert annotation is not inspect.Signature.empty, f"{name} has no return annotation"
    assert re.search(rf"\b{documented.group(1)}\b", str(annotation)), (name, annotation)


def test_every_module_of_the_table_exists():
    named = re.findall(r"^\| `((?:nwwatch|training)/[\w/.]*)` \|", DOC, re.M)
    assert len(named) >= 10
    for rel in named:
        assert (ROOT / rel).exists(), rel
    service = re.search(r"^\| `nwwatch/service/` \| (.*?) \|", DOC, re.M).group(1)
    for module in re.findall(r"`(\w+)`", service):
        if module != "process":
            assert (ROOT / "nwwatch" / "service" / f"{module}.py").is_file(), module


def test_every_input_error_the_readers_export_is_named_in_both_error_lists():
    # A reader's error missing from the lists is one a caller's `except` may not expect.
    import nwwatch.io as io

    io_doc = (ROOT / "docs" / "io.md").read_text()
    block = DOC[DOC.index("class InputError(Exception):") :]
    block = block[: block.index("# subclasses")]
    subclasses = sorted(
        name
        for name in io.__all__
        if isinstance(getattr(io, name), type)
        and issubclass(getattr(io, name), io.InputError)
        and getattr(io, name) is not io.InputError
    )
    assert subclasses, "nwwatch.io exports no InputError subclass"
    assert [n for n in subclasses if not re.search(rf"\b{n}\b", block)] == []
    assert [n for n in subclasses if f"| `{n}` |" not in io_doc] == []
