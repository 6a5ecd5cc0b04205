"""What ``plan`` and ``status`` print: the job table, the status screen (text and JSON) and
the study's ETA, which every executor also prints before each job it starts.

Every duration on the status screen (a running job's ETA, its heartbeat's age, the rest of
the study's ETA) is written by one helper, runner.observe.progress.fmt_duration.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from runner.observe.progress import fmt_duration, status_eta, status_rows, study_eta, study_line
from runner.orchestrate.ledger import Ledger, Snapshot
from runner.orchestrate.states import STATES, counts_line, job_states
from runner.study.plan import Plan
from runner.study.strategies import STRATEGIES


def format_plan(plan: Plan, states: dict[str, str]) -> str:
    """The job table, then counts per strategy and per state, and the total."""
    header = ("job_id", "experiment", "strategy", "model", "tasks", "seed", "depends_on",
              "state")
    rows = [(j.job_id, j.experiment, j.strategy, j.model, "+".join(j.tasks), str(j.seed),
             ",".join(j.depends_on) or "-", states[j.job_id]) for j in plan.jobs]
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header).rstrip()]
    lines.extend(fmt.format(*row).rstrip() for row in rows)
    lines.append("")
    lines.append(counts_line("per strategy", Counter(j.strategy for j in plan.jobs),
                              tuple(STRATEGIES)))
    lines.append(counts_line("per state", Counter(states.values()), STATES))
    lines.append(f"total: {len(plan.jobs)} jobs")
    return "\n".join(lines)



def job_sizes(plan: Plan) -> dict[str, float]:
    """Planned real training tokens per job (runner.observe.estimate), the study ETA's unit
    of work; {} when the data's token counts are missing (the ETA then counts mean jobs)."""
    if plan.manifest is None:
        return {}
    from runner.observe.estimate import job_sizes as sizes
    try:
        return {s.job_id: s.train_tokens for s in sizes(plan)}
    except Exception:  # noqa: BLE001 -- an ETA never stops a command
        return {}



class StudyEta:
    """The study's ETA from the measured speed of its finished jobs (ledger durations) and the
    running jobs' own ETAs (their heartbeats), shared by the workers running now."""

    def __init__(self, plan: Plan, ledger: Ledger, sizes: dict[str, float] | None = None,
                 use_sizes: bool = True):
        self.plan, self.ledger = plan, ledger
        self._sizes, self.use_sizes = sizes, use_sizes

    @property
    def sizes(self) -> dict[str, float]:   # computed once, and only once a job has finished
        if self._sizes is None:
            self._sizes = job_sizes(self.plan)
        return self._sizes

    def seconds(self, snap: Snapshot, states: dict[str, str],
                starting: str | None = None) -> float | None:
        finished = self.ledger.job_durations()
        if not finished:
            return None
        running = [jid for jid, st in states.items() if st == "running" and jid != starting]
        pending = [jid for jid, st in states.items()   # failed/blocked ones do not run
                   if jid == starting or st in ("ready", "pending", "interrupted", "stale")]
        now = snap.taken_at
        left = [status_eta(snap.claims[j].progress, snap.claims[j].last_beat, now,
                           snap.claims[j].info.get("claimed_at")) for j in running]
        workers = len({snap.claims[j].info.get("worker") for j in running}
                      | ({"me"} if starting else set())) or 1
        if self._sizes is None and not self.use_sizes:
            # `status`: no token projection (0.5 s at 10,000 jobs); a pending job counts the
            # mean duration of its experiment's finished jobs (of all finished jobs if none)
            per_exp: dict[str, list[float]] = {}
            for exp, sec in finished.values():
                per_exp.setdefault(exp, []).append(sec)
            mean = {e: sum(v) / len(v) for e, v in per_exp.items()}
            exp_of = {j.job_id: j.experiment for j in self.plan.jobs}
            return study_eta([(sec, mean[exp]) for exp, sec in finished.values()],
                             [mean.get(exp_of[j]) for j in pending], left, workers)
        return study_eta([(sec, self.sizes.get(jid)) for jid, (_, sec) in finished.items()],
                         [self.sizes.get(j) for j in pending], left, workers)

    def line(self, snap: Snapshot, starting: str) -> str:
        states = job_states(self.plan.jobs, snap)
        counts = Counter(states.values())
        running = counts.get("running", 0) + (states.get(starting) != "running")
        return study_line(done=counts.get("done", 0), total=len(self.plan.jobs),
                          running=running, eta_s=self.seconds(snap, states, starting),
                          failed=counts.get("failed", 0))



def _job_eta(progress: dict, last_beat: float, now: float, claimed_at) -> float | None:
    """A running job's ETA: the worker's own (eta_s); for a heartbeat without one but with
    the attempt's elapsed_s, the mean speed over that time; else from the claim's age."""
    elapsed = progress.get("elapsed_s")
    step, total = progress.get("step"), progress.get("total_steps")
    if progress.get("eta_s") is None and isinstance(elapsed, (int, float)) \
            and isinstance(step, (int, float)) and isinstance(total, (int, float)) and step > 0:
        return max(0.0, elapsed * (total - step) / step - max(0.0, now - last_beat))
    return status_eta(progress, last_beat, now, claimed_at)



def format_status(plan: Plan, ledger: Ledger, snap: Snapshot, states: dict[str, str]) -> str:
    """Counts per state, progress of running jobs, failed jobs with their reason."""
    counts = Counter(states.values())
    lines = [f"study {plan.manifest.study.name}: {len(plan.jobs)} jobs in {ledger.root}",
             counts_line("per state", counts, STATES)]
    running = [j for j in plan.jobs if states[j.job_id] in ("running", "stale")]
    if running:
        lines.append("running:")
    for job in running:
        c = snap.claims[job.job_id]
        p = c.progress
        step, total = p.get("step"), p.get("total_steps")
        tokens, target = p.get("tokens"), p.get("target_tokens")
        eta = _job_eta(p, c.last_beat, snap.taken_at, c.info.get("claimed_at"))
        head = (f"  {job.job_id} {job.experiment} {job.model} {'+'.join(job.tasks)} "
                f"seed {job.seed}: {states[job.job_id]}, worker {c.info.get('worker', '?')}")
        parts = [head]
        if step is not None:
            parts.append(f"step {step}/{total if total is not None else '?'}")
        if tokens is not None:
            parts.append(f"tokens {tokens}" + (f"/{target}" if target is not None else ""))
        if p.get("phase"):
            parts.append(str(p["phase"]))
        parts.append(f"ETA {fmt_duration(eta)}")
        parts.append(f"heartbeat {fmt_duration(snap.taken_at - c.last_beat)} ago")
        lines.append(", ".join(parts))
    failed = [j for j in plan.jobs if states[j.job_id] == "failed"]
    if failed:
        lines.append("failed (rerun with --retry-failed):")
    for job in failed:
        reason = ledger.failure(job.job_id).get("reason", "?")
        lines.append(f"  {job.job_id} {job.experiment} {job.model} {'+'.join(job.tasks)} "
                     f"seed {job.seed}: {reason}")
    blocked = [j for j in plan.jobs if states[j.job_id] == "blocked"]
    if blocked:
        lines.append(f"blocked: {len(blocked)} jobs wait on failed jobs "
                     f"({', '.join(sorted({d for j in blocked for d in j.depends_on}))})")
    if any(st not in ("done", "failed", "blocked") for st in states.values()):
        rest = StudyEta(plan, ledger, use_sizes=False).seconds(snap, states)
        lines.append(f"rest of the study: ETA {fmt_duration(rest)} (from the measured speed "
                     f"of its finished jobs; ? until one has finished)")
    return "\n".join(lines)



def status_json(plan: Plan, ledger: Ledger, snap: Snapshot, states: dict[str, str]) -> dict:
    """`status --json`: counts per state, the running jobs (worker, step/tokens, heartbeat
    age, ETA), the failed jobs' reasons and the ETA of the rest of the study."""
    running = [j.job_id for j in plan.jobs if states[j.job_id] in ("running", "stale")]
    rows = status_rows([{"job_id": jid, "worker": snap.claims[jid].info.get("worker"),
                         "progress": snap.claims[jid].progress,
                         "last_beat": snap.claims[jid].last_beat,
                         "claimed_at": snap.claims[jid].info.get("claimed_at")}
                        for jid in running], snap.taken_at)
    for row in rows:
        c = snap.claims[row["job_id"]]
        row["state"] = states[row["job_id"]]
        row["eta_s"] = _job_eta(c.progress, c.last_beat, snap.taken_at, c.info.get("claimed_at"))
    left = None
    if any(st not in ("done", "failed", "blocked") for st in states.values()):
        left = StudyEta(plan, ledger, use_sizes=False).seconds(snap, states)
    return {"study": plan.manifest.study.name, "results_dir": str(ledger.root),
            "total": len(plan.jobs), "counts": dict(Counter(states.values())),
            "running": rows,
            "failed": {j.job_id: ledger.failure(j.job_id).get("reason")
                       for j in plan.jobs if states[j.job_id] == "failed"},
            "study_eta_s": left}



def status(plan: Plan, results_dir: str | Path, as_json: bool = False) -> str:
    ledger = Ledger(results_dir)
    # done = a result that proves it (parses, names the job, predictions' digests match)
    snap = ledger.snapshot((j.job_id for j in plan.jobs), verify=True)
    states = job_states(plan.jobs, snap)
    if as_json:
        return json.dumps(status_json(plan, ledger, snap, states), indent=1)
    return format_status(plan, ledger, snap, states)



def plan_table(plan: Plan, results_dir: str | Path) -> str:
    ledger = Ledger(results_dir)
    snap = ledger.snapshot((j.job_id for j in plan.jobs), verify=True)
    return format_plan(plan, job_states(plan.jobs, snap))
