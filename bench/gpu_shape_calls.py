"""What the sessions per input shape (nwwatch/segment/gpushapes.py) would make of a recorded
sequence of GPU network calls: an estimate from measured per-call times, not a measurement.

    python -m bench.gpu_shape_calls bench/results/gpu_replay_stages.json --run cudaonly \\
        --json bench/results/gpu_shape_calls.json

Input: ``bench/device_replay_stages.sh``'s record of a replay (``runs.<run>.native_calls``:
the input shape and milliseconds of every ``segment_native`` call on one session;
``session_init``: seconds to make the Segmenter). The call shapes are put through
:class:`~nwwatch.segment.gpushapes.ShapeSessions` with stand-in sessions that remember the last
shape they ran. A call counts as "after a change" when its session last ran another shape (the
first call included). Estimate per call: the measured time for the first call; otherwise the
median measured time of the same shape after a change, or after a repeat; plus
``session_init`` for every session made. The assumption that a new session's first call costs
what a change of shape costs on the old one is not checked (no GPU here).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from nwwatch.segment.gpushapes import GPU_SESSIONS, ShapeSessions, stable_batch


class _Stand:
    """A session stand-in: remembers the last input shape run on it."""

    def __init__(self) -> None:
        self.last: tuple[int, ...] | None = None

    def get_providers(self) -> list[str]:
        return ["CUDAExecutionProvider"]


def estimate(calls: list[tuple[tuple[int, ...], float]], session_s: float) -> dict:
    """``calls``: (input shape (N, H, W), ms) in call order on one session."""
    changed: dict[tuple[int, ...], list[float]] = {}
    repeated: dict[tuple[int, ...], list[float]] = {}
    previous = None
    for i, (shape, ms) in enumerate(calls):
        if i:
            (repeated if shape == previous else changed).setdefault(shape, []).append(ms)
        previous = shape
    made: list[_Stand] = []

    def make() -> _Stand:
        made.append(_Stand())
        return made[-1]

    sessions = ShapeSessions(make, _Stand())  # type: ignore[arg-type]
    after_change_old = sum(1 for i, c in enumerate(calls) if i == 0 or c[0] != calls[i - 1][0])
    after_change_new, estimate_ms = 0, 0.0
    for i, (shape, ms) in enumerate(calls):
        key = (stable_batch(shape[0]), 1, *shape[1:])
        session = sessions.session_for(key)
        is_change = session.last != key
        session.last = key
        after_change_new += is_change
        pool = changed if is_change else repeated
        estimate_ms += ms if i == 0 else statistics.median(pool.get(shape) or changed[shape])
    return {
        "calls": len(calls),
        "one_session": {"calls_after_a_change": after_change_old,
                        "network_ms_measured": round(sum(ms for _, ms in calls), 1)},
        "sessions_per_shape": {"calls_after_a_change": after_change_new,
                               "sessions_made": len(made),
                               "network_ms_estimated": round(estimate_ms + 1000 * session_s
                                                             * len(made), 1)},
        "median_ms": {"after_a_change": {str(k): statistics.median(v) for k, v in changed.items()},
                      "repeating": {str(k): statistics.median(v) for k, v in repeated.items()}},
        "gpu_sessions": GPU_SESSIONS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stages", type=Path)
    parser.add_argument("--run", default="cudaonly")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    record = json.loads(args.stages.read_text())
    run = record["runs"][args.run]
    calls = [(tuple(shape), float(ms)) for shape, ms in run["native_calls"]]
    out = {"source": f"{args.stages} runs.{args.run}", "machine": record.get("machine"),
           "kind": "estimate from measured per-call times; not measured",
           **estimate(calls, float(run["session_init"][0]))}
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
