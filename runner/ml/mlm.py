"""The text-matched control's masked-language-modelling stream.

A token-controlled job with ``config.control.kind == "text"`` replays its multi-task job's
batches: its own task's batches train its head as usual; every other task's batch is fed to the
same encoder as unlabelled text with a masked-LM objective (:func:`mlm_loss`).  Same text, same
real tokens, same encoder updates in number -- no cross-task labels.

* The head (:func:`attach_mlm_head`): the encoder checkpoint's own pretrained masked-LM head
  (``AutoModelForMaskedLM``: BERT's ``cls``, RoBERTa's ``lm_head``) where the checkpoint has
  one; where it has none (the demo's MiniLM, a sentence-embedding export) the same module
  initialised the way BERT's is built (Linear weights ~ N(0, initializer_range), biases 0,
  LayerNorm 1 / 0).  Either way its decoder is tied to the job's encoder's input embeddings.
  Which one it was is recorded (result.json ``control.mlm_head``).
* The masking (:func:`mask_tokens`): BERT's -- each real, non-special token selected with
  probability ``mask_probability`` (at least one per batch), of those 80% -> [MASK], 10% -> a
  random token, 10% unchanged; the loss is cross-entropy over the selected positions.  Every
  draw comes from torch's global CPU generator, whose state every checkpoint saves
  (runner.ml.checkpoint ``rng.pt``), so a resumed job masks exactly as the uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from runner.ml.batching import IGNORE_INDEX


@dataclass(frozen=True)
class MaskSpec:
    """What masking needs from the tokenizer."""

    mask_id: int
    special_ids: tuple[int, ...]   # never selected ([CLS], [SEP], [PAD], ...)
    vocab_size: int                # random replacements are drawn from [0, vocab_size)
    probability: float

    @classmethod
    def of(cls, tokenizer, probability: float) -> MaskSpec:
        """Random replacements from the tokenizer's whole vocabulary (``len(tokenizer)``, as
        Hugging Face's DataCollatorForLanguageModeling draws them)."""
        if tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no mask token: a masked-LM stream needs one")
        return cls(int(tokenizer.mask_token_id),
                   tuple(sorted({int(i) for i in tokenizer.all_special_ids})),
                   len(tokenizer), float(probability))


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, spec: MaskSpec
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input ids, labels: the original id at selected positions, IGNORE_INDEX
    elsewhere).  On CPU tensors, drawing from torch's global generator (three draws per
    batch, always of the batch's shape: the count of draws never depends on the values)."""
    eligible = attention_mask.bool() & ~torch.isin(
        input_ids, torch.tensor(spec.special_ids, dtype=input_ids.dtype))
    select_draw = torch.rand(input_ids.shape)
    kind_draw = torch.rand(input_ids.shape)
    random_ids = torch.randint(spec.vocab_size, input_ids.shape, dtype=input_ids.dtype)
    selected = eligible & (select_draw < spec.probability)
    if not bool(selected.any()) and bool(eligible.any()):
        # at least one position per batch (a short batch could draw none): the eligible
        # position with the lowest draw, which is the one nearest to being selected anyway
        flat = torch.where(eligible, select_draw, torch.full_like(select_draw, 2.0)).view(-1)
        selected.view(-1)[int(torch.argmin(flat))] = True
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    masked = input_ids.clone()
    masked[selected & (kind_draw < 0.8)] = spec.mask_id
    swap = selected & (kind_draw >= 0.8) & (kind_draw < 0.9)
    masked[swap] = random_ids[swap]
    return masked, labels


def mlm_loss(model, input_ids, attention_mask, labels, token_type_ids=None) -> torch.Tensor:
    """Cross-entropy of ``model.mlm_head`` at the selected positions (labels != IGNORE_INDEX);
    the vocabulary projection runs on those positions only."""
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        kwargs["token_type_ids"] = token_type_ids
    hidden = model.encoder(**kwargs).last_hidden_state
    where = labels != IGNORE_INDEX
    logits = model.mlm_head(hidden[where])
    return nn.functional.cross_entropy(logits.float(), labels[where])


def _bert_init(head: nn.Module, std: float, tied: nn.Parameter) -> None:
    """BERT's ``_init_weights`` on the head: Linear ~ N(0, std) (the tied decoder weight is
    the encoder's embeddings: left as they are), LayerNorm 1 / 0, every bias 0 (BERT's
    separate output bias, ``cls.predictions.bias``, included)."""
    for module in head.modules():
        if isinstance(module, nn.Linear) and module.weight is not tied:
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
        bias = module._parameters.get("bias")
        if bias is not None:
            nn.init.zeros_(bias)


def attach_mlm_head(model, model_name: str) -> dict:
    """Give ``model`` (runner.ml.model.MultiTaskModel) an ``mlm_head``: the checkpoint's
    pretrained one, else a new one initialised as BERT's; its decoder tied to the model's
    input embeddings.  Returns result.json's ``control.mlm_head`` record.  Raises ValueError
    for an architecture whose masked-LM head is not one module."""
    from transformers import AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()   # the missing head keys are reported in result.json
    hf_logging.disable_progress_bar()
    try:
        mlm, info = AutoModelForMaskedLM.from_pretrained(model_name, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    prefix = mlm.base_model_prefix
    heads = [(n, m) for n, m in mlm.named_children() if n != prefix]
    if len(heads) != 1:
        raise ValueError(f"{type(mlm).__name__}: its masked-LM head is not one module "
                         f"({[n for n, _ in heads]})")
    head_name, head = heads[0]
    decoder = mlm.get_output_embeddings()
    embeddings = model.encoder.get_input_embeddings().weight
    decoder.weight = embeddings   # tied, as BERT builds it
    missing = sorted(k for k in info.get("missing_keys", ())
                     if not k.startswith(prefix + ".") and not k.endswith("decoder.weight"))
    if missing:
        std = float(getattr(model.encoder.config, "initializer_range", 0.02))
        with torch.no_grad():
            _bert_init(head, std, embeddings)
    model.mlm_head = head
    del mlm
    return {"source": "initialised" if missing else "pretrained",
            "module": f"{head_name} ({type(head).__name__})",
            "initialised_keys": missing, "decoder": "tied to the input embeddings",
            "parameters": int(sum(p.numel() for p in head.parameters()
                                  if p is not embeddings))}
