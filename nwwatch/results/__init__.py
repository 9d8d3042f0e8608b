"""Result rows and their Parquet files."""

from nwwatch.results.parquet import write_batch, write_table_atomic

__all__ = ["write_batch", "write_table_atomic"]
