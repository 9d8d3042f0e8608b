"""The resident service: configuration, ledger, watching, processing, replay, status.

``process`` (:mod:`nwwatch.service.pipeline`) is the one processing function used by the live
daemon (:mod:`nwwatch.service.daemon`) and by :func:`replay`. Importing this package (and
validating a configuration) does not load ONNX Runtime; running a replay does.
"""

from nwwatch.service.replay import ReplaySummary, replay

__all__ = ["ReplaySummary", "replay"]
