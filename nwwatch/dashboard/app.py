"""The dashboard's Starlette application: one page per acquisition, JSON data, server-sent
events, ``/metrics``.

Routes
------
``/``                                  the page (list of acquisitions, or ``?a=ID``: one of them)
``/api/acquisitions``                  JSON: every acquisition's summary, live service figures
``/api/acquisitions/{id}/series``      JSON: rows after ``?since=CURSOR`` (all without it)
``/api/acquisitions/{id}/events``      SSE: the same as ``update`` events, then new rows as
                                       they are committed; a reconnecting ``EventSource`` sends
                                       ``Last-Event-ID`` and gets only what it missed (404,
                                       as ``series``, for an ID the results do not hold)
``/api/acquisitions/{id}/mask/{i}.png`` three central slices of a tomogram's mask (``?m=PATH``:
                                       the row whose ``mask_path`` is PATH)
``/results/{path}``                    an image under RESULTS (overlays), nothing else;
                                       ``?max_px=N``: a JPEG of it scaled to N px on its
                                       longer side when it is larger (the latest-frame panel)
``/metrics``                           Prometheus text format (live service only)

Every answer carries ``X-Frame-Options: DENY`` and ``Content-Security-Policy: frame-ancestors
'none'`` (:data:`nwwatch.dashboard.settings.NO_FRAMING_HEADERS`): no other site frames it.

A cursor is ``GENERATION:REFRESH``: the number of the store's refresh that brought the
newest rows the client has (:attr:`nwwatch.dashboard.data.Acquisition.arrivals`; not a
``processed_at``, which goes back with the computer's clock), and a generation — the server's
start time and the acquisition's count of replacements, and whether its trend leaves out
the rows timed by their file's modification time — which changes when rows of that
acquisition were replaced (``replay --force``, a stack's newer version), the server
restarted or the first row with a declared time joined rows all timed so, so that the
client starts again from scratch instead of keeping stale points (and trends).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nwwatch.dashboard import metrics
from nwwatch.dashboard.data import (
    VOLUME_COLUMNS,
    Acquisition,
    ResultsStore,
    acquisition_summary,
    frame_series,
    newest_first,
    quarantined_gone,
)
from nwwatch.dashboard.masks import mask_slices_png
from nwwatch.dashboard.previews import MAX_PREVIEW_PX, MIN_PREVIEW_PX, picture_preview_jpeg
from nwwatch.dashboard.server import lower_priority
from nwwatch.dashboard.settings import NO_FRAMING_HEADERS, foreign_host
from nwwatch.dashboard.stats import TREND_WINDOW
from nwwatch.pathtext import path_of_text

#: Seconds between checks for new committed files (one refresh serves every client).
REFRESH_S = 1.0
#: Seconds between ``status`` events (stale warning, live figures) on an idle stream.
STATUS_S = 5.0
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _clean(value):
    """JSON-safe: NaN/inf -> null, numpy scalars -> Python."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            out = value.astype(object)
            out[~np.isfinite(value)] = None
            return out.tolist()
        if value.dtype.kind in "biu":
            return value.tolist()
        return [_clean(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def parse_cursor(text: str | None) -> tuple[str, int] | None:
    """``"GEN:N"`` -> (generation, refresh number); None for absent or malformed."""
    if not text:
        return None
    gen, _, n = text.rpartition(":")
    if not (gen and n.lstrip("-").isdigit()):
        return None
    return gen, int(n)


class Dashboard:
    """State shared by the routes: the store, the refresh throttle, the settings."""

    def __init__(self, results: Path, ledger: Path | None, *, live: bool,
                 stale_after_s: float | None, rows_held_s: float = 0.0,
                 active_since: float | None = None, overlays: str | None = None) -> None:
        self.store = ResultsStore(results, ledger)
        self.live = live
        self.overlays = overlays
        self.stale_after_s = stale_after_s if live else None
        self.rows_held_s = rows_held_s
        self.active_since = active_since
        self.started_ms = int(time.time() * 1e3)
        # One low-priority worker does all file reading, off the event loop.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nwwatch-dash-io",
                                        initializer=lower_priority)
        self._refresh_lock = asyncio.Lock()

    async def refresh(self, force: bool = False) -> None:
        """Re-read committed files, at most every REFRESH_S unless ``force`` (a request that
        must see everything committed before it was made)."""
        async with self._refresh_lock:
            if force or time.time() - self.store.refreshed_at >= REFRESH_S:
                await asyncio.get_running_loop().run_in_executor(self._pool, self.store.refresh)

    async def run_io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- payloads -----------------------------------------------------------------------

    def live_figures(self) -> dict:
        if not self.live:
            return {"live": False, "pending_files": self.store.pending_files(),
                    "overlays": self.overlays}
        lat = metrics.recent_latencies_s()
        snap = metrics.snapshot()
        return {"live": True, "models": metrics.models(), "overlays": self.overlays,
                "queue_depth_files": snap.get("queue_depth_files"),
                "in_flight_frames": snap.get("in_flight_frames"),
                "latency_p50_s": float(np.median(lat)) if lat else None,
                "latency_p95_s": float(np.percentile(lat, 95)) if lat else None,
                "frames_ok": snap.get("frames_ok"), "frames_flagged": snap.get("frames_flagged"),
                "frames_quarantined": snap.get("frames_quarantined"),
                # results or ledger cannot be written: nothing is processed (a full disk)
                "storage_paused": metrics.storage_pause()}

    def summary(self, acq: Acquisition) -> dict:
        """:func:`acquisition_summary`, live: ``waiting_files`` (the folder's files seen and
        not yet done) and ``behind`` (no new row for ``stale_after_s`` while some wait: the
        service is behind, the microscope has not stopped; not ``stale`` then)."""
        out = acquisition_summary(acq, time.time(), self.stale_after_s, self.rows_held_s,
                                  active_since=self.active_since)
        out["waiting_files"] = metrics.waiting_files(acq.folder) if self.live else None
        out["behind"] = False
        if out["stale"] and self.live and metrics.storage_pause() is not None:
            # no row is written while the service cannot write: the page's banner says so,
            # not a question whether the microscope still writes
            out["stale"] = False
        elif out["stale"] and out["waiting_files"]:
            out["stale"], out["behind"] = False, True
        return out

    def payload(self, acq: Acquisition, since: tuple[str, int] | None) -> dict:
        """Rows of ``acq`` newer than ``since`` (all when None or of another generation)."""
        gen = f"{self.started_ms}-{acq.generation}"
        series = frame_series(acq) if len(acq) and acq.kind == "insitu" else None
        if series is not None and not series["in_trend"].all():
            # The trend leaves out the rows timed by their file's modification time (others
            # declare their time): a page that has them from before, in the trend (every
            # row was timed so), gets every row again, with its new trend.
            gen += "-m"
        reset = since is None or since[0] != gen
        out: dict = {"id": acq.id, "reset": reset, "summary": self.summary(acq),
                     "trend_window": TREND_WINDOW,
                     "live": self.live_figures(),
                     "quarantined": [{**{k: q.get(k) for k in ("path", "reason", "error_type",
                                                               "attempts", "quarantined_at")},
                                      # deleted since: nothing to do (as `status` says)
                                      "gone": quarantined_gone(q)}
                                     for q in acq.quarantined]}
        newest = since[1] if since is not None and not reset else -1
        if series is not None:
            s = series
            new = acq.arrivals > newest
            if new.any() and not reset:
                # A row acquired before rows the page holds (a file retried, or arriving
                # late) changes their rolling trend: they are sent again with it. One the
                # trend leaves out changes none.
                first_t = np.nanmin(s["t"][new & s["in_trend"]], initial=np.inf)
                new |= s["t"] >= first_t
            pick = np.flatnonzero(new)
            out["rows"] = {k: s[k][pick] for k in ("t", "angle", "unc", "valid", "code",
                                                   "trend", "time_source", "source",
                                                   "frame")}
            if len(pick):
                newest = max(newest, int(acq.arrivals.max()))
            # the latest frame the page captions: the last with an acquisition time (rows
            # without one sort last and are not charted), else the last row; frames of the
            # same time in the table's order (source, then frame). Where some frames declare
            # their time, the last of those: a file's modification time among them lands
            # anywhere, and the panel stayed on a file copied or written now while frames
            # stamped before it kept arriving. Named and described here with its overlay
            # picture, not looked up again among the page's rows, so that caption and
            # picture are of one frame.
            timed = np.flatnonzero(np.isfinite(s["t"]) & s["in_trend"])
            index = int(timed[-1]) if len(timed) else len(acq) - 1
            out["latest"] = {k: s[k][index] for k in ("source", "frame", "t", "angle", "unc",
                                                      "valid", "code")}
            last = acq.table.slice(index, 1)
            if "status" in last.column_names:  # which frames get a picture under "flagged"
                out["latest"]["status"] = last["status"][0].as_py()
            if "overlay_path" in last.column_names and last["overlay_path"][0].is_valid:
                out["latest_overlay"] = last["overlay_path"][0].as_py()
        elif len(acq):
            cols = [c for c in VOLUME_COLUMNS if c in acq.table.column_names]
            out["volumes"] = acq.table.select(cols).to_pylist()
            newest = int(acq.arrivals.max())
        out["cursor"] = f"{gen}:{newest}"
        return _clean(out)


def _no_such(request: Request) -> Response:
    """404 naming the acquisition ID that the results do not hold."""
    acq_id = request.path_params["acq"]
    return JSONResponse({"error": f"no acquisition {acq_id!r} in these results"},
                        status_code=404)


class _LoopbackHostOnly:
    """ASGI middleware: a request whose Host header names another machine than the loopback
    gets 403 (:func:`nwwatch.dashboard.settings.foreign_host`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"host")
            problem = foreign_host(None if header is None else header.decode("latin-1"))
            if problem is not None:
                await PlainTextResponse(problem + "\n", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


_NO_FRAMING = [(name.lower().encode("latin-1"), value.encode("latin-1"))
               for name, value in NO_FRAMING_HEADERS]


class _NoFraming:
    """ASGI wrapper: every answer carries :data:`~nwwatch.dashboard.settings.NO_FRAMING_HEADERS`
    (no other site may frame the dashboard)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_framed(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_NO_FRAMING]}
            await send(message)

        await self.app(scope, receive, send_framed)


class _DashboardApp(Starlette):
    """Starlette with :class:`_NoFraming` outside its whole stack: the answers of its own
    outermost middleware (a 500 after an exception) carry the headers too, which a user
    middleware, inside that one, would miss."""

    def build_middleware_stack(self) -> Any:
        return _NoFraming(super().build_middleware_stack())


def create_app(results: str | Path, ledger: str | Path | None = None, *, live: bool = False,
               stale_after_s: float | None = 120.0, rows_held_s: float = 0.0,
               active_since: float | None = None, loopback_only: bool = False,
               overlays: str | None = None) -> Starlette:
    """The ASGI application for the results folder ``results``.

    ``loopback_only``: the server listens on the loopback; requests for another host name
    (:func:`nwwatch.dashboard.settings.foreign_host`: DNS rebinding) are refused with 403.

    ``live``: served by the running service (``/metrics``, queue and latency figures, stale
    warnings); otherwise a finished or replayed results folder. ``rows_held_s``: the
    service's ``[output] flush_seconds``, the longest its rows wait before they are written.
    ``active_since``: when the service started (epoch s); only acquisitions with rows
    processed since can be stale. ``overlays``: the service's ``[output] overlays`` (None:
    not known), which tells the page why a latest frame has no overlay picture.
    """
    dash = Dashboard(Path(results), Path(ledger) if ledger else None, live=live,
                     stale_after_s=stale_after_s, rows_held_s=rows_held_s,
                     active_since=active_since, overlays=overlays)
    static = resources.files("nwwatch.dashboard") / "static"

    async def page(request: Request) -> Response:
        html = (static / "page.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def acquisitions(request: Request) -> Response:
        await dash.refresh(force=True)
        snap = dash.store.snapshot
        items = newest_first([dash.summary(a) for a in snap.values()])
        return JSONResponse(_clean({"results": str(dash.store.results), "acquisitions": items,
                                    "unreadable_files": sorted(dash.store.unreadable),
                                    "live": dash.live_figures()}))

    def find(request: Request) -> Acquisition | None:
        return dash.store.snapshot.get(request.path_params["acq"])

    async def series(request: Request) -> Response:
        await dash.refresh(force=True)
        acq = find(request)
        if acq is None:
            return _no_such(request)
        return JSONResponse(dash.payload(acq, parse_cursor(request.query_params.get("since"))))

    async def events(request: Request) -> Response:
        await dash.refresh(force=True)
        acq_id = request.path_params["acq"]
        if acq_id not in dash.store.snapshot:
            # a 404, not a stream of null summaries that would keep a page "connected" for ever
            return _no_such(request)
        since = parse_cursor(request.headers.get("last-event-id")
                             or request.query_params.get("since"))

        async def stream():
            nonlocal since
            yield "retry: 2000\n\n"
            sent_version, next_status = -1, 0.0
            while not app.state.stopping:
                if await request.is_disconnected():
                    return
                await dash.refresh()
                acq = dash.store.snapshot.get(acq_id)
                now = time.monotonic()
                if acq is not None and dash.store.version != sent_version:
                    sent_version = dash.store.version
                    data = dash.payload(acq, since)
                    since = parse_cursor(data["cursor"])
                    next_status = now + STATUS_S
                    yield (f"id: {data['cursor']}\nevent: update\n"
                           f"data: {json.dumps(data, separators=(',', ':'))}\n\n")
                elif now >= next_status:
                    next_status = now + STATUS_S
                    status = {"summary": dash.summary(acq) if acq is not None else None,
                              "live": dash.live_figures()}
                    yield f"event: status\ndata: {json.dumps(_clean(status))}\n\n"
                await asyncio.sleep(REFRESH_S / 2)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    async def mask(request: Request) -> Response:
        acq = find(request)
        index = request.path_params["index"]
        if acq is None or acq.kind != "tomogram" or not 0 <= index < len(acq):
            return Response("no such volume", status_code=404)
        rel = acq.table["mask_path"][index].as_py()
        named = request.query_params.get("m")
        if named is not None and named != rel:
            # The page names the mask it shows (``?m=``): a row's index moves when a file is
            # processed again (its newest version sorts last), and the browser keeps an
            # answer per URL for an hour; the named mask is served, never another volume's.
            if named not in acq.table["mask_path"].to_pylist():
                return Response("no such volume", status_code=404)
            rel = named
        png = await dash.run_io(mask_slices_png, dash.store.results / rel) if rel else None
        if png is None:
            return Response("mask not readable", status_code=404)
        return Response(png, media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    async def result_file(request: Request) -> Response:
        root = dash.store.results.resolve()
        # the row's text of a name that is not UTF-8 (\xNN) names the file with those bytes
        try:
            path = Path(path_of_text(str(root / request.path_params["path"]))).resolve()
            found = (root in path.parents and path.suffix.lower() in _IMAGE_SUFFIXES
                     and path.is_file())
        except (ValueError, OSError):  # a NUL byte, a name too long: no such picture
            found = False
        if not found:
            return Response("not found", status_code=404)
        max_px = request.query_params.get("max_px")
        if max_px is not None:
            try:
                max_px = int(max_px)
            except ValueError:
                max_px = 0
            if not MIN_PREVIEW_PX <= max_px <= MAX_PREVIEW_PX:
                return Response(f"max_px must be an integer from {MIN_PREVIEW_PX} to "
                                f"{MAX_PREVIEW_PX}", status_code=400)
            preview = await dash.run_io(picture_preview_jpeg, path, max_px)
            if preview is not None:
                return Response(preview, media_type="image/jpeg")
        media = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
        return Response(await dash.run_io(path.read_bytes), media_type=media)

    async def metrics_route(request: Request) -> Response:
        if not dash.live:
            return Response("metrics are served by the running service\n", status_code=404)
        return Response(metrics.exposition(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        Route("/", page),
        Route("/api/acquisitions", acquisitions),
        Route("/api/acquisitions/{acq}/series", series),
        Route("/api/acquisitions/{acq}/events", events),
        Route("/api/acquisitions/{acq}/mask/{index:int}.png", mask),
        Route("/results/{path:path}", result_file),
        Route("/metrics", metrics_route),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        dash.close()

    middleware = [Middleware(_LoopbackHostOnly)] if loopback_only else []
    app = _DashboardApp(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.stopping = False
    app.state.dashboard = dash
    return app
