"""The prepared data, without torch: the tasks (one file each), preparation from the
sources, the splits, SHA256SUMS, contamination (RQ1) and token lengths."""
