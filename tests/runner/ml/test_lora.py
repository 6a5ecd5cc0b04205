"""LoRA parameter counts equal the hand formula r * (in + out); rank matching picks the right r."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
from transformers import AutoModel, BertConfig

from runner.errors import InputError
from runner.ml.lora import (
    apply_lora,
    count_parameters,
    lora_params_per_rank,
    lora_trainable,
    match_rank,
    to_peft_config,
)
from runner.study.adapter import LoraSettings, settings_from_table

torch.set_num_threads(1)
H, L, FF = 32, 2, 37  # hidden, layers, intermediate (37 so in != out is visible)


def tiny_config():
    return BertConfig(vocab_size=50, hidden_size=H, num_hidden_layers=L, num_attention_heads=2,
                      intermediate_size=FF, max_position_embeddings=16)


def tiny_encoder():
    torch.manual_seed(0)
    return AutoModel.from_config(tiny_config())


def test_settings_from_table_defaults_and_errors():
    s = settings_from_table({"r": 4})
    assert s == LoraSettings(r=4, alpha=8.0, dropout=0.1, target_modules=("query", "value"))
    cfg = to_peft_config(s)
    assert cfg.r == 4 and cfg.lora_alpha == 8.0 and set(cfg.target_modules) == {"query", "value"}
    for bad, where in [({"r": 0}, "adapter.r"), ({"r": True}, "adapter.r"),
                       ({"r": 2, "dropout": 1.0}, "adapter.dropout"),
                       ({"r": 2, "target_modules": []}, "adapter.target_modules"),
                       ({"r": 2, "rank": 3}, "adapter"), ({"r": 2, "method": "ia3"},
                                                          "adapter.method")]:
        with pytest.raises(InputError) as ei:
            settings_from_table(bad, file="m.toml")
        assert ei.value.where == where and "m.toml" in str(ei.value)


@pytest.mark.parametrize("targets,per_rank", [
    # query, value: 32 -> 32 each: 2 layers * 2 * (32 + 32) = 256 per rank
    (("query", "value"), L * 2 * (H + H)),
    # every "dense": per layer attention.output 32->32, intermediate 32->37, output 37->32,
    # plus the pooler's dense 32->32 once: 2 * (64 + 69 + 69) + 64 = 468 per rank
    (("dense",), L * ((H + H) + (H + FF) + (FF + H)) + (H + H)),
])
@pytest.mark.parametrize("r", [1, 4])
def test_trainable_counts_equal_hand_formula(targets, per_rank, r):
    enc = tiny_encoder()
    total_before = count_parameters(enc)["total"]
    model = apply_lora(enc, LoraSettings(r=r, alpha=2.0 * r, dropout=0.0, target_modules=targets))
    counts = count_parameters(model)
    want = r * per_rank
    assert counts["trainable"] == want
    assert counts["total"] == total_before + want  # base weights kept, frozen
    assert lora_params_per_rank(tiny_config(), targets) == per_rank
    assert lora_trainable(tiny_config(), targets, r, heads_params=99) == want + 99


def test_heads_count_with_adapter():
    enc = apply_lora(tiny_encoder(), LoraSettings(4, 8.0, 0.0, ("query", "value")))
    head = torch.nn.Linear(H, 3)  # 32 * 3 + 3 = 99
    counts = count_parameters(enc, head)
    assert counts["trainable"] == 4 * L * 2 * (H + H) + 99


def test_match_rank_picks_closest():
    per_rank = L * 2 * (H + H)  # 256 for query/value
    # multi-task: r = 8 shared adapter + two heads (99 + 66 = 165) -> 8 * 256 + 165 = 2213
    target = 8 * per_rank + 165
    m = match_rank(target, tiny_config(), ("query", "value"), heads_params=99)
    # single task: r * 256 + 99 closest to 2213 -> r = 8 (2147, gap 66) beats 9 (2403, gap 190)
    assert m.r == 8 and m.trainable == 8 * per_rank + 99
    assert m.relative_gap == pytest.approx(66 / 2213)
    # exact hit
    m = match_rank(12 * per_rank + 99, tiny_config(), ("query", "value"), heads_params=99)
    assert m.r == 12 and m.relative_gap == 0.0
    # heads alone exceed the target: r = 1 with a visible gap, never r = 0
    m = match_rank(50, tiny_config(), ("query", "value"), heads_params=99)
    assert m.r == 1 and m.relative_gap == pytest.approx((per_rank + 99 - 50) / 50)
    # brute force agrees on a range of targets
    for target in range(300, 6000, 137):
        m = match_rank(target, tiny_config(), ("query", "value"), heads_params=40)
        best = min(range(1, 200), key=lambda r: (abs(r * per_rank + 40 - target), r))
        assert m.r == best


def test_no_matching_module_is_bad_input():
    with pytest.raises(InputError, match="no Linear"):
        lora_params_per_rank(tiny_config(), ("nonexistent",))
    with pytest.raises(InputError):
        apply_lora(tiny_encoder(), LoraSettings(2, 4.0, 0.0, ("nonexistent",)))
