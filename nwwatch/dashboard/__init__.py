"""The operator's view of the service's results: a live web dashboard (``app``, ``server``),
Prometheus metrics (``metrics``, no web dependency), and the static ``nwwatch report``.

Everything here reads what the service has committed (Parquet files under RESULTS, the ledger
read-only); nothing here writes results. Importing this package imports nothing heavy.
"""
