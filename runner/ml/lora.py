"""LoRA adapters for RQ2 on the training side: the manifest's table -> a peft config, an
encoder wrapped with it (base weights frozen, LoRA A/B trainable), parameter counts of the
built model.  The counts from a config alone and the rank matching that planning does are
runner.study.lora_shapes; the adapter table itself is validated in runner.study.adapter.
peft is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import sys

from runner.errors import InputError
from runner.study.adapter import LoraSettings
from runner.study.lora_shapes import matched_linears


@contextlib.contextmanager
def _bitsandbytes_hidden():
    """peft imports bitsandbytes whenever it is installed (for quantised LoRA layers, which no
    job here has); that import is slow and prints a kernel warning on some CPUs, so peft sees
    it as absent while it is imported and wraps an encoder.  Where it is already imported
    (an nf4 evaluation) nothing changes."""
    if "bitsandbytes" in sys.modules:
        yield
        return
    sys.modules["bitsandbytes"] = None     # import raises ImportError, find_spec gives None
    try:
        yield
    finally:
        if "bitsandbytes" in sys.modules and sys.modules["bitsandbytes"] is None:
            del sys.modules["bitsandbytes"]


def to_peft_config(settings: LoraSettings):
    """``peft.LoraConfig`` for an encoder (heads are separate modules, trained in full)."""
    with _bitsandbytes_hidden():
        from peft import LoraConfig

    return LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=list(settings.target_modules), bias="none")


def apply_lora(encoder, settings: LoraSettings):
    """Wrap an ``AutoModel`` encoder: base weights frozen, LoRA A/B trainable."""
    names = matched_linears(encoder, settings.target_modules)
    if not names:
        raise InputError(None, f"no Linear module of the encoder matches "
                               f"{list(settings.target_modules)}", where="adapter.target_modules")
    with _bitsandbytes_hidden():
        from peft import get_peft_model
        return get_peft_model(encoder, to_peft_config(settings))


def count_parameters(*modules) -> dict[str, int]:
    """{"total", "trainable"} over the given modules (shared tensors counted once)."""
    seen: set[int] = set()
    total = trainable = 0
    for m in modules:
        for p in m.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            total += p.numel()
            if p.requires_grad:
                trainable += p.numel()
    return {"total": int(total), "trainable": int(trainable)}
