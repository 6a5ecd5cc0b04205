"""What runner and stats must agree on, in one small package both import (GUIDE.md, "The
one-way flow"): neither imports the other, and this imports neither, nor torch, nor numpy.

* :mod:`mtl_contract.files` -- how a result file is written and read back: atomic writes
  (a reader sees the old file or the whole new one, even after ``kill -9``), bounded reads
  (a file linked to ``/dev/zero`` is refused, not read forever), SHA256 digests, the
  canonical JSON that job ids hash, JSON-safe values, the output-folder check.
* :mod:`mtl_contract.schema` -- the names both sides use for the files of results/README.md:
  file and folder names, schema versions, precision levels, the strategy <-> experiment_type
  names, prediction columns, size bounds, exit codes, and the manifest's ``[stats]`` keys.
"""
