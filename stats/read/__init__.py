"""Loading result, held-out, evaluation, similarity and contamination files (no statistics)."""
