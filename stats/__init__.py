"""Statistical analysis and the paper's outputs, from result files alone (no torch)."""

__version__ = "0.1.0"
