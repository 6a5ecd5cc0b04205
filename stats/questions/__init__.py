"""One module per research question (and the study description): each has ``section(ctx)``."""
