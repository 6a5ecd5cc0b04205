"""Manifest parsing: valid documents become frozen dataclasses, bad ones one InputError line."""

from __future__ import annotations

import dataclasses

import pytest

from runner.errors import InputError
from runner.study.manifest import HYPERPARAMETERS, parse_manifest

VALID = """\
[study]
name = "t"
seeds = [1, 2]

[defaults]
learning_rate = 3e-5
max_train_examples = {bc2gm = 100}

[models]
tiny = "/models/tiny"

[[experiments]]
name = "st"
strategy = "single_task"
models = ["tiny", "biobert"]
tasks = ["bc2gm", "gad"]
batch_size = 4

[[experiments]]
name = "mt"
strategy = "multi_task"
models = ["tiny"]
task_sets = [["gad", "bc2gm"]]
sampling = "temperature"
temperature = 2.0

[[experiments]]
name = "tc"
strategy = "token_controlled"
reference = "mt"
parity = "per_task"
"""


def test_valid_manifest_parses_into_frozen_dataclasses():
    m = parse_manifest(VALID, "v.toml")
    assert m.study.name == "t" and m.study.seeds == (1, 2)
    assert m.study.results == "results/t"
    assert [e.name for e in m.experiments] == ["st", "mt", "tc"]
    st, mt, tc = m.experiments
    assert st.task_sets == (("bc2gm",), ("gad",))
    assert mt.task_sets == (("bc2gm", "gad"),)      # a set: study order, not written order
    assert tc.models == ("tiny",) and tc.task_sets == mt.task_sets and tc.parity == "per_task"
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.study.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.defaults["learning_rate"] = 1.0  # type: ignore[index]


def test_resolved_config_layers_defaults_and_overrides():
    m = parse_manifest(VALID, "v.toml")
    st, mt, tc = m.experiments
    cfg = m.resolved_config(st, ("bc2gm",))
    # token_controlled_max_epochs is a token-controlled job's only; max_validation_examples
    # is in a config only where it names one of the job's tasks; the default warm-up:
    # warmup_steps with its cap, no warmup_ratio (runner.study.manifest warmup_config)
    assert set(cfg) == set(HYPERPARAMETERS) - {"token_controlled_max_epochs", "warmup_ratio",
                                               "max_validation_examples"} \
        | {"adapter", "warmup_cap"}
    assert cfg["learning_rate"] == 3e-5 and cfg["batch_size"] == 4
    assert cfg["max_train_examples"] == {"bc2gm": 100}
    assert m.resolved_config(st, ("gad",))["max_train_examples"] == {}
    assert cfg["warmup_steps"] == 500 and cfg["warmup_cap"] == 0.1
    assert cfg["patience"] == 3 and cfg["adapter"] is None
    mcfg = m.resolved_config(mt, mt.task_sets[0])
    assert mcfg["batch_size"] == 8 and mcfg["sampling"] == "temperature"
    assert mcfg["temperature"] == 2.0
    tcfg = m.resolved_config(tc, ("gad",))
    assert tcfg["batch_size"] == 16 and tcfg["sampling"] == "proportional"


def test_lengths_per_task_are_recorded_where_they_change_what_a_job_computes():
    """Every task is cut at max_length unless max_length_per_task lowers it; a job records
    the per-task lengths (and so changes its id) unless all of them are max_length and no
    task's former built-in cap (256 / 128) was lower -- such a job computes what it did."""
    def cfg(text, exp, tasks):
        m = parse_manifest(text, "v.toml")
        return m.resolved_config(m.experiments[exp], tasks)

    at_128 = _bad("learning_rate = 3e-5", "max_length = 128")
    assert "max_length_per_task" not in cfg(at_128, 0, ("gad",))
    assert "max_length_per_task" not in cfg(at_128, 1, ("bc2gm", "gad"))
    assert "max_length_per_task" not in cfg(VALID, 0, ("pubmedqa",))  # its cap was 512
    assert cfg(VALID, 0, ("gad",))["max_length_per_task"] == {"gad": 512}  # was cut at 128
    at_200 = _bad("learning_rate = 3e-5", "max_length = 200")
    assert "max_length_per_task" not in cfg(at_200, 0, ("bc2gm",))  # within its former 256
    assert cfg(at_200, 0, ("gad",))["max_length_per_task"] == {"gad": 200}
    lowered = _bad("learning_rate = 3e-5", "max_length = 128\nmax_length_per_task = {gad = 64}")
    assert cfg(lowered, 1, ("bc2gm", "gad"))["max_length_per_task"] == {"bc2gm": 128, "gad": 64}
    assert "max_length_per_task" not in cfg(lowered, 0, ("bc2gm",))
    per_exp = _bad("batch_size = 4", "max_length_per_task = {bc2gm = 100}")
    assert cfg(per_exp, 0, ("bc2gm",))["max_length_per_task"] == {"bc2gm": 100}
    assert cfg(per_exp, 1, ("bc2gm", "gad"))["max_length_per_task"] == {"bc2gm": 512, "gad": 512}


def test_token_controlled_keys_reach_token_controlled_jobs_only():
    def configs(text):
        m = parse_manifest(text, "v.toml")
        st, mt, tc = m.experiments
        return (m.resolved_config(st, ("gad",)), m.resolved_config(mt, mt.task_sets[0]),
                m.resolved_config(tc, ("gad",)))

    st, mt, tc = configs(VALID)
    assert tc["token_controlled_max_epochs"] == 20 and tc["parity_target"] == "total"
    assert not {"token_controlled_max_epochs", "parity_target"} & (set(st) | set(mt))
    text = _bad("learning_rate = 3e-5", "learning_rate = 3e-5\ntoken_controlled_max_epochs = 7")
    st2, mt2, tc = configs(text)
    assert tc["token_controlled_max_epochs"] == 7 and (st2, mt2) == (st, mt)
    text = _bad('parity = "per_task"', 'parity = "per_task"\nparity_target = "best"\n'
                'token_controlled_max_epochs = 40')
    tc = configs(text)[2]
    assert tc["token_controlled_max_epochs"] == 40 and tc["parity_target"] == "best"
    assert parse_manifest(text, "v.toml").experiments[2].parity_target == "best"


def test_pairs_expand_to_every_unordered_pair():
    text = VALID.replace('task_sets = [["gad", "bc2gm"]]',
                         'task_sets = "pairs"\npair_tasks = ["gad", "bc2gm", "ddi"]')
    mt = parse_manifest(text, "v.toml").experiments[1]
    assert set(mt.task_sets) == {("bc2gm", "gad"), ("ddi", "gad"), ("bc2gm", "ddi")}


def _bad(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new, 1)


BAD = [
    # (text, text on the line the error must name (or None), substrings of the message)
    ("", None, ["empty manifest"]),
    ("[study\nname = 1", "[study", ["TOML syntax error"]),
    (_bad("learning_rate = 3e-5", "learning_rat = 3e-5"), "learning_rat =",
     ["defaults.learning_rat", "did you mean 'learning_rate'"]),
    (_bad("[models]", "[model]"), "[model]", ["unknown table", "did you mean 'models'"]),
    (_bad("learning_rate = 3e-5", "learning_rate = -1"), "learning_rate", ["defaults.learning_rate",
                                                              "expected a number"]),
    (_bad("learning_rate = 3e-5", 'learning_rate = "fast"'), "learning_rate", ["expected a number"]),
    (_bad("batch_size = 4", "batch_size = 0"), "batch_size", ["experiments[0].batch_size", "integer"]),
    (_bad("batch_size = 4", "batch_size = true"), "batch_size", ["integer"]),
    (_bad("seeds = [1, 2]", "seeds = []"), "seeds", ["study.seeds", "non-empty"]),
    (_bad("seeds = [1, 2]", "seeds = [1, 1]"), "seeds", ["listed twice"]),
    (_bad("seeds = [1, 2]", 'seeds = ["a"]'), "seeds", ["integer"]),
    (_bad('tasks = ["bc2gm", "gad"]', 'tasks = ["bc2gm", "gadd"]'), "tasks =",
     ["experiments[0].tasks[1]", "unknown task 'gadd'", "did you mean 'gad'"]),
    (_bad('tasks = ["bc2gm", "gad"]', "tasks = []"), "tasks =", ["non-empty"]),
    (_bad('models = ["tiny", "biobert"]', 'models = ["biobret"]'), "biobret",
     ["unknown model 'biobret'", "did you mean 'biobert'"]),
    (_bad('task_sets = [["gad", "bc2gm"]]', "task_sets = []"), "task_sets", ["non-empty"]),
    (_bad('task_sets = [["gad", "bc2gm"]]', 'task_sets = [["gad"]]'), "task_sets", ["at least 2"]),
    (_bad('name = "mt"', 'name = "st"'), None, ["duplicate experiment name 'st'"]),
    (_bad('reference = "mt"', 'reference = "nope"'), "reference", ["no experiment named 'nope'"]),
    (_bad('reference = "mt"', 'reference = "st"'), "reference", ["is single_task",
                                                         "multi_task experiment"]),
    (_bad('parity = "per_task"', 'parity = "half"'), "parity", ["expected one of"]),
    (_bad('strategy = "single_task"', 'strategy = "single"'), "strategy = \"single\"", ["expected one of"]),
    (_bad("temperature = 2.0", ""), None, ["needs temperature"]),
    (_bad('sampling = "temperature"', 'sampling = "capped"'), None, ["examples_cap"]),
    (_bad('parity = "per_task"', 'models = ["tiny"]\nparity = "total"'), 'models = ["tiny"]\nparity',
     ["take their models"]),
    (_bad("batch_size = 4", 'sampling = "capped"'), 'sampling = "capped"', ["multi_task experiments only"]),
    (_bad("batch_size = 4", "adapter = {r = 0}"), "adapter", ["experiments[0].adapter.r",
                                                              "integer >= 1"]),
    (_bad("batch_size = 4", "adapter = {r = 8, alhpa = 4}"), "adapter",
     ["experiments[0].adapter.alhpa", "did you mean 'alpha'"]),
    (_bad("batch_size = 4", "heldout = true"), "heldout", ["needs a [heldout] table"]),
    (_bad('name = "t"', 'name = "a b"'), "name =", ["study.name"]),
    (_bad('[study]\nname = "t"', '[study]\nnme = "t"'), "nme", ["did you mean 'name'"]),
    (VALID.split("[[experiments]]")[0], None, ["missing [[experiments]]"]),
    (VALID.replace("[[experiments]]", "[experiments.x]", 1).split("[[experiments]]")[0],
     None, ["array of tables"]),
    (_bad("max_train_examples = {bc2gm = 100}", "max_train_examples = {bc2g = 100}"), "max_train",
     ["unknown task 'bc2g'"]),
    (_bad('tiny = "/models/tiny"', "tiny = 3"), "tiny = 3", ["models.tiny", "non-empty string"]),
    (_bad("max_train_examples = {bc2gm = 100}", "max_length_per_task = {gad = 1024}"),
     "max_length_per_task", ["defaults.max_length_per_task.gad", "1024 is above max_length = 512",
                             "only lower"]),
    (_bad("batch_size = 4", "max_length = 64\nmax_length_per_task = {gad = 65}"),
     "max_length_per_task", ["experiments[0].max_length_per_task.gad", "above max_length = 64"]),
    (_bad("max_train_examples = {bc2gm = 100}", "max_length_per_task = {gadd = 64}"),
     "max_length_per_task", ["unknown task 'gadd'", "did you mean 'gad'"]),
    (_bad("max_train_examples = {bc2gm = 100}", "max_length_per_task = {gad = 4}"),
     "max_length_per_task", ["integer in [8, 8192]"]),
    (_bad("max_train_examples = {bc2gm = 100}", "max_length_per_task = 64"),
     "max_length_per_task", ["expected a table"]),
    (_bad("batch_size = 4", "token_controlled_max_epochs = 5"), "token_controlled_max_epochs",
     ["experiments[0].token_controlled_max_epochs", "token_controlled experiments only"]),
    (_bad('parity = "per_task"', 'parity = "per_task"\ntoken_controlled_max_epochs = 0'),
     "token_controlled_max_epochs", ["experiments[2].token_controlled_max_epochs", "integer"]),
    (_bad('parity = "per_task"', 'parity = "per_task"\nparity_target = "end"'),
     "parity_target", ["experiments[2].parity_target", "expected one of 'total', 'best'"]),
    (VALID + "\n[stats]\nequivalence_margin = 0\n", "equivalence_margin",
     ["stats.equivalence_margin", "above 0"]),
    (VALID + "\n[stats]\nequivalence_margn = 1\n", "equivalence_margn",
     ["stats.equivalence_margn", "unknown key"]),
]


def test_stats_table_is_accepted_and_changes_no_job():
    """[stats] holds options of `python -m stats` (issue 24): valid, and no job depends on it."""
    plain = parse_manifest(VALID, "v.toml")
    with_stats = parse_manifest(VALID + "\n[stats]\nequivalence_margin = 1.5\n", "v.toml")
    assert with_stats.experiments == plain.experiments and with_stats.study == plain.study


def _line_of(text: str, marker: str) -> int:
    """1-based number of the first line containing marker (after the [[experiments]]
    the marker's own error is about, where the same key appears in several tables)."""
    idx = text.index(marker)
    return text.count("\n", 0, idx) + 1


@pytest.mark.parametrize("text,marker,needles", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_manifest_is_one_input_error_line(text, marker, needles):
    with pytest.raises(InputError) as info:
        parse_manifest(text, "bad.toml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("bad.toml")
    for needle in needles:
        assert needle in msg
    if marker is not None:
        assert info.value.line == _line_of(text, marker), msg


def test_a_byte_order_mark_is_accepted_and_lines_stay_right(tmp_path):
    from runner.study.manifest import load_manifest

    path = tmp_path / "m.toml"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.encode("utf-8"))   # Notepad's "UTF-8 with BOM"
    assert load_manifest(path) == parse_manifest(VALID, str(path))
    bad = VALID.replace("batch_size = 4", "batch_size = 0")
    path.write_bytes(b"\xef\xbb\xbf" + bad.encode("utf-8"))
    with pytest.raises(InputError) as info:
        load_manifest(path)
    line = bad.splitlines().index("batch_size = 0") + 1
    assert str(info.value).startswith(f"{path}:{line}: experiments[0].batch_size: ")


def test_the_results_line_is_kept_for_errors_about_that_folder():
    text = VALID.replace('name = "t"\n', 'name = "t"\nresults = "out/t"\n', 1)
    study = parse_manifest(text).study
    assert study.results == "out/t" and study.results_line == 3
