"""The training engine: one encoder, one head per task, one training loop for single_task,
multi_task and token_controlled jobs, with exact resume.  ``run_job(job, ctx)`` is the
executor's default job function."""

from runner.engine.job import run_job

__all__ = ["run_job"]
