"""LoRA parameter counts from an encoder's config, and the rank matching of RQ2's
``adapter_match`` -- what planning needs (runner.study.plan), without building a model.

A LoRA'd ``nn.Linear`` (in -> out features) gains ``A: r x in`` and ``B: out x r``, i.e.
``r * (in + out)`` trainable parameters (bias frozen); a job's trainable parameters are
therefore ``r * per_rank + heads`` with ``per_rank = sum over LoRA'd Linears of (in + out)``.
Matching is linear in r, so the answer is exact, not searched.  The Linear shapes come from
the encoder built on torch's "meta" device (shapes only, no memory, no weights): torch and
transformers are imported inside the functions; the training side (runner.ml.lora) wraps
real encoders and imports these counts from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from runner.errors import InputError


def matches(name: str, targets) -> bool:
    """peft's list rule: the module's full name equals a target or ends with ``.target``."""
    return any(name == t or name.endswith("." + t) for t in targets)


def matched_linears(model, targets) -> dict[str, tuple[int, int]]:
    import torch

    return {name: (m.in_features, m.out_features) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and matches(name, targets)}


def lora_params_per_rank(encoder_config, target_modules) -> int:
    """sum over LoRA'd Linears of (in + out), from the config alone (model built on "meta")."""
    import torch
    from transformers import AutoModel

    with torch.device("meta"):  # shapes only: no memory, no weights
        model = AutoModel.from_config(encoder_config)
    shapes = matched_linears(model, tuple(target_modules))
    if not shapes:
        raise InputError(None, f"no Linear module of {type(model).__name__} matches "
                               f"{list(target_modules)}", where="adapter.target_modules")
    return int(sum(i + o for i, o in shapes.values()))


def lora_trainable(encoder_config, target_modules, r: int, heads_params: int = 0) -> int:
    """Trainable parameters of an encoder with a rank-r LoRA plus heads (module docstring)."""
    return r * lora_params_per_rank(encoder_config, target_modules) + int(heads_params)


@dataclass(frozen=True)
class RankMatch:
    r: int  # the chosen single-task rank
    trainable: int  # its trainable parameters (LoRA + heads)
    target_trainable: int  # the multi-task run's trainable parameters
    relative_gap: float  # |trainable - target| / target

    def to_dict(self) -> dict:
        return asdict(self)


def match_rank(target_trainable: int, encoder_config, target_modules, heads_params: int,
               max_rank: int = 1024) -> RankMatch:
    """The rank r in [1, max_rank] whose ``r * per_rank + heads_params`` is closest to target.

    Ties go to the smaller rank.  ``relative_gap`` says how close it lands; it is large when
    even r = 1 overshoots (heads alone bigger than the target) or max_rank undershoots.
    """
    if target_trainable <= 0:
        raise InputError(None, f"target trainable parameters must be > 0, got "
                               f"{target_trainable}", where="adapter.match")
    per_rank = lora_params_per_rank(encoder_config, target_modules)
    ideal = (target_trainable - heads_params) / per_rank
    floor = int(ideal // 1)
    candidates = {min(max(c, 1), max_rank) for c in (floor, floor + 1)}
    best = min(sorted(candidates),
               key=lambda r: abs(r * per_rank + heads_params - target_trainable))
    trainable = best * per_rank + int(heads_params)
    return RankMatch(r=best, trainable=trainable, target_trainable=int(target_trainable),
                     relative_gap=abs(trainable - target_trainable) / target_trainable)



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
