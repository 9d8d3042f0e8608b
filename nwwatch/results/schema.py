"""Column schemas of the result tables: provenance columns + measurement columns.

Frame rows (``RESULTS/frames/acquisition=*/*.parquet``) and volume rows (``RESULTS/volumes/...``)
are documented column by column in docs/service.md ("Results: Parquet schema"). The results
layer imports no producer: the layer that knows one (``nwwatch.measure``, ``nwwatch.volume``)
passes its columns to :func:`frame_schema` or :func:`volume_schema`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

_UTC = pa.timestamp("us", tz="UTC")

#: Identify the frame: first columns of every frame row.
KEY_FIELDS: list[pa.Field] = [
    pa.field("source", pa.string(), nullable=False),
    pa.field("frame", pa.int32(), nullable=False),
]

#: Where the row came from and how long it took; null where not applicable (e.g. `nwwatch
#: measure` on human label images has no model).
PROVENANCE_FIELDS: list[pa.Field] = [
    pa.field("source_sha256", pa.string()),
    pa.field("acquired_at", _UTC),
    pa.field("acquired_at_source", pa.string()),
    pa.field("processed_at", _UTC),
    pa.field("model_name", pa.string()),
    pa.field("model_sha256", pa.string()),
    pa.field("provider", pa.string()),
    pa.field("nwwatch_version", pa.string()),
    pa.field("measurement_version", pa.string()),
    pa.field("read_ms", pa.float64()),
    pa.field("segment_ms", pa.float64()),
    pa.field("measure_ms", pa.float64()),
    # the model's confidence of a frame (nwwatch.segment.confidence); null for volumes
    pa.field("confidence_ms", pa.float64()),
    pa.field("batch_id", pa.string()),
]


#: How sure the model was where the measurement looks (nwwatch.segment.confidence); null
#: where no model segmented the frame.
CONFIDENCE_FIELD = pa.field("confidence", pa.float64())

#: The frame's QA picture (nwwatch.results.pictures), relative to the results folder; null
#: when none was written.
OVERLAY_FIELD = pa.field("overlay_path", pa.string())


def frame_schema(measurement_fields: Sequence[pa.Field]) -> pa.Schema:
    """Schema of one frame row: source, frame, the producer's ``measurement_fields``
    (``nwwatch.measure.MEASUREMENT_FIELDS`` for contact angles), the model's confidence, the QA
    picture's path, then provenance. The producer's layer assembles it: the results layer
    knows no producer."""
    return pa.schema(KEY_FIELDS + list(measurement_fields) + [CONFIDENCE_FIELD, OVERLAY_FIELD]
                     + PROVENANCE_FIELDS)


#: First columns of every tomogram row: source, status, reason, mask path, the two warning
#: signs of a failed model.
VOLUME_HEAD_FIELDS: list[pa.Field] = [
    pa.field("source", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("reason", pa.string()),
    # status "suspect": comma-separated nwwatch.volume.REASON_CODES ("ok" when ok; rows of
    # earlier versions hold "")
    pa.field("reason_code", pa.string()),
    pa.field("mask_path", pa.string()),
    # Warning signs of a failed model (nwwatch.volume.segment): share of voxels it was
    # unsure about; IoU with a label-free threshold of the same volume.
    pa.field("uncertain_fraction", pa.float64()),
    pa.field("threshold_agreement", pa.float64()),
]


def volume_schema(metric_fields: Sequence[pa.Field]) -> pa.Schema:
    """Schema of one tomogram row: :data:`VOLUME_HEAD_FIELDS`, the producer's
    ``metric_fields`` (``nwwatch.volume.VOLUME_METRIC_FIELDS``), provenance."""
    return pa.schema(VOLUME_HEAD_FIELDS + list(metric_fields) + PROVENANCE_FIELDS)
