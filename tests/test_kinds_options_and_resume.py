"""The model interface as training, evaluation and the CLI use it: a likelihood kind that depends on
the data, evaluation options, figures independent of the evaluation batch size, resume that keeps its
settings, model help."""

from __future__ import annotations

import json

import pytest
import torch

from genmodels.bench import run_bench
from genmodels.cli import main
from genmodels.core import GenerativeModel, LikelihoodKind, ModelConfig, create_model, register_model
from genmodels.data import load_dataset
from genmodels.errors import UserError
from genmodels.evaluate import evaluate_likelihood
from genmodels.training import TrainConfig, train

from .toy_models import DequantizedGaussian, NoisyBound, registered


def _config(**overrides):
    return TrainConfig(**{"steps": 10, "eval_every": 5, "batch_size": 64, "lr": 0.01, "num_samples": 4, **overrides})


def test_a_flow_like_model_is_exact_on_continuous_data_and_a_bound_on_discrete(digits, tmp_path):
    toy = load_dataset("eight-gaussians")
    with registered("dequantized", DequantizedGaussian):
        continuous = train("dequantized", toy, _config(batch_size=500), tmp_path / "c", progress=False)
        discrete = train("dequantized", digits, _config(), tmp_path / "d", progress=False)
        bench = run_bench(["dequantized", "fvsbn"], ["eight-gaussians", "digits"], _config(steps=5), tmp_path / "bench",
                          progress=False)
        model = create_model("dequantized", digits.spec)
    [c], [d] = continuous.test, discrete.test
    assert (c.kind, c.samples, c.bits_per_dim, c.discrete) == ("exact", None, None, False)
    assert (d.kind, d.samples, d.discrete) == ("bound", 1, True) and d.bits_per_dim > 0
    for run, kind in ((tmp_path / "c", "exact"), (tmp_path / "d", "bound")):
        results = json.loads((run / "results.json").read_text())
        assert results["likelihood_kind"] == kind and results["test"][0]["kind"] == kind
        assert results["validation"][0]["kind"] == kind
    rows = {(r["data"], r["model"]): r for r in json.loads(bench["json"].read_text())["rows"]}
    assert rows[("eight-gaussians", "dequantized")]["likelihood_kind"] == "exact"
    assert rows[("digits", "dequantized")]["likelihood_kind"] == "bound"
    assert "skipped" in rows[("eight-gaussians", "fvsbn")]  # refuses continuous data; the bench goes on
    table = bench["table"].read_text()
    assert "| digits | dequantized | dequantized | bound (k=1) |" in table
    assert "| eight-gaussians | dequantized | log_prob | exact |" in table
    # A bound can never pass for an exact likelihood: log_prob refuses the discrete instance.
    with pytest.raises(TypeError, match="not exact"):
        model.log_prob(digits.test.x[:2].long())


def test_the_registry_refuses_log_prob_on_a_model_that_is_never_exact():
    class Bound(GenerativeModel):
        Config = ModelConfig
        likelihood_kind = LikelihoodKind.BOUND

        def log_prob(self, x, y=None):
            return x

    with pytest.raises(TypeError, match="define log_prob exactly when"):
        register_model("never-exact")(Bound)


def test_a_model_refusing_the_data_in_init_is_skipped_by_bench(digits, tmp_path):
    class Picky(NoisyBound):
        def __init__(self, config, spec):
            raise UserError("picky refuses every data set")

    with registered("picky", Picky):
        files = run_bench(["picky", "independent"], ["digits"], _config(steps=2), tmp_path / "bench", progress=False)
    rows = json.loads(files["json"].read_text())["rows"]
    assert rows[0] == {"data": "digits", "model": "picky", "skipped": "picky refuses every data set"}
    assert rows[1]["model"] == "independent" and rows[1]["test"]


def test_bound_figures_do_not_depend_on_the_evaluation_batch_size(digits):
    with registered("noisy-bound", NoisyBound):
        model = create_model("noisy-bound", digits.spec, {"noise": 1.0})
    with torch.no_grad():
        model.logits.normal_()
    small = evaluate_likelihood(model, digits.test, batch_size=7)
    large = evaluate_likelihood(model, digits.test, batch_size=500)
    again = evaluate_likelihood(model, digits.test, batch_size=500, seed=99)
    assert small[0].nll_nats == pytest.approx(large[0].nll_nats, rel=1e-12)
    assert again[0].nll_nats != pytest.approx(large[0].nll_nats, rel=1e-9)  # the noise is real


def test_eval_options_reach_the_likelihood_and_are_recorded(digits, tmp_path, capsys):
    with registered("noisy-bound", NoisyBound):
        train("noisy-bound", digits, _config(), tmp_path / "run", progress=False)
        capsys.readouterr()
        assert main(["eval", str(tmp_path / "run"), "--option", "draws=5", "--json"]) == 0
        five = json.loads(capsys.readouterr().out)["records"][0]
        assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
        two = json.loads(capsys.readouterr().out)["records"][0]
        assert main(["eval", str(tmp_path / "run"), "--option", "k=5"]) == 2
        assert "no likelihood option 'k'; its likelihood options: draws" in capsys.readouterr().err
    assert (five["samples"], five["options"]) == (5, {"draws": 5})
    assert (two["samples"], two["options"]) == (2, {})
    assert five["nll_nats"] != two["nll_nats"]


def test_train_takes_sampling_and_likelihood_options_and_records_them(digits, tmp_path):
    with registered("noisy-bound", NoisyBound):
        train("noisy-bound", digits, _config(sample_options={"temperature": "0.5"}, eval_options={"draws": "3"}),
              tmp_path / "run", progress=False)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["sampling"]["options"] == {"temperature": "0.5"} and results["sampling"]["nfe"] == 7
    assert results["test"][0]["samples"] == 3 and results["test"][0]["options"] == {"draws": 3}
    table = (tmp_path / "run" / "results.md").read_text()
    assert "temperature=0.5 · nfe 7" in table and "bound (k=3) draws=3" in table  # as the grid title says it


def test_resume_keeps_the_stored_settings_and_refuses_breaking_changes(digits, tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "fvsbn", "--steps", "5", "--eval-every", "5", "--ema", "0.9", "--out", run, "--no-progress"]) == 0
    # Resuming with only a new budget keeps the EMA (it used to be dropped silently).
    assert main(["train", "fvsbn", "--steps", "10", "--out", run, "--resume", "--no-progress"]) == 0
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["resumed"][0]["train_config"]["ema_decay"] == 0.9
    assert (tmp_path / "run" / "checkpoints" / "step-000000010" / "ema.safetensors").is_file()
    capsys.readouterr()
    assert main(["train", "fvsbn", "--steps", "15", "--out", run, "--resume", "--batch-size", "32"]) == 2
    assert "would change batch_size 128 → 32" in capsys.readouterr().err
    assert main(["train", "fvsbn", "--steps", "15", "--out", run, "--resume", "--batch-size", "32",
                 "--allow-config-change", "--no-progress"]) == 0
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["resumed"][-1]["config_changes"]["batch_size"] == {"from": 128, "to": 32}
    assert record["resumed"][-1]["allow_config_change"] is True


def test_resume_refuses_to_drop_the_ema_through_the_python_api(digits, tmp_path):
    train("fvsbn", digits, _config(steps=5, ema_decay=0.9), tmp_path / "run", progress=False)
    with pytest.raises(UserError, match="ema_decay 0.9 → None"):
        train("fvsbn", digits, _config(steps=10), tmp_path / "run", resume=True, progress=False)
    result = train("fvsbn", digits, None, tmp_path / "run", resume=True, progress=False)  # the stored settings
    assert result.steps == 5


def test_train_help_shows_the_models_options(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "fvsbn", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "options of model 'fvsbn' (--set KEY=VALUE):" in out
    assert "rank (int | None, default None)" in out and "marginal_init (bool, default True)" in out
    assert "sampling options (--sample-option KEY=VALUE): temperature (default 1.0)" in out
    assert "--log-every INT" in out and "--num-samples INT" in out  # every TrainConfig field is a flag


def test_initialize_gets_the_training_split_in_order_in_training_batches(digits, tmp_path):
    seen = []

    class Recorder(NoisyBound):
        def initialize(self, batches):
            seen.extend(len(b) for b in batches)

    with registered("recorder", Recorder):
        train("recorder", digits, _config(steps=1, batch_size=100), tmp_path / "run", progress=False)
    assert seen == [100] * 12 + [57]  # 1 257 training examples
