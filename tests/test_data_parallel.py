"""Data-parallel training that is right: each process draws its own training noise while every
process starts from the same parameters; a checkpoint keeps every process's RNG state, so a resumed
2-process run equals an uninterrupted one bit for bit; one process draws exactly what it always drew.

The multi-process checks share ONE torchrun launch (2 CPU processes, gloo) of a small driver that
runs several ``genmodels train`` commands in turn and records, per process, the parameters each
model starts training from (before DDP could broadcast them) and every global-RNG draw made inside
a training step (diffusion times and noise, dequantization noise, GAN latents).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genmodels.checkpoint import list_checkpoints, read_checkpoint
from genmodels.errors import UserError
from genmodels.run_files import check_trainer_skeleton
from genmodels.training.state import process_seed, restore_noise_stream, rng_state, start_noise_stream

SRC = Path(__file__).resolve().parents[1] / "src"

DRIVER = textwrap.dedent('''
    """Run genmodels commands in turn in each process, recording each model's starting parameters
    and the global-RNG draws made inside its training steps."""
    import contextlib, io, json, os, sys
    import torch
    from genmodels.cli import main
    from genmodels.training import loop

    out, jobs = sys.argv[1], json.loads(sys.argv[2])
    rank = int(os.environ["RANK"])
    draws, in_step = [], [False]

    def recording(fn):
        def wrapped(*args, **kwargs):
            value = fn(*args, **kwargs)
            if in_step[0] and kwargs.get("generator") is None:
                draws.append({"fn": fn.__name__, "shape": list(value.shape), "head": value.flatten()[:8].tolist()})
            return value
        return wrapped

    for name in ("rand", "randn", "rand_like", "randn_like"):
        setattr(torch, name, recording(getattr(torch, name)))

    train_step, prepare = loop.Trainer.train_step, loop.Trainer._prepare

    def recorded_step(self, *args, **kwargs):
        in_step[0] = True
        try:
            return train_step(self, *args, **kwargs)
        finally:
            in_step[0] = False

    def recorded_prepare(self):  # the parameters as built and initialized, before DDP wraps the model
        torch.save(self.model.state_dict(), os.path.join(out, f"job{job}-rank{rank}-start.pt"))
        return prepare(self)

    loop.Trainer.train_step, loop.Trainer._prepare = recorded_step, recorded_prepare
    for job, argv in enumerate(jobs):
        draws.clear()
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        assert code == 0, (argv, code)
        with open(os.path.join(out, f"job{job}-rank{rank}-draws.json"), "w") as handle:
            json.dump(draws, handle)
''')

COMMON = ["--batch-size", "16", "--lr", "3e-3", "--num-samples", "2", "--no-progress", "--select-by", "latest"]
EDM = ["edm", "--set", "channels=8", "--set", "attention=false", "--set", "embedding=scale-shift", "--eval-option", "steps=2", *COMMON]


def _jobs(tmp_path: Path) -> list[list[str]]:
    return [
        ["train", *EDM, "--steps", "6", "--eval-every", "3", "--out", str(tmp_path / "edm-straight")],
        ["train", *EDM, "--steps", "3", "--eval-every", "3", "--out", str(tmp_path / "edm-resumed")],
        # A resume takes the run's stored settings; only the budget grows.
        ["train", "edm", "--steps", "6", "--no-progress", "--out", str(tmp_path / "edm-resumed"), "--resume"],
        ["train", "nice", "--set", "hidden=16", "--set", "couplings=2", *COMMON, "--steps", "2", "--eval-every", "2",
         "--out", str(tmp_path / "nice")],
        ["train", "gan", "--set", "hidden=8", "--set", "architecture=mlp", *COMMON, "--steps", "2", "--eval-every", "2",
         "--out", str(tmp_path / "gan")],
    ]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The driver's outputs, after one torchrun launch of 2 CPU processes."""
    tmp_path = tmp_path_factory.mktemp("ranks")
    (tmp_path / "driver.py").write_text(DRIVER)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(tmp_path / "driver.py"),
         str(out), json.dumps(_jobs(tmp_path))],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=600, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return tmp_path


def _draws(tmp_path: Path, job: int, rank: int) -> list[dict]:
    return json.loads((tmp_path / "out" / f"job{job}-rank{rank}-draws.json").read_text())


@pytest.mark.parametrize("job, kinds", [(0, {"rand", "randn_like"}), (3, {"rand"}), (4, {"randn"})],
                         ids=["diffusion-time-and-noise", "dequantization", "gan-latents"])
def test_each_process_draws_its_own_training_noise_from_the_same_parameters(two_processes, job, kinds):
    first, second = _draws(two_processes, job, 0), _draws(two_processes, job, 1)
    assert first and {d["fn"] for d in first} >= kinds
    assert [(d["fn"], d["shape"]) for d in first] == [(d["fn"], d["shape"]) for d in second]  # the same calls
    assert all(a["head"] != b["head"] for a, b in zip(first, second))  # with other values
    start = [torch.load(two_processes / "out" / f"job{job}-rank{rank}-start.pt") for rank in (0, 1)]
    assert start[0].keys() == start[1].keys()
    for key in start[0]:
        assert torch.equal(start[0][key], start[1][key]), key


def test_a_resumed_two_process_run_equals_an_uninterrupted_one_bit_for_bit(two_processes):
    straight, resumed = two_processes / "edm-straight", two_processes / "edm-resumed"
    assert [c.name for c in list_checkpoints(resumed)] == [c.name for c in list_checkpoints(straight)]
    # The resumed processes drew the second half of the straight run's draws, each its own.
    for rank in (0, 1):
        assert _draws(two_processes, 2, rank) == _draws(two_processes, 0, rank)[len(_draws(two_processes, 1, rank)):]
    for a, b in zip(list_checkpoints(straight), list_checkpoints(resumed)):
        weights_a, weights_b = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
        for key in weights_a:
            assert torch.equal(weights_a[key], weights_b[key]), (a.name, key)
        rng = read_checkpoint(b, with_trainer_state=True).trainer_state["rng"]
        assert isinstance(rng, list) and len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])
    moved = load_file(list_checkpoints(straight)[-1] / "model.safetensors")
    initial = load_file(list_checkpoints(straight)[0] / "model.safetensors")
    assert any(not torch.equal(moved[k], initial[k]) for k in moved)  # training moved the weights


def test_process_zero_keeps_the_run_seeds_stream_and_the_others_get_their_own():
    torch.manual_seed(7)
    before = rng_state()["torch"]
    start_noise_stream(7, 0)
    assert torch.equal(torch.get_rng_state(), before)  # one process draws what it always drew
    streams = []
    for rank in (1, 2):
        start_noise_stream(7, rank)
        streams.append(torch.rand(4))
    assert not torch.equal(streams[0], streams[1])
    assert len({process_seed(7, 1), process_seed(7, 2), process_seed(8, 1), process_seed(7, 1, step=10)}) == 4
    assert process_seed(7, 1) == process_seed(7, 1)  # a pure function of (seed, rank, step)


def test_a_resume_gives_each_process_its_own_state_and_a_new_process_a_fresh_stream():
    torch.manual_seed(0)
    states = [rng_state(), None]
    torch.rand(3)
    states[1] = rng_state()
    restore_noise_stream(states, seed=0, rank=1, step=5)
    assert torch.equal(torch.get_rng_state(), states[1]["torch"])
    restore_noise_stream(states, seed=0, rank=0, step=5)
    assert torch.equal(torch.get_rng_state(), states[0]["torch"])
    restore_noise_stream(states[0], seed=0, rank=0, step=5)  # a one-process checkpoint, one process
    assert torch.equal(torch.get_rng_state(), states[0]["torch"])
    restore_noise_stream(states, seed=0, rank=2, step=5)  # the checkpoint had two processes, the run three
    torch.manual_seed(process_seed(0, 2, 5))
    expected = torch.get_rng_state()
    restore_noise_stream(states, seed=0, rank=2, step=5)
    assert torch.equal(torch.get_rng_state(), expected)


def test_the_checkpoint_checks_accept_per_process_rng_lists_and_refuse_broken_ones(tmp_path):
    from genmodels.run_files import _check_rng

    one = rng_state()
    _check_rng(one, "rng", "fix")
    _check_rng([one, one], "rng", "fix")
    check_trainer_skeleton({"trainer_state": {"rng": [{"torch": {"__tensor__": "t.rng.0.torch"}}]}}, tmp_path)
    with pytest.raises(UserError, match=r"rng\[1\]\.torch is a torch.float32 tensor"):
        _check_rng([one, {"torch": torch.zeros(3)}], "rng", "fix")
    with pytest.raises(UserError, match="empty list"):
        _check_rng([], "rng", "fix")
    with pytest.raises(UserError, match="expected dict or list"):
        check_trainer_skeleton({"trainer_state": {"rng": "x"}}, tmp_path)
