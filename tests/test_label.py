"""Labelling tool without a browser: geometry, exact rasterisation, proposal, DATA writer."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import urllib.request

import numpy as np
import pyarrow.parquet as pq
import pytest
from label_helpers import http_json, plain_params, render, truth_geometry

from nwwatch.classes import BACKGROUND, DROPLET, NANOWIRE, UNLABELED
from nwwatch.io import write_frame_tiff
from nwwatch.io.dataset import DatasetLayoutError, pair_folder, read_pair
from nwwatch.label.geometry import (
    Circle,
    GeometryError,
    LabelGeometry,
    Stroke,
    circle_droplet_mask,
    contact_angle,
    facet_line,
    geometry_from_json,
)
from nwwatch.label.propose import propose_geometry
from nwwatch.label.raster import inside_polygon, rasterize
from nwwatch.label.store import load_geometry, save_labeled_frame


@pytest.mark.parametrize("index", range(4))
def test_truth_geometry_rasterises_to_the_synthetic_labels_exactly(index):
    # Same shapes, same 50 %-coverage rule: the tool's mask is the generator's label image.
    params = plain_params(21, index)
    _, labels, truth = render(params)
    geometry = truth_geometry(params)
    assert np.array_equal(rasterize(geometry), labels)
    # ... and its circle and facet give the true angle.
    assert contact_angle(geometry).angle_deg == pytest.approx(truth["theta_apparent_deg"],
                                                              abs=1e-9)


def test_geometry_survives_json_and_the_facet_points_into_the_droplet():
    params = plain_params(21, 0)
    geometry = truth_geometry(params).replace(
        strokes=(Stroke(UNLABELED, ((5.0, 5.0), (5.0, 30.0), (30.0, 5.0))),
                 Stroke(DROPLET, ((100.0, 100.0),), brush_px=4.0)))
    back = geometry_from_json(json.loads(json.dumps(geometry.to_json())))
    assert back == geometry
    facet = facet_line(back)
    centre = np.asarray(back.droplet.center)
    wire_centroid = np.mean(back.wire, axis=0)
    assert (wire_centroid - facet.point) @ facet.u < 0  # u points away from the wire
    # Flipping the polygon's vertex order does not flip the facet's direction.
    flipped = back.replace(wire=back.wire[::-1])
    assert facet_line(flipped).u == pytest.approx(facet.u)
    assert np.hypot(*(centre - facet.point)) > 0


def test_strokes_paint_by_coverage_in_order():
    base = LabelGeometry((40, 40), None, ((-0.5, -0.5), (-0.5, 19.5), (39.5, 19.5),
                                           (39.5, -0.5)))
    labels = rasterize(base)
    assert (labels[:, :20] == NANOWIRE).all() and (labels[:, 20:] == 0).all()
    # A square polygon over pixel centres 10..19 (edges on pixel boundaries), then a brush.
    square = Stroke(UNLABELED, ((9.5, 9.5), (9.5, 19.5), (19.5, 19.5), (19.5, 9.5)))
    brush = Stroke(DROPLET, ((30.0, 30.0), (30.0, 35.0)), brush_px=2.0)
    painted = rasterize(base.replace(strokes=(square, brush)))
    assert (painted[10:20, 10:20] == UNLABELED).all()
    assert np.count_nonzero(painted == UNLABELED) == 100
    expected_brush = np.zeros((40, 40), bool)
    rr, cc = np.mgrid[:40, :40]
    # capsule of radius 2 around the segment; pixels more than half covered
    dist = np.hypot(rr - 30, np.where(cc < 30, cc - 30, np.where(cc > 35, cc - 35, 0)))
    expected_brush[dist <= 2.0] = True
    got = painted == DROPLET
    assert got[expected_brush & (dist <= 1.4)].all() and not got[dist >= 2.6].any()


def test_inside_polygon_matches_pixel_centres_of_a_rectangle():
    poly = np.array([[1.2, 2.2], [1.2, 7.8], [5.8, 7.8], [5.8, 2.2]])
    rows, cols = np.mgrid[:10, :10]
    inside = inside_polygon(poly, rows.astype(float), cols.astype(float))
    assert np.array_equal(np.argwhere(inside).min(0), [2, 3])
    assert np.array_equal(np.argwhere(inside).max(0), [5, 7])


def test_the_facet_of_a_wire_of_many_corners_is_found_in_one_pass(monkeypatch):
    # before: each edge's outward side was tested against every corner in a call of its own
    # (corners squared: 15 s for a wire of 1,000 corners, several times per preview)
    import nwwatch.label.geometry as geometry_module

    calls = []
    real = geometry_module.inside_polygon

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(geometry_module, "inside_polygon", counted)
    geometry = truth_geometry(plain_params(21, 0))
    square = np.asarray(geometry.wire)
    # the same rectangle with 200 corners along each side: the same facet
    corners = [tuple(a + (b - a) * t) for a, b in zip(square, np.roll(square, -1, axis=0),
                                                       strict=True)
               for t in np.linspace(0, 1, 200, endpoint=False)]
    facet = facet_line(geometry.replace(wire=tuple(corners)))
    assert len(calls) == 1
    line = facet_line(geometry)
    assert np.allclose(facet.u, line.u) and abs((facet.point - line.point) @ line.u) < 1e-6


def test_bad_geometry_names_the_key():
    doc = truth_geometry(plain_params(21, 0)).to_json()
    for key, value, match in (("shape", [0, 5], "shape"), ("wire", [[1, 2]], "wire"),
                              ("droplet", {"center": [1, 2], "radius_px": -1}, "radius_px"),
                              ("strokes", [{"class": 7, "points": []}], r"strokes\[0\].class"),
                              ("facet", [[1, 1], [1, 1]], "coincide"),
                              # before: an OverflowError in the rasteriser, HTTP 500
                              ("droplet", {"center": [1, 2], "radius_px": 1e200},
                               r"droplet.radius_px: expected a positive number \(up to 1e\+07"),
                              ("wire", [[1, 2], [3, 1e300], [5, 5]], r"wire\[1\]"),
                              ("strokes", [{"class": 2, "points": [[1, 2]], "brush_px": 1e300}],
                               r"strokes\[0\].brush_px")):
        with pytest.raises(GeometryError, match=match):
            geometry_from_json({**doc, key: value})


def test_a_misspelt_key_is_named_not_read_as_a_missing_shape(tmp_path):
    # before: "wires" or "stroke" in a geometry file edited by hand opened the frame without
    # its polygon or strokes, and the next save wrote the labels without them.
    geometry = truth_geometry(plain_params(21, 0)).replace(
        strokes=(Stroke(UNLABELED, ((5.0, 5.0), (5.0, 30.0), (30.0, 5.0))),))
    doc = geometry.to_json()
    for bad, match in (({"wires": doc["wire"]}, "wires: unknown key"),
                       ({"stroke": doc["strokes"]}, "stroke: unknown key"),
                       ({"droplet": {**doc["droplet"], "radius": 3}}, "droplet.radius: unknown"),
                       ({"strokes": [{**doc["strokes"][0], "brush": 2}]},
                        r"strokes\[0\].brush: unknown")):
        with pytest.raises(GeometryError, match=match):
            geometry_from_json({**doc, **bad})
    # The files the tool writes (with source, human angle and the proposal) still open.
    save_labeled_frame(tmp_path, "f", np.zeros(geometry.shape, np.uint16),
                       geometry.replace(extra={"proposal": {"status": "ok"}}), {"page": 0})
    assert load_geometry(tmp_path, "f").extra == {"proposal": {"status": "ok"}}
    path = tmp_path / "geometry" / "f.json"
    hand = json.loads(path.read_text())
    hand["wires"] = hand.pop("wire")
    path.write_text(json.dumps(hand))
    with pytest.raises(GeometryError, match=r"f\.json: wires: unknown key"):
        load_geometry(tmp_path, "f")


def test_a_frame_labelled_elsewhere_is_replaced_whatever_its_files_format(tmp_path):
    # before: DATA with napari's labels/f.tif (or an images/g.png) beside which the tool
    # wrote labels/f.png (images/g.tif): two files of one stem, which training refuses.
    import cv2
    import tifffile

    from nwwatch.label.frames import frame_refs

    params = plain_params(21, 0)
    image, truth, _ = render(params, seed=1)
    data = tmp_path / "DATA"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    write_frame_tiff(data / "images" / "f.tif", image)
    tifffile.imwrite(data / "labels" / "f.tif", truth)
    grey = (image // 256).astype(np.uint8)
    cv2.imwrite(str(data / "images" / "g.PNG"), grey)
    cv2.imwrite(str(data / "labels" / "g.png"), truth)
    write_frame_tiff(tmp_path / "f.tif", image)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    refs = frame_refs([tmp_path / "f.tif", tmp_path / "g.png"], data_dir=data)
    assert [r.stem for r in refs] == ["f", "g"]  # the same frames: their stems
    for ref, pixels in zip(refs, (image, grey), strict=True):
        save_labeled_frame(data, ref.stem, pixels, truth_geometry(params))
    assert sorted(p.name for p in (data / "labels").iterdir()) == ["f.png", "g.png"]
    assert sorted(p.name for p in (data / "images").iterdir()) == ["f.tif", "g.tif"]
    assert [stem for stem, _, _ in pair_folder(data)] == ["f", "g"]
    # Another frame's PNG image under that stem is another frame: a stem of its own.
    cv2.imwrite(str(data / "images" / "h.png"), grey)
    cv2.imwrite(str(data / "labels" / "h.png"), truth)
    cv2.imwrite(str(tmp_path / "h.png"), 255 - grey)
    [ref] = frame_refs([tmp_path / "h.png"], data_dir=data)
    assert ref.stem.startswith("h_")


def test_a_file_rewritten_with_another_frame_under_its_name_is_another_frame(tmp_path):
    # before: the saved geometry named the same file and page, so the new frame opened with
    # the earlier frame's labels (origin "saved") and Save replaced the earlier pair: the
    # earlier frame's image was gone from DATA and the new one carried its labels
    from nwwatch.label.frames import FrameRef, frame_refs, read_frame

    data, acq = tmp_path / "DATA", tmp_path / "acq" / "f.tif"
    stems = []
    for seed in (1, 2, 3, 2):  # three frames in turn under one name, then the second again
        params = plain_params(seed, 0, size=96)
        image, truth, _ = render(params, seed=seed)
        write_frame_tiff(acq, image)
        [ref] = frame_refs([acq], data_dir=data)
        stems.append(ref.stem)
        save_labeled_frame(data, ref.stem, image, truth_geometry(params),
                           source={"path": str(acq), "page": 0})  # as the page saves
    assert stems[0] == "f" and stems[1].startswith("f_") and stems[2].startswith("f_")
    assert len(set(stems[:3])) == 3 and stems[3] == stems[1]  # its pixels: its stem again
    assert sorted(p.stem for p in (data / "images").iterdir()) == sorted(stems[:3])
    for stem, seed in zip(stems[:3], (1, 2, 3), strict=True):  # each pair kept, its own
        image, _, _ = render(plain_params(seed, 0, size=96), seed=seed)
        assert np.array_equal(read_frame(FrameRef(data / "images" / f"{stem}.tif", 0,
                                                  stem))[0], image)


def test_contact_angle_is_a_value_with_a_reason():
    no_wire = LabelGeometry((50, 50), Circle((20.0, 20.0), 10.0))
    assert contact_angle(no_wire).angle_deg is None
    assert "facet" in contact_angle(no_wire).reason
    far = LabelGeometry((50, 50), Circle((5.0, 25.0), 3.0), facet=((30.0, 0.0), (30.0, 50.0)))
    assert contact_angle(far).angle_deg is None and "does not reach" in contact_angle(far).reason
    # An explicit facet: circle centre 5 px above a horizontal facet, R 10: cos = -5/10.
    explicit = LabelGeometry((50, 50), Circle((20.0, 25.0), 10.0), ((25.0, 15.0), (25.0, 35.0),
                                                                    (49.0, 35.0), (49.0, 15.0)),
                             facet=((25.0, 0.0), (25.0, 50.0)))
    assert contact_angle(explicit).angle_deg == pytest.approx(120.0)


@pytest.mark.parametrize("short_px", [0.0, 0.4, 1.0, 2.0, 3.0, 8.0, 14.0])
def test_a_wire_polygon_drawn_short_of_the_facet_is_said(short_px):
    """The page's angle comes from the shapes: a wire polygon ending 1-3 px short of an
    explicit facet line left a seam of background in the saved labels, which measure reads
    as a gap (114.7-116.3 deg for the shapes' 113.7), and nothing said so."""
    from nwwatch.label.server import preview

    geometry = LabelGeometry((400, 400), Circle((184.3, 203.1), 40.0),
                             ((200.4 + short_px, 150.2), (200.4 + short_px, 250.2),
                              (420.0, 250.2), (420.0, 150.2)),
                             facet=((200.4, 150.2), (200.4, 250.2)))
    doc = preview(geometry)
    assert doc["contact_angle_deg"] == pytest.approx(113.73, abs=0.01)
    note = doc["labels_note"]
    if short_px < 1.0:  # within the pixel the line cuts: no seam
        assert note == ""
    else:
        # the wire's first sample across the seam, 0.5 px apart: the seam up to that wide
        assert note.startswith("background between the wire and the facet line (up to "
                               f"{short_px + 0.5:.1f} px)")
        assert "draw the wire polygon up to the facet line" in note
    # a wire narrower than the base, and no explicit facet: nothing to say
    narrow = dataclasses.replace(geometry, wire=((200.4, 180.2), (200.4, 220.2),
                                                 (420.0, 220.2), (420.0, 180.2)))
    assert preview(narrow)["labels_note"] == ""
    assert preview(dataclasses.replace(geometry, facet=None))["labels_note"] == ""
    # a facet through pixel centres (handles moved by whole pixels): the line's own row is
    # the droplet's, and the seam was never seen
    centred = LabelGeometry((400, 400), Circle((184.0, 203.0), 40.0),
                            ((202.0 + short_px, 150.0), (202.0 + short_px, 250.0),
                             (420.0, 250.0), (420.0, 150.0)), facet=((200.0, 150.0),
                                                                     (200.0, 250.0)))
    labels = rasterize(centred)
    seam = (labels[201:200 + int(short_px) + 2, 160:240] == BACKGROUND).any()
    assert bool(preview(centred)["labels_note"]) == bool(seam), short_px


def test_proposal_from_true_labels_recovers_the_shapes():
    params = plain_params(21, 1)
    _, labels, truth = render(params)
    geometry = propose_geometry(labels, pixel_size_nm=params.pixel_size_nm)
    assert geometry.droplet is not None and geometry.wire is not None
    assert geometry.droplet.radius_px == pytest.approx(truth["R_px"], rel=0.03)
    mask = rasterize(geometry)
    # Fitted shapes: the mask agrees with the labels up to a boundary pixel here and there.
    assert np.mean(mask != labels) < 0.01
    assert contact_angle(geometry).angle_deg == pytest.approx(truth["theta_apparent_deg"],
                                                              abs=2.0)


def test_saved_frames_are_a_data_folder_with_human_angles(tmp_path):
    data = tmp_path / "DATA"
    angles = {}
    for index in range(2):
        params = plain_params(21, index)
        image, labels, truth = render(params)
        geometry = truth_geometry(params)
        out = save_labeled_frame(data, f"f{index}", image, geometry, {"path": "x.tif"})
        assert out["contact_angle_deg"] == pytest.approx(truth["theta_apparent_deg"])
        angles[f"f{index}"] = truth["theta_apparent_deg"]
        assert load_geometry(data, f"f{index}") == geometry
    pairs = pair_folder(data)
    assert [p[0] for p in pairs] == ["f0", "f1"]
    image, label = read_pair(pairs[0][1], pairs[0][2], 3)
    assert image.dtype == np.uint16 and np.array_equal(label, render(plain_params(21, 0))[1])
    truth_rows = pq.read_table(data / "truth.parquet").to_pylist()
    assert {r["file"].split("/")[-1][:-4]: r["theta_apparent_deg"] for r in truth_rows} == (
        pytest.approx(angles))
    with pytest.raises(GeometryError, match="shape"):
        save_labeled_frame(data, "bad", image[:10], truth_geometry(plain_params(21, 0)))


def test_a_frame_with_nothing_labeled_is_not_saved_and_a_hidden_droplet_has_no_angle(
        tmp_path):
    # before: an all-255 frame was saved (200, label_counts {255: all}) and `nwwatch train`
    # then refused the whole DATA folder over it; a droplet painted unlabeled (or a circle
    # moved off the frame) kept its human angle in truth.parquet, as ground truth
    from nwwatch.label.geometry import Stroke

    data = tmp_path / "DATA"
    params = plain_params(21, 0)
    image, _, truth = render(params)
    geometry = truth_geometry(params)
    h, w = geometry.shape
    everything = Stroke(UNLABELED, ((-1.0, -1.0), (-1.0, w), (h, w), (h, -1.0)))
    with pytest.raises(GeometryError, match=r"every pixel is unlabeled \(255\)"):
        save_labeled_frame(data, "f", image, geometry.replace(strokes=(everything,)))
    assert not (data / "labels" / "f.png").exists() and not (data / "images").exists()
    (cy, cx), r = geometry.droplet.center, geometry.droplet.radius_px
    over = Stroke(UNLABELED, ((cy - r - 2, cx - r - 2), (cy - r - 2, cx + r + 2),
                              (cy + r + 2, cx + r + 2), (cy + r + 2, cx - r - 2)))
    hidden = save_labeled_frame(data, "hidden", image, geometry.replace(strokes=(over,)))
    assert hidden["contact_angle_deg"] is None and DROPLET not in hidden["label_counts"]
    shown = save_labeled_frame(data, "shown", image, geometry)
    assert shown["contact_angle_deg"] == pytest.approx(truth["theta_apparent_deg"])
    rows = pq.read_table(data / "truth.parquet").to_pylist()
    assert [r["file"].split("/")[-1] for r in rows] == ["shown.tif"]
    doc = json.loads((data / "geometry" / "hidden.json").read_text())
    assert doc["contact_angle_reason"].startswith("no droplet pixel in the labels")


def test_a_circle_whose_own_pixels_are_not_droplet_has_no_angle(tmp_path):
    """before: the angle was refused only where the label image held no droplet pixel at
    all; a circle cut away at the wire polygon's edge (it painted nothing) beside droplet
    strokes, as a proposal drew it, kept its angle (40.7 deg here), shown with no reason and
    written to truth.parquet as ground truth. The circle's own pixels decide."""
    from nwwatch.label.server import preview

    wire = ((99.5, 39.5), (99.5, 216.5), (255.5, 216.5), (255.5, 39.5))
    # a false droplet enclosed by the wire, and the real one on the wire's top, as strokes
    false = Stroke(DROPLET, ((179.5, 69.5), (179.5, 186.5), (240.5, 186.5), (240.5, 69.5)))
    cap = np.linspace(0.0, np.pi, 25)
    real = Stroke(DROPLET, tuple((100.0 - 45 * np.sin(t), 128.0 + 45 * np.cos(t))
                                 for t in cap))
    cut = LabelGeometry((256, 256), Circle((210.0, 128.0), 60.0), wire,
                        strokes=(false, real))
    assert contact_angle(cut).angle_deg == pytest.approx(40.68, abs=0.01)  # the shapes'
    doc = preview(cut)
    assert doc["counts"][DROPLET] > 10000  # all of them the strokes'
    assert doc["contact_angle_deg"] is None
    assert doc["contact_angle_reason"] == (
        "no droplet pixel in the labels from the circle (its disk cut away at the facet "
        f"line, painted over as unlabeled, or off the frame); the label image's "
        f"{doc['counts'][DROPLET]} droplet pixels are the strokes'")
    image = np.full((256, 256), 1000, np.uint16)
    saved = save_labeled_frame(tmp_path, "cut", image, cut)
    assert saved["contact_angle_deg"] is None
    record = json.loads((tmp_path / "geometry" / "cut.json").read_text())
    assert record["contact_angle_deg"] is None
    assert record["contact_angle_reason"] == doc["contact_angle_reason"]
    assert pq.read_table(tmp_path / "truth.parquet").num_rows == 0
    # the circle on the real droplet, the false one still a stroke: its angle stands
    on_real = LabelGeometry((256, 256), Circle((110.0, 128.0), 46.0), wire, strokes=(false,))
    assert preview(on_real)["contact_angle_deg"] == pytest.approx(76.81, abs=0.01)
    # ... but not once all but a sliver of it is painted over as unlabeled: 267 px beside
    # the stroke's region of 7137, fewer than the 5 % of the largest region nwwatch measure
    # asks of a droplet region
    sliver = on_real.replace(strokes=(false, Stroke(UNLABELED, ((0.0, 0.0), (0.0, 255.0),
                                                                (96.5, 255.0), (96.5, 0.0)))))
    doc = preview(sliver)
    assert doc["contact_angle_deg"] is None
    assert doc["contact_angle_reason"].startswith(
        "the circle paints only 267 droplet pixels in the labels (under 357, 5 % of the "
        "largest droplet region's 7137 px: nwwatch measure passes over")
    saved = save_labeled_frame(tmp_path, "sliver", image, sliver)
    assert saved["contact_angle_deg"] is None
    # a few of its own pixels and no other droplet: under the 12 px of a droplet region
    tiny = LabelGeometry((256, 256), Circle((98.0, 128.0), 2.0), wire)  # 9 px
    doc = preview(tiny)
    assert 0 < doc["counts"][DROPLET] < 12 and doc["contact_angle_deg"] is None
    assert doc["contact_angle_reason"].startswith(
        f"the circle paints only {doc['counts'][DROPLET]} droplet pixels in the labels")
    save_labeled_frame(tmp_path, "on_real", image, on_real)
    rows = pq.read_table(tmp_path / "truth.parquet").to_pylist()
    assert [(r["file"], round(r["theta_apparent_deg"], 2)) for r in rows] == [
        ("images/on_real.tif", 76.81)]


@pytest.mark.parametrize("paint", [BACKGROUND, UNLABELED])
def test_a_facet_with_no_wire_under_the_droplet_in_the_labels_has_no_angle(tmp_path, paint):
    """before: the wire polygon painted over (as background or unlabeled) left no nanowire
    pixel in the label image, yet its edge stayed the facet and the human angle (120 deg
    here) went into the geometry file and truth.parquet as ground truth. The facet must be
    backed by wire pixels under the droplet's base, in the page's preview as in the save."""
    from nwwatch.label.server import preview

    image = np.full((64, 64), 1000, np.uint16)
    wire = ((35.5, 19.5), (35.5, 44.5), (63.5, 44.5), (63.5, 19.5))
    geometry = LabelGeometry((64, 64), Circle((30.5, 32.0), 10.0), wire)
    assert preview(geometry)["contact_angle_deg"] == pytest.approx(120.0)
    painted = geometry.replace(strokes=(Stroke(paint, wire),))
    assert contact_angle(painted).angle_deg == pytest.approx(120.0)  # the shapes alone
    doc = preview(painted)
    assert NANOWIRE not in doc["counts"]
    assert doc["contact_angle_deg"] is None
    assert doc["contact_angle_reason"].startswith(
        "no facet in the labels: nanowire pixels within 16 px of the facet line under none "
        "of the droplet's 18 px base (at least 6 px needed")
    saved = save_labeled_frame(tmp_path, "painted", image, painted)
    assert saved["contact_angle_deg"] is None
    record = json.loads((tmp_path / "geometry" / "painted.json").read_text())
    assert record["contact_angle_reason"] == doc["contact_angle_reason"]
    # the wire left under 5 px of the base (a strip below the droplet's left end): too
    # little; under 7 px: the labels stand behind the facet, and the angle is back
    for width_px, angle in ((5, None), (7, pytest.approx(120.0))):
        left = 32.0 - 8.66  # the base's left end
        strip = Stroke(NANOWIRE, ((35.5, left - 0.5), (35.5, left - 0.5 + width_px),
                                  (45.5, left - 0.5 + width_px), (45.5, left - 0.5)))
        doc = preview(painted.replace(strokes=(Stroke(paint, wire), strip)))
        assert doc["contact_angle_deg"] == angle, (width_px, doc["contact_angle_reason"])
    assert pq.read_table(tmp_path / "truth.parquet").num_rows == 0
    save_labeled_frame(tmp_path, "drawn", image, geometry)
    rows = pq.read_table(tmp_path / "truth.parquet").to_pylist()
    assert [(r["file"], round(r["theta_apparent_deg"], 6)) for r in rows] == [
        ("images/drawn.tif", 120.0)]


def test_a_circle_beside_many_small_droplet_strokes_keeps_its_angle():
    """before: the circle's own droplet pixels had to be 5 % of ALL droplet pixels of the
    label image, while nwwatch measure passes over a droplet region under 5 % of the largest
    one: a circle droplet beside 30 small stroked droplets was measured (several_droplets,
    109.13 deg) yet got no human angle, "as nwwatch measure asks of a droplet region"."""
    from nwwatch.measure import measure_contact_angle

    facet_row = 200.0
    wire = ((255.0, 108.0), (facet_row, 108.0), (facet_row, 148.0), (255.0, 148.0))
    corners = [(4.0 + 30 * i, 4.0 + 42 * j) for i in range(5) for j in range(6)]  # 24x24 px
    strokes = tuple(Stroke(DROPLET, ((r, c), (r, c + 24), (r + 24, c + 24), (r + 24, c)))
                    for r, c in corners)
    geometry = LabelGeometry((256, 256), Circle((facet_row - 6.0, 128.0), 20.0), wire,
                             ((facet_row, 108.0), (facet_row, 148.0)), strokes)
    labels = rasterize(geometry)
    own_px = int(np.count_nonzero((labels == DROPLET) & circle_droplet_mask(geometry)))
    assert own_px < 0.05 * np.count_nonzero(labels == DROPLET)  # the situation met
    measured = measure_contact_angle(labels)
    assert measured.status == "several_droplets"
    assert measured.contact_angle_deg == pytest.approx(109.13, abs=0.01)
    human = contact_angle(geometry, labels)
    assert human.reason == ""
    assert human.angle_deg == pytest.approx(contact_angle(geometry).angle_deg)
    # one stroked droplet 20 times the circle's pixels: measure passes over the circle's
    # droplet, and the human angle is refused saying why
    big = Stroke(DROPLET, ((4.0, 4.0), (4.0, 251.0), (150.0, 251.0), (150.0, 4.0)))
    beside_big = geometry.replace(strokes=(big,))
    labels = rasterize(beside_big)
    assert measure_contact_angle(labels).status == "droplet_not_on_wire"
    refused = contact_angle(beside_big, labels)
    assert refused.angle_deg is None
    assert "5 % of the largest droplet region's" in refused.reason


def test_evaluate_reads_the_tool_angles_as_truth(tmp_path):
    from nwwatch.evaluate import _truth_angles

    params = plain_params(21, 2)
    image, _, truth = render(params)
    save_labeled_frame(tmp_path, "only", image, truth_geometry(params))
    angle_deg = _truth_angles(tmp_path, ["only"])[0]["only"][0]
    assert angle_deg == pytest.approx(truth["theta_apparent_deg"])


def test_evaluate_does_not_score_an_angle_whose_labels_were_edited_elsewhere(tmp_path):
    # before: a label PNG edited in another tool after nwwatch label saved it was scored
    # against the angle of the old shapes in truth.parquet, with no note
    import cv2
    from onnx_models import build_threshold_model

    from nwwatch.evaluate import evaluate_folder, format_report

    data = tmp_path / "DATA"
    for index in range(2):
        params = plain_params(21, index)
        image, _, _ = render(params)
        save_labeled_frame(data, f"f{index}", image, truth_geometry(params))
    model = build_threshold_model(tmp_path / "m.onnx")
    before = evaluate_folder(model, data)
    assert before.angles.frames == 2 and before.truth_angle_of_other_labels == []
    edited = data / "labels" / "f1.png"
    labels = cv2.imread(str(edited), cv2.IMREAD_UNCHANGED)
    grown = cv2.dilate((labels == DROPLET).astype(np.uint8), np.ones((9, 9), np.uint8))
    labels[(grown > 0) & (labels != NANOWIRE)] = DROPLET
    cv2.imwrite(str(edited), labels)
    after = evaluate_folder(model, data)
    assert after.truth_angle_of_other_labels == ["f1"]
    assert after.angles.frames == 1 and after.angles_on_truth_labels.frames == 1
    assert after.as_dict()["truth_angle_of_other_labels"] == ["f1"]
    assert "angles not scored on 1 of 2 images: their label image changed" in format_report(
        after)
    assert after.metrics.pixels == before.metrics.pixels  # its mask is still scored


def test_one_data_parser_rejects_duplicate_stems_for_everyone(tmp_path):
    from nwwatch.evaluate import evaluate_folder

    data = tmp_path / "DATA"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    import cv2

    for name in ("a.png", "a.tif"):
        cv2.imwrite(str(data / "images" / name), np.zeros((8, 8), np.uint8))
    cv2.imwrite(str(data / "labels" / "a.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetLayoutError, match="two files with the stem 'a'"):
        pair_folder(data)
    with pytest.raises(DatasetLayoutError, match="two files with the stem 'a'"):
        evaluate_folder("unused.onnx", data)


def test_page_ships_as_package_data_and_loads_nothing_from_outside():
    import fnmatch
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["nwwatch"]
    static = sorted((root / "nwwatch" / "label" / "static").iterdir())
    assert {p.name for p in static} >= {"index.html", "label.js", "label-controls.js", "label.css"}
    for path in static:
        relative = path.relative_to(root / "nwwatch").as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative
        text = path.read_text()
        # Only the SVG namespace URI; no CDN, no remote script, font or stylesheet.
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path.name, urls)


def test_proposal_polygons_stay_draggable_on_ragged_predictions():
    from nwwatch.label.propose import MAX_VERTICES

    rng = np.random.default_rng(0)
    labels = np.zeros((128, 128), np.uint8)
    rows, cols = np.mgrid[:128, :128]
    ragged = (np.abs(cols - 64 + rng.normal(0, 3, (128, 128))) < 12) & (rows > 60)
    labels[ragged] = NANOWIRE
    labels[(rows - 45) ** 2 + (cols - 64) ** 2 < 20**2] = DROPLET
    geometry = propose_geometry(labels)
    assert geometry.wire is not None and 3 <= len(geometry.wire) <= MAX_VERTICES
    assert all(len(s.points) <= MAX_VERTICES for s in geometry.strokes)


def test_proposal_with_the_raw_frame_is_measured_as_the_service_measures():
    from nwwatch.measure import measure_contact_angle
    from tests.test_measure_refine import _cap, _frame, _shifted_labels

    cap = _cap()
    labels = _shifted_labels(cap)
    image = _frame(cap.labels, seed=1)
    service = measure_contact_angle(labels, image=image)
    assert service.facet_edge == "refined"
    geometry = propose_geometry(labels, image=image)
    proposal = geometry.extra["proposal"]
    assert proposal["contact_angle_deg"] == pytest.approx(service.contact_angle_deg, abs=1e-9)
    # The facet handles sit on the moved line, not on the labels' boundary.
    mid = np.mean(np.array(geometry.facet), axis=0)
    assert np.allclose(mid, [service.facet_row, service.facet_col], atol=1e-6)


def _label_cli(*args: str):
    from click.testing import CliRunner

    from nwwatch.cli import main

    return CliRunner().invoke(main, ["label", *args, "--no-browser", "--port", "0"])


@pytest.mark.parametrize("kind", ["tomogram", "not-onnx"])
def test_label_refuses_a_wrong_model_before_the_page_opens(tmp_path, kind):
    # before: the page opened and each frame's proposal failed, found only in the browser
    import tifffile
    from onnx_models import build_threshold_model

    frame = tmp_path / "f.tif"
    tifffile.imwrite(frame, np.random.default_rng(0).integers(0, 4000, (64, 64), np.uint16))
    model = tmp_path / "m.onnx"
    if kind == "tomogram":
        build_threshold_model(model, kind="tomogram")
    else:
        model.write_bytes(b"not a model")
    result = _label_cli(str(frame), "--model", str(model), "--out", str(tmp_path / "DATA"))
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Invalid value for '--model'" in result.output and str(model) in result.output
    assert "labelling 1 frame " not in result.output
    assert not (tmp_path / "DATA").exists()  # a refused command makes no folder


def test_label_refuses_an_unwritable_data_folder_and_an_unknown_address(tmp_path):
    import tifffile

    frame = tmp_path / "f.tif"
    tifffile.imwrite(frame, np.random.default_rng(0).integers(0, 4000, (64, 64), np.uint16))
    (tmp_path / "afile").write_text("")
    bad = tmp_path / "afile" / "DATA"  # before: found at the first save, in the browser
    result = _label_cli(str(frame), "--out", str(bad))
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--out'" in result.output and str(bad) in result.output
    assert "labelling 1 frame " not in result.output
    # an address this computer does not have (TEST-NET-1): the port is not the problem
    result = _label_cli(str(frame), "--out", str(tmp_path / "DATA"), "--host", "192.0.2.1",
                        "--allow-remote")
    assert result.exit_code == 1, result.output
    assert "cannot listen on 192.0.2.1:0" in result.output and "--port 0" not in result.output
    assert not (tmp_path / "DATA").exists()  # a refused command makes no folder
    # a port in use (another labelling page, the dashboard): refused, and no DATA folder
    import socket

    from click.testing import CliRunner

    from nwwatch.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = CliRunner().invoke(main, ["label", str(frame), "--out", str(tmp_path / "DATA"),
                                           "--no-browser", "--port", port])
    assert result.exit_code == 1 and "try --port 0" in result.output, result.output
    assert not (tmp_path / "DATA").exists()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.1", "lab-pc.example.org"])
def test_label_on_another_address_than_the_loopback_needs_allow_remote(tmp_path, host,
                                                                      monkeypatch):
    # before: served to the network without a word, the page writing files into DATA, where
    # `nwwatch dashboard --listen 0.0.0.0:8765` is refused without --allow-remote
    import tifffile

    import nwwatch.label.server as server_module

    def listened(*args, **kwargs):  # (the command would serve until stopped)
        raise AssertionError(f"listened on {host!r}")

    monkeypatch.setattr(server_module, "make_server", listened)
    frame = tmp_path / "f.tif"
    tifffile.imwrite(frame, np.random.default_rng(0).integers(0, 4000, (64, 64), np.uint16))
    result = _label_cli(str(frame), "--out", str(tmp_path / "DATA"), "--host", host)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    shown = repr(host) if host else "'' (every interface)"
    assert (f"Invalid value for '--host': {shown} is not a loopback address; binding "
            "elsewhere exposes the labelling page, which saves into DATA, to the network: "
            "allow it explicitly (--allow-remote)") in text
    assert "labelling 1 frame " not in result.output
    assert not (tmp_path / "DATA").exists()  # a refused command makes no folder


def test_label_with_allow_remote_warns_and_names_a_usable_address(tmp_path):
    # before: no warning, and the page's address printed (and opened) as http://0.0.0.0:PORT/
    from test_stop_signals import _frame, _started, _stopped

    frame, data = _frame(tmp_path / "acq"), tmp_path / "DATA"
    proc, url = _started("label", str(frame), "--out", str(data), "--no-browser", "--port", "0",
                         "--host", "0.0.0.0", "--allow-remote")
    try:
        assert url.startswith("127.0.0.1:")
        port = url.rsplit(":", 1)[1]
        with urllib.request.urlopen(f"http://{url}/api/frames", timeout=60) as answer:
            assert json.load(answer)["frames"][0]["stem"] == "f"
    finally:
        out, err = _stopped(proc, signal.SIGINT)
    assert (f"warning: --allow-remote: the labelling page listens on all interfaces (port "
            f"{port}) with no login: anyone who can reach any address of this computer can "
            f"read the frames and write labels into {data}") in " ".join(err.split())


def test_label_page_url_names_an_address_a_browser_can_open():
    from nwwatch.label.cli import _page_url

    assert _page_url("0.0.0.0", 8766) == ("http://127.0.0.1:8766/", True)
    assert _page_url("::", 8766) == ("http://[::1]:8766/", True)
    assert _page_url("192.0.2.1", 8766) == ("http://192.0.2.1:8766/", False)
    assert _page_url("127.0.0.1", 8766) == ("http://127.0.0.1:8766/", False)


def test_label_help_says_what_out_holds():
    from click.testing import CliRunner

    from nwwatch.cli import main

    result = CliRunner().invoke(main, ["label", "--help"])
    text = " ".join(result.output.split())
    assert result.exit_code == 0
    # before: "frames saved there before open with their saved shapes"
    assert "frames already saved there open with their saved shapes" in text


def test_label_page_and_dashboard_default_to_different_ports():
    # before: both 8765; with the service's dashboard on, `nwwatch label frames/*.tif --out
    # DATA` on the acquisition PC stopped with "cannot listen on 127.0.0.1:8765"
    from nwwatch.dashboard.settings import DashboardConfig
    from nwwatch.label.cli import label

    port = next(p for p in label.params if p.name == "port").default
    assert port != DashboardConfig().port


def test_label_queue_of_a_folder_that_is_not_results_says_so(tmp_path):
    # before: "no frames: give FRAMES, or --queue RESULTS with queued frames", as for an
    # empty queue
    result = _label_cli("--queue", str(tmp_path), "--out", str(tmp_path / "DATA"))
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '--queue': {tmp_path} has no label-queue/ folder" in result.output
    # the results of tomograms alone: there is a queue only for in-situ frames (it read as
    # "give the RESULTS folder of 'nwwatch replay --out'", which this is)
    (tmp_path / "volumes").mkdir()
    result = _label_cli("--queue", str(tmp_path), "--out", str(tmp_path / "DATA"))
    assert result.exit_code == 2, result.output
    assert "tomograms" in result.output and "in-situ frames" in result.output
    assert "give the RESULTS folder" not in result.output
    (tmp_path / "label-queue").mkdir()  # a results folder whose queue is empty
    result = _label_cli("--queue", str(tmp_path), "--out", str(tmp_path / "DATA"))
    assert result.exit_code == 2 and "no frames" in result.output


def test_label_queue_of_a_folder_that_is_not_results_is_refused_with_frames_too(tmp_path):
    # before: with FRAMES given, a --queue folder without a queue (RESULTS/frames, or the
    # label-queue/ folder itself) was ignored without a word: the page opened with FRAMES
    # alone and the queued frames were never listed
    import subprocess
    import sys

    frame = tmp_path / "f.tif"
    write_frame_tiff(frame, np.zeros((32, 32), np.uint16))
    results = tmp_path / "RESULTS"
    (results / "label-queue").mkdir(parents=True)
    (results / "frames").mkdir()
    try:
        run = subprocess.run(
            [sys.executable, "-m", "nwwatch", "label", str(frame), "--queue",
             str(results / "frames"), "--out", str(tmp_path / "DATA"), "--no-browser",
             "--port", "0"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the page was served instead of refusing --queue: {exc.stdout!r}")
    assert run.returncode == 2, run.stdout + run.stderr
    assert (f"{results / 'frames'} has no label-queue/ folder: give the RESULTS folder that "
            f"holds it, {results}") in " ".join(run.stderr.split())
    assert not (tmp_path / "DATA").exists()


def test_label_warns_when_data_is_in_the_frames_folder(tmp_path):
    # before: `cd ACQ && nwwatch label *.tif --out DATA` said nothing; the service watching
    # ACQ (recursive by default) and `nwwatch replay ACQ` then took every saved copy in
    # DATA/images/ for a new frame
    import signal
    import subprocess
    import sys

    image, _, _ = render(plain_params(3, 0, size=64))
    write_frame_tiff(tmp_path / "acq" / "f.tif", image)
    # a frame of a Gatan In-Situ recording lies in rec/Hour_00/Minute_00/Second_00: DATA
    # beside Hour_00 is in the recording, which the service watches as one acquisition
    second = tmp_path / "rec" / "Hour_00" / "Minute_00" / "Second_00"
    write_frame_tiff(second / "rec_Hour_00_Minute_00_Second_00_Frame_0000.tif", image)
    warnings = []
    for frame, out in ((tmp_path / "acq" / "f.tif", tmp_path / "acq" / "DATA"),
                       (tmp_path / "acq" / "f.tif", tmp_path / "DATA"),
                       (next(second.iterdir()), tmp_path / "rec" / "DATA")):
        proc = subprocess.Popen(
            [sys.executable, "-m", "nwwatch", "label", str(frame),
             "--out", str(out), "--no-browser", "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().startswith("labelling 1 frame ")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        *err, last = err.splitlines()
        assert last == f"label stopped (Ctrl-C): nothing was saved to {out}"
        warnings.append(" ".join(" ".join(err).split()))
    for warning, (data, folder) in zip(
            (warnings[0], warnings[2]),
            ((tmp_path / "acq" / "DATA", tmp_path / "acq"),
             (tmp_path / "rec" / "DATA", tmp_path / "rec")), strict=True):
        assert warning == (f"warning: {data} is in {folder}, a folder of the frames: a "
                           "service or `nwwatch replay` watching it would process the copies "
                           "saved in images/ as new frames; label into a folder outside it")
    assert warnings[1] == ""


def test_label_warns_when_a_file_declares_z_slices_as_a_tomogram_does(tmp_path):
    # before: `nwwatch label volume.tif` opened each slice of a tomogram as an in-situ frame
    # (wire, droplet) without a word, where replay notes such a file
    import signal
    import subprocess
    import sys

    from nwwatch.io import write_volume_tiff

    rng = np.random.default_rng(0)
    volume = write_volume_tiff(tmp_path / "acq" / "volume.tif",
                               rng.random((3, 64, 64)).astype(np.float32))
    image, _, _ = render(plain_params(3, 0, size=64))
    frame = write_frame_tiff(tmp_path / "acq" / "f.tif", image)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nwwatch", "label", str(volume), str(frame), "--out",
         str(tmp_path / "DATA"), "--no-browser", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("labelling 4 frames ")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    *err, last = err.splitlines()
    assert last.startswith("label stopped (Ctrl-C): ")
    # the volume is named, the single frame is not
    assert " ".join(" ".join(err).split()) == (
        f"warning: {volume} declares its 3 pages as Z slices (ImageJ slices, OME SizeZ or an "
        "MRC volume), as a tomogram does: each opens as an in-situ frame (wire, droplet); a "
        "tomogram's slice is labelled 0 pore, 1 solid, 255 unlabeled with another tool "
        "(docs/tomography.md, 'Drawing them')")


def test_labels_drawn_elsewhere_open_as_the_proposal_with_a_note(tmp_path):
    # before: a frame whose label image in DATA was drawn elsewhere (napari, CVAT) opened
    # with the model's proposal and no word about it; Save replaced those labels unasked
    from nwwatch.label.frames import frame_refs
    from nwwatch.label.server import LabelSession

    image, labels, _ = render(plain_params(3, 0, size=128))
    write_frame_tiff(tmp_path / "acq" / "f.tif", image)
    data = tmp_path / "DATA"
    write_frame_tiff(data / "images" / "f.tif", image)
    (data / "labels").mkdir()
    import cv2

    cv2.imwrite(str(data / "labels" / "f.png"), labels)
    session = LabelSession(frame_refs([tmp_path / "acq" / "f.tif"], data_dir=data), data)
    assert session.frames[0].stem == "f"  # the same pixels: DATA's frame
    geometry, origin, note = session.geometry(0)
    assert origin == "model" and geometry.shape == labels.shape
    assert "labels/f.png" in note and "drawn elsewhere" in note and "Save replaces" in note
    assert session.geometry(0, model=True)[2] == ""  # "Back to the model's proposal"


@pytest.mark.parametrize("content", ["colour", "empty"])
def test_label_refuses_a_bad_png_before_the_page_opens(tmp_path, content):
    # TIFFs were checked at start; a PNG only when the browser asked for it
    import cv2

    png = tmp_path / "f.png"
    if content == "colour":
        rgb = np.zeros((32, 32, 3), np.uint8)
        rgb[..., 2] = 200
        cv2.imwrite(str(png), rgb)
    else:
        png.write_bytes(b"")
    result = _label_cli(str(png), "--out", str(tmp_path / "DATA"))
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert f"Error: {png}: " in result.output and "labelling 1 frame " not in result.output


def test_label_says_what_it_reads_when_a_folder_holds_other_files(tmp_path):
    # before: `nwwatch label frames/*` with a notes.txt among the frames said only "not a
    # TIFF file", not what the command takes.
    write_frame_tiff(tmp_path / "f.tif", np.zeros((32, 32), np.uint16))
    (tmp_path / "notes.txt").write_text("sample 3, 450 C")
    result = _label_cli(str(tmp_path / "f.tif"), str(tmp_path / "notes.txt"), "--out",
                        str(tmp_path / "DATA"))
    assert result.exit_code == 1, result.output
    assert f"{tmp_path / 'notes.txt'}: not a TIFF file" in result.output
    assert ("reads TIFF, MRC, DigitalMicrograph, Velox EMD or TIA series frames or stacks and "
            "PNG images" in result.output)
    assert not (tmp_path / "DATA").exists()


def test_label_names_a_pattern_that_matched_nothing(tmp_path):
    pattern = str(tmp_path / "*.tif")
    result = _label_cli(pattern, "--out", str(tmp_path / "DATA"))
    assert result.exit_code == 2
    assert "(a shell pattern that matched no file?)" in result.output


def test_label_names_a_dangling_link_and_its_target(tmp_path):
    (tmp_path / "f.tif").symlink_to(tmp_path / "gone.tif")
    result = _label_cli(str(tmp_path / "f.tif"), "--out", str(tmp_path / "DATA"))
    assert result.exit_code == 2
    assert (f"it is a symbolic link to {str(tmp_path / 'gone.tif')!r}, which does not exist"
            in result.output)
    assert not (tmp_path / "DATA").exists()


def test_proposal_saved_as_is_keeps_the_droplet_on_the_wire():
    # before: the facet moved onto the frame's intensity step (here 3 px off the labels'
    # interface) cut the droplet's disk there while the wire polygon stayed on the model's
    # wire: a strip of background between droplet and wire in the saved labels, which then
    # measured another angle (122.0 against the proposal's 119.9, angle_uncertain).
    from nwwatch.measure import measure_contact_angle
    from tests.test_measure_refine import _cap, _frame, _shifted_labels

    cap = _cap()
    labels = _shifted_labels(cap)
    geometry = propose_geometry(labels, image=_frame(cap.labels, seed=1))
    assert geometry.extra["proposal"]["status"] == "ok"
    mask = rasterize(geometry)
    # Inside the circle and between the triple points, no pixel is background.
    (a_r, a_c), (b_r, b_c) = geometry.facet
    rows, cols = np.mgrid[:mask.shape[0], :mask.shape[1]]
    (c_r, c_c), radius = geometry.droplet.center, geometry.droplet.radius_px
    t_r, t_c = (b_r - a_r), (b_c - a_c)
    along = ((rows - a_r) * t_r + (cols - a_c) * t_c) / (t_r**2 + t_c**2)
    base = ((rows - c_r) ** 2 + (cols - c_c) ** 2 < (radius - 1) ** 2) & (along > 0.05) & (
        along < 0.95)
    assert np.count_nonzero(base & (mask == BACKGROUND)) == 0
    found = measure_contact_angle(mask)
    assert found.status == "ok"
    assert found.contact_angle_deg == pytest.approx(
        geometry.extra["proposal"]["contact_angle_deg"], abs=0.1)


@pytest.mark.parametrize("layout", ["synth_folder", "foreign_truth", "tomogram_set",
                                    "broken_dataset_toml"])
def test_label_refuses_a_data_folder_whose_files_a_save_would_replace(tmp_path, layout):
    # `nwwatch label syn/*.tif --out syn` on a `nwwatch synth insitu` folder: the first save
    # replaced the frame's exact label, rewrote truth.parquet with that one human row (the
    # other frames' truth gone) and left a folder `nwwatch train` refuses. A tomogram's
    # training set (dataset.toml kind = "tomogram") took the in-situ frame and its labels 0-2
    # too, and `nwwatch train` then refused the folder over that label.
    import subprocess
    import sys

    from click.testing import CliRunner

    from nwwatch.cli import main

    syn = tmp_path / "syn"
    result = CliRunner().invoke(main, ["synth", "insitu", str(syn), "--frames", "2", "--size",
                                       "64", "--seed", "3"])
    assert result.exit_code == 0, result.output
    data = syn
    if layout == "foreign_truth":
        data = tmp_path / "DATA"
        data.mkdir()
        (data / "truth.parquet").write_bytes((syn / "truth.parquet").read_bytes())
    elif layout in ("tomogram_set", "broken_dataset_toml"):
        data = tmp_path / "DATA"
        data.mkdir()
        (data / "dataset.toml").write_text('kind = "tomogram"\n' if layout == "tomogram_set"
                                           else "kind = tomogram\n")
    before = {p: p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()}
    # A child process with a timeout: a command that is not refused serves until stopped.
    done = subprocess.run(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "label",
         str(syn / "frame_00000.tif"), "--out", str(data), "--no-browser", "--port", "0"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Invalid value for '--out'" in done.stderr and str(data) in done.stderr
    assert "labelling 1 frame " not in done.stdout
    after = {p: p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()}
    assert after == before


def test_label_reopens_its_own_data_folder(tmp_path):
    # The tool's own truth.parquet (rows "human geometry", or none yet) is not refused.
    import tifffile

    from nwwatch.label.store import foreign_data_reason, write_truth

    data = tmp_path / "DATA"
    (data / "geometry").mkdir(parents=True)
    write_truth(data)  # no frame with an angle yet: an empty table
    assert foreign_data_reason(data) is None
    (data / "dataset.toml").write_text('kind = "insitu"\nclasses = ["bg", "wire", "drop"]\n')
    assert foreign_data_reason(data) is None
    frame = tmp_path / "f.tif"
    tifffile.imwrite(frame, np.random.default_rng(0).integers(0, 4000, (64, 64), np.uint16))
    (data / "geometry" / "f.json").write_text('{"contact_angle_deg": 120.0}')
    write_truth(data)
    assert foreign_data_reason(data) is None


def test_label_refuses_a_results_folder_and_its_datasets_as_data(tmp_path):
    # `nwwatch label --queue RESULTS --out RESULTS` served the page and saved images/,
    # labels/ and truth.parquet among the service's results (into frames/ too)
    from servicekit import model, paint_insitu, run_nwwatch

    from nwwatch.service import replay

    acq = tmp_path / "acq"
    write_frame_tiff(acq / "f.tif", paint_insitu(120.0))
    results = tmp_path / "RESULTS"
    replay(acq, results, kind="insitu", model=model(tmp_path))
    assert (results / "ledger.sqlite").is_file() and (results / "frames").is_dir()
    before = {p: p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()}
    for out, said in ((results, f"{results} is a results folder of the service or replay "
                                "(it holds ledger.sqlite)"),
                      (results / "frames", f"{results / 'frames'} is the frames/ folder of "
                                           f"the results {results}"),
                      (results / "frames" / "DATA", f"{results / 'frames' / 'DATA'} is "
                                                    f"inside {results / 'frames'}")):
        try:  # a command not refused serves until stopped
            done = run_nwwatch("label", str(acq / "f.tif"), "--out", str(out), "--no-browser",
                               "--port", "0", "--model", str(model(tmp_path)), timeout=60)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"--out {out} was served, not refused: {exc.stdout!r}")
        err = " ".join(done.stderr.split())
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"Invalid value for '--out': {said}" in err
        assert f"e.g. --out {tmp_path / 'DATA'}" in err
    assert {p: p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()} == before
    assert not (results / "frames" / "DATA").exists()


def test_a_saved_label_image_edited_in_another_tool_opens_with_a_note(tmp_path):
    # before: a saved frame whose labels/<stem>.png was edited in another tool (GIMP, napari)
    # opened with its saved shapes and no word about it: the page showed other labels than
    # the ones `nwwatch train` reads, and Save overwrote the edit unasked
    import cv2

    from nwwatch.label.frames import frame_refs
    from nwwatch.label.server import LabelSession

    params = plain_params(3, 0, size=128)
    image, _, _ = render(params)
    write_frame_tiff(tmp_path / "acq" / "f.tif", image)
    data = tmp_path / "DATA"
    save_labeled_frame(data, "f", image, truth_geometry(params))
    session = LabelSession(frame_refs([tmp_path / "acq" / "f.tif"], data_dir=data), data)
    assert session.geometry(0)[1:] == ("saved", "")
    png = data / "labels" / "f.png"
    cv2.imwrite(str(png), cv2.imread(str(png), cv2.IMREAD_UNCHANGED))  # same pixels again
    assert session.geometry(0)[1:] == ("saved", "")
    edited = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    edited[:20, :20] = UNLABELED
    cv2.imwrite(str(png), edited)
    geometry, origin, note = session.geometry(0)
    assert origin == "saved" and geometry == truth_geometry(params)
    assert "labels/f.png" in note and "changed since nwwatch label saved f" in note
    assert "Save replaces it" in note
    png.rename(png.with_suffix(".tif"))  # re-exported in another format
    assert "labels/f.tif" in session.geometry(0)[2]
    png.with_suffix(".tif").unlink()
    assert "labels/f.png is missing" in session.geometry(0)[2]
    save_labeled_frame(data, "f", image, geometry)  # Save: the shapes' label image again
    assert session.geometry(0)[2] == ""


@pytest.mark.parametrize("part", ["images", "labels", "geometry"])
def test_label_refuses_a_data_folders_own_subfolder_as_out(tmp_path, part):
    # before: `nwwatch label f.tif --out DATA/images` served the page and saved the frame into
    # DATA/images/images/, DATA/images/labels/, ...: `nwwatch train DATA` trained without it,
    # without a word
    import sys

    params = plain_params(3, 0, size=64)
    image, _, _ = render(params)
    frame = tmp_path / "acq" / "f.tif"
    write_frame_tiff(frame, image)
    data = tmp_path / "DATA"
    save_labeled_frame(data, "g", image, truth_geometry(params))
    before = {p: p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()}
    done = subprocess.run(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "label", str(frame),
         "--out", str(data / part), "--no-browser", "--port", "0"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"is the {part}/ folder of the DATA folder {data}" in done.stderr
    assert f"give --out {data}" in done.stderr
    assert {p: p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()} == before
    from nwwatch.label.store import foreign_data_reason

    assert foreign_data_reason(tmp_path / "labels") is None  # a DATA folder named labels
    assert foreign_data_reason(data) is None


def test_an_interrupted_first_save_of_a_long_stem_is_repaired(tmp_path):
    # stems are cut at 200 characters, then a page or hash suffix may follow: the repair
    # read the marker's stem cut again and looked at another frame's files (the label image
    # without its image stayed, which `nwwatch train` refuses)
    from nwwatch.io.png import write_image_file
    from nwwatch.label.store import SAVING_FILE, repair_interrupted_save, safe_stem

    stem = safe_stem("A" * 237) + "_p0001"
    (tmp_path / "labels").mkdir()
    write_image_file(tmp_path / "labels" / f"{stem}.png", np.zeros((8, 8), np.uint8))
    (tmp_path / SAVING_FILE).write_text(json.dumps({"stem": stem}))
    said = repair_interrupted_save(tmp_path)
    assert said is not None and "removed" in said
    assert not (tmp_path / "labels" / f"{stem}.png").exists()


def test_label_listens_on_every_interface_given_an_empty_host():
    from nwwatch.label.server import make_server

    server = make_server(None, host="", port=0)
    try:
        # the wildcard address (IPv4's or IPv6's, as getaddrinfo offers), not loopback
        assert server.server_address[0] in ("0.0.0.0", "::") and server.server_address[1] > 0
    finally:
        server.server_close()


def _post_save(base_url: str, key: str, token: str, geometry) -> dict:
    import urllib.request

    request = urllib.request.Request(
        f"{base_url}api/frames/0/save?base={token}&frame={key}",
        json.dumps(geometry.to_json()).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def test_two_sessions_with_frames_of_one_name_keep_both_frames(tmp_path):
    # before: both listed frame_00000 before either saved; B then opened A's saved shapes as
    # its own and its save replaced A's pair with B's pixels, without a word
    import urllib.request

    from label_helpers import serving

    from nwwatch.label.frames import FrameRef, frame_refs, read_frame
    from nwwatch.label.server import LabelSession

    data = tmp_path / "DATA"
    images = {}
    for folder, seed in (("A", 1), ("B", 2)):
        params = plain_params(seed, 0, size=96)
        images[folder] = render(params, seed=seed)[0]
        write_frame_tiff(tmp_path / folder / "frame_00000.tif", images[folder])
    a = LabelSession(frame_refs([tmp_path / "A" / "frame_00000.tif"], data_dir=data), data)
    b = LabelSession(frame_refs([tmp_path / "B" / "frame_00000.tif"], data_dir=data), data)
    assert a.frames[0].stem == b.frames[0].stem == "frame_00000"  # nothing saved yet
    shapes = truth_geometry(plain_params(1, 0, size=96))
    with serving(a) as url:
        _post_save(url, a.frames[0].key, "", shapes)
    with serving(b) as url:
        with urllib.request.urlopen(f"{url}api/frames/0/geometry") as answer:
            opened = json.load(answer)
        assert opened["origin"] == "model" and opened["saved_token"] == ""  # not A's shapes
        saved = _post_save(url, b.frames[0].key, opened["saved_token"], shapes)
    assert saved["stem"] != "frame_00000" and b.frames[0].stem == saved["stem"]
    for stem, folder in (("frame_00000", "A"), (saved["stem"], "B")):
        kept = read_frame(FrameRef(data / "images" / f"{stem}.tif", 0, stem)).image
        np.testing.assert_array_equal(kept, images[folder])
    a.close()
    b.close()


def test_a_frame_rewritten_during_the_session_does_not_take_over_the_saved_pair(tmp_path):
    # before: the new pixels opened the earlier frame's shapes as saved, and a save replaced
    # the earlier frame's image
    from label_helpers import serving

    from nwwatch.label.frames import FrameRef, frame_refs, read_frame
    from nwwatch.label.server import LabelSession

    data, path = tmp_path / "DATA", tmp_path / "acq" / "frame.tif"
    first, _, _ = render(plain_params(1, 0, size=96), seed=1)
    second, _, _ = render(plain_params(2, 0, size=96), seed=2)
    write_frame_tiff(path, first)
    session = LabelSession(frame_refs([path], data_dir=data), data)
    shapes = truth_geometry(plain_params(1, 0, size=96))
    with serving(session) as url:
        _post_save(url, session.frames[0].key, "", shapes)
        write_frame_tiff(path, second)  # the acquisition wrote another frame under its name
        session.forget_if_changed(0)
        geometry, origin, note = session.geometry(0)
        assert origin == "model" and session.frames[0].stem != "frame"
        _post_save(url, session.frames[0].key, "", shapes)
    kept = read_frame(FrameRef(data / "images" / "frame.tif", 0, "frame")).image
    np.testing.assert_array_equal(kept, first)
    session.close()


def test_a_stack_grown_since_its_one_page_was_saved_keeps_that_pages_stem(tmp_path):
    # before: page 0 was "stack" while the file had one page, "stack_p0000" once it grew:
    # its saved shapes were not opened, and a save put the same frame in DATA twice
    from nwwatch.io import write_stack_tiff
    from nwwatch.label.frames import frame_refs

    data, path = tmp_path / "DATA", tmp_path / "stack.tif"
    pages = [render(plain_params(k, 0, size=96), seed=k)[0] for k in (1, 2, 3)]
    write_stack_tiff(path, np.stack(pages[:1]))
    [ref] = frame_refs([path], data_dir=data)
    save_labeled_frame(data, ref.stem, pages[0], truth_geometry(plain_params(1, 0, size=96)),
                       {"path": str(path), "page": 0})
    write_stack_tiff(path, np.stack(pages))
    assert [r.stem for r in frame_refs([path], data_dir=data)] == [
        "stack", "stack_p0001", "stack_p0002"]


def test_labels_that_measure_refuses_are_said_beside_the_shapes_angle():
    """The page's angle comes from the circle and the facet line: labels nwwatch measure
    refuses (the wire drawn away from the facet) still showed it with no word, and it went
    into truth.parquet as a human angle the labels do not stand behind."""
    from nwwatch.label.server import preview

    away = LabelGeometry((400, 400), Circle((184.3, 203.1), 40.0),
                         ((210.4, 150.0), (210.4, 250.0), (399.0, 250.0), (399.0, 150.0)),
                         facet=((200.4, 150.2), (200.4, 250.2)))
    doc = preview(away)
    assert doc["contact_angle_deg"] is not None
    assert "; nwwatch measure refuses the labels to be saved (droplet_not_on_wire: " in \
        doc["labels_note"], doc
    # drawn further away than the gap's 16 px, the wire no longer stands behind the facet
    # line at all: no angle (test_a_facet_with_no_wire_under_the_droplet_in_the_labels_...)
    far = dataclasses.replace(away, wire=((300.0, 150.0), (300.0, 250.0), (399.0, 250.0),
                                          (399.0, 150.0)))
    assert preview(far)["contact_angle_reason"].startswith(
        "no facet in the labels: the wire polygon is drawn 99.6 px from the facet line")
    near = dataclasses.replace(away, wire=((200.4, 150.2), (200.4, 250.2), (399.0, 250.2),
                                           (399.0, 150.2)))
    assert preview(near)["labels_note"] == ""


def test_a_wire_drawn_beyond_the_reach_of_the_facet_line_is_named_as_such():
    """A wire polygon drawn whole, 20 px short of an explicit facet line, had no angle for a
    reason that blamed the wire being painted over as background or unlabeled: the fix is
    to move the line or the wire's edge, and the reason now says so, with the distance."""
    from nwwatch.label.server import preview

    facet = ((200.4, 150.2), (200.4, 250.2))

    def wire_at(row: float) -> tuple:  # its top edge on that row, under the droplet
        return ((row, 150.0), (row, 250.0), (399.0, 250.0), (399.0, 150.0))

    short = LabelGeometry((400, 400), Circle((184.3, 203.1), 40.0), wire_at(220.4),
                          facet=facet)
    reason = preview(short)["contact_angle_reason"]
    assert reason.startswith("no facet in the labels: the wire polygon is drawn 20.0 px from "
                             "the facet line under the droplet (more than 16 px"), reason
    assert reason.endswith("move the facet line or the wire's edge")
    assert "painted over" not in reason
    # a wire polygon that slants away: its nearest corner under the droplet's base counts
    slanted = short.replace(wire=((205.4, 150.0), (225.4, 250.0), (399.0, 250.0),
                                  (399.0, 150.0)))
    assert preview(slanted)["contact_angle_deg"] is not None  # within reach at one end
    # a wire polygon beside the droplet, none of it under the base
    beside = short.replace(wire=((200.4, 300.0), (200.4, 390.0), (399.0, 390.0),
                                 (399.0, 300.0)))
    reason = preview(beside)["contact_angle_reason"]
    assert reason.startswith("no facet in the labels: the wire polygon does not reach under "
                             "the droplet's 74 px base on the facet line"), reason
    # drawn up to the line but painted over: that is still what is said
    painted = short.replace(wire=wire_at(200.4), strokes=(Stroke(BACKGROUND, wire_at(200.4)),))
    assert "the wire painted over as background by strokes" in preview(
        painted)["contact_angle_reason"]


def test_a_wire_polygon_under_only_the_end_of_the_base_is_named_as_such():
    """A wire polygon drawn whole but under only the end of the droplet's base (beside the
    droplet, or slanted steeply away from the line), with no stroke at all, had no angle for
    a reason that blamed the wire being painted over or off the frame: the polygon or the
    facet line is to be moved, and the reason says how much of the base it is under."""
    from nwwatch.label.server import preview

    short = LabelGeometry((400, 400), Circle((184.3, 203.1), 40.0),
                          ((200.4, 150.0), (200.4, 250.0), (399.0, 250.0), (399.0, 150.0)),
                          facet=((200.4, 150.2), (200.4, 250.2)))
    assert preview(short)["contact_angle_deg"] is not None
    # beside the droplet, its left edge 3 px inside the base's right end (base 166..240)
    beside = short.replace(wire=((200.4, 237.0), (200.4, 390.0), (399.0, 390.0),
                                 (399.0, 237.0)))
    # slanted: within 16 px of the line only under the base's right end
    slanted = short.replace(wire=((250.4, 150.0), (210.4, 250.0), (399.0, 250.0),
                                  (399.0, 150.0)))
    for geometry, covered_px in ((beside, 3), (slanted, 4)):
        doc = preview(geometry)
        assert doc["contact_angle_deg"] is None
        assert doc["contact_angle_reason"] == (
            "no facet in the labels: the wire polygon lies within 16 px of the facet line "
            f"under only {covered_px} px of the droplet's 74 px base (at least 6 px needed); "
            "move the wire polygon under the droplet or the facet line onto the wire's "
            "edge"), doc
    # the base's wire off the frame (a frame 171 px wide): said so, not a polygon to move
    cut = dataclasses.replace(short, shape=(400, 171))
    reason = preview(cut)["contact_angle_reason"]
    assert reason.endswith("px base on the frame (at least 6 px needed): the rest lies off "
                           "the frame, where the label image holds no wire"), reason
    # the polygon under all of the base, painted over as unlabeled by a stroke
    painted = short.replace(strokes=(Stroke(UNLABELED, short.wire),))
    reason = preview(painted)["contact_angle_reason"]
    assert ("the wire painted over as unlabeled by strokes, the polygon alone under 74 px "
            "of it); erase those strokes") in reason, reason


def _get_json(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url) as answer:
        return json.load(answer)


def _post_json(url: str, doc: dict) -> dict:
    import urllib.request

    request = urllib.request.Request(url, json.dumps(doc).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def _nan_border_frame(seed: int = 4, size: int = 96, border_px: int = 8) -> np.ndarray:
    """A float32 frame with a NaN border, as an aligned or drift-corrected frame has."""
    image = render(plain_params(seed, 0, size=size), seed=seed)[0].astype(np.float32)
    image[:border_px], image[-border_px:] = np.nan, np.nan
    image[:, :border_px], image[:, -border_px:] = np.nan, np.nan
    return image


def test_a_float_frame_with_nan_pixels_is_the_frame_it_was_saved_as(tmp_path):
    # before: NaN != NaN made the saved image "another frame's": reopened, the frame showed
    # the model's proposal with "DATA holds another frame as nan", and its next save went
    # to nan_<hash>, DATA holding the frame twice with two labels
    import shutil

    from label_helpers import serving

    from nwwatch.label.frames import frame_refs
    from nwwatch.label.server import LabelSession

    data, path = tmp_path / "DATA", tmp_path / "acq" / "nan.tif"
    write_frame_tiff(path, _nan_border_frame())
    shapes = truth_geometry(plain_params(4, 0, size=96))
    session = LabelSession(frame_refs([path], data_dir=data), data)
    with serving(session) as url:
        key = session.frames[0].key
        first = _post_json(f"{url}api/frames/0/save?base=&frame={key}", shapes.to_json())
        opened = _get_json(f"{url}api/frames/0/geometry")
        assert (opened["origin"], opened["note"]) == ("saved", ""), opened
        moved = dict(opened["geometry"])
        moved["droplet"] = {**moved["droplet"],
                            "radius_px": moved["droplet"]["radius_px"] + 3}  # corrected
        second = _post_json(f"{url}api/frames/0/save?base={opened['saved_token']}&frame={key}",
                            moved)
    session.close()
    assert first["stem"] == second["stem"] == "nan"
    assert sorted(p.name for p in (data / "images").iterdir()) == ["nan.tif"]
    assert sorted(p.name for p in (data / "labels").iterdir()) == ["nan.png"]
    assert pq.read_table(data / "truth.parquet").num_rows == 1
    # a restart on the same DATA, and the same frame in a second folder: the saved frame
    shutil.copy(path, tmp_path / "nan.tif")
    assert [r.stem for r in frame_refs([path], data_dir=data)] == ["nan"]
    assert [r.stem for r in frame_refs([path, tmp_path / "nan.tif"], data_dir=data)] == ["nan"]
    restarted = LabelSession(frame_refs([path], data_dir=data), data)
    assert restarted.geometry(0)[1] == "saved"
    restarted.close()


def test_same_pixels_are_equal_values_of_one_shape_nan_included():
    # before: a frame's NaN pixels made it differ from itself
    from nwwatch.label.frames import same_pixels

    nan = _nan_border_frame(size=32, border_px=2)
    assert same_pixels(nan, nan.copy())
    assert not same_pixels(nan, np.nan_to_num(nan))
    whole = np.arange(16, dtype=np.uint16).reshape(4, 4)
    assert same_pixels(whole, whole.copy())
    assert same_pixels(whole, whole.astype(np.float32))  # a float32 copy of the frame
    as_float = whole.astype(np.float32)
    as_float[0, 0] = np.nan
    assert not same_pixels(whole, as_float)
    assert not same_pixels(whole, whole.reshape(2, 8))


def _saved_pixel_size(data, stem: str) -> tuple:
    """The pixel size of ``stem`` in images/<stem>.tif, geometry/<stem>.json, truth.parquet."""
    from nwwatch.label.frames import FrameRef, read_frame

    image = read_frame(FrameRef(data / "images" / f"{stem}.tif", 0, stem)).pixel_size_nm
    geometry = json.loads((data / "geometry" / f"{stem}.json").read_text())["pixel_size_nm"]
    [row] = pq.read_table(data / "truth.parquet").to_pylist()
    truth = None if row["pixel_size_nm"] is None or np.isnan(row["pixel_size_nm"]) else (
        row["pixel_size_nm"])
    return image, geometry, truth


def test_a_frame_calibrated_after_its_save_is_saved_with_its_files_pixel_size(tmp_path):
    # before: reopened after a restart, the saved shapes carried the pixel size of the first
    # save (none), and the page's save wrote that into images/<stem>.tif and truth.parquet
    from label_helpers import serving

    from nwwatch.label.frames import frame_refs
    from nwwatch.label.server import LabelSession

    data, path = tmp_path / "DATA", tmp_path / "acq" / "f.tif"
    image = render(plain_params(5, 0, size=96), seed=5)[0]
    write_frame_tiff(path, image)
    shapes = truth_geometry(plain_params(5, 0, size=96)).replace(pixel_size_nm=None)
    session = LabelSession(frame_refs([path], data_dir=data), data)
    with serving(session) as url:
        _post_json(f"{url}api/frames/0/save?frame={session.frames[0].key}", shapes.to_json())
    session.close()
    assert _saved_pixel_size(data, "f") == (None, None, None)
    write_frame_tiff(path, image, pixel_size_nm=0.5)  # the same pixels, calibrated
    session = LabelSession(frame_refs([path], data_dir=data), data)  # restarted
    with serving(session) as url:
        opened = _get_json(f"{url}api/frames/0/geometry")
        assert opened["origin"] == "saved"
        saved = _post_json(f"{url}api/frames/0/save?base={opened['saved_token']}"
                           f"&frame={session.frames[0].key}", opened["geometry"])
    session.close()
    assert saved["stem"] == "f"
    assert _saved_pixel_size(data, "f") == pytest.approx((0.5, 0.5, 0.5))


@pytest.mark.parametrize("file_nm", [None, 0.5])
def test_a_save_request_cannot_set_the_pixel_size_written(tmp_path, file_nm):
    # before: the request's pixel_size_nm was written as the frame's calibration
    from label_helpers import serving

    from nwwatch.label.frames import frame_refs
    from nwwatch.label.server import LabelSession

    data, path = tmp_path / "DATA", tmp_path / "acq" / "f.tif"
    write_frame_tiff(path, render(plain_params(6, 0, size=96), seed=6)[0],
                     pixel_size_nm=file_nm)
    forged = truth_geometry(plain_params(6, 0, size=96)).replace(pixel_size_nm=7.0)
    session = LabelSession(frame_refs([path], data_dir=data), data)
    with serving(session) as url:
        _post_json(f"{url}api/frames/0/save?frame={session.frames[0].key}", forged.to_json())
    session.close()
    expected = (None, None, None) if file_nm is None else pytest.approx((0.5, 0.5, 0.5))
    assert _saved_pixel_size(data, "f") == expected


def test_a_geometry_file_with_a_brush_stroke_over_the_limit_reads_back(tmp_path):
    # A file saved before the per-request limits (a drag of more than MAX_POINTS points) was
    # refused at reopen: the frame's human labels could no longer be opened in the tool.
    from pathlib import Path

    from nwwatch.label.geometry import MAX_POINTS

    rows = np.linspace(5.0, 90.0, MAX_POINTS + 2000)
    cols = 50.0 + 30.0 * np.sin(rows / 7.0)
    long_drag = Stroke(UNLABELED, tuple(zip(rows.tolist(), cols.tolist(), strict=True)), 3.0)
    geometry = LabelGeometry((100, 100), None, None, None, (long_drag,))
    (tmp_path / "geometry").mkdir()
    (tmp_path / "geometry" / "f1.json").write_text(json.dumps(geometry.to_json()))
    read = load_geometry(tmp_path, "f1")
    assert [len(s.points) for s in read.strokes] == [MAX_POINTS, 2001]
    assert read.strokes[0].points[-1] == read.strokes[1].points[0]
    assert np.array_equal(rasterize(read), rasterize(geometry))
    # what the page sends back is taken by a request's limits
    assert geometry_from_json(read.to_json()).strokes == read.strokes
    with pytest.raises(GeometryError, match=f"at most {MAX_POINTS}"):
        geometry_from_json(geometry.to_json())
    # the page splits a longer drag at the same count
    page = (Path(__file__).resolve().parents[1] / "nwwatch/label/static/label.js").read_text()
    assert f"const MAX_BRUSH_POINTS = {MAX_POINTS};" in page


def test_a_polygon_on_the_frame_is_not_said_to_lie_off_it():
    """The whole base on the frame, a polygon under too little of it: the reason blamed the
    frame, counting the places where a pixel centre lay inside the polygon though the
    rasteriser wants half a pixel's area; a base all off the frame said "under only 0 px", and
    a polygon within reach of the line but between two places 1 px apart "lies within 16 px
    ... under none of" the base."""
    from nwwatch.label.server import preview

    short = LabelGeometry((400, 400), Circle((184.3, 203.1), 40.0),
                          ((200.4, 150.0), (200.4, 250.0), (399.0, 250.0), (399.0, 150.0)),
                          facet=((200.4, 150.2), (200.4, 250.2)))
    # base on rows 201..216, columns 166..239 of a 400 x 400 frame
    corner = short.replace(wire=((215.9, 233.65), (215.9, 390.0), (399.0, 390.0),
                                 (399.0, 233.65)))
    assert preview(corner)["contact_angle_reason"] == (
        "no facet in the labels: the wire polygon lies within 16 px of the facet line under "
        "only 5 px of the droplet's 74 px base (at least 6 px needed); move the wire polygon "
        "under the droplet or the facet line onto the wire's edge")
    # the polygon's edge 0.05 px inside the base's end (239.35): under no pixel's half
    sliver = short.replace(wire=((200.4, 239.3), (200.4, 390.0), (399.0, 390.0),
                                 (399.0, 239.3)))
    reason = preview(sliver)["contact_angle_reason"]
    assert reason.startswith("no facet in the labels: the wire polygon does not reach under "
                             "the droplet's 74 px base on the facet line"), reason
    # all of the base off the frame
    reason = preview(dataclasses.replace(short, shape=(200, 400)))["contact_angle_reason"]
    assert reason == (
        "no facet in the labels: the wire polygon lies within 16 px of the facet line under "
        "none of the droplet's 74 px base on the frame (at least 6 px needed): the rest lies "
        "off the frame, where the label image holds no wire"), reason


@pytest.mark.parametrize("with_stroke", [False, True])
def test_the_polygon_alone_under_the_base_is_read_without_rasterising_the_frame(
        monkeypatch, with_stroke):
    """The reason for too little wire under the base read the polygon alone (no strokes)
    from a second rasterisation of the whole frame on every preview and save: the labels
    themselves where there are no strokes, else only the box round the base is rasterised,
    with the same classes as the whole frame's."""
    import nwwatch.label.geometry as geometry_module
    import nwwatch.label.raster as raster
    from nwwatch.label.raster import rasterize_shapes

    short = LabelGeometry((400, 400), Circle((184.3, 203.1), 40.0),
                          ((200.4, 150.0), (200.4, 250.0), (399.0, 250.0), (399.0, 150.0)),
                          facet=((200.4, 150.2), (200.4, 250.2)))
    cases = [short.replace(wire=w) for w in (
        ((215.9, 233.65), (215.9, 390.0), (399.0, 390.0), (399.0, 233.65)),
        ((250.4, 150.0), (210.4, 250.0), (399.0, 250.0), (399.0, 150.0)),
        ((200.4, 237.0), (200.4, 390.0), (399.0, 390.0), (399.0, 237.0)),
        ((201.7, 100.0), (203.3, 300.0), (399.0, 300.0), (399.0, 100.0)))]
    cases.append(dataclasses.replace(cases[1], shape=(210, 230)))  # base cut by the frame
    for geometry in cases:
        facet = facet_line(geometry)
        full = rasterize_shapes(geometry)
        reads = geometry_module._under_base(facet, geometry, full, 1.0)[1]
        assert np.array_equal(geometry_module._unstroked_under_base(geometry, facet), reads)
        for window in ((0, 7, 0, 9), (195, 222, 160, 245), (3, 400, 100, 171)):
            r0, r1, c0, c1 = window
            if r1 <= geometry.shape[0] and c1 <= geometry.shape[1]:
                inner = rasterize_shapes(geometry, window)[2:-2, 2:-2]
                assert np.array_equal(inner, full[r0 + 2:r1 - 2, c0 + 2:c1 - 2])
    geometry = cases[2]
    if with_stroke:  # away from the base
        geometry = geometry.replace(strokes=(Stroke(BACKGROUND, ((10, 10), (10, 30), (30, 30))),))
    labels = rasterize(geometry)
    whole_frames = []
    real = raster.rasterize_shapes

    def counted(g: LabelGeometry, window: tuple | None = None) -> np.ndarray:
        if window is None or window == (0, g.shape[0], 0, g.shape[1]):
            whole_frames.append(g)
        return real(g, window)

    monkeypatch.setattr(raster, "rasterize_shapes", counted)
    monkeypatch.setattr(raster, "rasterize", lambda g: whole_frames.append(g) or 1 / 0)
    reason = contact_angle(geometry, labels).reason
    assert "under only 3 px of the droplet's 74 px base" in reason, reason
    assert whole_frames == []




@pytest.mark.parametrize("broken", ["not json", "bad angle"])
def test_a_broken_geometry_file_says_how_to_label_the_frame_again(tmp_path, caplog, broken):
    # before: the 422 named the file and the reason but not what to do (the page's "Back to
    # the model's proposal" acts on the frame still shown), and the frame list marked the
    # frame as saved (a check mark) though it could not be opened
    import logging

    from label_helpers import serving

    from nwwatch.label.frames import frame_refs
    from nwwatch.label.server import LabelSession

    image, _, _ = render(plain_params(3, 0, size=128))
    source = tmp_path / "acq" / "f.tif"
    write_frame_tiff(source, image)
    data = tmp_path / "DATA"
    save_labeled_frame(data, "f", image, truth_geometry(plain_params(3, 0, size=128)),
                       {"path": str(source), "page": 0})
    path = data / "geometry" / "f.json"
    if broken == "not json":
        path.write_text("{not json")
    else:
        path.write_text(json.dumps({**json.loads(path.read_text()), "contact_angle_deg": 500}))
    session = LabelSession(frame_refs([source], data_dir=data), data)
    with serving(session) as url, caplog.at_level(logging.WARNING, "nwwatch.label.server"):
        api = f"{url}api/frames"
        status, listing = http_json("GET", api)
        assert status == 200
        (frame,) = listing["frames"]
        assert frame["saved"] is False and frame["failed"] is True
        status, doc = http_json("GET", f"{api}/0/geometry")
        assert status == 422
        assert doc["error"].startswith(f"{path}: ")
        assert doc["error"].endswith(
            "; to label the frame again: fix the file, or delete it to start again from the "
            "model's proposal; labels/f.png stays until the frame's next Save replaces it, "
            "and the frame opens with a note saying it holds labels drawn elsewhere or left "
            "by a deleted geometry file")
        assert doc["error"] in caplog.text  # the terminal says it too
        # what the advice says deleting does
        path.unlink()
        status, listing = http_json("GET", api)
        assert listing["frames"][0]["saved"] is False and not listing["frames"][0]["failed"]
        status, doc = http_json("GET", f"{api}/0/geometry")
        assert status == 200 and doc["origin"] == "model" and doc["saved_token"] == ""
        assert doc["note"].startswith("labels/f.png in DATA holds labels drawn elsewhere, or "
                                      "left by a deleted geometry/f.json (pixels, not shapes)")
        assert (data / "labels" / "f.png").is_file()
        status, saved = http_json("POST", f"{api}/0/save?base=&frame={frame['key']}",
                                 doc["geometry"])
        assert status == 200, saved
        assert load_geometry(data, "f") is not None
        assert http_json("GET", api)[1]["frames"][0]["saved"] is True


def test_a_save_says_which_frames_its_truth_table_leaves_out(tmp_path, caplog):
    # before: a save rebuilt truth.parquet without the frames whose geometry file cannot be
    # read, and neither its answer, the page's status line nor the terminal said so
    import logging

    from label_helpers import serving

    from nwwatch.label.frames import frame_refs
    from nwwatch.label.server import LabelSession

    data = tmp_path / "DATA"
    sources = []
    for index, stem in enumerate(("f", "g")):
        params = plain_params(3, index, size=128)
        image, _, _ = render(params)
        sources.append(tmp_path / "acq" / f"{stem}.tif")
        write_frame_tiff(sources[-1], image)
        save_labeled_frame(data, stem, image, truth_geometry(params),
                           {"path": str(sources[-1]), "page": 0})
    broken = data / "geometry" / "g.json"
    broken.write_text("{not json")
    session = LabelSession(frame_refs(sources, data_dir=data), data)
    with serving(session) as url, caplog.at_level(logging.WARNING, "nwwatch.label.server"):
        api = f"{url}api/frames"
        status, opened = http_json("GET", f"{api}/0/geometry")
        assert status == 200 and opened["origin"] == "saved"
        key = http_json("GET", api)[1]["frames"][0]["key"]
        status, doc = http_json("POST", f"{api}/0/save?base={opened['saved_token']}&frame={key}",
                               opened["geometry"])
    assert status == 200, doc
    assert list(doc["truth_left_out"]) == ["g"]
    assert doc["truth_left_out"]["g"].startswith(f"{broken}: ")
    assert doc["truth_note"] == ("truth.parquet leaves out 1 frame whose geometry file cannot "
                                 "be read (g; the terminal says why): open it to see how to "
                                 "label again")
    assert doc["truth_note"] in caplog.text and doc["truth_left_out"]["g"] in caplog.text
    rows = pq.read_table(data / "truth.parquet").to_pylist()
    assert [row["file"] for row in rows] == ["images/f.tif"]
    # nothing left out, nothing said
    broken.unlink()
    assert save_labeled_frame(data, "f", session.image(0).image,
                              geometry_from_json(opened["geometry"]))["truth_left_out"] == {}
