"""One pretrained encoder shared by one head per task.

* ner: dropout -> linear over every sub-token (cross-entropy, sub-tokens other than a word's
  first are ignored);
* classification: the first token's hidden state -> dropout -> dense+tanh -> dropout -> linear
  (cross-entropy) -- the same head shape for BERT- and RoBERTa-type encoders;
* multilabel: the same head, sigmoid + binary cross-entropy per label;
* regression: the same head with one output, mean squared error.

Dropout is 0.1 everywhere (the encoders' own default as well).  Every ``nn.Dropout`` of the
model -- the encoder's, the heads', a LoRA adapter's -- becomes a :class:`Dropout` when training
starts (:func:`use_dropout`): the same distribution, its mask drawn twice as fast on CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from runner.study.compat import LEGACY_DROPOUT  # noqa: F401  (checkpoints' default)
from runner.study.heads import head_outputs, token_level

HEAD_DROPOUT = 0.1

# how a Dropout draws its mask (a checkpoint records it: a resumed job keeps its own)
DROPOUTS = ("uniform-mask", "torch")
DROPOUT = "uniform-mask"        # what new jobs use
# LEGACY_DROPOUT (runner.study.compat): what checkpoints that record none used


class Dropout(nn.Dropout):
    """``nn.Dropout`` that says how its mask is drawn (``kind``, one of DROPOUTS):

    * ``torch``: torch's own dropout (a Bernoulli draw per element);
    * ``uniform-mask``: on CPU, an element is kept where a float32 uniform draw is >= p (the
      same Bernoulli(1 - p) distribution, to 2**-24) -- torch's CPU Bernoulli is slow enough
      that dropout took ~10% of a MiniLM training step, and this draw is about twice as fast
      (``benchmarks/seed_spread.py`` measures both).  Elsewhere (CUDA) torch's fused kernel.

    Both draw from torch's global generator, so a checkpoint's RNG state resumes either
    exactly."""

    def __init__(self, p: float = 0.5, kind: str = DROPOUT):
        super().__init__(p)
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "uniform-mask" and self.training and 0 < self.p < 1 \
                and x.device.type == "cpu":
            return uniform_mask_dropout(x, self.p)
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kind={self.kind}"


def uniform_mask_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout whose mask keeps an element where ``torch.rand`` (float32) is >= ``p``; the kept
    ones are scaled by 1 / (1 - p), as torch's.  Backward multiplies by the saved mask, a
    float32 tensor of x's shape: 4 bytes an element where torch's bool mask takes 1 (CPU
    training only; GPUs run torch's kernel)."""
    mask = torch.rand(x.shape, device=x.device).ge_(p).mul_(1.0 / (1.0 - p))
    return x * mask.to(x.dtype)


def use_dropout(model: nn.Module, kind: str) -> nn.Module:
    """Every ``nn.Dropout`` in ``model`` (exactly that type, or a :class:`Dropout`) becomes a
    :class:`Dropout` of ``kind`` with its own p.  Dropout has no weights: the state dict, the
    optimizer and the checkpoints do not change."""
    if kind not in DROPOUTS:
        raise ValueError(f"dropout {kind!r} is not one of {', '.join(DROPOUTS)}")
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                setattr(module, name, Dropout(child.p, kind))
            elif isinstance(child, Dropout):
                child.kind = kind
    return model


class SequenceHead(nn.Module):
    def __init__(self, hidden: int, n_out: int):
        super().__init__()
        self.dropout = nn.Dropout(HEAD_DROPOUT)
        self.dense = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, n_out)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = self.dropout(hidden_states[:, 0])
        x = torch.tanh(self.dense(x))
        return self.out(self.dropout(x))


class TokenHead(nn.Module):
    def __init__(self, hidden: int, n_out: int):
        super().__init__()
        self.dropout = nn.Dropout(HEAD_DROPOUT)
        self.out = nn.Linear(hidden, n_out)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(hidden_states))


class MultiTaskModel(nn.Module):
    """``forward(task, input_ids, attention_mask, token_type_ids=None, labels=None)`` ->
    (loss or None, logits)."""

    def __init__(self, encoder: nn.Module, specs: dict):
        super().__init__()
        self.encoder = encoder
        hidden = int(encoder.config.hidden_size)
        self.kinds = {name: spec.kind for name, spec in specs.items()}
        self.heads = nn.ModuleDict({
            name: (TokenHead if token_level(spec) else SequenceHead)(hidden, head_outputs(spec))
            for name, spec in specs.items()})
        std = float(getattr(encoder.config, "initializer_range", 0.02))
        for module in self.heads.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                nn.init.zeros_(module.bias)

    def forward(self, task: str, input_ids, attention_mask, token_type_ids=None, labels=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        logits = self.heads[task](hidden)
        if labels is None:
            return None, logits
        kind = self.kinds[task]
        # losses in float32 whatever the autocast dtype
        if kind == "ner":
            loss = nn.functional.cross_entropy(logits.float().view(-1, logits.shape[-1]),
                                               labels.view(-1), ignore_index=-100)
        elif kind == "classification":
            loss = nn.functional.cross_entropy(logits.float(), labels)
        elif kind == "multilabel":
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
        else:
            loss = nn.functional.mse_loss(logits.float().squeeze(-1), labels.float())
        return loss, logits


def load_encoder(model_name: str) -> nn.Module:
    """``AutoModel`` without its pooler where the architecture allows (the heads pool).

    The checkpoint's pooler weights are then reported as unexpected: that report (and the
    loading progress bar) is silenced, other warnings and errors are not."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        # PyTorch's fused scaled-dot-product attention where the architecture has it (the
        # default in recent transformers); older versions / other architectures: their default
        for attn in ({"attn_implementation": "sdpa"}, {}):
            try:
                try:
                    return AutoModel.from_pretrained(model_name, add_pooling_layer=False, **attn)
                except TypeError:  # architectures without a pooler do not take the argument
                    return AutoModel.from_pretrained(model_name, **attn)
            except (ValueError, ImportError):
                if not attn:
                    raise
        raise AssertionError("unreachable")
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def build_model(model_name: str, specs: dict) -> MultiTaskModel:
    """The job's model: pretrained encoder + freshly initialised heads.  Raises ``OSError``
    when ``model_name`` is neither a local model folder nor a cached/downloadable hub id."""
    return MultiTaskModel(load_encoder(model_name), specs)


def adapter_settings(adapter: dict | None):
    """``config.adapter`` (matched_to and all) -> LoraSettings, or None for full fine-tuning."""
    if not adapter:
        return None
    from runner.study.adapter import settings_from_table

    return settings_from_table({k: v for k, v in adapter.items() if k != "matched_to"})


def apply_adapter(model: MultiTaskModel, adapter: dict | None) -> MultiTaskModel:
    """Wrap the encoder with LoRA (base weights frozen; LoRA A/B and every head trainable).
    Multi-task jobs thus share one adapter across their task heads; single-task jobs have one
    adapter for their one task.  No-op when ``adapter`` is None."""
    settings = adapter_settings(adapter)
    if settings is not None:
        from runner.ml.lora import apply_lora

        model.encoder = apply_lora(model.encoder, settings)
    return model


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """total and trainable parameters; with an ``encoder`` (a MultiTaskModel), also the
    encoder's trainable ones (``encoder_trainable``: the LoRA of an adapter job, what a
    held-out evaluation keeps; the heads are the rest)."""
    out = {"total": int(sum(p.numel() for p in model.parameters())),
           "trainable": int(sum(p.numel() for p in model.parameters() if p.requires_grad))}
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, nn.Module):
        out["encoder_trainable"] = int(sum(p.numel() for p in encoder.parameters()
                                           if p.requires_grad))
    return out


def save_random_encoder(path, dims: dict, corpus, tokenizer_vocab: int = 4000,
                        seed: int = 0) -> str:
    """A loadable model folder at ``path`` without the hub: a BERT encoder of ``dims``
    (BertConfig fields: hidden_size, num_hidden_layers, num_attention_heads,
    intermediate_size, vocab_size, max_position_embeddings) with random weights (``seed``),
    and an uncased WordPiece tokenizer of at most ``tokenizer_vocab`` pieces trained on
    ``corpus`` (strings).  The embedding keeps ``dims``' vocab_size rows (the parameter count
    of the shape), of which the tokenizer uses the first.  For speed and checks, not scores."""
    from pathlib import Path

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(list(corpus), trainers.WordPieceTrainer(
        vocab_size=tokenizer_vocab, special_tokens=specials, show_progress=False))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    max_positions = int(dims.get("max_position_embeddings", 512))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                            cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                            model_max_length=max_positions).save_pretrained(path)
    config = BertConfig(**{**dims, "vocab_size": max(int(dims.get("vocab_size", 0)),
                                                     tok.get_vocab_size())})
    torch.manual_seed(seed)
    from transformers.utils import logging as hf_logging
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        BertModel(config, add_pooling_layer=False).save_pretrained(path)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return str(Path(path))
