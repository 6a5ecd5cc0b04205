"""The result documents, one writer per file that results/README.md describes; stats/
reads them back (tests/contracts/ checks that writer and reader agree)."""
