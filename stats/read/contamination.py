"""Train/test overlap (RQ1): read and verify the contamination file, and count
its overlaps (the clean-unit recomputation is :mod:`stats.core.clean_units`).

The file (schema ``contamination/1``, ``data/CONTAMINATION.json``, written by ``python -m
runner contamination``; format in results/README.md) lists, per evaluated task B, split and
training task A, the ``unit_id``s of B that overlap A's training units: ``exact`` (the same
normalised text) and ``ngram`` (a shared run of n words).  ``stats`` imports no runner, so
the reader and its checks live here; they check what
``runner.data.contamination.load_contamination`` checks, and more:

* the schema and the shape of every entry stats reads;
* where ``SHA256SUMS`` beside the file lists it, the file's own SHA256; a ``SHA256SUMS``
  there that does not list it refuses it (its line removed: the file was edited);
* a training task counted in ``train_units_overlapping_evaluated`` appears in an overlap list;
* every data file in its header (``data_checksums``) that lies beside it has that SHA256;
  one that is not there is compared with its ``SHA256SUMS`` line, if any;
* every job's ``provenance.data_checksums`` agrees with the header on the files both list:
  the file must describe the data the results were computed on;
* at least one of these checks ran (a file that cannot be verified is not trusted).

A file that fails is *refused* with one line naming it (``FILE: PLACE: what is wrong``); the
paper is still built, from the full test sets only, and SUMMARY.txt says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl_contract.files import read_json_bounded, sha256_file
from mtl_contract.schema import CHECKSUMS_FILE, CONTAMINATION_FILE, CONTAMINATION_SCHEMA
from stats.fileio import StatsInputError
from stats.read.results import JobResult

DEFAULT_PATH = Path("data") / CONTAMINATION_FILE  # relative to the working folder

SPLIT = "test"

USED, REFUSED, ABSENT = "used", "refused", "not measured"


@dataclass
class Contamination:
    """What ``stats`` knows about contamination: the document when usable, else why not."""

    path: Path | None
    status: str  # USED | REFUSED | ABSENT
    reason: str | None = None  # one line when not USED
    doc: dict[str, Any] | None = None
    checked: list[str] = field(default_factory=list)  # what the file was verified against
    # task -> why the results' test units are not the file's: no clean units there
    untied: dict[str, str] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.status == USED

    def describe(self) -> str:
        """One line for SUMMARY.txt's preamble and the terminal."""
        if self.status == USED:
            return (f"contamination: {self.path} (n = {self.doc['n']}), verified against "
                    f"{'; '.join(self.checked)}")
        if self.status == REFUSED:
            return (f"contamination file refused, full-test results only: {self.reason}")
        return f"contamination not measured: {self.reason}"

    def tie_line(self) -> str | None:
        """One line naming the tasks whose results are not tied to the file, else None."""
        if not self.untied:
            return None
        return (f"results not tied to the contamination file {self.path} (no clean-unit "
                "results for them): " + "; ".join(f"{t}: {why}" for t, why in
                                                   sorted(self.untied.items())))

    def excluded(self, task: str, train_tasks: list[str]) -> frozenset[str] | str:
        """Test units of ``task`` overlapping a training unit of any of ``train_tasks``, or
        why that cannot be said."""
        if task in self.untied:
            return f"{task}: not tied to the contamination file ({self.untied[task]})"
        pairs = self.doc["overlap"].get(task, {}).get(SPLIT)
        if pairs is None:
            return f"{task} is not among the contamination file's tasks"
        missing = sorted(a for a in train_tasks if a not in pairs)
        if missing:
            return f"training task(s) {', '.join(missing)} not among the contamination file's tasks"
        return frozenset(u for a in train_tasks for key in ("exact", "ngram")
                         for u in pairs[a][key])


def read_checksums(path: Path) -> dict[str, str]:
    """``SHA256SUMS`` lines ``<sha256>  <relative path>``; {} when there is no such file."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, rel = line.strip().partition("  ")
        if digest and rel:
            out[rel.strip()] = digest
    return out


def default_path() -> Path | None:
    """``data/CONTAMINATION.json`` of the working folder, if it is there."""
    return DEFAULT_PATH if DEFAULT_PATH.is_file() else None


def load_contamination(path: str | Path | None, jobs: list[JobResult]) -> Contamination:
    """The file at ``path`` checked against the data and the results; never raises."""
    if path is None:
        return Contamination(None, ABSENT, reason=(
            f"no contamination file: {DEFAULT_PATH} is not in the working folder and "
            "--contamination was not given (run `python -m runner contamination` over the "
            "prepared data)"))
    path = Path(path)
    try:
        doc = read_document(path)
        checked = verify(path, doc, jobs)
    except StatsInputError as err:
        return Contamination(path, REFUSED, reason=str(err))
    return Contamination(path, USED, doc=doc, checked=checked)


def read_document(path: Path) -> dict[str, Any]:
    """The parsed file after checking the schema and every entry stats reads."""
    try:
        doc = read_json_bounded(path)
    except FileNotFoundError:
        raise StatsInputError(path, "contamination file missing") from None
    except (OSError, ValueError) as err:
        raise StatsInputError(path, f"not a readable JSON file ({err})") from None
    if not isinstance(doc, dict) or doc.get("schema") != CONTAMINATION_SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise StatsInputError(path, f"expected {CONTAMINATION_SCHEMA!r}, got {got!r}",
                              where="schema")
    _check_shape(path, doc)
    return doc


def _check_shape(path: Path, doc: dict[str, Any]) -> None:
    def bad(where: str, what: str) -> None:
        raise StatsInputError(path, what, where=where)

    tasks = doc.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        bad("tasks", "expected a non-empty list of task names")
    if not isinstance(doc.get("n"), int) or isinstance(doc.get("n"), bool) or doc["n"] < 1:
        bad("n", f"expected a positive integer, got {doc.get('n')!r}")
    sums = doc.get("data_checksums")
    if not isinstance(sums, dict) or not sums or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in sums.items()):
        bad("data_checksums", "expected a non-empty object of file -> sha256")
    for b in tasks:
        units = (doc.get("units") or {}).get(b)
        if not isinstance(units, dict) or not isinstance(units.get(SPLIT), int):
            bad(f"units.{b}.{SPLIT}", "expected the number of test units")
        pairs = ((doc.get("overlap") or {}).get(b) or {}).get(SPLIT)
        if not isinstance(pairs, dict):
            bad(f"overlap.{b}.{SPLIT}", "missing")
        for a in tasks:
            for key in ("exact", "ngram"):
                ids = (pairs.get(a) or {}).get(key)
                if not isinstance(ids, list) or not all(isinstance(u, str) for u in ids):
                    bad(f"overlap.{b}.{SPLIT}.{a}.{key}", "expected a list of unit ids")


def _check_counts(path: Path, doc: dict[str, Any]) -> None:
    """A training task whose units overlap evaluated ones (``train_units_overlapping_evaluated``
    > 0) must appear in some overlap list: lists emptied by hand are refused."""
    counts = doc.get("train_units_overlapping_evaluated")
    if not isinstance(counts, dict):
        return
    for a in doc["tasks"]:
        n = counts.get(a)
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            continue
        listed = any((entry.get(a) or {}).get(key)
                     for b in doc["tasks"] for entry in (doc["overlap"].get(b) or {}).values()
                     if isinstance(entry, dict) for key in ("exact", "ngram"))
        if not listed:
            raise StatsInputError(path, f"{n} training unit(s) of {a} overlap evaluated units, "
                                  f"but no overlap list names a unit for {a}: the lists were "
                                  "emptied or cut; run `python -m runner contamination` again",
                                  where=f"train_units_overlapping_evaluated.{a}")


def verify(path: Path, doc: dict[str, Any], jobs: list[JobResult]) -> list[str]:
    """What the file was checked against (StatsInputError naming it when a check fails)."""
    data_dir = path.parent
    sums = read_checksums(data_dir / CHECKSUMS_FILE)
    checked = []
    own = sums.get(path.name)
    if own is None and sums:
        # the runner lists the file in the SHA256SUMS of the data folder it writes it into;
        # a SHA256SUMS without its line cannot tell an edited file (the line
        # removed and the overlap lists emptied read as "used, 0 overlap")
        raise StatsInputError(path, f"not listed in {data_dir / CHECKSUMS_FILE} beside it, so it "
                              "cannot be checked for edits; run `python -m runner "
                              "contamination` again")
    if own is not None:
        if own != sha256_file(path):
            raise StatsInputError(path, f"its sha256 differs from its line in "
                                  f"{data_dir / CHECKSUMS_FILE}: the file was edited; run `python "
                                  "-m runner contamination` again")
        checked.append(f"its line in {data_dir / CHECKSUMS_FILE}")
    _check_counts(path, doc)
    hashed = listed = 0
    for rel, digest in sorted(doc["data_checksums"].items()):
        data_file = data_dir / rel
        if data_file.is_file():
            if sha256_file(data_file) != digest:
                raise StatsInputError(path, f"stale: {data_file} has changed since it was "
                                      "computed; run `python -m runner contamination` again",
                                      where=f"data_checksums.{rel}")
            hashed += 1
        elif rel in sums:
            if sums[rel] != digest:
                raise StatsInputError(path, f"stale: {data_dir / CHECKSUMS_FILE} lists another "
                                      f"sha256 for {rel}", where=f"data_checksums.{rel}")
            listed += 1
    if hashed:
        checked.append(f"the {hashed} data file(s) beside it")
    if listed:
        checked.append(f"{listed} {CHECKSUMS_FILE} line(s)")
    agreeing = _check_jobs(path, doc, jobs)
    if agreeing:
        checked.append(f"provenance.data_checksums of {agreeing} job(s)")
    if not checked:
        raise StatsInputError(path, "cannot be verified: no data file of its data_checksums "
                              f"is beside it or listed in a {CHECKSUMS_FILE} there, and no result "
                              "records provenance.data_checksums for them")
    return checked


def _check_jobs(path: Path, doc: dict[str, Any], jobs: list[JobResult]) -> int:
    """How many jobs share data files with the header, all with the same SHA256."""
    header = doc["data_checksums"]
    agreeing = 0
    for job in sorted(jobs, key=lambda j: j.job_id):
        shared = sorted(rel for rel in job.data_checksums if rel in header)
        for rel in shared:
            if job.data_checksums[rel] != header[rel]:
                raise StatsInputError(
                    path, f"computed from other data than the results: job {job.job_id} "
                    f"({job.path}) read {rel} with sha256 {job.data_checksums[rel][:12]}..., "
                    f"the file was computed from {header[rel][:12]}...; run `python -m runner "
                    "contamination` over the data the study used", where=f"data_checksums.{rel}")
        agreeing += bool(shared)
    return agreeing


def untied_tasks(doc: dict[str, Any], jobs: list[JobResult],
                 unit_ids: Callable[[JobResult, str], Any]) -> dict[str, str]:
    """Tasks of the file whose results do not describe its test set, and why: a
    job's ``n_test`` differs from the file's test-unit count, or unit ids the file lists as
    overlapping do not occur in a job's predictions (``unit_ids(job, task)``: the ids, or
    None when its predictions are unusable). Without this a mismatch reads as "0 dropped"."""
    out: dict[str, str] = {}
    for task in doc["tasks"]:
        units = doc["units"][task][SPLIT]
        listed = {u for a in doc["tasks"] for key in ("exact", "ngram")
                  for u in doc["overlap"][task][SPLIT][a][key]}
        for job in sorted((j for j in jobs if task in j.per_task), key=lambda j: j.job_id):
            n_test = job.per_task[task].n_test
            if _evaluated_a_subset(job, n_test, units):
                # max_eval_examples (the demo): fewer units by design, so neither the count
                # nor every listed id can match; its clean units are the subset's
                continue
            if n_test is not None and n_test != units:
                out[task] = (f"job {job.job_id} scored {n_test} test units, the file counts "
                             f"{units}")
                break
            ids = unit_ids(job, task) if listed else None
            missing = len(listed) - len(listed & set(ids)) if ids is not None else 0
            if missing:
                out[task] = (f"{missing} of the {len(listed)} unit ids it lists as overlapping "
                             f"do not occur in job {job.job_id}'s predictions")
                break
    return out


def _evaluated_a_subset(job: JobResult, n_test: int | None, units: int) -> bool:
    """A job whose config capped its test sets (``max_eval_examples``) at what it scored,
    below the file's count: a subset of the file's test set, not another test set."""
    cap = (job.config or {}).get("max_eval_examples")
    return bool(cap) and n_test is not None and n_test < units and n_test <= int(cap)


def study_tasks(jobs: list[JobResult], heldout: list[str] = ()) -> tuple[list[str], list[str]]:
    """(tasks the study evaluated, tasks it trained on): the jobs' tasks, plus held-out ones."""
    trained = sorted({t for j in jobs for t in j.tasks})
    return sorted(set(trained) | set(heldout)), trained


def overlap_counts(doc: dict[str, Any], task: str, split: str, a: str) -> dict[str, Any]:
    ids = doc["overlap"][task][split][a]
    exact, ngram = set(ids["exact"]), set(ids["ngram"])
    units = doc["units"][task][split]
    return {"test_task": task, "split": split, "train_task": a, "units": units,
            "exact": len(exact), "ngram": len(ngram), "any": len(exact | ngram),
            "share": len(exact | ngram) / units if units else None}


def overlap_rows(doc: dict[str, Any], evaluated: list[str] | None = None,
                 trained: list[str] | None = None) -> list[dict[str, Any]]:
    """Per (test task, training task) of the file's tasks (``evaluated`` x ``trained`` when
    given): the test units that overlap, exact / n-gram / either, and their share; plus, per
    test task, one ``train_task = None`` row: overlapping any of those training tasks."""
    tasks = doc["tasks"]
    rows_b = [b for b in tasks if evaluated is None or b in evaluated]
    cols_a = [a for a in tasks if trained is None or a in trained]
    out = []
    for b in rows_b:
        for a in cols_a:
            out.append(overlap_counts(doc, b, SPLIT, a))
        pairs = doc["overlap"][b][SPLIT]
        union = {u for a in cols_a for k in ("exact", "ngram") for u in pairs[a][k]}
        units = doc["units"][b][SPLIT]
        out.append({"test_task": b, "split": SPLIT, "train_task": None, "units": units,
                    "exact": None, "ngram": None, "any": len(union),
                    "share": len(union) / units if units else None})
    return out


def all_pairs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (evaluated task, split, training task) of the file: contamination.csv."""
    return [overlap_counts(doc, b, split, a) for b in doc["tasks"]
            for split in doc.get("evaluated_splits", [SPLIT]) if split in doc["overlap"][b]
            for a in doc["tasks"]]


def largest(rows: list[dict[str, Any]], top: int = 8) -> list[dict[str, Any]]:
    """The pair rows with the largest overlapping share (then count), none without overlap."""
    pairs = [r for r in rows if r["train_task"] is not None and r["any"]]
    return sorted(pairs, key=lambda r: (-(r["share"] or 0), -r["any"], r["test_task"],
                                        r["train_task"]))[:top]
