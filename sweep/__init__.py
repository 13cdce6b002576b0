"""pagesweep's sweep engine: Hydra configs -> cells -> Ray/serial -> Parquet -> DuckDB.

``python -m sweep +experiment=NAME`` runs an experiment; ``python -m sweep.query SQL``
queries the results; ``python -m sweep.nightly`` compares the last two runs.
"""
