"""The model's dropout (runner.ml.model.Dropout): both ways of drawing its mask, on CPU and
elsewhere, and use_dropout over a whole model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from runner.ml import model as model_mod
from runner.ml.model import DROPOUTS, Dropout, MultiTaskModel, uniform_mask_dropout, use_dropout


def tiny_model() -> MultiTaskModel:
    from transformers import BertConfig, BertModel

    from runner.data.tasks import get_task

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=32)
    return MultiTaskModel(BertModel(config, add_pooling_layer=False),
                          {"bc2gm": get_task("bc2gm"), "gad": get_task("gad")})


def test_the_uniform_mask_keeps_1_minus_p_and_scales_the_kept_ones():
    torch.manual_seed(0)
    x = torch.ones(400, 500)
    for p in (0.1, 0.5):
        y = uniform_mask_dropout(x, p)
        kept = y != 0
        assert abs(kept.float().mean().item() - (1 - p)) < 0.005
        assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
        assert y.dtype == x.dtype


def test_the_uniform_mask_of_a_half_precision_input_is_drawn_in_float32():
    """bf16 has 8 bits of mantissa: a bf16 uniform would keep a share other than 1 - p."""
    torch.manual_seed(0)
    y = uniform_mask_dropout(torch.ones(400, 500, dtype=torch.bfloat16), 0.1)
    assert y.dtype == torch.bfloat16
    assert abs((y != 0).float().mean().item() - 0.9) < 0.005


def test_the_gradient_goes_through_the_kept_elements_only():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    y = uniform_mask_dropout(x, 0.25)
    y.sum().backward()
    expected = (y != 0).float() / 0.75
    assert torch.allclose(x.grad, expected)


def test_torch_kind_is_torch_dropout_draw_for_draw():
    x = torch.randn(8, 30, 16)
    layer = Dropout(0.1, "torch").train()
    torch.manual_seed(3)
    ours = layer(x)
    torch.manual_seed(3)
    theirs = nn.functional.dropout(x, 0.1, training=True)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("device_type,uniform", [("cpu", True), ("cuda", False)])
def test_uniform_mask_is_drawn_on_cpu_and_torch_kernel_elsewhere(monkeypatch, device_type,
                                                                 uniform):
    """Both branches, on any machine: the device is what the input says it is."""
    calls = []
    monkeypatch.setattr(model_mod, "uniform_mask_dropout",
                        lambda x, p: calls.append(p) or x * 0)

    class Seen(torch.Tensor):   # a CPU tensor that reports device_type
        @property
        def device(self):
            return torch.device(device_type)

    x = torch.ones(4, 4).as_subclass(Seen)
    Dropout(0.1, "uniform-mask").train()(x)
    assert calls == ([0.1] if uniform else [])
    Dropout(0.1, "torch").train()(x)
    assert len(calls) == (1 if uniform else 0)


@pytest.mark.parametrize("kind", DROPOUTS)
def test_evaluation_and_p_zero_leave_the_input_alone(kind):
    x = torch.randn(5, 7)
    assert torch.equal(Dropout(0.3, kind).eval()(x), x)
    assert torch.equal(Dropout(0.0, kind).train()(x), x)
    assert torch.equal(Dropout(1.0, kind).train()(x), torch.zeros_like(x))


def test_use_dropout_turns_every_dropout_of_the_model_and_nothing_else():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = [n for n, m in model.named_modules() if type(m) is nn.Dropout]
    assert len(plain) >= 6   # embeddings, 2 per layer, the two heads' (the BERT's own config)
    use_dropout(model, "uniform-mask")
    assert not any(type(m) is nn.Dropout for m in model.modules())
    ours = {n: m for n, m in model.named_modules() if isinstance(m, Dropout)}
    assert sorted(ours) == sorted(plain)
    assert {m.kind for m in ours.values()} == {"uniform-mask"}
    assert {m.p for m in ours.values()} == {0.1}
    use_dropout(model, "torch")
    assert {m.kind for m in model.modules() if isinstance(m, Dropout)} == {"torch"}
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="dropout 'bernoulli' is not one of uniform-mask, torch"):
        use_dropout(model, "bernoulli")


def test_a_model_trains_with_either_dropout_the_same_way_in_expectation():
    """Same seed, same inputs: the two kinds draw different masks (different numbers), but the
    model's training-mode output averages to its evaluation-mode output under both."""
    model = tiny_model()
    ids = torch.randint(5, 50, (4, 12))
    mask = torch.ones_like(ids)
    model.eval()
    with torch.no_grad():
        _, reference = model("bc2gm", ids, mask)
    means = {}
    for kind in DROPOUTS:
        use_dropout(model, kind).train()
        torch.manual_seed(0)
        with torch.no_grad():
            means[kind] = torch.stack([model("bc2gm", ids, mask)[1] for _ in range(300)]).mean(0)
    assert not torch.equal(means["torch"], means["uniform-mask"])
    scale = reference.abs().mean()
    for kind in DROPOUTS:
        assert (means[kind] - reference).abs().mean() < 0.1 * scale
