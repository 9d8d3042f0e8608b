"""The labelling page's mouse gestures as the Shapes box and docs/labelling.md describe them,
made with real pointer actions (W3C WebDriver) at the screen position of frame pixels:
double-clicking a wire corner removes it, a paint polygon closes with a double-click also on
the wire's outline, and a brush stroke is drawn as wide as it paints while it is painted.

The server and browser fixtures are those of ``test_label_page.py`` (this module gets its own
instances: its own DATA folder).
"""

from __future__ import annotations

import base64

import cv2
import numpy as np
import test_label_page as page
from webdriver import Browser

READY, _console_errors = page.READY, page._console_errors
browser, served = page.browser, page.served  # the fixtures (this module's own instances)


def _screen(b: Browser, row: float, col: float) -> tuple[int, int]:
    """Viewport position of frame pixel (row, col)."""
    x, y = b.execute("const p = new DOMPoint(arguments[1] + 0.5, arguments[0] + 0.5)"
                     ".matrixTransform(document.getElementById('canvas').getScreenCTM()); "
                     "return [p.x, p.y]", row, col)
    return round(x), round(y)


def _pointer(b: Browser, actions: list[dict], release: bool = True) -> None:
    b.cmd("POST", "/actions", {"actions": [
        {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
         "actions": actions}]})
    if release:
        b.cmd("DELETE", "/actions")


def _click(b: Browser, row: float, col: float, double: bool = False) -> None:
    x, y = _screen(b, row, col)
    press = [{"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]
    _pointer(b, [{"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x, "y": y},
                 *press, *(press if double else [])])


def _mode(b: Browser, value: str) -> None:
    b.execute(f"document.querySelector('input[name=mode][value={value}]').click()")


def _lone_corner(wire: list[list[float]], avoid: list[list[float]]) -> int:
    """A wire corner at least 12 px from the other handles (its double-click is its own)."""
    def apart(k: int) -> float:
        others = [q for j, q in enumerate(wire) if j != k] + avoid
        return min((wire[k][0] - q[0]) ** 2 + (wire[k][1] - q[1]) ** 2 for q in others)
    best = max(range(len(wire)), key=apart)
    assert apart(best) >= 144, wire
    return best


def test_double_click_on_a_wire_corner_removes_it(served, browser):
    _, url = served
    page._open(browser, url)
    _console_errors(browser)
    geometry = browser.execute("return window.nwLabel.geometry")
    wire = geometry["wire"]
    assert len(wire) > 3
    avoid = list(geometry["facet"] or [])
    if geometry["droplet"]:
        c, r = geometry["droplet"]["center"], geometry["droplet"]["radius_px"]
        avoid += [c, [c[0], c[1] + r]]
    k = _lone_corner(wire, avoid)
    _click(browser, *wire[k], double=True)
    browser.wait_for(READY)
    after = browser.execute("return window.nwLabel.geometry.wire")
    assert after == wire[:k] + wire[k + 1:]
    assert browser.execute("return window.nwLabel.dirty") is True
    assert _console_errors(browser) == []


def test_a_corner_on_the_frame_border_is_drawn_and_grabbed_whole(served, browser):
    _, url = served
    page._open(browser, url)
    height, width = browser.execute("return window.nwLabel.geometry.shape")
    wire = browser.execute("return window.nwLabel.geometry.wire")
    # the proposal's corners where the wire leaves the frame (pixel edge: -0.5 or size - 0.5)
    border = [k for k, (r, c) in enumerate(wire)
              if min(r, c) < 0 or r > height - 1 or c > width - 1]
    assert border, wire
    hit = ("const e = document.elementFromPoint(arguments[0], arguments[1]); "
           "return e && e.getAttribute('data-handle')")
    for k in border:
        x, y = _screen(browser, *wire[k])
        # 3 screen px from its centre, every way (the handle's radius is 6 px)
        around = [browser.execute(hit, x + dx, y + dy)
                  for dx, dy in ((-3, 0), (3, 0), (0, -3), (0, 3))]
        assert around == [f"wire-{k}"] * 4, (k, wire[k], around)
    # pressed on its outer half, the corner moves as the pointer does (11 times `out`), into
    # the frame
    k = border[0]
    r, c = wire[k]
    x, y = _screen(browser, r, c)
    out = (-3 if c < 0 else 3 if c > width - 1 else 0, -3 if r < 0 else 3 if r > height - 1 else 0)
    _pointer(browser, [
        {"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x + out[0],
         "y": y + out[1]},
        {"type": "pointerDown", "button": 0},
        {"type": "pointerMove", "duration": 50, "origin": "viewport", "x": x - 10 * out[0],
         "y": y - 10 * out[1]},
        {"type": "pointerUp", "button": 0}])
    browser.wait_for(READY)
    moved = browser.execute("return window.nwLabel.geometry.wire")[k]
    scale = browser.execute("return window.nwLabel.scale")
    assert abs(moved[1] - (c - 11 * out[0] / scale)) <= 0.5 and \
        abs(moved[0] - (r - 11 * out[1] / scale)) <= 0.5, (wire[k], moved)


def test_a_paint_polygon_closes_with_a_double_click_on_the_wire_outline(served, browser):
    _, url = served
    page._open(browser, url)
    wire = browser.execute("return window.nwLabel.geometry.wire")
    strokes = len(browser.execute("return window.nwLabel.geometry.strokes"))
    height, width = browser.execute("return window.nwLabel.geometry.shape")

    def middle(k: int) -> tuple[float, float]:
        q = wire[(k + 1) % len(wire)]
        return (wire[k][0] + q[0]) / 2, (wire[k][1] + q[1]) / 2

    def length(k: int) -> float:
        q = wire[(k + 1) % len(wire)]
        return ((wire[k][0] - q[0]) ** 2 + (wire[k][1] - q[1]) ** 2) ** 0.5

    # the longest edge inside the frame (not along its border): its midpoint is on the
    # outline, away from the corners
    inside = [k for k in range(len(wire))
              if 12 <= middle(k)[0] <= height - 12 and 12 <= middle(k)[1] <= width - 12]
    i = max(inside, key=length)
    assert length(i) >= 30, wire
    mid = middle(i)
    _mode(browser, "polygon")
    # two corners 12 px inwards of the edge (towards the polygon's mean), the third on it
    centre = [sum(p[0] for p in wire) / len(wire), sum(p[1] for p in wire) / len(wire)]
    d = (centre[0] - mid[0], centre[1] - mid[1])
    n = (d[0] ** 2 + d[1] ** 2) ** 0.5
    inward = (mid[0] + 12 * d[0] / n, mid[1] + 12 * d[1] / n)
    _click(browser, inward[0] - 6 * d[1] / n, inward[1] + 6 * d[0] / n)
    _click(browser, inward[0] + 6 * d[1] / n, inward[1] - 6 * d[0] / n)
    _click(browser, *mid, double=True)
    browser.wait_for(READY)
    geometry = browser.execute("return window.nwLabel.geometry")
    assert browser.execute("return window.nwLabel.draft") is None
    assert len(geometry["strokes"]) == strokes + 1
    assert len(geometry["strokes"][-1]["points"]) == 3
    assert geometry["wire"] == wire  # no corner added to the wire


def _shot(b: Browser) -> np.ndarray:
    png = base64.b64decode(b.cmd("GET", "/screenshot"))
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(np.int16)


def test_a_brush_stroke_is_drawn_as_wide_as_it_paints(served, browser):
    _, url = served
    page._open(browser, url)
    _mode(browser, "brush")
    radius_px = int(browser.execute("return document.getElementById('brush-radius').value"))
    scale = browser.execute("return window.nwLabel.scale")
    x0, y0 = _screen(browser, 20, 40)
    x1, _ = _screen(browser, 20, 100)
    before = _shot(browser)
    # pressed and moving: the stroke being painted (the overlay shows it only once released)
    _pointer(browser, [
        {"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x0, "y": y0},
        {"type": "pointerDown", "button": 0},
        {"type": "pointerMove", "duration": 50, "origin": "viewport", "x": (x0 + x1) // 2,
         "y": y0},
        {"type": "pointerMove", "duration": 50, "origin": "viewport", "x": x1, "y": y0}],
        release=False)
    during = _shot(browser)
    browser.cmd("DELETE", "/actions")  # releases the button: the stroke is added
    browser.wait_for(READY)
    # the screen rows the stroke covers across its middle: the brush's diameter on screen
    column = np.abs(during - before)[:, (x0 + x1) // 2].max(axis=1)
    diameter_px = 2 * radius_px * scale
    covered = np.flatnonzero(column[y0 - round(diameter_px): y0 + round(diameter_px)] > 20)
    assert covered.size >= 0.8 * diameter_px, (covered.size, diameter_px)
    stroke = browser.execute("const n = document.querySelector('#strokes polyline:last-child');"
                             " const s = getComputedStyle(n); return [s.strokeWidth, "
                             "s.vectorEffect]")
    assert stroke == [f"{2 * radius_px}px", "none"]


def test_right_and_middle_clicks_neither_paint_nor_move_a_shape(served, browser):
    _, url = served
    page._open(browser, url)
    opened = browser.execute("return window.nwLabel.geometry")

    def press(button: int, row: float, col: float, to_col: float | None = None) -> None:
        x, y = _screen(browser, row, col)
        moves = [] if to_col is None else [
            {"type": "pointerMove", "duration": 50, "origin": "viewport",
             "x": _screen(browser, row, to_col)[0], "y": y}]
        _pointer(browser, [
            {"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x, "y": y},
            {"type": "pointerDown", "button": button}, *moves,
            {"type": "pointerUp", "button": button}])

    _mode(browser, "brush")
    press(2, 30, 30)
    press(1, 30, 60, to_col=90)
    _mode(browser, "polygon")
    press(2, 40, 30)
    press(1, 40, 60)
    assert browser.execute("return window.nwLabel.draft") is None
    _mode(browser, "edit")
    centre = opened["droplet"]["center"]
    press(2, centre[0], centre[1], to_col=centre[1] + 20)
    browser.wait_for(READY)
    assert browser.execute("return window.nwLabel.geometry") == opened
    assert browser.execute("return window.nwLabel.dirty") is False


def test_the_rim_handle_of_a_droplet_at_the_frame_edge_can_be_grabbed(served, browser):
    _, url = served
    page._open(browser, url)
    height, width = browser.execute("return window.nwLabel.geometry.shape")
    droplet = browser.execute("return window.nwLabel.geometry.droplet")
    (row, col), radius = droplet["center"], droplet["radius_px"]
    # the droplet dragged to the frame's right edge: east of its centre is outside the frame
    x, y = _screen(browser, row, col)
    _pointer(browser, [
        {"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x, "y": y},
        {"type": "pointerDown", "button": 0},
        {"type": "pointerMove", "duration": 50, "origin": "viewport",
         "x": _screen(browser, row, width - 12)[0], "y": y},
        {"type": "pointerUp", "button": 0}])
    browser.wait_for(READY)
    row, col = browser.execute("return window.nwLabel.geometry.droplet.center")
    assert col + radius > width
    rim = browser.execute("const r = document.querySelector('[data-handle=droplet-radius]')"
                          ".getBoundingClientRect(); return [r.x + r.width / 2, "
                          "r.y + r.height / 2]")
    frame = browser.execute("const r = document.getElementById('frame-image')"
                            ".getBoundingClientRect(); return [r.left, r.top, r.right, "
                            "r.bottom]")
    assert frame[0] <= rim[0] <= frame[2] and frame[1] <= rim[1] <= frame[3], (rim, frame)
    assert browser.execute("const e = document.elementFromPoint(arguments[0], arguments[1]);"
                           " return e && e.getAttribute('data-handle')",
                           *rim) == "droplet-radius"
    # dragged 20 screen px away from the centre: the circle grows by 20 / scale pixels
    scale = browser.execute("return window.nwLabel.scale")
    cx, cy = _screen(browser, row, col)
    d = ((rim[0] - cx) ** 2 + (rim[1] - cy) ** 2) ** 0.5
    ux, uy = (rim[0] - cx) / d, (rim[1] - cy) / d
    _pointer(browser, [
        {"type": "pointerMove", "duration": 0, "origin": "viewport", "x": round(rim[0]),
         "y": round(rim[1])},
        {"type": "pointerDown", "button": 0},
        {"type": "pointerMove", "duration": 50, "origin": "viewport",
         "x": round(rim[0] + 20 * ux), "y": round(rim[1] + 20 * uy)},
        {"type": "pointerUp", "button": 0}])
    browser.wait_for(READY)
    grown = browser.execute("return window.nwLabel.geometry.droplet.radius_px")
    assert abs(grown - (radius + 20 / scale)) <= 2 / scale, (radius, grown, scale)


def test_a_double_click_on_a_corner_of_a_triangle_says_why_it_stays(served, browser):
    _, url = served
    page._open(browser, url, page.BLANK)  # no wire proposed: the one added is alone
    browser.click("#add-wire")  # four corners
    browser.wait_for(READY)
    wire = browser.execute("return window.nwLabel.geometry.wire")
    assert len(wire) == 4
    _click(browser, *wire[0], double=True)
    browser.wait_for(READY)
    triangle = browser.execute("return window.nwLabel.geometry.wire")
    assert triangle == wire[1:]
    _click(browser, *triangle[0], double=True)
    browser.wait_for(READY)
    assert browser.execute("return window.nwLabel.geometry.wire") == triangle
    assert browser.text("#status") == "not removed: the wire polygon keeps at least 3 corners"


def test_ctrl_z_while_drawing_a_polygon_removes_its_last_corner(served, browser):
    # Was: Ctrl+Z removed the last finished stroke (one the user or the model drew before)
    # and left the polygon being drawn as it was, the misplaced corner still in it.
    _, url = served
    page._open(browser, url)
    browser.execute("window.nwLabel.geometry.strokes.push({class: 255, points: "
                    "[[4, 4], [4, 30], [30, 30]]}); changed()")
    browser.wait_for(READY)
    strokes = browser.execute("return window.nwLabel.geometry.strokes")
    _mode(browser, "polygon")
    corners = [(150.0, 40.0), (150.0, 80.0), (200.0, 200.0)]  # the last one misplaced
    for row, col in corners:
        _click(browser, row, col)
    assert len(browser.execute("return window.nwLabel.draft.points")) == 3
    _ctrl_z(browser)
    assert browser.execute("return window.nwLabel.geometry.strokes") == strokes
    assert len(browser.execute("return window.nwLabel.draft.points")) == 2
    _click(browser, 190.0, 60.0, double=True)  # the right third corner, closed
    browser.wait_for(READY)
    after = browser.execute("return window.nwLabel.geometry.strokes")
    assert after[:-1] == strokes and len(after) == len(strokes) + 1
    drawn = after[-1]["points"]
    assert len(drawn) == 3 and abs(drawn[2][0] - 190) < 1 and abs(drawn[2][1] - 60) < 1
    _ctrl_z(browser)  # no polygon being drawn: the last stroke goes
    browser.wait_for(READY)
    assert browser.execute("return window.nwLabel.geometry.strokes") == strokes
    # ... and no further: the strokes the page opened with (the model's proposal paints a
    # second droplet so) are not the user's to undo; Ctrl+Z removed them without a word
    _ctrl_z(browser)
    assert browser.execute("return window.nwLabel.geometry.strokes") == strokes
    assert browser.text("#status").startswith("no edit of yours to undo")
    assert browser.execute("return document.getElementById('undo-stroke').disabled") is True
    _mode(browser, "edit")


def test_a_paint_polygon_of_two_corners_closed_is_dropped_with_a_word(served, browser):
    # before: dropped without a word; the Tool box did not say how a polygon closes
    _, url = served
    page._open(browser, url)
    assert "Enter" in browser.text("#polygon-help") and "Esc" in browser.text("#polygon-help")
    strokes = browser.execute("return window.nwLabel.geometry.strokes")
    _mode(browser, "polygon")
    _click(browser, 150.0, 40.0)
    _click(browser, 150.0, 80.0, double=True)  # two corners, closed
    status = browser.wait_for("const s = document.getElementById('status').textContent; "
                              "return s.startsWith('paint polygon dropped') && s")
    assert status == "paint polygon dropped: 2 corners; a polygon needs at least 3"
    assert browser.execute("return window.nwLabel.geometry.strokes") == strokes
    _mode(browser, "edit")


def _ctrl_z(b: Browser) -> None:
    keys = [{"type": "keyDown", "value": "\ue009"}, {"type": "keyDown", "value": "z"},
            {"type": "keyUp", "value": "z"}, {"type": "keyUp", "value": "\ue009"}]
    b.cmd("POST", "/actions", {"actions": [{"type": "key", "id": "keyboard",
                                            "actions": keys}]})
    b.cmd("DELETE", "/actions")


def test_a_handle_grabbed_off_its_centre_moves_by_the_pointers_move(served, browser):
    # Was: the handle jumped to the pointer. The rim grabbed 4 screen px inside its centre and
    # moved 1 px outwards shrank the circle by 3 screen px' worth of frame pixels.
    _, url = served
    page._open(browser, url)
    scale = browser.execute("return window.nwLabel.scale")
    droplet = browser.execute("return window.nwLabel.geometry.droplet")
    (row, col), radius = droplet["center"], droplet["radius_px"]
    rim_x, rim_y = _screen(browser, row, col + radius)  # the rim handle: east of the centre
    _pointer(browser, [
        {"type": "pointerMove", "duration": 0, "origin": "viewport", "x": rim_x - 4, "y": rim_y},
        {"type": "pointerDown", "button": 0},
        {"type": "pointerMove", "duration": 50, "origin": "viewport", "x": rim_x - 3,
         "y": rim_y},
        {"type": "pointerUp", "button": 0}])
    browser.wait_for(READY)
    grown = browser.execute("return window.nwLabel.geometry.droplet.radius_px")
    assert abs((grown - radius) * scale - 1) < 0.05, (radius, grown, scale)
    x, y = _screen(browser, row, col)  # the centre grabbed 3 px up-left of its middle
    _pointer(browser, [
        {"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x - 3, "y": y - 3},
        {"type": "pointerDown", "button": 0},
        {"type": "pointerMove", "duration": 50, "origin": "viewport", "x": x + 2, "y": y - 3},
        {"type": "pointerUp", "button": 0}])
    browser.wait_for(READY)
    moved = browser.execute("return window.nwLabel.geometry.droplet.center")
    assert abs(moved[0] - row) < 0.05 / scale, (row, moved)  # 0 px down ...
    assert abs((moved[1] - col) * scale - 5) < 0.05, (col, moved, scale)  # ... 5 px right


def test_a_drag_cut_by_a_frame_opening_ends_there(served, browser):
    # Was: the release came while the canvas took no pointer (the frame opening), the drag
    # never ended, and once the next frame had opened a mere hover moved its droplet.
    _, url = served
    page._open(browser, url)
    row, col = browser.execute("return window.nwLabel.geometry.droplet.center")
    x, y = _screen(browser, row, col)
    _pointer(browser, [
        {"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x, "y": y},
        {"type": "pointerDown", "button": 0},
        {"type": "pointerMove", "duration": 20, "origin": "viewport", "x": x + 2, "y": y}],
        release=False)
    browser.wait_for(READY)
    browser.execute("window.confirm = () => true; const fetch0 = window.fetch;"
                    "window.fetch = async (path, options) => {"
                    "  const response = await fetch0(path, options);"
                    "  if (String(path).startsWith('/api/frames/1/geometry'))"
                    "    await new Promise((resolve) => setTimeout(resolve, 1500));"
                    "  return response; }; openFrame(1);")
    assert browser.execute("return window.nwLabel.drag") is None
    _pointer(browser, [
        {"type": "pointerMove", "duration": 50, "origin": "viewport", "x": x + 30, "y": y},
        {"type": "pointerUp", "button": 0}])
    browser.wait_for("return window.nwLabel.index === 1 && " + READY.removeprefix("return "))
    opened = browser.execute("return JSON.stringify(window.nwLabel.geometry)")
    _pointer(browser, [
        {"type": "pointerMove", "duration": 50, "origin": "viewport", "x": x + 60, "y": y + 40}])
    browser.wait_for(READY)
    assert browser.execute("return JSON.stringify(window.nwLabel.geometry)") == opened
    assert browser.execute("return window.nwLabel.dirty") is False


def _ctrl(b: Browser, key: str, shift: bool = False) -> None:
    """Ctrl+``key`` (with Shift held too when ``shift``) as real key presses."""
    held = ["\ue009"] + (["\ue008"] if shift else [])
    keys = ([{"type": "keyDown", "value": k} for k in held]
            + [{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]
            + [{"type": "keyUp", "value": k} for k in reversed(held)])
    b.cmd("POST", "/actions", {"actions": [{"type": "key", "id": "keyboard",
                                            "actions": keys}]})
    b.cmd("DELETE", "/actions")
    b.wait_for(READY)


def _overlay(b: Browser) -> np.ndarray:
    """The overlay the page shows: the server's rasterisation of its shapes (what Save
    writes), one colour per class."""
    url = b.execute("return document.getElementById('mask-image').getAttribute('href')")
    data = base64.b64decode(url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def _brush(b: Browser, row: float, col0: float, col1: float) -> None:
    x0, y = _screen(b, row, col0)
    x1, _ = _screen(b, row, col1)
    _pointer(b, [{"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x0, "y": y},
                 {"type": "pointerDown", "button": 0},
                 {"type": "pointerMove", "duration": 50, "origin": "viewport", "x": x1, "y": y},
                 {"type": "pointerUp", "button": 0}])
    b.wait_for(READY)


def test_an_undone_stroke_is_redone_until_a_new_stroke_or_another_frame(served, browser):
    # Was: Undo stroke (Ctrl+Z) had no redo: a stroke undone by mistake had to be painted
    # again by hand. Redo (the button, Ctrl+Shift+Z, Ctrl+Y) puts back the stroke undone last,
    # until a new stroke is painted or another frame opens.
    session, url = served
    page._open(browser, url, 1)
    redo_disabled = "return document.getElementById('redo-stroke').disabled"
    strokes = "return window.nwLabel.geometry.strokes"
    assert browser.execute(redo_disabled) is True
    opened, before = browser.execute(strokes), _overlay(browser)
    _mode(browser, "brush")
    browser.execute("document.getElementById('paint-class').value = '255'")
    _brush(browser, 20, 40, 100)
    painted, stroked = browser.execute(strokes), _overlay(browser)
    assert len(painted) == len(opened) + 1
    assert np.count_nonzero(np.any(stroked != before, axis=-1)) > 100  # the mask changed
    for redo in (lambda: _ctrl(browser, "z", shift=True), lambda: _ctrl(browser, "y"),
                 lambda: browser.execute("document.getElementById('redo-stroke').click()")):
        _ctrl(browser, "z")
        assert browser.execute(strokes) == opened
        assert np.array_equal(_overlay(browser), before)  # the stroke's pixels gone
        assert browser.execute(redo_disabled) is False
        redo()
        browser.wait_for(READY)
        assert browser.execute(strokes) == painted
        assert np.array_equal(_overlay(browser), stroked)  # ... and back
        assert browser.execute(redo_disabled) is True  # nothing more to redo
        assert browser.text("#status") == "redone: brush stroke (unlabeled)"
    # While a paint polygon is being drawn the keys put no stroke back (Ctrl+Z there removes
    # a corner, which redo does not restore); once it is dropped they do.
    _ctrl(browser, "z")
    _mode(browser, "polygon")
    _click(browser, 150.0, 40.0)
    _click(browser, 150.0, 80.0)
    _ctrl(browser, "y")
    assert browser.execute(strokes) == opened
    assert browser.text("#status").startswith("polygon being drawn: redo puts back")
    assert len(browser.execute("return window.nwLabel.draft.points")) == 2
    escape = [{"type": "keyDown", "value": "\ue00c"}, {"type": "keyUp", "value": "\ue00c"}]
    browser.cmd("POST", "/actions", {"actions": [{"type": "key", "id": "keyboard",
                                                  "actions": escape}]})
    browser.cmd("DELETE", "/actions")
    _ctrl(browser, "y")
    assert browser.execute(strokes) == painted
    _mode(browser, "brush")
    # The redone stroke is saved: its pixels are unlabeled in the label image.
    _ctrl(browser, "s")
    stem = browser.wait_for("return document.body.dataset.saved")
    label = cv2.imread(str(session.data_dir / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
    assert label[20, 40:100].tolist() == [255] * 60
    # A new stroke after an undo: the undone one can no longer be redone.
    _ctrl(browser, "z")
    assert browser.execute(redo_disabled) is False
    _brush(browser, 60, 40, 100)
    assert browser.execute(redo_disabled) is True
    after_new = browser.execute(strokes)
    assert len(after_new) == len(painted) and after_new[-1] != painted[-1]
    for key, shift in (("z", True), ("y", False)):
        _ctrl(browser, key, shift=shift)
        assert browser.execute(strokes) == after_new
        assert browser.text("#status").startswith("no undone edit to redo")
    # Another frame: what was undone on this one is not redone there.
    _ctrl(browser, "z")
    _ctrl(browser, "s")
    browser.wait_for("return window.nwLabel.dirty === false")
    assert browser.execute(redo_disabled) is False
    browser.execute("document.getElementById('next').click()")
    browser.wait_for("return window.nwLabel.index === 2 && " + READY.removeprefix("return "))
    assert browser.execute(redo_disabled) is True
    there = browser.execute(strokes)
    _ctrl(browser, "y")
    assert browser.execute(strokes) == there
    assert _console_errors(browser) == []
    _mode(browser, "edit")


def _drag(b: Browser, start: list[float], end: list[float]) -> None:
    """A real drag from frame point ``start`` to ``end`` (row, col), in 8 moves."""
    (x0, y0), (x1, y1) = _screen(b, *start), _screen(b, *end)
    moves = [{"type": "pointerMove", "duration": 30, "origin": "viewport",
              "x": round(x0 + (x1 - x0) * k / 8), "y": round(y0 + (y1 - y0) * k / 8)}
             for k in range(1, 9)]
    _pointer(b, [{"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x0, "y": y0},
                 {"type": "pointerDown", "button": 0}, *moves,
                 {"type": "pointerUp", "button": 0}])
    b.wait_for(READY)


def test_undo_and_redo_follow_the_edits_in_the_order_made(served, browser):
    # Was: Ctrl+Z popped the last stroke whatever was done last: after a stroke and then a
    # drag of the circle's centre it removed the stroke without a word and left the drag.
    # Undo and redo now take the edits (strokes, drags, shapes removed, the facet box) back
    # and forth in the order made, and say which edit it was.
    _, url = served
    page._open(browser, url)
    geometry = "return window.nwLabel.geometry"
    opened = browser.execute(geometry)
    assert opened["droplet"] is not None
    _mode(browser, "brush")
    browser.execute("document.getElementById('paint-class').value = '255'")
    _brush(browser, 20, 40, 100)
    painted = browser.execute(geometry)
    assert len(painted["strokes"]) == len(opened["strokes"]) + 1
    _mode(browser, "edit")
    centre = opened["droplet"]["center"]
    _drag(browser, centre, [centre[0] + 12, centre[1] + 12])
    dragged, dragged_overlay = browser.execute(geometry), _overlay(browser)
    assert dragged["droplet"]["center"] != centre
    assert dragged["strokes"] == painted["strokes"]
    assert browser.execute("return document.getElementById('undo-stroke').title") == (
        "undo: drag of the droplet centre (Ctrl+Z)")
    _ctrl(browser, "z")  # the drag, not the stroke
    assert browser.execute(geometry) == painted
    assert browser.text("#status") == "undone: drag of the droplet centre"
    _ctrl(browser, "z")
    assert browser.execute(geometry) == opened
    assert browser.text("#status") == "undone: brush stroke (unlabeled)"
    _ctrl(browser, "z")  # the shapes the frame opened with stay
    assert browser.execute(geometry) == opened
    assert browser.text("#status").startswith("no edit of yours to undo")
    _ctrl(browser, "y")
    assert browser.execute(geometry) == painted
    _ctrl(browser, "z", shift=True)
    assert browser.execute(geometry) == dragged
    assert browser.text("#status") == "redone: drag of the droplet centre"
    assert np.array_equal(_overlay(browser), dragged_overlay)  # what Save writes, too
    # the buttons of the Shapes box and the facet box are edits too
    browser.click("#remove-droplet")
    browser.wait_for(READY)
    assert browser.execute(geometry)["droplet"] is None
    facet_box = "return document.getElementById('explicit-facet').checked"
    ticked = browser.execute(facet_box)
    browser.click("#explicit-facet")
    browser.wait_for(READY)
    assert browser.execute(facet_box) is not ticked
    browser.click("#undo-stroke")
    browser.wait_for(READY)
    assert browser.execute(facet_box) is ticked
    assert browser.execute(geometry)["facet"] == dragged["facet"]
    assert browser.text("#status").startswith("undone: \u201cFacet line with its own handles")
    browser.click("#undo-stroke")
    browser.wait_for(READY)
    assert browser.execute(geometry) == dragged
    assert browser.text("#status") == "undone: removal of the droplet circle"
    assert _console_errors(browser) == []
