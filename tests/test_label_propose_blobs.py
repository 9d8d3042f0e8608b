"""The proposal's extra blobs: the smallest kept as a stroke scales with the frame (the model
segments at its working scale), except near the interface, where the model's labels are kept
from 20 px as before (docs/labelling.md, bench/bench_label_proposal_blobs.py)."""

from __future__ import annotations

import numpy as np

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.label.propose import min_blob_area_px, propose_geometry


def test_the_smallest_blob_scales_with_the_frame_above_the_working_scale():
    assert min_blob_area_px((256, 256)) == 20
    assert min_blob_area_px((512, 512)) == 20
    assert min_blob_area_px((1024, 1024)) == 80
    assert min_blob_area_px((2048, 1024)) == 320  # the long side, as the segmenter scales
    assert min_blob_area_px((4096, 4096)) == 1280
    assert min_blob_area_px((4096, 4096), working_px=1024) == 320
    assert min_blob_area_px((4096, 4096), working_px=None) == 20


def _frame(size: int) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """A wire up from the bottom, a droplet on it, and extra blobs: (labels, the blobs'
    top-left corners by name). Drawn at 2048 px and scaled, so every blob is the same part
    of the frame at every size."""
    f = size / 2048
    labels = np.zeros((size, size), np.uint8)
    rows, cols = np.mgrid[:size, :size]
    labels[(rows >= 1200 * f) & (cols >= 900 * f) & (cols < 1148 * f)] = NANOWIRE
    disk = (rows - 1100 * f) ** 2 + (cols - 1024 * f) ** 2 < (200 * f) ** 2
    labels[disk & (rows < 1200 * f)] = DROPLET
    blobs = {}
    for name, (r, c), side, class_id in (
            ("far speck", (100, 100), 10, NANOWIRE),  # 100 px at 2048
            ("far droplet speck", (100, 1800), 8, DROPLET),  # 64 px
            ("far blob", (1800, 100), 20, NANOWIRE),  # 400 px
            ("interface speck", (1210, 1156), 6, NANOWIRE)):  # 36 px, 8 px beside the wire
        r0, c0, s = round(r * f), round(c * f), max(round(side * f), 1)
        labels[r0:r0 + s, c0:c0 + s] = class_id
        blobs[name] = (r0, c0)
    return labels, blobs


def _stroked(geometry, corner: tuple[int, int]) -> bool:
    """Whether a stroke's outline runs within 3 px of ``corner`` (row, col)."""
    return any(np.min(np.hypot(*(np.asarray(s.points) - corner).T)) < 3
               for s in geometry.strokes)


def test_specks_of_a_large_frame_are_not_strokes_but_those_at_the_interface_are():
    labels, blobs = _frame(2048)
    geometry = propose_geometry(labels)
    assert geometry.droplet is not None and geometry.wire is not None
    # before: every blob of 20 px or more was a stroke, 4 here (hundreds on a real frame)
    assert not _stroked(geometry, blobs["far speck"])
    assert not _stroked(geometry, blobs["far droplet speck"])
    assert _stroked(geometry, blobs["far blob"])
    assert _stroked(geometry, blobs["interface speck"])  # the model's label kept there
    assert len(geometry.strokes) == 2
    # the old minimum is still there to be asked for
    assert len(propose_geometry(labels, min_area_px=20).strokes) == 4


def test_frames_up_to_the_working_scale_keep_blobs_from_20_px():
    labels, _ = _frame(512)
    labels[60:65, 60:65] = NANOWIRE  # 25 px: a stroke, as before
    labels[60:64, 300:304] = DROPLET  # 16 px: left out, as before
    geometry = propose_geometry(labels)
    assert _stroked(geometry, (60, 60)) and not _stroked(geometry, (60, 300))


def test_a_failed_fits_huge_circle_is_not_proposed(monkeypatch):
    """A failed measurement can return a circle that is nearly a line (radius 10^5 px, seen
    on a synthetic 2048 px frame): proposed as is, it painted a million background pixels
    droplet. The free-surface fit is proposed instead, and the saved labels keep the
    model's droplet."""
    import dataclasses

    import nwwatch.measure
    from nwwatch.label.raster import rasterize

    labels, _ = _frame(512)
    honest = propose_geometry(labels)
    assert honest.droplet is not None
    real = nwwatch.measure.measure_contact_angle

    def failed_with_line(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), status="fit_failed",
                                   circle_center_row=-104847.6, circle_center_col=189418.2,
                                   droplet_radius_px=215670.9)

    monkeypatch.setattr(nwwatch.measure, "measure_contact_angle", failed_with_line)
    geometry = propose_geometry(labels)
    drop = labels == DROPLET
    assert geometry.droplet is not None and geometry.droplet.radius_px < 100
    assert np.mean(rasterize(geometry)[drop] == DROPLET) > 0.97
    assert np.count_nonzero((rasterize(geometry) == DROPLET) & ~drop) < 0.03 * drop.sum()
    from nwwatch.label.propose import droplet_iou

    line = dataclasses.replace(honest.droplet, center=(-104847.6, 189418.2),
                               radius_px=215670.9)
    assert droplet_iou(honest.replace(droplet=line), drop) < 0.1
    assert droplet_iou(honest, drop) > 0.9


def _false_droplet_in_the_wire() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels as the model gave a synthetic video frame (seed 17, frame 9): its largest
    droplet blob a false one inside the wire near the frame's bottom, the real droplet a
    smaller blob on the wire's top. (labels, false blob, real droplet)."""
    labels = np.zeros((256, 256), np.uint8)
    rows, cols = np.mgrid[:256, :256]
    labels[100:, 40:217] = NANOWIRE  # the wire, up from the bottom
    false = (rows >= 180) & (rows <= 240) & (cols >= 70) & (cols <= 186)
    labels[false] = DROPLET  # 7137 px, enclosed by the wire
    real = ((rows - 100) ** 2 + (cols - 128) ** 2 < 45**2) & (rows < 100)
    labels[real] = DROPLET  # about 3160 px
    return labels, false, real


def test_a_circle_whose_droplet_the_wire_polygon_cuts_away_is_not_proposed(monkeypatch):
    """A failed measurement returned a circle over the false blob; scored as a whole disk it
    overlapped it by IoU 0.58 and was proposed, but the rasteriser cuts the disk at the wire
    polygon's bottom edge (the false blob is a hole of the wire, inside its polygon): the
    circle painted no droplet pixel, the real droplet was a stroke, and the page's human
    angle (40.7 deg) went into truth.parquet. Scored as it is painted, it is not proposed."""
    import dataclasses

    import nwwatch.measure
    from nwwatch.label.geometry import Circle, contact_angle
    from nwwatch.label.raster import rasterize

    labels, false, real = _false_droplet_in_the_wire()
    real_measure = nwwatch.measure.measure_contact_angle
    fitted = Circle((210.0, 128.0), 60.0)

    def failed_on_the_false_blob(*args, **kwargs):
        return dataclasses.replace(real_measure(*args, **kwargs), status="fit_failed",
                                   contact_angle_deg=None, facet_row=None,
                                   facet_angle_deg=None,
                                   circle_center_row=fitted.center[0],
                                   circle_center_col=fitted.center[1],
                                   droplet_radius_px=fitted.radius_px)

    monkeypatch.setattr(nwwatch.measure, "measure_contact_angle", failed_on_the_false_blob)
    geometry = propose_geometry(labels)
    assert geometry.droplet is None
    assert geometry.facet is None and geometry.wire is not None
    from nwwatch.label.geometry import circle_droplet_mask
    from nwwatch.label.propose import droplet_iou

    kept = geometry.replace(droplet=fitted)  # what was proposed before
    assert not circle_droplet_mask(kept).any()  # cut at the polygon's bottom edge
    assert droplet_iou(kept.replace(wire=None), false) > 0.5  # the whole disk's overlap
    assert droplet_iou(kept, false) == 0.0
    # both of the model's droplets are kept, as strokes, and there is no angle to save
    painted = rasterize(geometry)
    assert np.mean(painted[false | real] == DROPLET) > 0.97
    assert contact_angle(geometry, painted).angle_deg is None
