"""Steep caps measured with their raw frame: the image refinement against the labels alone.

Above a steep cap (theta >~ 145 deg) the projected droplet thickens fast away from the facet,
and the centroid of the profile's derivative that places the facet line on the frame's step
(:mod:`nwwatch.measure.refine`) is pulled into the droplet. This bench renders one wire and
droplet per (theta, R, base/wire) with clean optics (defocus -50 nm, blur 0.5 px, no
lattice, 200 e-/px, 0.25 nm/px, 512 x 512) and measures its *exact* labels alone and with
the frame, as the service measures frames; the truth is the rendered cap's angle. A frame
moved by the refinement (``facet_edge = refined``) whose angle is valid but more than 2
sigma off is the documented limit (docs/measurement.md, Limits).

    .venv/bin/python -m bench.bench_steep_caps [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from nwwatch.measure import measure_contact_angle
from nwwatch.synth.appearance import Appearance
from nwwatch.synth.geometry import WireSpec, droplet_geometry
from nwwatch.synth.insitu import render_insitu_frame
from nwwatch.synth.params import FrameParams

THETAS_DEG = (110.0, 130.0, 146.0, 150.0, 155.0)
RADII_PX = (50.0, 90.0)
BASE_RATIOS = (1.0, 0.7)  # droplet base half-width / wire radius


def frame(theta_deg: float, radius_px: float, ratio: float):
    """(image, labels, true angle in degrees) of one clean frame."""
    a = radius_px * math.sin(math.radians(theta_deg))
    wire = WireSpec(facet_row=330.0, facet_col=255.3, axis_deg=113.0, radius_px=a / ratio,
                    theta_deg=theta_deg, droplet_base_px=a if ratio != 1.0 else None)
    params = FrameParams(size=512, supersample=2, pixel_size_nm=0.25, wire=wire,
                         defocus_nm=-50.0, mfp_wire_nm=100.0, mfp_liquid_nm=50.0,
                         lattice_amplitude=0.0, n_hot_pixels=0, blur_px=0.5,
                         dose_e_per_px=200.0, appearance=Appearance())
    image, labels, _ = render_insitu_frame(params, np.random.default_rng(0))
    return image, labels, droplet_geometry(wire).theta_apparent_deg


def _row(result, truth_deg: float) -> dict:
    angle = result.contact_angle_deg
    return {"status": result.status, "facet_edge": result.facet_edge,
            "shift_px": (None if result.facet_edge_shift_px is None
                         else round(result.facet_edge_shift_px, 3)),
            "error_deg": None if angle is None else round(angle - truth_deg, 3),
            "sigma_deg": (None if result.contact_angle_uncertainty_deg is None
                          else round(result.contact_angle_uncertainty_deg, 3))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    for theta in THETAS_DEG:
        for radius in RADII_PX:
            for ratio in BASE_RATIOS:
                image, labels, truth = frame(theta, radius, ratio)
                alone = _row(measure_contact_angle(labels), truth)
                framed = _row(measure_contact_angle(labels, image=image), truth)
                rows.append({"theta_deg": theta, "radius_px": radius, "base_ratio": ratio,
                             "labels": alone, "with_frame": framed})
                off = (framed["status"] == "ok" and framed["error_deg"] is not None
                       and abs(framed["error_deg"]) > 2 * framed["sigma_deg"])
                print(f"theta {theta:5.1f} R {radius:4.0f} base/wire {ratio:.1f}: labels "
                      f"{alone['status']} {alone['error_deg']:+.2f} ({alone['sigma_deg']:.2f})"
                      f" | with the frame {framed['status']} {framed['error_deg']:+.2f} "
                      f"({framed['sigma_deg']:.2f}) {framed['facet_edge']} "
                      f"{framed['shift_px']}{'  > 2 sigma' if off else ''}")
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
