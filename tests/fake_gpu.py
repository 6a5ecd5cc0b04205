"""A GPU as torch reports it, without one: ``fake_cuda(monkeypatch, "t4", count=2)`` makes
``torch.cuda`` say that ``count`` cards of that kind are visible (device count, availability,
compute capability, name, bfloat16 support, memory), so the code's GPU branches run on a CPU.

Only what torch *reports* is faked; nothing is computed on a GPU.  bfloat16 is modelled as the
installed torch answers it: ``is_bf16_supported()`` defaults to ``including_emulation=True``
(torch 2.3+), which is True on a T4 although the T4 has no bfloat16 tensor cores (emulated,
several times slower than fp16); only ``including_emulation=False`` (or the compute capability,
8.0+) says "native".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Card:
    name: str                    # torch.cuda.get_device_name()
    capability: tuple[int, int]  # torch.cuda.get_device_capability()
    memory_gib: float

    @property
    def native_bf16(self) -> bool:
        return self.capability >= (8, 0)


CARDS = {
    "p100": Card("Tesla P100-PCIE-16GB", (6, 0), 16.0),
    "t4": Card("Tesla T4", (7, 5), 15.0),
    "a100": Card("NVIDIA A100-SXM4-40GB", (8, 0), 40.0),
    "h100": Card("NVIDIA H100 80GB HBM3", (9, 0), 80.0),
}


@dataclass
class _Props:
    name: str
    major: int
    minor: int
    total_memory: int
    multi_processor_count: int = 40


def fake_cuda(monkeypatch, card: str | None, count: int = 1) -> Card | None:
    """Make torch.cuda report ``count`` GPUs of kind ``card`` (None: no GPU at all)."""
    spec = CARDS[card] if card else None
    n = count if spec else 0

    def bf16(including_emulation: bool = True) -> bool:
        if spec is None:
            return False
        return spec.native_bf16 or (including_emulation and spec.capability >= (5, 0))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", bf16)
    if spec is not None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: spec.capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: spec.name)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: _Props(
            spec.name, *spec.capability, int(spec.memory_gib * 2 ** 30)))
    return spec
