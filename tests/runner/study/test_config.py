"""TrainConfig and HeldoutConfig (runner.study.config): the settings own their defaults (the
manifest's key tables take them from here), and types are checked and coerced once, at
construction, with the key path in the error."""

from __future__ import annotations

import pytest

from runner.errors import InputError
from runner.study.config import HeldoutConfig, TrainConfig
from runner.study.keys import HELDOUT_KEYS, HYPERPARAMETERS


def test_the_key_tables_take_their_defaults_from_the_configs():
    defaults = TrainConfig.defaults()
    assert {k: d for k, (_, d) in HYPERPARAMETERS.items()} == \
        {k: defaults[k] for k in HYPERPARAMETERS}
    held = HeldoutConfig(tasks=("ncbi_disease",)).to_dict()
    assert {k: d for k, (_, d) in HELDOUT_KEYS.items()} == {k: held[k] for k in HELDOUT_KEYS}
    # the methodology's numbers, stated once more here on purpose: a changed default fails
    assert (defaults["learning_rate"], defaults["max_epochs"], defaults["patience"],
            defaults["token_controlled_max_epochs"]) == (2e-5, 10, 3, 20)


def test_an_absent_key_takes_its_default_and_unknown_keys_are_left_out():
    cfg = TrainConfig.from_dict({"max_length": 64, "target_tokens": 5})
    assert cfg.max_length == 64 and cfg.learning_rate == 2e-5 and cfg.max_train_examples == {}
    assert not hasattr(cfg, "target_tokens")


def test_numbers_are_coerced_once_and_mappings_copied():
    given = {"learning_rate": 1, "min_delta": 0, "max_train_examples": {"gad": 10}}
    cfg = TrainConfig.from_dict(given)
    assert type(cfg.learning_rate) is float and cfg.learning_rate == 1.0
    assert type(cfg.min_delta) is float
    assert cfg.max_train_examples == {"gad": 10}
    assert cfg.max_train_examples is not given["max_train_examples"]   # the job's dict untouched


@pytest.mark.parametrize("key, value, expected", [
    ("batch_size", "16", "an integer"),
    ("max_epochs", True, "an integer"),       # TOML's true is no count
    ("max_epochs", 2.5, "an integer"),
    ("learning_rate", "2e-5", "a number"),
    ("precision", 16, "a string"),
    ("compile", 1, "true or false"),
    ("max_train_examples", [1], "a table"),
    ("max_epochs", None, "a value"),          # not optional
])
def test_a_wrong_type_is_an_input_error_naming_the_key(key, value, expected):
    with pytest.raises(InputError) as err:
        TrainConfig.from_dict({key: value})
    assert err.value.where == f"config.{key}"
    assert expected in err.value.message and repr(value) in err.value.message


def test_heldout_is_frozen_into_its_own_config_with_nested_key_paths():
    table = {"tasks": ["ncbi_disease"], "seeds": [1, 2], "max_steps": 50,
             "max_train_examples": 100, "max_eval_examples": None, "learning_rate": 1e-3,
             "train_mode": "head", "batch_size": 16}
    cfg = TrainConfig.from_dict({"heldout": table})
    assert isinstance(cfg.heldout, HeldoutConfig)
    assert cfg.heldout.tasks == ("ncbi_disease",) and cfg.heldout.seeds == (1, 2)
    assert cfg.heldout.to_dict() == table   # the job config's block, round trip
    with pytest.raises(InputError) as err:
        TrainConfig.from_dict({"heldout": {**table, "max_steps": "50"}})
    assert err.value.where == "config.heldout.max_steps"
    with pytest.raises(InputError) as err:
        TrainConfig.from_dict({"heldout": {**table, "max_stepz": 50}})
    assert err.value.where == "config.heldout" and "max_stepz" in err.value.message
    with pytest.raises(InputError) as err:
        TrainConfig.from_dict({"heldout": ["ncbi_disease"]})
    assert err.value.where == "config.heldout"


def test_replace_coerces_again():
    from dataclasses import replace

    cfg = replace(TrainConfig(), learning_rate=1, max_steps=3)
    assert type(cfg.learning_rate) is float and cfg.max_steps == 3
    with pytest.raises(InputError):
        replace(cfg, max_steps="3")
