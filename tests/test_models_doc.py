"""docs/models.md and README.md name the refusals that bench/results/orientation.json
measured on frames with dark vacuum (the `inverted` form)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from nwwatch.measure import REASON_CODES

ROOT = Path(__file__).parents[1]
INVERTED = json.loads((ROOT / "bench" / "results" / "orientation.json").read_text())[
    "pooled"]["frame"]["inverted"]["reason_codes"]


def _named_codes(text: str) -> tuple[dict[str, int | None], set[str]]:
    """Reason codes written in backticks in ``text``, with the count written after one
    (``None`` where there is none), and the codes written as absent ("none `code`")."""
    codes: dict[str, int | None] = {}
    absent: set[str] = set()
    for m in re.finditer(r"(none )?`([a-z_]+)`(?: (\d+)\b)?", text, re.I):
        code = m.group(2)
        if code not in REASON_CODES:
            continue
        if m.group(1):
            absent.add(code)
        else:
            codes[code] = int(m.group(3)) if m.group(3) else codes.get(code)
    return codes, absent


def _check(named: tuple[dict[str, int | None], set[str]], where: str) -> dict[str, int | None]:
    codes, absent = named
    assert codes, f"{where}: no reason code named"
    for code, count in codes.items():
        assert code in INVERTED, f"{where} names {code}, which no inverted frame gave"
        assert count is None or count == INVERTED[code], (where, code, count, INVERTED[code])
    for code in absent:
        assert code not in INVERTED, f"{where} says no frame gave {code}"
    return codes


def test_the_contrast_paragraph_names_the_measured_refusals():
    """The paragraph said dark-vacuum frames are refused as no_wire among others; the
    benchmark's 128 inverted frames gave no no_wire."""
    doc = (ROOT / "docs" / "models.md").read_text()
    paragraph = doc.split("**Contrast polarity.**", 1)[1].split("\n\n", 1)[0]
    codes = _check(_named_codes(paragraph), "docs/models.md, Contrast polarity")
    # the full list with its counts is there once
    assert {c: n for c, n in codes.items() if n is not None} == INVERTED


def test_the_readme_row_names_the_measured_refusals():
    row = next(line for line in (ROOT / "README.md").read_text().splitlines()
               if "frames with dark vacuum" in line)
    _check(_named_codes(row.split("frames with dark vacuum", 1)[1]), "README.md")
