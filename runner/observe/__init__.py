"""Watching a study: experiment tracking (tracking.py), progress bars and ETAs (progress.py),
and the compute estimate of ``plan --estimate`` (estimate.py).  Nothing here is imported by
the training loop unless tracking is asked for; the backends' libraries are imported lazily."""
