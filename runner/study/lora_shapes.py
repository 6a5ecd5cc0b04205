"""The arithmetic of RQ2's ``adapter_match``: a LoRA'd ``nn.Linear`` (in -> out features)
gains ``r * (in + out)`` trainable parameters, so an encoder's LoRA has ``r * per_rank`` with
``per_rank`` the sum of (in + out) over its LoRA'd Linears, and the single-task rank whose
count is closest to the multi-task run's is found exactly, not searched.

``per_rank`` needs the encoder's shape (its transformers config, the model built on torch's
meta device): the training side computes it (runner.ml.lora.encoder_lora_shape) and the CLI
hands that function to ``build_plan`` as an ``EncoderShape`` -- planning imports neither
torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from runner.errors import InputError

# (model name or path, the manifest's model key, manifest file, key path for errors, LoRA
# target modules) -> (hidden size, LoRA parameters per rank)
EncoderShape = Callable[[str, str, str, str, tuple[str, ...]], tuple[int, int]]


@dataclass(frozen=True)
class RankMatch:
    r: int  # the chosen single-task rank
    trainable: int  # its trainable parameters (LoRA + heads)
    target_trainable: int  # the multi-task run's trainable parameters
    relative_gap: float  # |trainable - target| / target

    def to_dict(self) -> dict:
        return asdict(self)


def rank_for(target_trainable: int, per_rank: int, heads_params: int,
             max_rank: int = 1024) -> RankMatch:
    """The rank r in [1, max_rank] whose ``r * per_rank + heads_params`` is closest to target.

    Ties go to the smaller rank.  ``relative_gap`` says how close it lands; it is large when
    even r = 1 overshoots (heads alone bigger than the target) or max_rank undershoots.
    """
    if target_trainable <= 0:
        raise InputError(None, f"target trainable parameters must be > 0, got "
                               f"{target_trainable}", where="adapter.match")
    ideal = (target_trainable - heads_params) / per_rank
    floor = int(ideal // 1)
    candidates = {min(max(c, 1), max_rank) for c in (floor, floor + 1)}
    best = min(sorted(candidates),
               key=lambda r: abs(r * per_rank + heads_params - target_trainable))
    trainable = best * per_rank + int(heads_params)
    return RankMatch(r=best, trainable=trainable, target_trainable=int(target_trainable),
                     relative_gap=abs(trainable - target_trainable) / target_trainable)
