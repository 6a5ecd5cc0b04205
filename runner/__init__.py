"""Declarative experiment-manifest runner for multi-task transfer studies.

manifest (TOML) -> plan (jobs with hashed ids) -> ledger (claims, states) -> training jobs
-> results/<study>/<job_id>/result.json + predictions.  ``stats`` reads only those files.
"""

__version__ = "0.1.0"
