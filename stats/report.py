"""``build_paper``: results folders -> paper/ (CSV, statistics.json, tables, figures, SUMMARY).

The work is a list of *sections* (:data:`SECTIONS`) run in order on one shared context (the
loaded study and the core analysis). Each section returns its tables, figures,
statistics.json entries and SUMMARY.txt blocks; nothing is written until every section has
run, and then each file is written atomically. A new analysis is one more entry in
``SECTIONS`` (or ``sections=``) -- no other code changes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from mtl_contract.files import atomic_write_json, atomic_write_text, json_safe
from stats.core.analysis import analyse
from stats.core.clean_units import attach_clean
from stats.core.significance import NOT_TESTABLE
from stats.core.study import Options, Study
from stats.fileio import StatsInputError, atomic_savefig
from stats.questions import contamination, rq1, rq2, rq3, rq4, rq5, study
from stats.questions.answers import answers
from stats.questions.context import Context, Section, SectionOutput, SummaryBlock
from stats.read.contamination import Contamination, load_contamination, untied_tasks
from stats.read.results import RefusedResults, load_results
from stats.render import figures
from stats.render.latex import environment, latex_escape
from stats.render.summary import summary_text

FIGURE_FORMATS = ("pdf", "png")

SECTIONS: list[Section] = [
    Section("data", (), study.dataset_section),
    Section("single_task", (), study.single_task_section),
    Section("rq1", ("RQ1",), rq1.section),
    Section("rq5", ("RQ5",), rq5.section),
    Section("rq2", ("RQ2",), rq2.section),
    Section("rq3", ("RQ3",), rq3.section),
    Section("rq4", ("RQ4",), rq4.section),
    # after rq2: it reads the RQ2 rows' clean-unit results from ctx.shared
    Section("contamination", (), contamination.section),
    Section("blurb", (), study.blurb_section),
    Section("figures", (), study.figures_section),
]
RESEARCH_QUESTIONS = ("RQ1", "RQ2", "RQ3", "RQ4", "RQ5")


def build_paper(out: str | Path, results: list[str | Path], options: Options | None = None,
                sections: list[Section] | None = None,
                contamination: str | Path | None = None) -> dict[str, Any]:
    """Read ``results``, run every section, write every output into ``out``.

    ``contamination``: the contamination file; a usable one adds every
    comparison's clean-unit result; one that fails its checks is refused (the paper is built
    from the full test sets and says why); None: not measured.

    Returns {"written": [paths], "jobs": n, "skipped": [...], "contamination": {...}}. Raises
    :class:`stats.fileio.StatsInputError` when a results folder does not exist or OUT is
    not a folder, and :class:`stats.read.results.RefusedResults` (one line per result) when
    a result must not be published: nothing is written then.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StatsInputError(out, "OUT exists and is not a folder")
    options = Options() if options is None else options
    sections = SECTIONS if sections is None else sections
    loaded = load_results(list(results))
    the_study = Study(loaded.jobs, loaded.skipped, options, not_run=loaded.not_run)
    # nothing wrong is published: a result stats cannot vouch for stops the
    # whole paper before anything is written
    refused = loaded.refused + the_study.verify()
    if refused:
        raise RefusedResults(refused)
    analysis = analyse(the_study)
    cont = load_contamination(contamination, the_study.jobs)
    if cont.usable:
        cont.untied = untied_tasks(cont.doc, the_study.jobs,
                                   lambda job, task: _unit_ids(the_study, job, task))
    clean_rows = attach_clean(the_study, analysis, cont) if cont.usable else 0
    source = ", ".join(str(r) for r in results)
    ctx = Context(the_study, analysis, environment(), options, latex_escape(source), cont)
    outputs = [s.run(ctx) for s in sections]

    written = _write_csv(out, the_study)
    statistics = _statistics_header(results, the_study, options, sections)
    for o in outputs:
        statistics.update(o.statistics)
        written += _write_section(out, o)
    blocks = [b for o in outputs for b in o.summary] + _uncovered(sections)
    # the Answers block opens SUMMARY.txt: read from the sections' statistics
    first, statistics["answers"] = answers(
        statistics, sorted({t for j in the_study.jobs for t in j.tasks}), options.alpha)
    text = summary_text(ctx.env, "Multi-task transfer study: summary",
                        _preamble(results, the_study, options, cont), blocks, first=[first])
    atomic_write_json(out / "statistics.json", json_safe(statistics, str_keys=True))
    written.append(out / "statistics.json")
    atomic_write_text(out / "SUMMARY.txt", text)
    written.append(out / "SUMMARY.txt")
    return {"written": [str(p) for p in written], "jobs": len(the_study.jobs),
            "skipped": [(s.path, s.reason) for s in the_study.skipped],
            "contamination": {"status": cont.status, "line": cont.describe(),
                              "tie_line": cont.tie_line(),
                              "clean_rows": clean_rows}}


def _unit_ids(the_study: Study, job, task: str):
    """The unit ids of a job's predictions for a task; None when they are unusable."""
    got = the_study.predictions(job, task)
    return None if isinstance(got, str) else got[2].index


def _write_csv(out: Path, the_study: Study) -> list[Path]:
    """all_results.csv: the tidy table, one row per job and task."""
    buf = io.StringIO()
    the_study.frame.to_csv(buf, index=False)
    atomic_write_text(out / "all_results.csv", buf.getvalue())
    return [out / "all_results.csv"]


def _write_section(out: Path, o: SectionOutput) -> list[Path]:
    """A section's tables and figures (each figure as PDF and PNG)."""
    written = []
    for name, text in o.tables.items():
        atomic_write_text(out / name, text)
        written.append(out / name)
    for stem, fig in o.figures.items():
        for fmt in FIGURE_FORMATS:
            atomic_savefig(fig, out / f"{stem}.{fmt}", dpi=150)
            written.append(out / f"{stem}.{fmt}")
        figures.release(fig)
    return written


def _statistics_header(results: list[str | Path], the_study: Study, options: Options,
                       sections: list[Section]) -> dict[str, Any]:
    """statistics.json's entries before the sections' own: what was read, and how."""
    return {
        "generated_by": "python -m stats",
        "options": {"alpha": options.alpha, "resamples": options.resamples,
                    "seed": options.seed, "parity_threshold": options.parity_threshold,
                    "level": options.level,
                    "equivalence_margin": options.equivalence_margin},
        "inputs": {"results": [str(r) for r in results], "jobs": len(the_study.jobs),
                   "skipped": [{"path": s.path, "reason": s.reason} for s in the_study.skipped],
                   "not_run": [{"job_id": n.job_id, "task": n.task, "seed": n.seed,
                                "reason": n.reason, "detail": n.detail}
                               for n in the_study.not_run]},
        "notes": the_study.notes,
        "sections": [s.name for s in sections],
    }


def _uncovered(sections: list[Section]) -> list[SummaryBlock]:
    """A block naming the research questions no section reports (``sections=`` subsets)."""
    covered = {q for s in sections for q in s.covers}
    other = [q for q in RESEARCH_QUESTIONS if q not in covered]
    if not other:
        return []
    return [SummaryBlock("Research questions without a section", [
        (f"{', '.join(other)}: no analysis section is registered in stats.report.SECTIONS, "
         "so these are not reported here.")])]


def _preamble(results: list[str | Path], the_study: Study, options: Options,
              cont: Contamination) -> list[str]:
    """SUMMARY.txt's opening lines: inputs, options, contamination, skipped files, notes."""
    lines = [f"results read from: {', '.join(str(r) for r in results)}",
             f"jobs used: {len(the_study.jobs)}; files skipped: {len(the_study.skipped)}",
             (f"alpha {options.alpha:g}; bootstrap {options.resamples} resamples, seed "
              f"{options.seed}, {100 * options.level:g}% percentile intervals; token parity "
              f"threshold {100 * options.parity_threshold:g}%; Holm correction across the "
              "tasks of each comparison"),
             (f"RQ5 equivalence margin ±{100 * options.equivalence_margin:g} points (data "
              "exposure needs the seed-level "
              f"{100 * (1 - 2 * options.alpha):g}% interval of MT − TC inside it; set with "
              "--equivalence-margin or the manifest's [stats] equivalence_margin, default 1 "
              "point)"),
             cont.describe()]
    lines += [cont.tie_line()] if cont.tie_line() else []
    lines += [f"skipped: {s.path}: {s.reason}" for s in the_study.skipped]
    if the_study.not_run:
        lines.append(f"not run: {len(the_study.not_run)} token-controlled jobs whose parity "
                     f"target was beyond their epoch cap (unreachable_parity = \"skip\"): "
                     f"their comparisons read \"{NOT_TESTABLE}\", not missing data")
    return lines + [f"note: {n}" for n in the_study.notes]
