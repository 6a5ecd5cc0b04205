"""The engine's GPU branches, run on a CPU: ``torch.cuda`` reports a T4, P100, A100 or H100
(tests/fake_gpu.py) and each test forces both sides of its branch -- the training precision
and loss scaling per card, the grad scaler's state in checkpoints, the CUDA RNG states in
checkpoints, the ``torch.compile`` fallback and RQ3's fp16/bf16/nf4 levels per card."""

from __future__ import annotations

import logging
from importlib.machinery import ModuleSpec

import pytest
import torch

from runner.ml import checkpoint as ckpt
from runner.ml import quantize as q
from runner.ml import runtime
from runner.ml import train as engine_train
from tests.fake_gpu import fake_cuda

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


# ------------------------------------------------------------------------ training precision
@pytest.mark.parametrize("card,dtype,scaled", [
    ("t4", torch.float16, True),       # no bf16 tensor cores: fp16 with loss scaling
    ("p100", torch.float16, True),
    ("a100", torch.bfloat16, False),   # bf16: float32's exponent, no scaler
    ("h100", torch.bfloat16, False),
])
def test_auto_precision_and_loss_scaling_per_card(monkeypatch, card, dtype, scaled):
    fake_cuda(monkeypatch, card)
    chosen = engine_train.autocast_dtype("auto", CUDA)
    assert chosen is dtype and engine_train.loss_scaling(chosen) is scaled
    # a precision the manifest names wins on every card; fp32 turns autocast off
    assert engine_train.autocast_dtype("fp16", CUDA) is torch.float16
    assert engine_train.autocast_dtype("bf16", CUDA) is torch.bfloat16
    assert engine_train.autocast_dtype("fp32", CUDA) is None
    assert engine_train.loss_scaling(torch.bfloat16) is False
    # the CPU trains in fp32 whatever a GPU would
    assert engine_train.autocast_dtype("auto", CPU) is None


def test_t4_is_not_taken_for_a_bf16_card_although_torch_says_bf16_is_supported(monkeypatch):
    """torch's is_bf16_supported() counts emulation (True on a T4); the engine asks for
    hardware bfloat16."""
    fake_cuda(monkeypatch, "t4")
    assert torch.cuda.is_bf16_supported() is True          # what torch says on a real T4
    assert runtime.cuda_native_bf16() is False
    fake_cuda(monkeypatch, "a100")
    assert runtime.cuda_native_bf16() is True
    fake_cuda(monkeypatch, None)
    assert runtime.cuda_native_bf16() is False


@pytest.mark.parametrize("card", ["t4", "a100"])
def test_grad_scaler_is_on_exactly_where_the_card_trains_in_fp16(monkeypatch, card):
    fake_cuda(monkeypatch, card)
    dtype = engine_train.autocast_dtype("auto", CUDA)
    scaler = engine_train.make_grad_scaler(CUDA, enabled=engine_train.loss_scaling(dtype))
    assert scaler.is_enabled() is (card == "t4")
    # a disabled scaler saves nothing to restore; an enabled one its scale and counters
    assert (scaler.state_dict() == {}) is (card != "t4")


# -------------------------------------------------------------------- grad scaler checkpoint
def _objects(scaler):
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return model, opt, sched, scaler


def _fp16_steps(scaler, model, opt, steps: int) -> None:
    """fp16 autocast steps on the CPU with ``scaler`` (the GPU's fp16 loop, CPU kernels)."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.float16):
            loss = model(torch.randn(8, 4, generator=gen)).float().pow(2).mean() * 1e4
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("enabled", [True, False])
def test_grad_scaler_state_is_saved_and_restored(tmp_path, enabled):
    """fp16 (scaler on): its scale and growth counter survive a checkpoint exactly; bf16/fp32
    (scaler off): nothing is saved and a restore changes nothing."""
    scaler = torch.amp.GradScaler("cpu", enabled=enabled, init_scale=2.0 ** 20,
                                  growth_interval=2)
    model, opt, sched, _ = _objects(scaler)
    _fp16_steps(scaler, model, opt, 5)
    state = scaler.state_dict()
    if enabled:   # the state moved away from the defaults: restoring it matters
        assert state["scale"] != 2.0 ** 20 and state["growth_interval"] == 2
    else:
        assert state == {}
    progress = ckpt.TrainingProgress("single_task", ["t"], 4, 1, 100, step=5)
    ckpt.save_checkpoint(tmp_path, progress, model, opt, sched, scaler)
    _, _, _, optim_state, _ = ckpt.load_latest_checkpoint(tmp_path, strategy="single_task",
                                                          tasks=["t"])
    assert optim_state["scaler"] == state
    fresh = torch.amp.GradScaler("cpu", enabled=enabled)
    fresh.load_state_dict(optim_state["scaler"])
    assert fresh.state_dict() == state


# ------------------------------------------------------------------------- CUDA RNG states
class FakeCudaRng:
    """torch.cuda's generator states, one per visible GPU (what get/set_rng_state touch)."""

    def __init__(self, monkeypatch, n: int):
        self.states = {i: torch.full((16,), i + 1, dtype=torch.uint8) for i in range(n)}
        self.set_calls: list[int] = []
        monkeypatch.setattr(torch.cuda, "get_rng_state_all",
                            lambda: [self.states[i].clone() for i in range(n)])
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set_state)
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: [
            self.set_state(s, i) for i, s in enumerate(states)])

    def set_state(self, state, device=0):
        index = device if isinstance(device, int) else torch.device(device).index or 0
        if index >= len(self.states):
            raise RuntimeError("CUDA error: invalid device ordinal")   # as torch would
        self.set_calls.append(index)
        self.states[index] = state.clone()


def _save_and_load(root):
    model, opt, sched, scaler = _objects(torch.amp.GradScaler("cpu", enabled=False))
    progress = ckpt.TrainingProgress("single_task", ["t"], 4, 1, 100, step=3)
    ckpt.save_checkpoint(root, progress, model, opt, sched, scaler)
    return ckpt.load_latest_checkpoint(root, strategy="single_task", tasks=["t"])[4]


def test_cuda_rng_states_are_checkpointed_and_restored(monkeypatch, tmp_path):
    fake_cuda(monkeypatch, "t4", count=2)
    rng = FakeCudaRng(monkeypatch, 2)
    saved = _save_and_load(tmp_path / "two")
    assert [int(t[0]) for t in saved["cuda"]] == [1, 2]
    rng.states = {0: torch.zeros(16, dtype=torch.uint8), 1: torch.zeros(16, dtype=torch.uint8)}
    ckpt.restore_rng(saved)
    assert rng.set_calls == [0, 1] and [int(rng.states[i][0]) for i in (0, 1)] == [1, 2]


def test_cuda_rng_states_resume_where_fewer_gpus_are_visible(monkeypatch, tmp_path):
    """Saved by one process that saw two GPUs, resumed by a --workers process that sees one:
    the first GPU's state (the one the job ran on) is restored, and nothing fails."""
    fake_cuda(monkeypatch, "t4", count=2)
    FakeCudaRng(monkeypatch, 2)
    saved = _save_and_load(tmp_path / "two")
    fake_cuda(monkeypatch, "t4", count=1)
    one = FakeCudaRng(monkeypatch, 1)
    ckpt.restore_rng(saved)
    assert one.set_calls == [0] and int(one.states[0][0]) == 1


def test_no_gpu_saves_no_cuda_rng_and_ignores_one_on_restore(monkeypatch, tmp_path):
    fake_cuda(monkeypatch, "t4", count=1)
    FakeCudaRng(monkeypatch, 1)
    with_cuda = _save_and_load(tmp_path / "gpu")
    fake_cuda(monkeypatch, None)
    rng = FakeCudaRng(monkeypatch, 0)
    assert "cuda" not in _save_and_load(tmp_path / "cpu")
    ckpt.restore_rng(with_cuda)   # a GPU job resumed on a CPU: the CPU generators only
    assert rng.set_calls == []


# --------------------------------------------------------------------------- torch.compile
@pytest.fixture
def compile_calls(monkeypatch):
    """Module.compile recorded, not run; Triton "installed"; dynamo's flag restored after."""
    import torch._dynamo
    calls = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: calls.append(self),
                        raising=False)
    real_find_spec = __import__("importlib.util").util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: ModuleSpec("triton", None)
                        if name == "triton" else real_find_spec(name, *a))
    monkeypatch.setattr(torch._dynamo.config, "suppress_errors", False)
    return calls


def test_compile_runs_on_a_gpu_that_can(monkeypatch, compile_calls, caplog):
    import torch._dynamo
    fake_cuda(monkeypatch, "t4")
    module = torch.nn.Linear(2, 2)
    assert runtime.compile_problem(CUDA) is None
    assert runtime.compile_module(module, CUDA, logging.getLogger("t")) is True
    assert compile_calls == [module]
    assert torch._dynamo.config.suppress_errors is True   # a failing graph runs eagerly


@pytest.mark.parametrize("why", ["cpu", "p100", "old_torch", "no_triton"])
def test_compile_falls_back_to_eager(monkeypatch, compile_calls, caplog, why):
    fake_cuda(monkeypatch, "p100" if why == "p100" else "t4")
    device = CPU if why == "cpu" else CUDA
    if why == "old_torch":
        monkeypatch.delattr(torch.nn.Module, "compile")
    if why == "no_triton":
        monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with caplog.at_level(logging.WARNING):
        assert runtime.compile_module(torch.nn.Linear(2, 2), device,
                                      logging.getLogger("t")) is False
    assert compile_calls == []
    expected = {"cpu": None, "p100": "compute capability 6.0", "old_torch": "Module.compile",
                "no_triton": "Triton is not installed"}[why]
    if expected is None:
        assert caplog.text == ""          # the CPU runs eagerly by design: no warning
    else:
        assert expected in caplog.text and "running eagerly" in caplog.text


# ------------------------------------------------------------------------ RQ3 levels per card
@pytest.mark.parametrize("card,bf16_ok,nf4_compute", [
    ("t4", False, torch.float16),
    ("p100", False, torch.float16),
    ("a100", True, torch.bfloat16),
    ("h100", True, torch.bfloat16),
    (None, False, torch.bfloat16),     # CPU: no half levels; nf4 on bitsandbytes' CPU backend
])
def test_rq3_levels_per_card(monkeypatch, card, bf16_ok, nf4_compute):
    fake_cuda(monkeypatch, card)
    monkeypatch.setattr(q, "_bitsandbytes_version", lambda: "0.45.0")
    if card is None:
        assert "no CUDA GPU" in q.level_unavailable("fp16")
        assert "no CUDA GPU" in q.level_unavailable("bf16")
    else:
        assert q.level_unavailable("fp16") is None
        assert (q.level_unavailable("bf16") is None) is bf16_ok
        if not bf16_ok:
            assert "compute capability 8.0+" in q.level_unavailable("bf16")
    assert q.level_unavailable("nf4") is None
    assert q._nf4_compute_dtype() is nf4_compute
    assert q.level_device("nf4") == ("cuda" if card else "cpu")
    assert q.level_device("int8") == "cpu"
    monkeypatch.setattr(q, "_bitsandbytes_version", lambda: None)
    assert "bitsandbytes" in q.level_unavailable("nf4")
