"""One Kaggle session of a study: bring the previous session's results in, run with a time
budget, leave the results in /kaggle/working as this session's output for the next one.

In a Kaggle notebook (see docs/kaggle.md), after the set-up cell, one cell:

    !python docs/kaggle_session.py manifests/full_study.toml

or, to pick the options in Python:

    import sys; sys.path.insert(0, "docs")
    from kaggle_session import session
    rc = session("manifests/full_study.toml", time_budget="11h30m", workers="auto")

What it does, in order:
1. finds the previous session's results for the study below /kaggle/input (any attached
   dataset or notebook output holding ``results/<study>/`` or ``<study>/`` with a
   ``ledger/`` folder) and copies into /kaggle/working/results/<study> every file that is
   not there yet (it never overwrites: a file already in the working folder is newer);
2. runs ``python -m runner MANIFEST --results-dir ... --time-budget 11h30m --workers auto``
   (2 x T4: one worker per GPU); the runner checkpoints running jobs before the budget ends;
3. prints ``python -m runner status`` and what to do next, and returns the runner's exit
   code: 0 the study is done; 3 the budget was reached, work is left: save this version
   and start the next session with its output attached; 1 some jobs failed (status names
   them; the next session may add --retry-failed); 2 bad input (nothing was run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The repository this file sits in, for `python docs/kaggle_session.py` without an install
# (appended: an installed runner comes first).
sys.path.append(str(Path(__file__).resolve().parents[1]))

KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_RESULTS = Path("/kaggle/working/results")
NEXT_STEPS = {
    0: "the study is done: `python -m stats paper/ --results RESULTS`, or download them",
    1: "some jobs failed (see the status above); fix the cause, then run the next session "
       "with --retry-failed",
    2: "bad input: nothing was run; fix the manifest or the options above",
    3: "time budget reached: Save Version now; attach this version's output as an input of "
       "the next session and run this notebook again (it resumes from the checkpoints)",
}


def study_name(manifest: str | Path) -> str:
    """The manifest's [study] name (parsed by the runner: bad input raises there)."""
    from runner.study.manifest import load_manifest
    return load_manifest(manifest).study.name


def find_previous(input_root: str | Path, study: str) -> Path | None:
    """The previous session's results of ``study`` below ``input_root``: a folder named
    after the study holding a ``ledger/`` folder, at most four levels down.  When several
    are attached, the one with the most finished jobs (every session carries all earlier
    work forward, so the latest session has the most); None when there is none."""
    root = Path(input_root)
    if not root.is_dir():
        return None
    found = {path for depth in range(1, 5) for path in root.glob("/".join(["*"] * depth))
             if path.name == study and (path / "ledger").is_dir()}
    if len(found) > 1:
        print(f"several earlier results of {study}: {sorted(map(str, found))}; using the one "
              f"with the most finished jobs (attach only the latest session's output)")
    return max(sorted(found), key=lambda p: len(list(p.glob("*/result.json"))), default=None)


def copy_missing(src: str | Path, dst: str | Path) -> int:
    """Copy every file of ``src`` that ``dst`` lacks (never overwriting); return how many.

    Temporary files of interrupted writes (names starting with '.') are left behind: the
    runner ignores them anyway."""
    src, dst = Path(src), Path(dst)
    copied = 0
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            target = dst / rel / name
            if name.startswith(".") or target.exists():
                continue
            tmp = target.with_name(f".{name}.copying")
            shutil.copy2(Path(dirpath) / name, tmp)   # then rename: a copy is whole or absent
            os.replace(tmp, target)
            copied += 1
    return copied


def call(cmd: list[str]) -> int:
    """Run ``cmd``; its output (stdout and stderr) passed on line by line through ``print``,
    so a notebook shows it (a child writing to the inherited descriptor would reach only the
    kernel's log); its exit code."""
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1)
    with proc.stdout:
        for line in proc.stdout:
            print(line, end="", flush=True)
    return proc.wait()


def session(manifest: str | Path, *, time_budget: str = "11h30m", workers: str = "auto",
            input_root: str | Path = KAGGLE_INPUT, results_root: str | Path = KAGGLE_RESULTS,
            data_dir: str | Path = "data", extra_args: list[str] | None = None,
            in_process: bool = False) -> int:
    """One session (see the module docstring); return the runner's exit code.

    ``in_process`` runs the runner in this Python process instead of a child process
    (the tests do, to share the imports between sessions)."""
    from mtl_contract.schema import EXIT_BAD_INPUT
    from runner.errors import InputError
    try:
        study = study_name(manifest)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    results = Path(results_root) / study
    previous = find_previous(input_root, study)
    if previous is None:
        print(f"no earlier results of {study} below {input_root}: starting the study",
              flush=True)
    else:
        n = copy_missing(previous, results)
        print(f"previous session: {previous} -> {results}: {n} files copied", flush=True)
    args = [str(manifest), "--results-dir", str(results), "--data-dir", str(data_dir),
            "--time-budget", time_budget, "--workers", workers, *(extra_args or [])]
    if in_process:
        from runner.cli import main
        rc = main(args)
        main(["status", *args[:5]])
    else:
        rc = call([sys.executable, "-m", "runner", *args])
        call([sys.executable, "-m", "runner", "status", *args[:5]])
    print(f"exit code {rc}: {NEXT_STEPS.get(rc, 'unexpected exit code')}", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifest", help="the study's manifest, e.g. manifests/full_study.toml")
    p.add_argument("--time-budget", default="11h30m",
                   help="stop in time to save the output (Kaggle ends sessions at 12 h)")
    p.add_argument("--workers", default="auto", help="auto = one worker per GPU (2 on 2xT4)")
    p.add_argument("--input-root", default=str(KAGGLE_INPUT),
                   help="where earlier sessions' outputs are attached (read-only)")
    p.add_argument("--results-root", default=str(KAGGLE_RESULTS),
                   help="this session's results (saved as the notebook's output)")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--retry-failed", action="store_true")
    a = p.parse_args(argv)
    return session(a.manifest, time_budget=a.time_budget, workers=a.workers,
                   input_root=a.input_root, results_root=a.results_root, data_dir=a.data_dir,
                   extra_args=["--retry-failed"] if a.retry_failed else None)


if __name__ == "__main__":
    sys.exit(main())
