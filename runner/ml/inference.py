"""A model's predictions: logits -> the predictions ``runner.ml.metrics.evaluate`` scores, a
split predicted in batches, and one task tested with its predictions file written.  The one
copy of each rule, for training (validation, test), the RQ2 held-out runs and RQ3's levels.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mtl_contract.files import atomic_write_bytes
from runner.ml.batching import EncodedSplit, collate, eval_batches, word_predictions
from runner.ml.runtime import autocast, to_device


def prediction(spec, split: EncodedSplit, i: int, z: np.ndarray):
    """Example ``i``'s prediction from its logits ``z``: NER the tag of each word's first
    piece; classification the top label; multi-label every label with a positive logit;
    regression the value."""
    if spec.kind == "ner":
        return word_predictions(split, i, z.argmax(-1), spec.labels)
    if spec.kind == "classification":
        return spec.labels[int(z.argmax())]
    if spec.kind == "multilabel":
        return [spec.labels[j] for j in np.flatnonzero(z > 0.0)]
    return float(z[0])


@torch.inference_mode()
def predict(model, spec, split: EncodedSplit, pad_id: int, device: torch.device,
            dtype: torch.dtype | None, batch_size: int) -> tuple[list, float]:
    """Predictions in the split's own order (evaluate()'s ``preds``) and the mean loss per
    example.  Batches are sorted by length; results are put back by index."""
    model.eval()
    preds: list = [None] * len(split)
    loss_sum, n = 0.0, 0
    for indices in eval_batches(split.lengths, batch_size):
        batch = collate(split, indices, pad_id)
        with autocast(device, dtype):
            loss, logits = model(spec.name, **to_device(batch.tensors, device))
        loss_sum += float(loss) * batch.n_examples
        n += batch.n_examples
        logits = logits.float().cpu().numpy()
        for row, i in enumerate(indices):
            preds[int(i)] = prediction(spec, split, int(i), logits[row])
    return preds, (loss_sum / n if n else float("nan"))


def score_and_write(model, spec, test_df, encoded: EncodedSplit, evaluate: Callable,
                   path: Path, *, pad_id: int, device: torch.device,
                   dtype: torch.dtype | None, batch_size: int) -> tuple[dict, int]:
    """Test ``model`` on one task as it is now: (metrics with the mean loss, test units);
    the predictions file (results/README.md) is written atomically at ``path``."""
    preds, loss = predict(model, spec, encoded, pad_id, device, dtype, batch_size)
    metrics, pred_df = evaluate(spec, test_df, preds)
    metrics = {k: float(v) for k, v in metrics.items()}
    metrics["loss"] = float(loss)
    buffer = io.BytesIO()
    pred_df.to_parquet(buffer, index=False)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return metrics, len(pred_df)
