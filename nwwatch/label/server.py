"""The labelling page's local web server (standard library ``http.server``, one thread).

Routes (JSON unless stated; frame ``i`` indexes :attr:`LabelSession.frames`):

- ``GET /`` and ``GET /static/<file>``: the page (``nwwatch/label/static/``, shipped files);
- ``GET /api/frames``: the frames, the DATA folder, the model;
- ``GET /api/frames/<i>/image.png``: the frame for display (8-bit, 0.5-99.5 % stretch);
- ``GET /api/frames/<i>/geometry``: the saved geometry, else the model's proposal (with a
  ``note`` when saved shapes are for a frame of another size);
- ``POST /api/frames/<i>/preview`` (geometry): the label image it gives, as a coloured PNG
  data URL, with the contact angle and the facet line (one rasteriser: the page shows what
  will be saved);
- ``POST /api/frames/<i>/save?base=<token>&frame=<key>`` (geometry): write the frame into DATA
  (:func:`nwwatch.label.store.save_labeled_frame`) with the pixel size its file declares (the
  geometry's ``pixel_size_nm`` is replaced by it); refused (409) when ``base`` is given and
  is not the frame's current :func:`nwwatch.label.store.saved_token` (another tab saved it
  since this one loaded it, from this process or another; checked under DATA's lock,
  :func:`nwwatch.label.store.data_lock`); the 409 answer carries the current
  ``saved_token``, with which the page may overwrite deliberately. The geometry and save
  answers carry ``saved_token``; a save's also ``truth_left_out`` and ``truth_note`` (the
  frames its truth.parquet has no row for as their geometry file cannot be read).
  Refused (409, ``frame_changed``) too when ``frame`` is not frame ``i``'s
  :attr:`~nwwatch.label.frames.FrameRef.key` (a page of an earlier run listing other frames).

A frame that cannot be opened any more is answered with ``{"error": ...}`` naming the file
and the reason, and no traceback: 404 when its file is gone (removed or renamed after the
session started), 422 when it cannot be read (not an image any more, a page missing, a broken
saved geometry file, the reason then ending with what to do), 500 when the model's proposal
for it fails. A frame whose geometry file cannot be read is listed with ``failed`` (not
``saved``).

Every answer carries ``X-Frame-Options: DENY`` and ``Content-Security-Policy: frame-ancestors
'none'`` (:data:`nwwatch.dashboard.settings.NO_FRAMING_HEADERS`): a page of another site that
showed this one in a frame could steer the user's clicks into Save.

It listens on 127.0.0.1 by default: the page is for the person at the acquisition PC.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import socket
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import cv2
import numpy as np

from nwwatch import DEFAULT_INSITU_MODEL
from nwwatch.classes import DROPLET, NANOWIRE, UNLABELED
from nwwatch.dashboard.settings import NO_FRAMING_HEADERS, foreign_host, is_loopback
from nwwatch.io import InputError
from nwwatch.io.dataset import DatasetLayoutError
from nwwatch.label.frames import (
    FramePixels,
    FrameRef,
    OpenFiles,
    other_stem,
    read_frame,
    taken_by_other,
)
from nwwatch.label.geometry import (
    GeometryError,
    LabelGeometry,
    contact_angle,
    facet_gap_note,
    facet_line,
)
from nwwatch.label.geometry import geometry_from_json as _from_json
from nwwatch.label.raster import rasterize
from nwwatch.label.store import (
    TRUTH_FILE,
    SavedSinceError,
    edited_labels_note,
    load_saved_frame,
    save_labeled_frame,
    saved_file_problem,
    saved_token,
    stem_files,
)
from nwwatch.pathtext import path_text

log = logging.getLogger(__name__)

DEFAULT_MODEL = DEFAULT_INSITU_MODEL
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
#: Overlay colours (RGBA) of the preview: wire blue, droplet orange, unlabeled green (a grey
#: one, drawn at the page's 35 % over a grey frame, could not be told from the frame).
OVERLAY_RGBA = {NANOWIRE: (40, 110, 255, 255), DROPLET: (255, 150, 20, 255),
                UNLABELED: (40, 220, 90, 255)}


class ProposalError(RuntimeError):
    """The model's proposal for a frame failed (the frame itself was read)."""


@dataclass
class LabelSession:
    """State of one ``nwwatch label`` run: the frames, the DATA folder, the model."""

    frames: list[FrameRef]
    data_dir: Path
    model_path: Path = DEFAULT_MODEL
    _segmenter: Any = None
    _images: dict[int, tuple[np.ndarray, float | None]] = field(default_factory=dict)
    _stamps: dict[int, tuple[int, int] | None] = field(default_factory=dict)
    _files: OpenFiles = field(default_factory=OpenFiles)  # read under _lock
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _saves: threading.Condition = field(default_factory=threading.Condition)
    _saves_in_flight: int = 0
    _stopping: bool = False

    def image(self, index: int) -> FramePixels:
        with self._lock:
            if index not in self._images:
                if len(self._images) > 8:  # a few frames in memory, not a whole stack
                    self._images.pop(next(iter(self._images)))
                self._stamps[index] = _file_stamp(self.frames[index].path)
                self._images[index] = read_frame(self.frames[index], self._files)
            return self._images[index]

    def close(self) -> None:
        """Close the frame files kept open (:class:`~nwwatch.label.frames.OpenFiles`); a frame
        opened later opens its file again."""
        with self._lock:
            self._files.close()

    def forget_if_changed(self, index: int) -> None:
        """Drop frame ``index`` from memory when its file was rewritten or removed since it
        was read, so that opening the frame again reads the file as it is now (or says why it
        cannot). Called when a frame is opened, not at a save: a save writes the pixels the
        page showed when its shapes were drawn."""
        with self._lock:
            if index in self._images and (_file_stamp(self.frames[index].path)
                                          != self._stamps.get(index)):
                del self._images[index]

    def segmenter(self):
        from nwwatch.segment.session import Segmenter

        with self._lock:
            if self._segmenter is None:
                self._segmenter = Segmenter(self.model_path, providers=("cpu",))
            return self._segmenter

    def proposal(self, index: int) -> LabelGeometry:
        """The model's labels as geometry (:func:`nwwatch.label.propose.propose_geometry`)."""
        from nwwatch.label.propose import propose_geometry
        from nwwatch.normalize import normalize_image

        image, pixel_size_nm, _ = self.image(index)
        try:
            segmenter = self.segmenter()
            seg = segmenter.segment(normalize_image(image), probabilities=True)
            return propose_geometry(seg.labels[0], seg.probabilities[0, DROPLET],
                                    pixel_size_nm, image=image,
                                    working_px=segmenter.working_scale.frame_px)
        except Exception as exc:  # ONNX Runtime, memory: the page says so for this frame
            ref = self.frames[index]
            raise ProposalError(f"{ref.path} (page {ref.page}): the model's proposal failed: "
                                f"{type(exc).__name__}: {exc}") from exc

    def geometry(self, index: int, model: bool = False) -> tuple[LabelGeometry, str, str]:
        """The saved geometry (unless ``model``), else the model's proposal; which ("saved" or
        "model"); and a note for the page ("" or why saved shapes were not opened).

        Shapes DATA holds under the frame's stem for another frame (:meth:`own_stem`: another
        session's frame of the same name, the file rewritten with another frame) are not
        opened nor replaced: the proposal opens with a note, and this frame gets a stem of
        its own. Saved shapes of this frame's source but of another size (their image gone
        from DATA) could never be saved on it (the save refuses a shape mismatch): the
        proposal opens with a note and a save replaces them. So do labels drawn elsewhere
        (``labels/<stem>.png`` without a geometry file): they are pixels, not shapes; the
        note says a save replaces them. Saved shapes whose label
        image was edited in another tool since open with a note saying so
        (:func:`nwwatch.label.store.edited_labels_note`)."""
        was = self.frames[index].stem
        stem = self.own_stem(index).stem
        if stem != was:
            return self.proposal(index), "model", (
                f"DATA holds another frame as {was} (saved from another session, or before "
                f"this file was rewritten): it is kept; this frame is saved as {stem}")
        try:
            saved = None if model else load_saved_frame(self.data_dir, stem)
        except GeometryError as exc:  # the page can do nothing with it: say what the user can
            raise GeometryError(f"{exc}; {broken_geometry_advice(self.data_dir, stem)}") from None
        if saved is None:
            drawn = [] if model else stem_files(self.data_dir / "labels", stem)
            note = (f"labels/{drawn[0].name} in DATA holds labels drawn elsewhere, or left by "
                    f"a deleted geometry/{stem}.json (pixels, not shapes): showing the model's "
                    "proposal; Save replaces them" if drawn else "")
            return self.proposal(index), "model", note
        other_size = saved.size_problem(self.image(index).image.shape, f"this frame ({stem})")
        if not other_size:
            return saved.geometry, "saved", "; ".join(filter(None, (
                edited_labels_note(self.data_dir, saved), saved.angle_note)))
        return self.proposal(index), "model", (f"{other_size}: showing the model's proposal; "
                                               "Save replaces the old labels")

    def own_stem(self, index: int) -> FrameRef:
        """``frames[index]``, with another stem where DATA now holds its stem for another
        frame (:func:`nwwatch.label.frames.other_stem`): another session saved its frame of
        the same name there since this one listed it, or the file was rewritten with another
        frame. Its saved shapes are not this frame's, and a save must not replace them."""
        pixels = self.image(index).image
        with self._lock:
            ref = self.frames[index]
            # a damaged geometry file without an image is not another frame's: opening it
            # says what is wrong with it
            if taken_by_other(self.data_dir, ref.stem, ref.path, ref.page, self._files, pixels,
                              unreadable_taken=False):
                ref = dataclasses.replace(ref, stem=other_stem(
                    self.data_dir, ref.stem, ref.path, ref.page, self._files, pixels))
                self.frames[index] = ref
            return ref

    def begin_save(self) -> bool:
        """Count a save as on its way (False, and not counted, once :meth:`stop_saving` was
        called); every True is followed by one :meth:`end_save` after the answer is sent."""
        with self._saves:
            if self._stopping:
                return False
            self._saves_in_flight += 1
            return True

    def end_save(self) -> None:
        with self._saves:
            self._saves_in_flight -= 1
            self._saves.notify_all()

    def saves_in_flight(self) -> int:
        with self._saves:
            return self._saves_in_flight

    def stop_saving(self, timeout: float | None = None) -> bool:
        """Refuse saves from now on and wait until the ones on their way are written and
        answered (True; False when ``timeout`` seconds passed first). Called before the
        server stops: Ctrl+C during a save ended the process between the label and the
        image files, leaving a half-written frame in DATA and the page without an answer."""
        with self._saves:
            self._stopping = True
            return self._saves.wait_for(lambda: self._saves_in_flight == 0, timeout)

    def saved_state(self, index: int) -> tuple[bool, str]:
        """(whether frame ``index`` has saved shapes that open, why its geometry file cannot
        be opened: "" when it can or there is none), from one read of the file: the frame
        list marks a frame whose file cannot be opened as failing to open, as it will."""
        stem = self.frames[index].stem
        problem = saved_file_problem(self.data_dir, stem)
        return (not problem and (self.data_dir / "geometry" / f"{stem}.json").is_file(),
                problem)

    def is_saved(self, index: int) -> bool:
        """Whether frame ``index`` has saved shapes that open (:meth:`saved_state`)."""
        return self.saved_state(index)[0]


def truth_left_out_note(left_out: dict[str, str]) -> str:
    """"" or the line saying which frames a save's truth.parquet has no row for, as their
    geometry file cannot be read (``truth_left_out`` of the save): their angle is missing
    from the ground truth until the file is fixed or deleted."""
    if not left_out:
        return ""
    stems = sorted(left_out)
    shown = ", ".join(stems[:5]) + (f" and {len(stems) - 5} more" if len(stems) > 5 else "")
    frames = "frame" if len(stems) == 1 else "frames"
    return (f"truth.parquet leaves out {len(stems)} {frames} whose geometry file cannot be "
            f"read ({shown}; the terminal says why): open {'it' if len(stems) == 1 else 'them'} "
            "to see how to label again")


def broken_geometry_advice(data_dir: Path, stem: str) -> str:
    """What to do about ``geometry/<stem>.json`` that cannot be read (it keeps the frame from
    opening): what deleting it does, as it is, with the frame's label image left in DATA."""
    labels = stem_files(Path(data_dir) / "labels", stem)
    kept = (f"; labels/{labels[0].name} stays until the frame's next Save replaces it, and the "
            "frame opens with a note saying it holds labels drawn elsewhere or left by a "
            "deleted geometry file" if labels else "")
    return ("to label the frame again: fix the file, or delete it to start again from the "
            f"model's proposal{kept}")


def _file_stamp(path: Path) -> tuple[int, int] | None:
    """(modification time in ns, size in bytes) of ``path``; None when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def display_png(image: np.ndarray) -> bytes:
    """8-bit PNG of a frame for display (0.5-99.5 percentile stretch)."""
    from nwwatch.normalize import stretch_to_uint8

    ok, data = cv2.imencode(".png", stretch_to_uint8(image))
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def overlay_data_url(labels: np.ndarray) -> str:
    """The label image as a transparent colour PNG (background clear), as a data URL."""
    rgba = np.zeros(labels.shape + (4,), np.uint8)
    for class_id, (r, g, b, a) in OVERLAY_RGBA.items():
        rgba[labels == class_id] = (b, g, r, a)  # OpenCV writes BGRA
    ok, data = cv2.imencode(".png", rgba)
    if not ok:
        raise ValueError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode()


def preview(geometry: LabelGeometry) -> dict[str, Any]:
    """What the page shows for a geometry: overlay, contact angle, facet, pixel counts."""
    labels = rasterize(geometry)
    angle = contact_angle(geometry, labels)
    facet = facet_line(geometry)
    values, counts = np.unique(labels, return_counts=True)
    return {
        "mask": overlay_data_url(labels),
        "contact_angle_deg": angle.angle_deg,
        "contact_angle_reason": angle.reason,
        "facet": None if facet is None else [list(map(float, p)) for p in facet.edge],
        "counts": {int(v): int(c) for v, c in zip(values, counts, strict=True)},
        # both: a seam's cause and what measure makes of the labels (a wide seam: refused)
        "labels_note": "; ".join(filter(None, (facet_gap_note(geometry, labels),
                                               _measured_note(labels, angle)))),
    }


def _measured_note(labels: np.ndarray, angle) -> str:
    """Why ``nwwatch measure`` refuses the label image to be saved (its unlabeled pixels
    given the nearest class, as it gives them), where the shapes give an angle: that angle
    goes into truth.parquet, and the labels do not stand behind it; else ""."""
    from nwwatch.classes import UnsureBandError, fill_unsure_band
    from nwwatch.measure import measure_contact_angle

    if angle.angle_deg is None:
        return ""
    try:
        filled = fill_unsure_band(labels)
    except UnsureBandError as exc:
        return f"nwwatch measure refuses the labels to be saved: {exc}"
    measured = measure_contact_angle(filled)
    if measured.angle_valid:
        return ""
    return (f"nwwatch measure refuses the labels to be saved ({measured.reason_code}: "
            f"{measured.reason})")


def frame_failure(exc: Exception) -> tuple[int, str] | None:
    """(HTTP status, message) for a frame that cannot be opened or saved because of its file
    or its proposal; None for any other failure (a bug: logged with its traceback). The
    messages name the file (:func:`nwwatch.label.frames.read_frame`)."""
    if isinstance(exc, FileNotFoundError):
        return HTTPStatus.NOT_FOUND, str(exc)
    if isinstance(exc, InputError | DatasetLayoutError | GeometryError):
        return HTTPStatus.UNPROCESSABLE_ENTITY, str(exc)
    if isinstance(exc, OSError) and exc.filename:  # permissions, I/O errors: the file named
        return HTTPStatus.UNPROCESSABLE_ENTITY, f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, ProposalError):
        return HTTPStatus.INTERNAL_SERVER_ERROR, str(exc)
    return None


def _conflict(stem: str, current: str) -> dict[str, Any]:
    """The 409 answer to a save whose ``base`` is not the frame's saved file any more: why,
    and ``saved_token``, the token of the file now there (``""``: none). The page keeps its
    shapes and may send them again with that token as ``base``, a deliberate overwrite of
    exactly the version it was told about (refused again if a third save came meanwhile)."""
    if current:
        error = (f"{stem} was saved from another tab or session after this page loaded it; "
                 "your shapes were not saved and the other version was not overwritten.")
    else:
        error = (f"the saved labels of {stem} were removed from DATA after this page loaded "
                 "them; your shapes were not saved.")
    return {"error": error, "conflict": True, "saved_token": current}


def _other_frame(stem: str) -> dict[str, Any]:
    """The 409 answer to a save whose ``frame`` key is not the frame at that place of the list:
    the page was loaded from an earlier run of the command that listed other frames (it
    tells the user to start the server again and save), and its shapes are another frame's."""
    return {"error": f"not saved: this page was loaded from an earlier nwwatch label that "
                     f"listed other frames; frame {stem} here is not the one you edited. "
                     "Reload the page (your changes to this frame are lost) or start nwwatch "
                     "label again with the frames it was loaded with.", "frame_changed": True}


#: The largest request body taken (bytes): a geometry document is a few kilobytes, and its
#: strokes a few hundred more at most.
MAX_BODY_BYTES = 8 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    session: LabelSession  # set on the subclass made by make_server
    #: Set by make_server: the server listens on the loopback alone (requests for another
    #: host name are refused: DNS rebinding).
    loopback_only: bool = True
    #: Seconds a connection may stay silent (a request never finished holds its thread).
    timeout = 60

    def _refused(self, post: bool) -> bool:
        """Answer 403 and return True for a request this server does not take: for another
        host name where it listens on the loopback (DNS rebinding), and for a save or a
        preview sent by a page of another origin, or not as JSON. A browser sends JSON to
        another origin only after asking that origin (a preflight this server does not
        answer), so a page of another site cannot write the user's DATA."""
        host = self.headers.get("Host")
        problem = foreign_host(host) if self.loopback_only else None
        if problem is None and post:
            origin = self.headers.get("Origin")
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
                problem = f"a request from another origin ({origin}) is not taken"
            elif content_type != "application/json":
                problem = "saves and previews are sent as application/json"
        if problem is None:
            return False
        self._error(HTTPStatus.FORBIDDEN, problem)
        return True

    def _body(self) -> bytes | None:
        """The request's body; None after answering a bad or too large Content-Length."""
        text = self.headers.get("Content-Length", "0").strip()
        if not (text.isascii() and text.isdigit()):  # "²" is a digit to isdigit, not to int
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST, f"Content-Length {text!r} is not a size")
            return None
        if int(text) > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"a body of {int(text)} bytes; at most {MAX_BODY_BYTES} are taken")
            return None
        return self.rfile.read(int(text))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("label-server: " + format, *args)

    def send_response(self, code: int, message: str | None = None) -> None:
        # Here, not in _send: the standard library's own answers (send_error: 501 for a
        # method not served, 400 for a malformed request line) come this way too.
        super().send_response(code, message)
        for name, value in NO_FRAMING_HEADERS:
            self.send_header(name, value)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The page dropped the request (the next frame opened before this one's image
            # came): nothing failed, so no traceback in the terminal.
            log.debug("label-server: %s %s: client gone", self.command, self.path)
            self.close_connection = True

    def _json(self, doc: Any, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _frame(self, parts: list[str]) -> int | None:
        try:
            index = int(parts[2])
        except (IndexError, ValueError):
            return None
        return index if 0 <= index < len(self.session.frames) else None

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self._refused(post=False):
            return
        path, _, query = self.path.partition("?")
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        parts = path.strip("/").split("/")
        if parts == ["api", "frames"]:
            s = self.session
            states = [s.saved_state(i) for i in range(len(s.frames))]
            return self._json({
                "data": str(s.data_dir), "model": s.model_path.name,
                "frames": [{"index": i, "stem": f.stem, "name": path_text(f.path.name),
                            "page": f.page, "key": f.key, "saved": saved,
                            # marked as a frame that failed to open (it will): not as saved
                            "failed": bool(problem), "info": f.info}
                           for (i, f), (saved, problem) in zip(enumerate(s.frames), states,
                                                               strict=True)]})
        if len(parts) == 4 and parts[:2] == ["api", "frames"]:
            index = self._frame(parts)
            if index is None:
                return self._error(HTTPStatus.NOT_FOUND, f"no frame {parts[2]}")
            try:
                self.session.forget_if_changed(index)
                if parts[3] == "image.png":
                    image = self.session.image(index).image
                    return self._send(HTTPStatus.OK, display_png(image), "image/png")
                if parts[3] == "geometry":
                    geometry, origin, note = self.session.geometry(index,
                                                                   model="model=1" in query)
                    token = saved_token(self.session.data_dir, self.session.frames[index].stem)
                    return self._json({"geometry": geometry.to_json(), "origin": origin,
                                       "note": note, "saved_token": token})
            except Exception as exc:  # a bad frame file: say so on the page, keep serving
                return self._frame_failed(exc, f"frame {index} {parts[3]}", "")
        return self._error(HTTPStatus.NOT_FOUND, f"no such page {path}")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        if self._refused(post=True):
            self.close_connection = True  # its body is not read
            return
        path, _, query = self.path.partition("?")
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["api", "frames"] or parts[3] not in ("preview",
                                                                                  "save"):
            return self._error(HTTPStatus.NOT_FOUND, f"no such endpoint {self.path}")
        index = self._frame(parts)
        if index is None:
            return self._error(HTTPStatus.NOT_FOUND, f"no frame {parts[2]}")
        body = self._body()
        if body is None:
            return None
        if not body:
            return self._error(HTTPStatus.BAD_REQUEST, "geometry: the request has no body "
                               "(the geometry, a JSON object)")
        try:
            # UTF-8, as JSON over HTTP is: json.loads of bytes guesses UTF-16 or UTF-32 from
            # the first bytes and answered with that codec's error
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, f"geometry: the body is not UTF-8 text "
                               f"(byte {exc.start}: {body[exc.start:exc.start + 1]!r}); send "
                               "the JSON as UTF-8")
        try:
            geometry = _from_json(json.loads(text))
        except RecursionError:
            return self._error(HTTPStatus.BAD_REQUEST, "geometry: JSON nested too deeply")
        except (ValueError, GeometryError) as exc:
            return self._error(HTTPStatus.BAD_REQUEST, f"geometry: {exc}")
        saving = parts[3] == "save"
        if saving and not self.session.begin_save():
            return self._error(HTTPStatus.SERVICE_UNAVAILABLE, "not saved: the labelling "
                               "server is stopping (Ctrl+C); start it again and save")
        try:
            if not saving:
                shape = self.session.image(index).image.shape
                if tuple(geometry.shape) != tuple(shape):  # drawn for that frame, no other size
                    return self._error(HTTPStatus.BAD_REQUEST, f"shape: geometry "
                                       f"{list(geometry.shape)} != frame {list(shape)}")
                return self._json(preview(geometry))
            ref = self.session.own_stem(index)
            frame = self.session.image(index)
            source = {"path": str(ref.path.resolve()), "page": ref.page, **ref.info}
            params = parse_qs(query, keep_blank_values=True)
            base = params.get("base")
            if params.get("frame", [ref.key])[0] != ref.key:
                return self._json(_other_frame(ref.stem), HTTPStatus.CONFLICT)
            # The pixel size is the frame file's, as read with the pixels saved: the page's
            # geometry carries the one of the shapes it opened (saved before the file was
            # calibrated, or any number a request sends), which is not the frame's.
            geometry = geometry.replace(pixel_size_nm=frame.pixel_size_nm)
            # The check and the write under DATA's lock: one save at a time, from this
            # process or another nwwatch label on the same DATA.
            doc = save_labeled_frame(self.session.data_dir, ref.stem, frame.image, geometry,
                                     source, base_token=None if base is None else base[0],
                                     acquired_at=frame.acquired_at)
            if doc["repaired"]:
                log.warning("%s", doc["repaired"])
            doc["truth_note"] = truth_left_out_note(doc["truth_left_out"])
            if doc["truth_note"]:
                log.warning("%s/%s: %s:\n%s", self.session.data_dir, TRUTH_FILE,
                            doc["truth_note"], "\n".join(
                                f"  {why}" for why in doc["truth_left_out"].values()))
            return self._json(doc)
        except SavedSinceError as exc:
            return self._json(_conflict(ref.stem, exc.current), HTTPStatus.CONFLICT)
        except GeometryError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except Exception as exc:  # disk full, permissions, the frame file gone: keep serving
            # (the page puts "save failed: " before a save's error itself)
            return self._frame_failed(exc, f"frame {index} {parts[3]}",
                                      "" if saving else "preview failed: ")
        finally:
            if saving:  # after the answer was sent: stop_saving waits for it
                self.session.end_save()

    def _frame_failed(self, exc: Exception, what: str, prefix: str) -> None:
        """Answer a failure: the frame's file (one log line), else its proposal or a bug
        (logged with the traceback: a fault of the program or its runtime, not of the file)."""
        known = frame_failure(exc)
        if known is None:
            log.exception("label %s failed", what)
            status, message = HTTPStatus.INTERNAL_SERVER_ERROR, str(exc)
        else:
            status, message = known
            log.log(logging.ERROR if isinstance(exc, ProposalError) else logging.WARNING,
                    "label %s: %s", what, message, exc_info=isinstance(exc, ProposalError))
        return self._error(status, prefix + message)

    def _static(self, name: str) -> None:
        folder = files("nwwatch.label") / "static"
        suffix = Path(name).suffix
        if "/" in name or name.startswith(".") or suffix not in _STATIC_TYPES:
            return self._error(HTTPStatus.NOT_FOUND, f"no static file {name}")
        resource = folder / name
        if not resource.is_file():
            return self._error(HTTPStatus.NOT_FOUND, f"no static file {name}")
        self._send(HTTPStatus.OK, resource.read_bytes(), _STATIC_TYPES[suffix])


def make_server(session: LabelSession, host: str = "127.0.0.1",
                port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server for ``session`` on ``host`` (a name, an IPv4 or an IPv6 address, with or
    without brackets) at ``port`` (0: any free port; see ``server_address``). Raises OSError
    when it cannot listen there."""
    host = host.removeprefix("[").removesuffix("]")
    handler = type("LabelHandler", (_Handler,), {"session": session,
                                                 "loopback_only": is_loopback(host)})
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                flags=socket.AI_PASSIVE)[0][0]  # "": every interface
    server = type("LabelServer", (ThreadingHTTPServer,), {"address_family": family})
    return server((host, port), handler)


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Run ``server.serve_forever`` in a daemon thread; stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="nwwatch-label", daemon=True)
    thread.start()
    return thread
