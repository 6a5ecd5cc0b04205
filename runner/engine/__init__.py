"""The training engine: one encoder, one head per task, one training loop for single_task,
multi_task and token_controlled jobs, with exact resume.  ``run_job(job, ctx)`` is the
executor's default job function.

``run_job`` is imported on first use, so the engine's torch-free parts (the task sampler's
probabilities, used by the plan's design check) can be imported without loading torch.
"""


def __getattr__(name: str):
    if name == "run_job":
        from runner.engine.job import run_job

        return run_job
    raise AttributeError(f"module 'runner.engine' has no attribute {name!r}")


__all__ = ["run_job"]
