"""LoRA adapters for RQ2: manifest table -> peft config, parameter counts, rank matching.

A LoRA'd ``nn.Linear`` (in -> out features) gains ``A: r x in`` and ``B: out x r``, i.e.
``r * (in + out)`` trainable parameters (bias frozen, ``bias="none"``); the base weights are
frozen.  A job's trainable parameters are therefore ``r * per_rank + heads`` where
``per_rank = sum over LoRA'd Linears of (in + out)`` and ``heads`` are the task heads' own
parameters (always trained).  Parameter matching (RQ2) picks the single-task rank whose count
is closest to the multi-task run's, which is linear in r, so the answer is exact, not searched.

torch / peft / transformers are imported inside the functions that need them.  Planning
(runner.study.plan) never imports this module: the CLI hands ``build_plan`` the
``encoder_lora_shape`` below for ``adapter_match`` (a rank matched by parameter count needs
the encoder's shape); the matching arithmetic is runner.study.lora_shapes, the manifest's
adapter table is validated in runner.study.adapter.
"""

from __future__ import annotations

import contextlib
import sys

from runner.errors import InputError
from runner.study.adapter import LoraSettings
from runner.study.lora_shapes import RankMatch, rank_for


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
    names = _matched_linears(encoder, settings.target_modules)
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


def _matches(name: str, targets) -> bool:
    """peft's list rule: the module's full name equals a target or ends with ``.target``."""
    return any(name == t or name.endswith("." + t) for t in targets)


def _matched_linears(model, targets) -> dict[str, tuple[int, int]]:
    import torch

    return {name: (m.in_features, m.out_features) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and _matches(name, targets)}


def lora_params_per_rank(encoder_config, target_modules) -> int:
    """sum over LoRA'd Linears of (in + out), from the config alone (model built on "meta")."""
    import torch
    from transformers import AutoModel

    with torch.device("meta"):  # shapes only: no memory, no weights
        model = AutoModel.from_config(encoder_config)
    shapes = _matched_linears(model, tuple(target_modules))
    if not shapes:
        raise InputError(None, f"no Linear module of {type(model).__name__} matches "
                               f"{list(target_modules)}", where="adapter.target_modules")
    return int(sum(i + o for i, o in shapes.values()))


def lora_trainable(encoder_config, target_modules, r: int, heads_params: int = 0) -> int:
    """Trainable parameters of an encoder with a rank-r LoRA plus heads (module docstring)."""
    return r * lora_params_per_rank(encoder_config, target_modules) + int(heads_params)


def match_rank(target_trainable: int, encoder_config, target_modules, heads_params: int,
               max_rank: int = 1024) -> RankMatch:
    """The rank r in [1, max_rank] whose ``r * per_rank + heads_params`` is closest to target
    (runner.study.lora_shapes.rank_for on this encoder's per-rank count)."""
    return rank_for(target_trainable, lora_params_per_rank(encoder_config, target_modules),
                    heads_params, max_rank)



# Offline shapes of the built-in hub models (all BERT-base: 12 layers, hidden 768, FFN 3072).
# LoRA on Linear layers and the heads do not depend on the vocabulary, so these give the same
# parameter counts as the hub configs; used only when AutoConfig cannot load them locally.
BERT_BASE_SHAPE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                   "intermediate_size": 3072}
OFFLINE_SHAPES = {"bert-base-uncased": BERT_BASE_SHAPE, "dmis-lab/biobert-v1.1": BERT_BASE_SHAPE,
                  "allenai/scibert_scivocab_uncased": BERT_BASE_SHAPE,
                  "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract": BERT_BASE_SHAPE}


def encoder_config(model_name: str, key: str, file: str, where: str):
    """The encoder's transformers config, from a local folder or the local hub cache only
    (planning never downloads); the built-in BERT-base models fall back to their known shape;
    anything else that cannot be loaded is an InputError naming the model."""
    from transformers import AutoConfig, BertConfig

    try:
        return AutoConfig.from_pretrained(model_name, local_files_only=True)
    except (OSError, ValueError) as exc:
        if key in OFFLINE_SHAPES:
            return BertConfig(**OFFLINE_SHAPES[key])
        raise InputError(file, f"adapter_match needs the config of model {key!r} "
                         f"({model_name}) at plan time, and it cannot be loaded offline "
                         f"({str(exc).splitlines()[0][:120]}); download it first or use a "
                         f"local path", where=where) from None


def encoder_lora_shape(model_name: str, key: str, file: str, where: str,
                       target_modules) -> tuple[int, int]:
    """(hidden size, LoRA parameters per rank) of an encoder: what planning's adapter_match
    needs (runner.study.lora_shapes.EncoderShape), handed to ``build_plan`` by the CLI."""
    conf = encoder_config(model_name, key, file, where)
    return int(conf.hidden_size), lora_params_per_rank(conf, target_modules)
