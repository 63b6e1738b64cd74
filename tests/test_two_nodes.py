"""Two "nodes" of one process each, really run: two torchrun agents on this machine meet through
the c10d rendezvous on 127.0.0.1 (the code path of a real multi-node run, README "Several machines")
and train `edm`, which draws training noise, then evaluate. Checked against one process with the
same global batch, in what must be equal: the examples each step takes, the starting parameters,
the parameters of the two processes (equal to each other; with per-process noise they differ from
the one process's), and the test figures of the final weights computed sharded and in one process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genmodels.checkpoint import list_checkpoints, load_model
from genmodels.core.options import likelihood_options
from genmodels.evaluate import evaluate_likelihood

SRC = Path(__file__).resolve().parents[1] / "src"

#: Loaded with --import in every process: records the examples of each training step and the final
#: parameters of this process (only the first process writes checkpoints).
RECORDER = textwrap.dedent('''
    import json, os
    import torch
    from genmodels.training import loop

    folder, rank, steps = os.environ["RECORD_DIR"], int(os.environ.get("RANK", "0")), []
    train_step, run_loop = loop.Trainer.train_step, loop.Trainer.run_loop

    def recorded_step(self, forward, batch):
        steps.append([row for b in (batch if isinstance(batch, list) else [batch]) for row in b.x.flatten(1).tolist()])
        return train_step(self, forward, batch)

    def recorded_loop(self):
        outcome = run_loop(self)
        torch.save(self.model.state_dict(), os.path.join(folder, f"rank{rank}-final.pt"))
        with open(os.path.join(folder, f"rank{rank}-steps.json"), "w") as handle:
            json.dump(steps, handle)
        return outcome

    loop.Trainer.train_step, loop.Trainer.run_loop = recorded_step, recorded_loop
''')

TRAIN = ["train", "edm", "--import", "rank_recorder", "--set", "channels=8", "--set", "attention=false", "--set", "embedding=scale-shift", "--steps", "4",
         "--eval-every", "4", "--eval-option", "steps=2", "--lr", "3e-3", "--num-samples", "2", "--no-progress",
         "--select-by", "latest"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(folder: Path, record: Path) -> dict[str, str]:
    record.mkdir()
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(SRC), str(folder)]),
            "RECORD_DIR": str(record)}


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_two_nodes_through_torchrun_rendezvous_train_and_evaluate_as_one_process(digits, tmp_path):
    (tmp_path / "rank_recorder.py").write_text(RECORDER)
    port = _free_port()
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
             "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-nodes",
             "-m", "genmodels.cli", *TRAIN, "--batch-size", "16", "--out", str(tmp_path / "nodes")],
            env=_env(tmp_path, tmp_path / f"node{node}"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )
        for node in (0, 1)
    ]
    one = subprocess.run([sys.executable, "-m", "genmodels.cli", *TRAIN, "--batch-size", "32", "--out", str(tmp_path / "one")],
                         env=_env(tmp_path, tmp_path / "single"), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         cwd=tmp_path, timeout=600)
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=600))
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    assert one.returncode == 0, one.stderr[-3000:]
    for node, (_, stderr) in zip(nodes, outputs):
        assert node.returncode == 0, stderr[-3000:]
    records = {}
    for folder in ("node0", "node1", "single"):
        (found,) = (tmp_path / folder).glob("rank*-final.pt")  # which node got which rank is the rendezvous's choice
        records[found.name.split("-")[0] if folder != "single" else "single"] = (
            torch.load(found), json.loads(found.with_name(found.name.replace("final.pt", "steps.json")).read_text()))
    (first, first_steps), (second, second_steps), (single, single_steps) = records["rank0"], records["rank1"], records["single"]
    # Data: each step of the two nodes takes exactly the one process's batch, first process first.
    assert len(single_steps) == 4 and [a + b for a, b in zip(first_steps, second_steps)] == single_steps
    results = json.loads((tmp_path / "nodes" / "results.json").read_text())
    assert results["examples_seen"] == json.loads((tmp_path / "one" / "results.json").read_text())["examples_seen"] == 4 * 32
    # Parameters: the same start as one process (same seed), the same weights on both nodes, moved by training.
    start = load_file(list_checkpoints(tmp_path / "nodes")[0] / "model.safetensors")
    for key, value in load_file(list_checkpoints(tmp_path / "one")[0] / "model.safetensors").items():
        assert torch.equal(start[key], value), key
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert any(not torch.equal(first[k], single[k]) for k in first)  # each node drew its own noise
    final = load_file(list_checkpoints(tmp_path / "nodes")[-1] / "model.safetensors")
    assert all(torch.equal(final[k], first[k]) for k in final)
    # Evaluation: the test figures the two nodes computed sharded equal one process's on the same weights.
    model, _ = load_model(list_checkpoints(tmp_path / "nodes")[-1])
    expected = evaluate_likelihood(model, digits.test, options=likelihood_options(model, {"steps": "2"}))
    assert [r["nll_nats"] for r in results["test"]] == [r.to_json()["nll_nats"] for r in expected]
    assert results["test"] == [r.to_json() for r in expected]
