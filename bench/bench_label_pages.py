"""Time `nwwatch label` on a long in-situ stack: listing its frames, turning its pages (the
frame image served), and saving a frame, through the label server (no model: the proposal is
not timed).

Stacks (in a temporary folder): PAGES pages of 64 x 64 uint16 written by ``tifffile.imwrite``
as plain pages (``photometric='minisblack'``) and as an ImageJ stack (``axes='TYX'``), and the
same as an MRC stack (mrcfile), with and without a SerialEM ``.mdoc`` of one section a page.
A page turn opens a page the session has not opened before; the first one of a file opens
the file.

Run: python -m bench.bench_label_pages [--pages 20000] [--turns 8]
(about 30 s at 20,000 pages, ~700 MB of temporary files)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import mrcfile
import numpy as np
import tifffile

from nwwatch.label.frames import frame_refs
from nwwatch.label.geometry import Circle, LabelGeometry
from nwwatch.label.server import LabelSession, make_server, serve_in_thread


def _stacks(folder: Path, pages: int) -> list[Path]:
    stack = np.random.default_rng(0).integers(0, 4000, (pages, 64, 64), dtype=np.uint16)
    tifffile.imwrite(folder / "plain.tif", stack, photometric="minisblack")
    tifffile.imwrite(folder / "imagej.tif", stack, imagej=True, metadata={"axes": "TYX"})
    (folder / "mdoc").mkdir()
    for mrc_path in (folder / "movie.mrc", folder / "mdoc" / "movie.mrc"):
        with mrcfile.new(mrc_path) as mrc:
            mrc.set_data(stack.astype(np.int16))
            mrc.voxel_size = 2.5
    sections = "".join(f"[ZValue = {i}]\nPixelSpacing = 2.5\n"
                       f"DateTime = 05-Dec-26  14:{i // 60 % 60:02d}:{i % 60:02d}\n\n"
                       for i in range(pages))
    (folder / "mdoc" / "movie.mrc.mdoc").write_text("PixelSpacing = 2.5\n\n" + sections)
    return [folder / "plain.tif", folder / "imagej.tif", folder / "movie.mrc",
            folder / "mdoc" / "movie.mrc"]


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _case(path: Path, data: Path, turns: int) -> dict:
    refs: list = []
    listed = _timed(lambda: refs.extend(frame_refs([path], data_dir=data)))
    session = LabelSession(refs, data)
    server = make_server(session)
    serve_in_thread(server)
    api = f"http://127.0.0.1:{server.server_address[1]}/api/frames"
    try:
        page_list = _timed(lambda: urllib.request.urlopen(api).read())
        first = len(refs) // 3
        times = [_timed(lambda i=i: urllib.request.urlopen(f"{api}/{i}/image.png").read())
                 for i in range(first, first + turns)]
        geometry = LabelGeometry((64, 64), Circle((30.0, 32.0), 12.0),
                                 ((40.0, 0.0), (40.0, 64.0), (64.0, 64.0), (64.0, 0.0)))
        body = json.dumps(geometry.to_json()).encode()
        ref = refs[first]
        save = urllib.request.Request(f"{api}/{first}/save?frame={ref.key}", data=body,
                                      headers={"Content-Type": "application/json"})
        saved = _timed(lambda: urllib.request.urlopen(save).read())
    finally:
        server.shutdown()
        server.server_close()
        session.close()
    return {"file": str(path.relative_to(path.parents[1] if path.parent.name == "mdoc"
                                          else path.parent)),
            "frames": len(refs), "frame_refs_s": round(listed, 3),
            "page_list_s": round(page_list, 3), "first_page_s": round(times[0], 4),
            "next_page_median_s": round(statistics.median(times[1:]), 4),
            "next_page_max_s": round(max(times[1:]), 4), "save_s": round(saved, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20000)
    parser.add_argument("--turns", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for k, path in enumerate(_stacks(folder, args.pages)):
            print(json.dumps(_case(path, folder / f"DATA{k}", args.turns)))


if __name__ == "__main__":
    main()
