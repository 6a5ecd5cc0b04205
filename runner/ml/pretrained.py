"""What a job loads before the weights, importable without torch: ``runner run`` hands
:func:`load_config_and_tokenizer` to the study's model check (runner.study.models), which
first checks that torch and transformers are installed, then calls it once per model."""

from __future__ import annotations


def load_config_and_tokenizer(name: str, **kwargs) -> None:
    """Load ``name``'s config and tokenizer (no weights); OSError / ValueError when it
    cannot.  transformers is imported here, when a model is checked, not with the module."""
    from transformers import AutoConfig, AutoTokenizer

    AutoConfig.from_pretrained(name, **kwargs)
    if not AutoTokenizer.from_pretrained(name, **kwargs).is_fast:
        raise ValueError("no fast tokenizer (jobs need one to align words and word pieces)")
