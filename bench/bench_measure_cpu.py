"""CPU time of the measurement alone, as the service calls it, on the frames of a folder.

The TIFF frames are read and segmented once (``Segmenter``, one ONNX Runtime thread, batches
of 8); then ``measure_contact_angle(labels, droplet probability, pixel size, image=raw frame)``
runs ``--repeats`` times per frame and the fastest run counts (``time.thread_time``): the
figure least moved by other jobs on a shared machine. Prints one JSON line: the median and
mean over the frames (ms) and the load average. Run it alternately from two checkouts to
compare them (``PYTHONPATH`` picks the code)::

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/bench_measure_cpu.py FRAMES [--repeats 5]
        [--opencv-threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("frames", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--opencv-threads", type=int, default=None)
    args = ap.parse_args()
    import cv2

    from nwwatch.classes import DROPLET
    from nwwatch.io import read_frames
    from nwwatch.measure import measure_contact_angle
    from nwwatch.normalize import normalize_image
    from nwwatch.segment.session import Segmenter
    from nwwatch.service.config import DEFAULT_MODELS

    if args.opencv_threads is not None:
        cv2.setNumThreads(args.opencv_threads)
    seg = Segmenter(DEFAULT_MODELS["insitu"], providers=("cpu",), threads=1)
    files = sorted(args.frames.glob("*.tif"))
    inputs = []
    for i in range(0, len(files), 8):
        frames = [f for p in files[i:i + 8] for f in read_frames(p)]
        out = seg.segment(np.stack([normalize_image(f.image) for f in frames]))
        inputs += [(out.labels[j], np.ascontiguousarray(out.probabilities[j, DROPLET]), f)
                   for j, f in enumerate(frames)]
    best = []
    for labels, prob, frame in inputs:
        fastest = math.inf
        for _ in range(args.repeats):
            t = time.thread_time()
            measure_contact_angle(labels, prob, frame.pixel_size_nm, image=frame.image)
            fastest = min(fastest, time.thread_time() - t)
        best.append(fastest * 1e3)
    print(json.dumps({"frames": len(best), "repeats": args.repeats,
                      "opencv_threads": cv2.getNumThreads(),
                      "median_ms": round(statistics.median(best), 3),
                      "mean_ms": round(statistics.mean(best), 3),
                      "load_average_1min": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
