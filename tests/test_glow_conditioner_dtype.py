"""glow's bf16 conditioner lever follows the hardware: "auto" picks bf16 only where it is fast (a CUDA
device or a CPU with bf16 units), and an explicit "bfloat16" on a CPU without them warns that it will
be slower, saying the CPU capability."""

from __future__ import annotations

import pytest
import torch

from genmodels.core import create_model
from genmodels.data.base import DataSpec
from genmodels.flows import glow
from genmodels.flows.transforms import ChannelCoupling

IMAGES = DataSpec("images", (1, 4, 4), 17)
FAST = {"levels": 2, "steps": 2, "hidden": 8, "split": "channel"}


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    monkeypatch.setattr(glow, "cpu_has_bf16_units", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def cpu_with_bf16(monkeypatch):
    monkeypatch.setattr(glow, "cpu_has_bf16_units", lambda: True)


def dtypes(model) -> set:
    return {m.autocast_dtype for m in model.modules() if isinstance(m, ChannelCoupling)}


def test_auto_is_float32_on_a_cpu_without_bf16_units(cpu_without_bf16):
    model = create_model("glow", IMAGES, {**FAST, "conditioner_dtype": "auto"})
    assert dtypes(model) == {None}
    assert "float32" in model.conditioner_note and torch.backends.cpu.get_cpu_capability() in model.conditioner_note


def test_auto_is_bfloat16_on_a_cpu_with_bf16_units(cpu_with_bf16):
    model = create_model("glow", IMAGES, {**FAST, "conditioner_dtype": "auto"})
    assert dtypes(model) == {torch.bfloat16}


def test_explicit_bfloat16_without_bf16_units_warns_once(cpu_without_bf16):
    with pytest.warns(RuntimeWarning, match="without bf16 units") as record:
        model = create_model("glow", IMAGES, {**FAST, "conditioner_dtype": "bfloat16"})
    assert len(record) == 1
    assert dtypes(model) == {torch.bfloat16}  # kept as asked, with the note
    assert "slower" in model.conditioner_note


def test_cpu_has_bf16_units_reads_the_flags():
    assert isinstance(glow.cpu_has_bf16_units(), bool)
