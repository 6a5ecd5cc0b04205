"""Layout: one LaTeX escape, one number format, tables through templates/, figures, SUMMARY.txt text."""
