"""Plan expansion: job counts, dependencies, and ids that name what a job computes."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.data.tasks import SPLITS
from runner.errors import InputError
from runner.ml.lora import encoder_lora_shape
from runner.study import design
from runner.study.manifest import load_manifest, parse_manifest
from runner.study.plan import build_plan

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = sorted((ROOT / "manifests").glob("*.toml"))

BASE = """\
[study]
name = "p"
seeds = [1, 2]

[[experiments]]
name = "st"
strategy = "single_task"
models = ["minilm", "biobert"]
tasks = ["bc2gm", "gad"]

[[experiments]]
name = "mt"
strategy = "multi_task"
models = ["minilm"]
task_sets = [["bc2gm", "gad"], ["chemprot", "ddi"]]

[[experiments]]
name = "tc"
strategy = "token_controlled"
reference = "mt"
"""


def ids(text: str, data_dir) -> dict[tuple, str]:
    """job_id by what the job is (a token-controlled job: by its reference's task set)."""
    plan = build_plan(parse_manifest(text, "m.toml"), data_dir)
    tasks = {j.job_id: j.tasks for j in plan.jobs}
    return {(j.strategy, j.model, j.tasks, j.seed, tuple(tasks[d] for d in j.depends_on)):
            j.job_id for j in plan.jobs}


def test_expansion_counts_and_dependencies(tmp_path):
    plan = build_plan(parse_manifest(BASE, "m.toml"), tmp_path)
    by = {}
    for j in plan.jobs:
        by.setdefault(j.strategy, []).append(j)
    assert len(by["single_task"]) == 2 * 2 * 2
    assert len(by["multi_task"]) == 2 * 2
    assert len(by["token_controlled"]) == 2 * 4   # one per task of each multi-task job
    mt_ids = {j.job_id: j for j in by["multi_task"]}
    for j in by["token_controlled"]:
        (ref,) = j.depends_on
        assert ref in mt_ids and j.tasks[0] in mt_ids[ref].tasks
        assert mt_ids[ref].seed == j.seed and mt_ids[ref].model == j.model
        assert j.parity == "total" and j.experiment_type == "token_controlled_baseline"
        assert j.config["batch_size"] == 16
    assert all(j.config["batch_size"] == 8 for j in by["multi_task"])
    assert len({j.job_id for j in plan.jobs}) == len(plan.jobs)
    assert all(len(j.job_id) == 12 and int(j.job_id, 16) >= 0 for j in plan.jobs)


def test_reordering_and_extending_never_renames_jobs(tmp_path):
    before = ids(BASE, tmp_path)
    exps = BASE.split("[[experiments]]")
    reordered = exps[0] + "[[experiments]]" + "[[experiments]]".join(reversed(exps[1:]))
    reordered = reordered.replace('"minilm", "biobert"', '"biobert", "minilm"')
    reordered = reordered.replace('["bc2gm", "gad"], ["chemprot", "ddi"]',
                                  '["ddi", "chemprot"], ["gad", "bc2gm"]')
    reordered = reordered.replace("seeds = [1, 2]", "seeds = [2, 1]")
    assert ids(reordered, tmp_path) == before
    extended = BASE.replace("seeds = [1, 2]", "seeds = [1, 2, 3]").replace(
        'tasks = ["bc2gm", "gad"]', 'tasks = ["bc2gm", "gad", "hoc"]')
    after = ids(extended, tmp_path)
    assert set(before.items()) <= set(after.items())
    assert len(after) > len(before)
    renamed = BASE.replace('name = "st"', 'name = "single"')
    assert ids(renamed, tmp_path) == before      # the experiment's name is not its identity


def test_ids_change_with_what_is_computed(tmp_path):
    before = ids(BASE, tmp_path)
    lr = ids(BASE + "learning_rate = 1e-5\n", tmp_path)  # tc experiment only
    changed = {k for k in before if before[k] != lr.get(k)}
    assert changed and all(k[0] == "token_controlled" for k in changed)
    parity = ids(BASE + 'parity = "per_task"\n', tmp_path)
    assert {k for k in before if before[k] != parity.get(k)} == changed
    # checkpoint cadence is not part of a job's identity
    assert ids(BASE.replace("[[experiments]]", "[defaults]\ncheckpoint_every_s = 10.0\n\n"
                            "[[experiments]]", 1), tmp_path) == before
    # multi-task sampling settings never rename single-task jobs
    sampled = ids(BASE.replace("[[experiments]]", "[defaults]\nsampling = \"capped\"\n"
                               "examples_cap = 1000\n\n[[experiments]]", 1), tmp_path)
    assert all(sampled[k] == v for k, v in before.items() if k[0] == "single_task")
    assert all(sampled.get(k) != v for k, v in before.items() if k[0] != "single_task")


def write_sums(folder: Path, tasks, digest=lambda rel: "a" * 64) -> None:
    """A SHA256SUMS with a line for every split of ``tasks`` (planning reads only the lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    rels = [f"{t}/{s}.parquet" for t in tasks for s in SPLITS]
    (folder / "SHA256SUMS").write_text("".join(f"{digest(r)}  {r}\n" for r in rels))


BASE_TASKS = ("bc2gm", "gad", "chemprot", "ddi")


def test_data_checksums_are_part_of_the_id(tmp_path):
    before = ids(BASE, tmp_path)                  # a plan without data
    write_sums(tmp_path, BASE_TASKS)
    with_data = ids(BASE, tmp_path)
    assert set(with_data) == set(before) and not set(with_data.values()) & set(before.values())
    write_sums(tmp_path, BASE_TASKS, lambda rel: ("b" if rel == "gad/train.parquet" else "a") * 64)
    plan = build_plan(parse_manifest(BASE, "m.toml"), tmp_path)
    after = ids(BASE, tmp_path)
    for key, job_id in with_data.items():
        touches = "gad" in set(key[2]) | {t for ts in key[4] for t in ts}
        assert (after[key] != job_id) == touches, key
    gad = next(j for j in plan.jobs if j.tasks == ("gad",) and j.strategy == "single_task")
    assert gad.data_checksums == {"gad/train.parquet": "b" * 64,
                                  "gad/validation.parquet": "a" * 64,
                                  "gad/test.parquet": "a" * 64}
    (tmp_path / "SHA256SUMS").write_text("not a checksum line\n")
    with pytest.raises(InputError, match="SHA256SUMS:1"):
        build_plan(parse_manifest(BASE, "m.toml"), tmp_path)


def test_a_checksum_file_without_a_line_for_a_file_a_job_reads_is_bad_input(tmp_path):
    write_sums(tmp_path, ("bc2gm", "chemprot", "ddi"))   # gad's lines removed
    for require_data in (False, True):
        with pytest.raises(InputError, match=r"SHA256SUMS: no line for gad/train\.parquet"):
            build_plan(parse_manifest(BASE, "m.toml"), tmp_path, require_data=require_data)
    lines = (tmp_path / "SHA256SUMS").read_text()
    write_sums(tmp_path, ("gad",))
    (tmp_path / "SHA256SUMS").write_text(lines + (tmp_path / "SHA256SUMS").read_text()
                                         .replace("gad/test", "gad/validation"))
    with pytest.raises(InputError, match=r"SHA256SUMS:\d+: gad/validation\.parquet is listed "
                                         r"twice"):
        build_plan(parse_manifest(BASE, "m.toml"), tmp_path)


def test_a_plan_that_needs_data_refuses_a_missing_folder_or_checksum_file(tmp_path):
    manifest = parse_manifest(BASE, "m.toml")
    with pytest.raises(InputError, match=r"SHA256SUMS: checksum file missing"):
        build_plan(manifest, tmp_path, require_data=True)
    with pytest.raises(InputError, match=r"nowhere: --data-dir: no such folder"):
        build_plan(manifest, tmp_path / "nowhere", require_data=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match=r"file: --data-dir: is not a folder"):
        build_plan(manifest, tmp_path / "file", require_data=True)
    write_sums(tmp_path, BASE_TASKS)
    assert all(len(j.data_checksums) == 3 * len(j.tasks)
               for j in build_plan(manifest, tmp_path, require_data=True).jobs)


@pytest.mark.parametrize("line,accepted", [
    (f"{'A' * 64}  gad/train.parquet", True),      # upper-case hex
    (f"{'a' * 64} *gad/train.parquet", True),      # sha256sum's binary mode
    (f"{'a' * 64} gad/train.parquet", False),      # one space: not sha256sum's format
    (f"# {'a' * 64}  gad/train.parquet", False),   # sha256sum -c has no comments
    (f"{'a' * 63}  gad/train.parquet", False),
    (f"{'g' * 64}  gad/train.parquet", False),
])
def test_planning_and_verification_read_sha256sums_by_one_rule(tmp_path, line, accepted):
    """The plan and the check before a job trains read SHA256SUMS with the same parser."""
    from runner.data.splits import verify_checksums

    write_sums(tmp_path, ["gad"])
    text = (tmp_path / "SHA256SUMS").read_text().splitlines()
    (tmp_path / "SHA256SUMS").write_text("\n".join([line] + text[1:]) + "\n")
    (tmp_path / "gad").mkdir()
    for split in SPLITS:
        (tmp_path / "gad" / f"{split}.parquet").write_bytes(b"x")
    manifest = parse_manifest(BASE.replace('"bc2gm", "gad"]', '"gad"]', 1)
                              .split("[[experiments]]\nname = \"mt\"")[0], "m.toml")
    outcomes = []
    for read in (lambda: build_plan(manifest, tmp_path, require_data=True),
                 lambda: verify_checksums(tmp_path, ["gad"])):
        try:
            read()
            outcomes.append("read")
        except InputError as err:
            outcomes.append("malformed" if "SHA256SUMS:1:" in str(err) else "read")
    assert outcomes == (["read", "read"] if accepted else ["malformed", "malformed"])


def test_the_same_job_twice_is_an_input_error(tmp_path):
    text = BASE + ('\n[[experiments]]\nname = "st2"\nstrategy = "single_task"\n'
                   'models = ["minilm"]\ntasks = ["gad"]\n')
    with pytest.raises(InputError, match="repeats job"):
        build_plan(parse_manifest(text, "m.toml"), tmp_path)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_manifest_loads_and_plans(path, tmp_path):
    plan = build_plan(load_manifest(path), tmp_path, encoder_shape=encoder_lora_shape)
    assert plan.jobs
    known = {j.job_id for j in plan.jobs}
    assert all(d in known for j in plan.jobs for d in j.depends_on)
    # also with the real prepared data, where it exists
    if (ROOT / "data" / "SHA256SUMS").exists():
        real = build_plan(load_manifest(path), ROOT / "data", encoder_shape=encoder_lora_shape)
        assert len(real.jobs) == len(plan.jobs)
        # the design check `plan` prints runs on every shipped manifest (a text control's
        # planned steps are its multi-task job's: it has no epoch cap)
        check = design.check(real, tmp_path / "no-results")
        assert design.render(check)


def test_shipped_manifest_sizes(tmp_path):
    def n(name, strategy=None):
        jobs = build_plan(load_manifest(ROOT / "manifests" / name), tmp_path).jobs
        return len([j for j in jobs if strategy in (None, j.strategy)])
    # three seeds: the fewest with which the phases' paired tests mean anything
    assert n("phase1_single_task.toml") == 3 * 8 * 3
    assert n("phase2_multi_task.toml") == 3 * 4 * 3
    assert n("phase3_token_controlled.toml") == 3 * (4 + 15 + 8) * 3
    assert n("full_study.toml", "single_task") == 4 * 8 * 5
    assert n("full_study.toml", "token_controlled") == 4 * 5 * (2 + 2 + 3 + 8) * 2
    demo = build_plan(load_manifest(ROOT / "manifests/demo.toml"), tmp_path).jobs
    assert {j.strategy for j in demo} == {"single_task", "multi_task", "token_controlled"}
    assert all(j.model == "minilm" for j in demo)


def test_job_id_is_the_hash_of_the_documented_identity(tmp_path):
    from runner.study.models import model_key
    from runner.study.plan import NOT_IN_ID, job_id_of

    write_sums(tmp_path, BASE_TASKS, lambda rel: "c" * 64)
    manifest = parse_manifest(BASE, "m.toml")
    plan = build_plan(manifest, tmp_path)
    for job in plan.jobs:
        identity = {"strategy": job.strategy, "model": model_key(job.model),
                    "tasks": list(job.tasks), "seed": job.seed,
                    "config": {k: v for k, v in job.config.items() if k not in NOT_IN_ID},
                    "parity": job.parity,
                    "reference_job": job.depends_on[0] if job.depends_on else None,
                    "data_checksums": job.data_checksums}
        assert job.job_id == job_id_of(identity)


# ------------------------------------------------------------------ models resolve here?
@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache, and a record of what touched the network or loaded."""
    import huggingface_hub
    from huggingface_hub import constants

    calls = Calls(probe=[], load=[])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata",
                        lambda url, **kw: calls["probe"].append((url, kw)))
    # the loader `runner run` hands the model check, recording instead of loading
    calls.loader = lambda name, **kw: calls["load"].append((name, kw))
    return calls


class Calls(dict):
    """What the ``hub`` fixture recorded, and its ``loader``."""

    loader = None


def test_a_hub_model_offline_and_not_cached_is_refused_without_the_network(hub, monkeypatch):
    import runner.study.models as registry

    monkeypatch.setattr(registry, "hub_offline", lambda: True)
    tried, why = registry.model_problem("nobody/no-such-model", hub.loader)
    assert tried == "hub id nobody/no-such-model" and "HF_HUB_OFFLINE=1" in why
    assert hub == {"probe": [], "load": []}


def test_online_one_short_probe_of_the_hub_decides(hub, monkeypatch):
    """Both branches forced: the hub answers (config and tokenizer fetched, no weights) or
    not (refused after one request with a short timeout, nothing loaded)."""
    import huggingface_hub

    import runner.study.models as registry

    monkeypatch.setattr(registry, "hub_offline", lambda: False)
    assert registry.model_problem("org/model", hub.loader) == ("hub id org/model", None)
    ((url, kw),) = hub["probe"]
    assert "org/model" in url and "config.json" in url and kw["timeout"] <= 10
    assert hub["load"] == [("org/model", {})]

    def unreachable(url, **kw):
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    hub["load"].clear()
    assert registry.model_problem("org/model", hub.loader) == (
        "hub id org/model",
        "the hub did not serve it (ConnectionError: [Errno -2] Name or service not known)")
    assert hub["load"] == []


def test_a_cached_hub_model_loads_from_the_cache_only(hub, monkeypatch, tmp_path):
    import runner.study.models as registry

    snap = tmp_path / "hf-cache/models--org--cached/snapshots/abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (tmp_path / "hf-cache/models--org--cached/refs").mkdir()
    (tmp_path / "hf-cache/models--org--cached/refs/main").write_text("abc123")
    monkeypatch.setattr(registry, "hub_offline", lambda: True)
    assert registry.whereabouts("org/cached").state == "here"
    assert registry.model_problem("org/cached", hub.loader) == ("hub id org/cached", None)
    assert hub == {"probe": [], "load": [("org/cached", {"local_files_only": True})]}

    def no_tokenizer(name, **kw):
        raise OSError("tokenizer.json not in the cache")

    assert "only partly in the Hugging Face cache" in registry.model_problem("org/cached",
                                                                             no_tokenizer)[1]


def test_local_folders_load_config_and_tokenizer_without_weights(tmp_path):
    from runner.ml.pretrained import load_config_and_tokenizer as load
    from runner.study.models import model_problem, resolve_model

    minilm = resolve_model("minilm")   # the demo's packaged folder
    assert model_problem(minilm, load) == (f"local folder {minilm}", None)
    assert model_problem(str(tmp_path / "nowhere" / "model"), load)[1] == "no such folder"
    assert model_problem(str(tmp_path), load)[1] == "no config.json in it"
    (tmp_path / "config.json").write_text("{}")
    assert model_problem(str(tmp_path), load)[1].startswith("does not load (ValueError: ")


def test_check_models_names_the_alias_its_manifest_line_and_what_to_do(hub, monkeypatch):
    import runner.study.models as registry
    from runner.study.plan import check_models

    monkeypatch.setattr(registry, "hub_offline", lambda: True)
    path = ROOT / "manifests/phase3_token_controlled.toml"
    manifest = load_manifest(path)
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1)
                if t.startswith("models = "))
    with pytest.raises(InputError) as info:
        check_models(manifest, ["bert-base-uncased", "biobert", "bert-base-uncased",
                                "pubmedbert"], hub.loader)
    assert str(info.value) == (
        f"{path}:{line}: experiments[0].models: model 'bert-base-uncased' cannot be had "
        f"here: tried hub id bert-base-uncased: not in the Hugging Face cache, and "
        f"HF_HUB_OFFLINE=1 forbids fetching it; set HF_HUB_OFFLINE=0 on a machine with "
        f"network access (or fill the Hugging Face cache first), or point the alias at a "
        f"local folder: [models] bert-base-uncased = \"/path/to/folder\" (also: biobert, "
        f"pubmedbert)")
    assert hub == {"probe": [], "load": []}
