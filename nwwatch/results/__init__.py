"""Result rows and their Parquet files."""

from nwwatch.results.parquet import drop_rows, write_batch, write_table_atomic
from nwwatch.results.quarantine import QUARANTINE_FILE, write_quarantine

__all__ = ["QUARANTINE_FILE", "drop_rows", "write_batch", "write_quarantine",
           "write_table_atomic"]
