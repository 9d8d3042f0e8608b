"""The ``[inference]`` table: how in-situ frames are segmented (providers, batch, latency,
threads, streams), and the plan of sessions and streams it gives on a machine
(:meth:`InferenceConfig.plan`; :mod:`nwwatch.service.config` parses the table)."""

from __future__ import annotations

from dataclasses import dataclass

from nwwatch.resources import usable_cores

#: ``[inference] streams = "auto"`` on the CPU: at most this many concurrent frame groups,
#: each network call with one intra-op thread (further cores are not used by the concurrent
#: calls). Every stream holds its own group of frames and one network batch's activations,
#: so each call of the frame stage may run fewer, as memory allows for its frame size
#: (:mod:`nwwatch.service.streammemory`).
AUTO_MAX_STREAMS = 8


@dataclass(frozen=True)
class InferencePlan:
    """How in-situ frames are segmented: up to ``streams`` frame groups processed
    concurrently (each read -> segment -> measure in its own thread). ``threads``: intra-op
    threads of the session that runs one group at a time (one stream, a group that runs
    alone, tomograms, a GPU; None: ONNX Runtime's default). With ``streams`` > 1 the
    concurrent groups share a second session of :attr:`stream_threads` = 1 intra-op thread."""

    streams: int
    threads: int | None

    @property
    def stream_threads(self) -> int | None:
        """Intra-op threads of each concurrent stream's network calls."""
        return 1 if self.streams > 1 else self.threads


@dataclass(frozen=True)
class InferenceConfig:
    providers: tuple[str, ...] = ("tensorrt", "cuda", "cpu")
    require_gpu: bool = False
    batch_size: int = 8
    max_batch_latency_ms: float = 200.0
    #: Intra-op threads of the session with one stream (None: ONNX Runtime's default, every
    #: core); with ``streams = "auto"`` on the CPU, the most streams.
    threads: int | None = None
    #: Frame groups processed concurrently: 1 (the default), an int > 1 or "auto" (see
    #: :meth:`plan`).
    streams: int | str = 1

    def plan(self, *, gpu: bool, frame_streams: bool = True,
             cores: int | None = None) -> InferencePlan:
        """Streams, and the intra-op threads of the session that runs one group at a time.

        ``gpu``: the session runs on a GPU provider; ``frame_streams``: the engine's frame
        stage can use streams (in-situ frames; tomograms segment one volume at a time).
        The session of one group at a time always gets ``threads`` intra-op threads as
        given (None: ONNX Runtime's default). One stream (``streams = 1``, any setting on a
        GPU, tomograms): that session is the only one. Several streams on the CPU: their
        concurrent calls run on a second session made with one intra-op thread, so every
        call runs on its calling thread alone and the process has ``streams`` inference
        threads (ONNX Runtime's intra-op pool belongs to the session and is shared by
        concurrent calls, so a larger pool would not give each call its own threads).
        ``"auto"`` on the CPU: ``min(T, AUTO_MAX_STREAMS)`` streams, T being ``threads`` or
        the usable cores (``cores`` replaces the count, for tests); one stream when T is 1.
        """
        if not frame_streams or gpu:
            return InferencePlan(1, self.threads)
        if self.streams == "auto":
            total = self.threads if self.threads is not None else (cores or usable_cores())
            streams = min(total, AUTO_MAX_STREAMS)
        else:
            streams = int(self.streams)
        return InferencePlan(streams, self.threads)
