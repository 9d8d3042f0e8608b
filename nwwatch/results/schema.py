"""Column schemas of the result tables: provenance columns + measurement columns.

Frame rows (``RESULTS/frames/*.parquet``) and volume rows (``RESULTS/volumes/*.parquet``)
are documented column by column in the README.
"""

from __future__ import annotations

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


def frame_schema() -> pa.Schema:
    """Schema of one frame row: source, frame, the measurement columns, the model's
    confidence, the QA picture's path, then provenance."""
    from nwwatch.measure import MEASUREMENT_FIELDS

    return pa.schema(KEY_FIELDS + list(MEASUREMENT_FIELDS) + [CONFIDENCE_FIELD, OVERLAY_FIELD]
                     + PROVENANCE_FIELDS)


def volume_schema() -> pa.Schema:
    """Schema of one tomogram row: source, status, reason, mask path, the two warning signs,
    metrics, provenance."""
    from nwwatch.volume import VOLUME_METRIC_FIELDS

    head = [
        pa.field("source", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        # status "suspect": comma-separated nwwatch.volume.REASON_CODES ("" when ok)
        pa.field("reason_code", pa.string()),
        pa.field("mask_path", pa.string()),
        # Warning signs of a failed model (nwwatch.volume.segment): share of voxels it was
        # unsure about; IoU with a label-free threshold of the same volume.
        pa.field("uncertain_fraction", pa.float64()),
        pa.field("threshold_agreement", pa.float64()),
    ]
    return pa.schema(head + list(VOLUME_METRIC_FIELDS) + PROVENANCE_FIELDS)
