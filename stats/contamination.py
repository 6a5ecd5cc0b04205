"""Train/test overlap (issue 13, RQ1): read the contamination file and recompute every RQ1 /
RQ5 comparison on the *clean* test units (RQ2's are in :mod:`stats.rq2`, with the same
reader).

The file (schema ``contamination/1``, ``data/CONTAMINATION.json``, written by ``python -m
runner contamination``; format in results/README.md) lists, per evaluated task B, split and
training task A, the ``unit_id``s of B that overlap A's training units: ``exact`` (the same
normalised text) and ``ngram`` (a shared run of n words).  ``stats`` imports no runner, so
the reader and its checks live here and mirror ``runner.contamination.load_contamination``:

* the schema and the shape of every entry stats reads;
* where ``SHA256SUMS`` beside the file lists it, the file's own SHA256;
* every data file in its header (``data_checksums``) that lies beside it has that SHA256;
  one that is not there is compared with its ``SHA256SUMS`` line, if any;
* every job's ``provenance.data_checksums`` agrees with the header on the files both list:
  the file must describe the data the results were computed on;
* at least one of these checks ran (a file that cannot be verified is not trusted).

A file that fails is *refused* with one line naming it (``FILE: PLACE: what is wrong``); the
paper is still built, from the full test sets only, and SUMMARY.txt says why.

Clean units (the rule, :data:`RULE`): a comparison's clean test units of task B are those
that overlap no training unit of any task its multi-task job trained on -- B itself
included -- and both systems are scored on the same clean units so they stay paired.  The
predictions' per-unit sufficient statistics make this a filter: each job's metric is
recomputed on the clean rows (:func:`stats.metrics.point_metrics`), then the very same
paired tests, bootstrap, Holm correction and verdicts run on a copy of the study whose
predictions are cut to those rows (:class:`CleanStudy`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stats.analysis import (
    MT,
    ST,
    TC,
    Analysis,
    Study,
    multitask_comparisons,
    rq5_groups,
    system_summary,
)
from stats.fileio import StatsInputError
from stats.load import JobResult
from stats.metrics import metric_names, point_metrics

SCHEMA = "contamination/1"
FILE_NAME = "CONTAMINATION.json"
DEFAULT_PATH = Path("data") / FILE_NAME  # relative to the working folder
CHECKSUMS = "SHA256SUMS"
SPLIT = "test"
USED, REFUSED, ABSENT = "used", "refused", "not measured"
RULE = ("clean test units: those that overlap (exact or n-gram) no training unit of any task "
        "the multi-task job trained on (RQ1, RQ5) -- the evaluated task itself included, "
        "because a test unit that is also in its own task's training data inflates both "
        "systems, and only units neither system saw in training measure transfer -- or, for "
        "RQ2, of any task either source job trained on plus the held-out task (its fresh "
        "head trains on it); both systems of a comparison are scored on the same clean units "
        "so they stay paired")
PRETRAINING = ("Pretraining contamination is not measured: that needs the encoders' "
               "pretraining corpora. PubMedBERT and BioBERT were pretrained on PubMed text, "
               "and every one of these corpora was drawn from PubMed, so their test sentences "
               "may have been seen in pretraining; the clean-unit results do not control for "
               "that.")


# ---------------------------------------------------------------------------- the file
@dataclass
class Contamination:
    """What ``stats`` knows about contamination: the document when usable, else why not."""

    path: Path | None
    status: str  # USED | REFUSED | ABSENT
    reason: str | None = None  # one line when not USED
    doc: dict[str, Any] | None = None
    checked: list[str] = field(default_factory=list)  # what the file was verified against

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

    def excluded(self, task: str, train_tasks: list[str]) -> frozenset[str] | str:
        """Test units of ``task`` overlapping a training unit of any of ``train_tasks``, or
        why that cannot be said."""
        pairs = self.doc["overlap"].get(task, {}).get(SPLIT)
        if pairs is None:
            return f"{task} is not among the contamination file's tasks"
        missing = sorted(a for a in train_tasks if a not in pairs)
        if missing:
            return f"training task(s) {', '.join(missing)} not among the contamination file's tasks"
        return frozenset(u for a in train_tasks for key in ("exact", "ngram")
                         for u in pairs[a][key])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise StatsInputError(path, "contamination file missing") from None
    except (OSError, ValueError) as err:
        raise StatsInputError(path, f"not a readable JSON file ({err})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise StatsInputError(path, f"expected {SCHEMA!r}, got {got!r}", where="schema")
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


def verify(path: Path, doc: dict[str, Any], jobs: list[JobResult]) -> list[str]:
    """What the file was checked against (StatsInputError naming it when a check fails)."""
    data_dir = path.parent
    sums = read_checksums(data_dir / CHECKSUMS)
    checked = []
    own = sums.get(path.name)
    if own is not None:
        if own != sha256_file(path):
            raise StatsInputError(path, f"its sha256 differs from its line in "
                                  f"{data_dir / CHECKSUMS}: the file was edited; run `python "
                                  "-m runner contamination` again")
        checked.append(f"its line in {data_dir / CHECKSUMS}")
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
                raise StatsInputError(path, f"stale: {data_dir / CHECKSUMS} lists another "
                                      f"sha256 for {rel}", where=f"data_checksums.{rel}")
            listed += 1
    if hashed:
        checked.append(f"the {hashed} data file(s) beside it")
    if listed:
        checked.append(f"{listed} {CHECKSUMS} line(s)")
    agreeing = _check_jobs(path, doc, jobs)
    if agreeing:
        checked.append(f"provenance.data_checksums of {agreeing} job(s)")
    if not checked:
        raise StatsInputError(path, "cannot be verified: no data file of its data_checksums "
                              f"is beside it or listed in a {CHECKSUMS} there, and no result "
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


# ------------------------------------------------------------------------ overlap table
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


# ---------------------------------------------------------------- clean-unit analysis
@dataclass
class CleanStudy(Study):
    """A study whose predictions are cut to clean units: ``exclude`` maps a task to the
    unit ids left out; each job's metrics are already recomputed on what is left."""

    full: Study | None = None
    exclude: dict[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        # the systems keep the names they have in the full study (task sets in brackets)
        self.label = {j.job_id: self.full.system(j) for j in self.jobs}

    def predictions(self, job: JobResult, task: str):
        key = (job.job_id, task)
        if key not in self._predictions:
            got = self.full.predictions(self.full.by_id[job.job_id], task)
            if not isinstance(got, str):
                kind, spec, frame = got
                got = (kind, spec, frame[~frame.index.isin(self.exclude.get(task, ()))])
            self._predictions[key] = got
        return self._predictions[key]


def clean_metrics(study: Study, job: JobResult, task: str, excluded: frozenset[str]):
    """(every recomputable metric of the job's task on the clean units, the job's unit ids),
    or why not."""
    got = study.predictions(job, task)
    if isinstance(got, str):
        return got
    kind, spec, frame = got
    primary = job.per_task[task].primary_metric
    if primary not in metric_names(kind, spec):
        return f"{task}: {primary} cannot be recomputed from stat_spec kind {kind!r}"
    keep = frame[~frame.index.isin(excluded)]
    if keep.empty:
        return (f"all {len(frame)} test units of {task} in job {job.job_id}'s predictions "
                "overlap the training data")
    values = point_metrics(kind, spec, keep)
    if not math.isfinite(values[primary]):
        return f"{primary} is undefined on the {len(keep)} clean units of {task} (job {job.job_id})"
    return {k: v for k, v in values.items() if math.isfinite(v)}, frame.index


def _relevant_jobs(study: Study, train: frozenset[str]) -> list[JobResult]:
    """The multi-task jobs trained on exactly ``train``, the single-task jobs of its tasks,
    and the token-controlled jobs referencing those multi-task jobs."""
    mt_ids = {j.job_id for j in study.jobs if j.strategy == MT and frozenset(j.tasks) == train}
    return [j for j in study.jobs if j.job_id in mt_ids
            or (j.strategy == ST and set(j.tasks) <= train)
            or (j.strategy == TC and (j.parity or {}).get("reference_job") in mt_ids)]


def clean_group(study: Study, cont: Contamination, train: frozenset[str]) -> dict[str, Any]:
    """RQ1 and RQ5 of the multi-task systems trained on ``train``, on the clean units."""
    tasks = sorted(train)
    exclude: dict[str, frozenset[str]] = {}
    reasons: dict[str, str] = {}
    for task in tasks:
        got = cont.excluded(task, tasks)
        if isinstance(got, str):
            reasons[task] = got
        else:
            exclude[task] = got
    jobs = _relevant_jobs(study, train)
    metrics: dict[tuple[str, str], dict[str, float]] = {}
    seen: dict[str, set[str]] = {}
    for job in jobs:
        for task in (t for t in job.tasks if t not in reasons):
            got = clean_metrics(study, job, task, exclude[task])
            if isinstance(got, str):
                reasons[task] = got
                continue
            metrics[job.job_id, task] = got[0]
            seen.setdefault(task, set()).update(got[1])
    clean_jobs = [c for j in jobs if (c := _clean_job(j, metrics, reasons)) is not None]
    cs = CleanStudy(clean_jobs, [], study.options, full=study, exclude=exclude)
    rq1 = multitask_comparisons(cs, bootstrap=True)
    systems = {(m, s, e, t): system_summary(cs, m, s, e, t, bootstrap=False)
               for m in cs.models() for s in (ST, MT, TC) for e in cs.experiments(m, s)
               for t in cs.tasks_of(m, s, e)}
    units = {t: {"test_units": len(ids), "dropped": len(ids & exclude[t]),
                 "clean": len(ids - exclude[t]),
                 "overlapping_in_split": len(exclude[t]),
                 "split_units": cont.doc["units"][t][SPLIT]} for t, ids in seen.items()}
    return {"train_tasks": tasks, "reasons": reasons, "units": units, "rq1": rq1,
            "rq5": rq5_groups(cs, rq1, systems, bootstrap=True), "notes": cs.notes}


def _clean_job(job: JobResult, metrics: dict, reasons: dict[str, str]) -> JobResult | None:
    tasks = tuple(t for t in job.tasks if t not in reasons)
    if not tasks:
        return None
    per_task = {t: replace(job.per_task[t], metrics=metrics[job.job_id, t], best_weights=None)
                for t in tasks}
    return replace(job, tasks=tasks, per_task=per_task)


def _find_row(families: list[dict[str, Any]], match: dict[str, Any], task: str):
    for fam in families:
        if all(fam.get(k) == v for k, v in match.items()):
            return next((r for r in fam["rows"] if r["task"] == task), None)
    return None


def _entry(group: dict[str, Any], task: str, row: dict[str, Any] | None) -> dict[str, Any]:
    """A row's ``clean`` entry: the clean comparison plus which units it left out."""
    base = {"train_tasks": group["train_tasks"], "units": group["units"].get(task)}
    if task in group["reasons"]:
        return {"n": 0, "p_holm": None, "significant": None, **base,
                "reason": group["reasons"][task]}
    if row is None or not row.get("n"):
        why = (row or {}).get("reason") or "no clean-unit comparison"
        return {"n": 0, "p_holm": None, "significant": None, **base, "reason": why}
    # the sensitivity alternatives are full-test ones: not repeated on clean units
    return {**{k: v for k, v in row.items() if k != "sensitivity"}, **base}


def attach_clean(study: Study, analysis: Analysis, cont: Contamination) -> int:
    """Add ``clean`` to every compared RQ1 and RQ5 row; return how many rows got one."""
    groups: dict[frozenset[str], dict[str, Any]] = {}

    def group(row: dict[str, Any]) -> dict[str, Any]:
        train = frozenset(study.by_id[row["job_ids_a"][0]].tasks)
        if train not in groups:
            groups[train] = clean_group(study, cont, train)
        return groups[train]

    done = 0
    for fam in analysis.multitask:
        keys = ("model", "multi_task_experiment", "single_task_experiment")
        for row in (r for r in fam["rows"] if r.get("n")):
            g = group(row)
            found = _find_row(g["rq1"], {k: fam[k] for k in keys}, row["task"])
            row["clean"] = _entry(g, row["task"], found)
            done += 1
    for fam in analysis.rq5:
        keys = ("model", "multi_task_experiment", "token_controlled_experiment")
        for row in (r for r in fam["rows"] if "parity_summary" in r):
            g = group(row)
            found = _find_row(g["rq5"], {k: fam[k] for k in keys}, row["task"])
            row["clean"] = _entry(g, row["task"], found)
            done += 1
    for g in groups.values():
        for text in g["notes"]:
            study.note(f"clean units (trained on {'+'.join(g['train_tasks'])}): {text}")
    return done


# --------------------------------------------------------------------- what changes
FINDING_TEXT = {
    "MT better": "multi-task is significantly better than single-task",
    "ST better": "single-task is significantly better than multi-task",
    "no significant difference": "there is no significant difference",
}


def finding(row: dict[str, Any], delta_key: str = "mean_diff") -> str | None:
    """Significance in words: MT better / ST better / no significant difference; None when
    there is no test (one seed, no predictions)."""
    if row.get("p_holm") is None or row.get(delta_key) is None:
        return None
    if row.get("significant"):
        return "MT better" if row[delta_key] > 0 else "ST better"
    return "no significant difference"


def dropped_text(clean: dict[str, Any]) -> str:
    """"60 of 300 dropped: they overlap training units of bc2gm, chemprot or jnlpba"."""
    u, tasks = clean["units"], clean["train_tasks"]
    names = tasks[0] if len(tasks) == 1 else f"{', '.join(tasks[:-1])} or {tasks[-1]}"
    return (f"{u['dropped']} of {u['test_units']} dropped: they overlap training units of "
            f"{names}")


def units_text(clean: dict[str, Any]) -> str:
    if not clean.get("units"):
        return "clean units"
    return f"{clean['units']['clean']} clean test units ({dropped_text(clean)})"


NO_FINDING = ("no significant difference", "not shown")


def change_sentence(rq: str, title: str, row: dict[str, Any], full: str | None,
                    clean: str | None, numbers: tuple[str, str]) -> str | None:
    """The plain-words sentence for a comparison whose finding (RQ1, RQ2: significance;
    RQ5: the verdict) differs on the clean units; None when it does not, or when the full
    test set has no finding to compare."""
    if full is None or full == clean:
        return None
    c = row["clean"]

    def words(f: str | None) -> str:
        if f is None:
            return f"no test is possible ({c.get('reason')})"
        return f"the verdict is {f!r}" if rq == "RQ5" else FINDING_TEXT[f]

    end = ("The clean units show a result the full test set does not." if full in NO_FINDING
           else "The full-test result does not hold once the test units seen in training "
                "are left out.")
    return (f"{rq} {title}, {row['task']}: on the full test set {words(full)} ({numbers[0]}), "
            f"but on the {units_text(c)} {words(clean)} ({numbers[1]}). {end}")
