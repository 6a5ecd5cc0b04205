"""Shared test fixtures' building blocks."""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


def build_tiny_bert(path: Path, corpus: Iterable[str], vocab_size: int = 120) -> Path:
    """A 2-layer, hidden-32 BERT (random weights, seed 0) with an uncased WordPiece tokenizer
    of ``vocab_size`` pieces trained on ``corpus``, saved as a loadable model folder: real
    tokenisation, seconds of CPU training."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(list(corpus), trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                            cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                            model_max_length=64).save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=64)).save_pretrained(path)
    return Path(path)


NOBODY = 65534   # the uid and gid permission tests run as (root ignores permissions)


def unprivileged(fn: Callable[[], Any], uid: int = NOBODY) -> Any:
    """``fn()`` in a forked child running as ``uid`` (root reads a chmod 000 file, so a
    permission test run as root would test nothing); returns what it returned, or raises
    RuntimeError with the child's exception.  Only the fork is unprivileged: import
    everything ``fn`` needs first (root's Python installation may be unreadable to ``uid``),
    and give ``fn`` files in a folder ``uid`` may enter (:func:`shared_tmp`).  Without
    root it calls ``fn`` directly."""
    if os.geteuid() != 0:
        return fn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: drop to uid, run, send back (status, value), never return
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            try:
                payload = ("ok", fn())
            except BaseException as err:  # noqa: BLE001 -- reported to the parent
                payload = ("error", f"{type(err).__name__}: {err}")
            with os.fdopen(write_end, "wb") as fh:
                fh.write(pickle.dumps(payload))
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError("the unprivileged child died without an answer")
    status, value = pickle.loads(data)
    if status != "ok":
        raise RuntimeError(value)
    return value


@contextlib.contextmanager
def shared_tmp() -> Iterator[Path]:
    """A temporary folder any user may enter and write (pytest's tmp_path is root's, mode
    0700 above it), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="perm-test-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        for parent, dirs, _ in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(parent, d), 0o755)
        shutil.rmtree(path, ignore_errors=True)
