"""The peer harness (benchmarks/peers/harness.py): equal CPU budgets under load, the same batches for
every contender, and no selection on the test split. Runs without any peer library."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "peers"))

from harness import Contender, HarnessSettings, SelectsOnTestError, run_interleaved  # noqa: E402

BUDGET = 0.5  # thread CPU seconds per contender; a step overshoots it by at most its own cost: its burn (≤ 6 ms
# here) plus the harness's overhead per step (~9 ms on a loaded 2-core machine), within the 5 % asserted


def burn(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def fake_contender(name: str, cost, seen: list | None = None) -> Contender:
    """A contender whose training step costs ``cost(step)`` thread CPU seconds (its known cost)."""
    module = torch.nn.Linear(2, 1)
    calls = [0]

    def train_nll(x: torch.Tensor) -> torch.Tensor:
        burn(cost(calls[0]))
        calls[0] += 1
        if seen is not None:
            seen.append(x.clone())
        return module(x).pow(2).mean()

    return Contender(name=name, library="fake", module=module, train_nll=train_nll,
                     log_likelihoods=lambda batch, draws: -module(batch.x).pow(2).sum(-1))


def splits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(500, 2, generator=g), torch.randn(50, 2, generator=g), torch.randn(50, 2, generator=g)


def test_equal_cpu_budgets_under_injected_load():
    stop = threading.Event()

    def load() -> None:  # another thread of the same process competes for the CPU (and the GIL)
        while not stop.is_set():
            sum(i * i for i in range(2000))

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        contenders = [
            fake_contender("cheap", lambda step: 0.001),
            fake_contender("costly", lambda step: 0.003),
            fake_contender("spiky", lambda step: 0.006 if step % 7 == 3 else 0.001),  # bursts of 6x the CPU
        ]
        rows = run_interleaved(contenders, *splits(), HarnessSettings(cpu_seconds=BUDGET, batch_size=8, eval_every=0.1))
    finally:
        stop.set()
        loader.join()
    spent = {r["model"]: r["cpu_s"] for r in rows}
    for name, cpu in spent.items():
        assert BUDGET <= cpu <= 1.05 * BUDGET, (name, cpu)
    assert max(spent.values()) <= 1.05 * min(spent.values())
    steps = {r["model"]: r["steps"] for r in rows}
    # The budget is CPU time, not steps: the cheap contender takes more steps. Not 3× more: every step
    # also pays the harness's own overhead (optimizer, evaluation, the GIL under the load), which on a
    # loaded 2-core machine was ~9 ms against the 1 and 3 ms burns (30 steps against 26 seen in CI-like
    # runs), so only the order is asserted; a step budget would give them equal steps.
    assert steps["cheap"] > steps["costly"]
    for r in rows:
        assert r["budget_reached"] and r["cpu_capability"] and r["threads"] == 1
        assert r["wall_s"] >= 0 and r["flops_per_train_example"] is not None
        assert r["test_nll_nats"] is not None and r["selects_on"] == "validation"


def test_every_contender_sees_the_same_batches():
    seen_a, seen_b = [], []
    contenders = [fake_contender("a", lambda step: 0.0005, seen_a), fake_contender("b", lambda step: 0.002, seen_b)]
    run_interleaved(contenders, *splits(), HarnessSettings(cpu_seconds=0.05, batch_size=4, eval_every=1.0))
    common = min(len(seen_a), len(seen_b))
    assert common > 3
    for xa, xb in zip(seen_a[:common], seen_b[:common]):
        assert torch.equal(xa, xb)


def test_a_contender_that_selects_on_test_is_refused():
    train_x, val_x, test_x = splits()
    cheat = fake_contender("cheat", lambda step: 0.0)
    cheat.selects_on = "test"
    with pytest.raises(SelectsOnTestError, match="selects on 'test'"):
        run_interleaved([fake_contender("fair", lambda step: 0.0), cheat], train_x, val_x, test_x,
                        HarnessSettings(cpu_seconds=0.01))
    with pytest.raises(SelectsOnTestError, match="validation split is the test split"):
        run_interleaved([fake_contender("fair", lambda step: 0.0)], train_x, test_x, test_x, HarnessSettings(cpu_seconds=0.01))


def test_a_search_without_test_scores_nothing_on_test():
    train_x, val_x, _ = splits()
    rows = run_interleaved([fake_contender("a", lambda step: 0.0)], train_x, val_x, None,
                           HarnessSettings(cpu_seconds=0.01, batch_size=4))
    assert rows[0]["test_nll_nats"] is None and rows[0]["validation_nll_nats"] is not None
