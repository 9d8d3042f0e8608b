"""bench/bench_measure_speed.py: two copies of nwwatch/measure loaded side by side, rows
compared, and a difference reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.bench_measure_speed import load_measure, main
from bench.bench_refine_speed import ideal_cap

REPO = Path(__file__).resolve().parent.parent


def _npz(path: Path) -> Path:
    labels, image = ideal_cap(40)
    np.savez(path, stem=np.array(["f0"]), labels=labels[None],
             prob=(labels == 2).astype(np.float32)[None], pixel_size_nm=np.array([2.0]),
             image=image[None])
    return path


def test_the_same_code_as_reference_gives_the_same_rows(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    main(["--reference", str(REPO), "--npz", str(_npz(tmp_path / "x_eval_new_y.npz")),
          "--repeats", "1", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["rows_differing"] == 0
    assert report["sets"]["eval_new"]["frames"] == 1
    assert report["sets"]["ideal_caps"]["frames"] == 3
    assert report["sets"]["eval_new"]["image_ref"]["median_ms"] > 0


def test_a_changed_reference_is_loaded_apart_and_its_rows_reported(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    shutil.copytree(REPO / "nwwatch" / "measure", ref / "nwwatch" / "measure")
    uncertainty = ref / "nwwatch" / "measure" / "uncertainty.py"
    text = uncertainty.read_text()
    assert "\nCALIBRATION = " in text
    uncertainty.write_text(text.replace("\nCALIBRATION = ", "\nCALIBRATION = 2.0 * ", 1))
    changed, ours = load_measure(ref), load_measure(None)
    labels, image = ideal_cap(40)
    a, b = changed(labels, image=image), ours(labels, image=image)
    assert a.contact_angle_deg == b.contact_angle_deg
    assert a.contact_angle_uncertainty_deg != b.contact_angle_uncertainty_deg
    with pytest.raises(SystemExit, match="differ"):
        main(["--reference", str(ref), "--npz", str(_npz(tmp_path / "x_eval_new_y.npz")),
              "--repeats", "1"])
