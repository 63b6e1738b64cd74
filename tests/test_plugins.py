"""Models from outside the package: --import MODULE and the `genmodels.models` entry-point group;
checkpoints that name their module; two groups trained by two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from genmodels import core
from genmodels.core import GenerativeModel, LikelihoodKind, ModelConfig

PLUGIN = textwrap.dedent('''
    """An external model module, as a user would write one."""
    from dataclasses import dataclass

    import torch
    from torch import nn

    from genmodels.core import GenerativeModel, LikelihoodKind, Loss, ModelConfig, OptimizerGroup, register_model


    @dataclass
    class TinyConfig(ModelConfig):
        """Args:
            scale: the logits' starting value.
        """

        scale: float = 0.0


    @register_model("my-tiny")
    class Tiny(GenerativeModel):
        """Independent per-pixel categoricals trained by gradient (an exact likelihood)."""

        Config = TinyConfig
        likelihood_kind = LikelihoodKind.EXACT

        def __init__(self, config, spec):
            super().__init__(config, spec)
            self.logits = nn.Parameter(torch.full((spec.dims, spec.levels), config.scale))

        def log_prob(self, x, y=None):
            log_p = torch.log_softmax(self.logits, 1)  # (D, K)
            return log_p.gather(1, x.reshape(len(x), -1).T).sum(0)

        @torch.no_grad()
        def sample(self, n, *, y=None, generator=None):
            probs = torch.softmax(self.logits, 1)
            return torch.multinomial(probs, n, replacement=True, generator=generator).T.reshape(n, *self.spec.shape)


    @register_model("my-pair")
    class Pair(GenerativeModel):
        """A generator of per-pixel probabilities and a linear critic, in two groups."""

        Config = ModelConfig
        likelihood_kind = LikelihoodKind.NONE

        def __init__(self, config, spec):
            super().__init__(config, spec)
            self.generator = nn.Parameter(torch.zeros(spec.dims))
            self.critic = nn.Linear(spec.dims, 1)

        def optimizer_groups(self):
            return {"critic": list(self.critic.parameters()), "generator": OptimizerGroup([self.generator], every=2)}

        def loss(self, batch, *, step=0, group="model"):
            real = batch.x.reshape(len(batch), -1).float() / (self.spec.levels - 1)
            fake = torch.sigmoid(self.generator).expand(len(batch), -1)
            if group == "critic":
                return Loss(-(self.critic(real) - self.critic(fake.detach())).mean())
            return Loss(-self.critic(fake).mean())

        @torch.no_grad()
        def sample(self, n, *, y=None, generator=None):
            bits = torch.bernoulli(torch.sigmoid(self.generator).expand(n, -1), generator=generator)
            return (bits.to(torch.int64) * (self.spec.levels - 1)).reshape(n, *self.spec.shape)
''')


def _cli(args, cwd, pythonpath, *, torchrun=False, timeout=300):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"] if torchrun else [sys.executable]
    return subprocess.run([*launcher, "-m", "genmodels.cli", *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env, timeout=timeout)


@pytest.fixture
def plugin_dir(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "my_plugin.py").write_text(PLUGIN)
    return folder


def test_an_external_model_is_trained_evaluated_and_sampled_given_its_module(plugin_dir, tmp_path):
    run = tmp_path / "run"
    done = _cli(["train", "my-tiny", "--import", "my_plugin", "--steps", "5", "--eval-every", "5", "--out", str(run),
                 "--no-progress"], tmp_path, plugin_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    meta = json.loads((run / "checkpoints" / "step-000000005" / "checkpoint.json").read_text())
    assert meta["model_module"] == "my_plugin"
    # A checkpoint never imports code on its own: without --import, a clear refusal naming the module.
    refused = _cli(["eval", str(run)], tmp_path, plugin_dir)
    assert refused.returncode == 2
    assert "defined in module 'my_plugin'" in refused.stderr and "--import my_plugin" in refused.stderr
    assert "Traceback" not in refused.stderr
    done = _cli(["eval", str(run), "--import", "my_plugin"], tmp_path, plugin_dir)
    assert done.returncode == 0 and "log_prob" in done.stdout, done.stderr[-2000:]
    done = _cli(["sample", str(run), "--import", "my_plugin", "-n", "4", "--out", str(tmp_path / "s.png")], tmp_path, plugin_dir)
    assert done.returncode == 0 and (tmp_path / "s.png").is_file(), done.stderr[-2000:]
    done = _cli(["train", "my-tiny", "--import", "my_plugin", "--help"], tmp_path, plugin_dir)
    assert "scale (float, default 0.0)" in done.stdout and "the logits' starting value" in done.stdout


def test_an_entry_point_makes_an_installed_model_known_without_import(plugin_dir, tmp_path):
    dist = plugin_dir / "my_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[genmodels.models]\nmy-models = my_plugin\n")
    listed = _cli(["list"], tmp_path, plugin_dir)
    assert listed.returncode == 0 and "my-tiny" in listed.stdout and "my-pair" in listed.stdout, listed.stderr[-2000:]
    run = tmp_path / "run"
    assert _cli(["train", "my-tiny", "--steps", "3", "--eval-every", "3", "--out", str(run), "--no-progress"],
                tmp_path, plugin_dir).returncode == 0
    done = _cli(["eval", str(run)], tmp_path, plugin_dir)
    assert done.returncode == 0, done.stderr[-2000:]


def test_an_unknown_module_is_a_clear_error(tmp_path):
    done = _cli(["train", "x", "--import", "no_such_module_here", "--steps", "1"], tmp_path, tmp_path)
    assert done.returncode == 2 and "cannot import model module 'no_such_module_here'" in done.stderr


def test_two_groups_train_in_two_processes(plugin_dir, tmp_path):
    """DDP with several groups: a critic's loss never reaches the generator (find_unused_parameters)."""
    run = tmp_path / "ddp"
    done = _cli(["train", "my-pair", "--import", "my_plugin", "--steps", "6", "--eval-every", "3", "--batch-size", "32",
                 "--out", str(run), "--no-progress", "--select-by", "latest"], tmp_path, plugin_dir, torchrun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["examples_seen"] == 6 * 32 * 2 and results["test"] == []
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best == {"checkpoint": "step-000000006", "selected_by": "latest", "value": None}  # strict JSON: no Infinity


def test_registering_a_name_twice_names_both_modules():
    class First(GenerativeModel):
        Config = ModelConfig
        likelihood_kind = LikelihoodKind.NONE

    class Second(First):
        pass

    core.register_model("twice")(First)
    try:
        with pytest.raises(ValueError, match=r"registered twice: by .*test_plugins.*First and by .*test_plugins.*Second"):
            core.register_model("twice")(Second)
    finally:
        core._MODELS.pop("twice", None)
