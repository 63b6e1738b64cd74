"""Recipes, suites, the leaderboard's extra tables and `genmodels compare`."""

from __future__ import annotations

import json
import math

import pytest

from genmodels.cli import main
from genmodels.core import is_registered
from genmodels.errors import UserError
from genmodels.recipes import Expected, Recipe, check_expected, load_recipe, recipe_names, suite_recipes, suites


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_parses_and_names_registered_models_and_options(name):
    recipe = load_recipe(name)
    assert is_registered(recipe.model)
    recipe.check()  # the model's options, TrainConfig fields, sampling and likelihood options, data name
    assert recipe.suites and set(recipe.suites) <= set(suites())
    config = recipe.train_config()
    assert config.steps or config.epochs or config.minutes


def test_the_quick_suite_covers_every_registered_model_on_digits():
    from genmodels.core import model_names

    quick = suite_recipes("quick")
    assert {r.data for r in quick} == {"digits"}
    assert sorted(r.model for r in quick) == sorted(model_names())
    assert suites()["quick"].quality_samples >= 2
    assert all(r.expected for r in quick), "every quick recipe states the test figure it should reproduce"


def test_the_fashion_suite_has_every_family_and_each_recipe_states_its_figure():
    fashion = suite_recipes("fashion")
    assert {r.data for r in fashion} == {"fashion-mnist"}
    families = {"pixelcnn", "vae", "glow", "rectified-flow", "two-stage", "gan", "independent"}
    assert families <= {r.model for r in fashion}
    missing = [r.name for r in fashion if not r.expected]
    assert not missing, f"fashion recipes without an [expected] figure: {missing}"


def test_a_recipe_with_a_bad_option_or_unknown_name_is_refused():
    with pytest.raises(UserError, match="no recipe 'nope'"):
        load_recipe("nope")
    with pytest.raises(UserError, match="unknown data set"):
        Recipe("r", "fvsbn", "no-such-data").check()
    with pytest.raises(UserError, match="training budget"):
        Recipe("r", "fvsbn", "digits").check()
    with pytest.raises(UserError, match="sampling option"):
        Recipe("r", "fvsbn", "digits", train={"steps": 1}, sample_options={"nope": "1"}).check()
    with pytest.raises(UserError):
        Recipe("r", "fvsbn", "digits", train={"steps": -3}).check()
    with pytest.raises(UserError, match="unknown model"):
        Recipe("r", "no-such-model", "digits").check()


def test_a_former_recipe_name_loads_the_renamed_recipe_with_a_one_line_note(capsys):
    from genmodels.recipes import RENAMED

    assert set(RENAMED.values()) <= set(recipe_names()) and not set(RENAMED) & set(recipe_names())
    assert load_recipe("fashion-diffusion-edm").name == "fashion-edm-shared-unet"
    assert capsys.readouterr().err == "genmodels: recipe 'fashion-diffusion-edm' is now called 'fashion-edm-shared-unet'; the old name will go\n"

    recipe = Recipe("r", "m", "digits", expected={
        "bits_per_dim": Expected(2.0, 0.05), "mse": Expected(0.01, 0.001), "fd": Expected(20.0, 5.0), "kid": Expected(0, 1)})
    row = {"test": [{"nll_nats": 90.0, "bits_per_dim": 2.06}], "test_figures": [{"name": "mse", "mean": 0.0105}],
           "sample_quality": [{"metric": "fd", "value": 24.0}]}
    checks = {c["figure"]: c for c in check_expected(recipe, row)}
    assert not checks["bits_per_dim"]["within"] and checks["bits_per_dim"]["got"] == 2.06  # 0.06 > 0.05
    assert checks["mse"]["within"] and checks["fd"]["within"]
    assert checks["kid"]["got"] is None and not checks["kid"]["within"]  # not reported: not a pass
    assert Expected(1.0, 0.1).holds(1.09) and not Expected(1.0, 0.1).holds(0.89)


def test_an_expected_figure_may_name_any_test_record_by_its_measure():
    """A VAE's headline record is its ELBO; ``iwae_nll_nats`` checks the importance-weighted estimate."""
    recipe = Recipe("r", "vae", "binary-digits", expected={
        "iwae_nll_nats": Expected(16.0, 0.1), "elbo_nll_nats": Expected(17.0, 0.1), "nll_nats": Expected(17.0, 0.1)})
    row = {"test": [{"measure": "elbo", "nll_nats": 17.05}, {"measure": "iwae", "nll_nats": 16.2}]}
    checks = {c["figure"]: c for c in check_expected(recipe, row)}
    assert checks["iwae_nll_nats"]["got"] == 16.2 and not checks["iwae_nll_nats"]["within"]
    assert checks["elbo_nll_nats"]["within"] and checks["nll_nats"]["got"] == 17.05


def _bench_row(model, nll, se, mse=None, fd=None):
    row = {"data": "digits", "model": model,
           "test": [{"measure": "log_prob", "nll_nats": nll, "stderr_nats": se}], "test_figures": [], "sample_quality": []}
    if mse is not None:
        row["test_figures"].append({"name": "mse", "mean": mse, "stderr": 0.001})
    if fd is not None:
        row["sample_quality"].append({"metric": "fd", "label": "FD (genmodels features)", "value": fd, "stderr": None})
    return row


def test_compare_flags_changes_beyond_the_combined_standard_error(tmp_path, capsys):
    from genmodels.compare import compare_results

    a = [_bench_row("fvsbn", 90.0, 0.3, mse=0.010, fd=20.0), _bench_row("nade", 92.0, 0.3)]
    b = [_bench_row("fvsbn", 91.0, 0.4, mse=0.0105, fd=30.0), _bench_row("made", 91.0, 0.3)]
    lines = {(line["model"], line["figure"]): line for line in compare_results(a, b, sigmas=2.0)}
    nll = lines[("fvsbn", "log_prob NLL (nats)")]
    assert nll["stderr"] == pytest.approx(0.5)  # √(0.3² + 0.4²)
    assert not nll["flagged"]  # a change of 1.0 is 2.0 standard errors: not beyond 2
    assert lines[("fvsbn", "log_prob NLL (nats)")]["change"] == pytest.approx(1.0)
    assert lines[("fvsbn", "mse")]["stderr"] == pytest.approx(math.sqrt(2) * 0.001) and not lines[("fvsbn", "mse")]["flagged"]
    assert not lines[("fvsbn", "FD (genmodels features)")]["flagged"]  # no standard error: never flagged
    assert lines[("nade", "log_prob NLL (nats)")]["only_in"] == "a" and lines[("made", "log_prob NLL (nats)")]["only_in"] == "b"
    worse = compare_results(a, [_bench_row("fvsbn", 91.5, 0.4)], sigmas=2.0)
    flagged = [line for line in worse if line.get("flagged")]
    assert len(flagged) == 1 and flagged[0]["better"] is False  # a higher NLL is worse
    # From the command line, with a run's results.json on one side and a bench's on the other.
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps({"rows": a}))
    (tmp_path / "b.json").write_text(json.dumps({**_bench_row("fvsbn", 95.0, 0.4), "likelihood_kind": "exact"}))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "** worse" in out and "1 of 1 shared figures changed" in out
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert main(["compare", str(tmp_path / "junk.json"), str(tmp_path / "a")]) == 2


def test_compare_pairs_two_runs_example_by_example(digits, tmp_path, capsys):
    """Each run saves its per-example test log-likelihoods; compare then gives the paired standard
    error sd(ℓ_a − ℓ_b)/√n, far below the independent √(se_a² + se_b²) since both runs score the same
    test images. Without the file on one side, or with other examples, it falls back to unpaired."""
    from safetensors.torch import load_file

    from genmodels.compare import compare_results, read_results
    from genmodels.training import TrainConfig, train

    for name, steps in (("a", 20), ("b", 40)):
        train("fvsbn", digits, TrainConfig(steps=steps, eval_every=20, batch_size=64, lr=3e-3, num_samples=4),
              tmp_path / name, progress=False)
    results = {name: json.loads((tmp_path / name / "results.json").read_text()) for name in "ab"}
    values = {name: load_file(str(tmp_path / name / "test_log_likelihoods.safetensors"))["log_prob"] for name in "ab"}
    assert results["a"]["test_per_example"] == "test_log_likelihoods.safetensors"
    assert len(values["a"]) == results["a"]["test"][0]["examples"] == len(digits.test)
    assert -values["a"].mean().item() == pytest.approx(results["a"]["test"][0]["nll_nats"], rel=1e-12)

    line, = compare_results(read_results(tmp_path / "a"), read_results(tmp_path / "b"))
    difference = values["a"] - values["b"]
    se = [results[name]["test"][0]["stderr_nats"] for name in "ab"]
    assert line["paired"] and line["change"] == pytest.approx(difference.mean().item(), rel=1e-9)
    assert line["stderr"] == pytest.approx(difference.std().item() / math.sqrt(len(difference)), rel=1e-9)
    assert line["stderr"] < 0.2 * math.hypot(*se)  # the shared test sample cancels
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert " p |" in capsys.readouterr().out

    # a bench's results.json finds each row's run folder, also after the bench folder was moved
    bench = tmp_path / "bench"
    (bench / "digits").mkdir(parents=True)
    (tmp_path / "b").rename(bench / "digits" / "fvsbn")
    row = {**results["b"], "run_dir": str(tmp_path / "gone" / "digits" / "fvsbn")}
    (bench / "results.json").write_text(json.dumps({"rows": [row]}))
    assert compare_results(read_results(tmp_path / "a"), read_results(bench))[0]["paired"]

    # no per-example file on one side: the independent standard error
    (bench / "digits" / "fvsbn" / "test_log_likelihoods.safetensors").unlink()
    line, = compare_results(read_results(tmp_path / "a"), read_results(bench))
    assert not line["paired"] and line["stderr"] == pytest.approx(math.hypot(*se))
    # a corrupt file is named, with the way out
    (tmp_path / "a" / "test_log_likelihoods.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="test_log_likelihoods.safetensors: not a readable safetensors file"):
        read_results(tmp_path / "a")


def test_compare_across_runs_judges_a_change_by_the_spread_between_seeds(tmp_path, capsys):
    """Each run's own error (0.01 here) is far below the seeds' spread: one run against one flags
    the change; the groups of seeds, whose Welch error is √(s_a²/3 + s_b²/3), do not."""
    from genmodels.compare import compare_across_runs, compare_results

    a = [[_bench_row("fvsbn", nll, 0.01)] for nll in (90.0, 90.4, 90.2)]
    b = [[_bench_row("fvsbn", nll, 0.01)] for nll in (89.9, 90.3, 89.8)]
    assert compare_results(a[0], b[0])[0]["flagged"]  # 0.1 against 0.014: flagged by one pair of runs
    line, = compare_across_runs(a, b, sigmas=2.0)
    welch = math.sqrt(0.04 / 3 + 0.07 / 3)  # sample variances 0.04 and 0.07 (n − 1 in the denominator)
    assert line["change"] == pytest.approx(90.0 - 90.2) and line["stderr"] == pytest.approx(welch)
    assert not line["flagged"] and (line["runs_a"], line["runs_b"]) == (3, 3)
    better = [[_bench_row("fvsbn", nll, 0.01)] for nll in (89.0, 89.1, 88.9)]
    line, = compare_across_runs(a, better, sigmas=2.0)
    assert line["flagged"] and line["better"] is True
    with pytest.raises(UserError, match="at least two runs on each side"):
        compare_across_runs(a[:1], b)
    for i, rows in enumerate(a + better):
        (tmp_path / f"r{i}.json").write_text(json.dumps({"rows": rows}))
    runs = [str(tmp_path / f"r{i}.json") for i in range(6)]
    assert main(["compare", *runs[:3], "--vs", *runs[3:]]) == 0
    out = capsys.readouterr().out
    assert "| n_a | n_b |" in out and "| 3 | 3 | ** better |" in out
    assert main(["compare", *runs[:3]]) == 2 and "--vs" in capsys.readouterr().err


def test_compare_across_models_pairs_two_models_on_the_same_test_images(digits, tmp_path, capsys):
    from safetensors.torch import load_file

    from genmodels.compare import compare_results, read_results
    from genmodels.training import TrainConfig, train

    for model in ("fvsbn", "made"):
        train(model, digits, TrainConfig(steps=10, eval_every=10, batch_size=64, lr=3e-3, num_samples=4), tmp_path / model,
              progress=False)
    a, b = read_results(tmp_path / "fvsbn"), read_results(tmp_path / "made")
    assert all("only_in" in line for line in compare_results(a, b))  # by default a model is compared with itself
    line, = compare_results(a, b, across_models=True)
    assert (line["model"], line["figure"], line["paired"]) == ("fvsbn → made", "log_prob NLL (nats)", True)
    values = [load_file(str(tmp_path / m / "test_log_likelihoods.safetensors"))["log_prob"] for m in ("fvsbn", "made")]
    assert line["stderr"] == pytest.approx((values[0] - values[1]).std().item() / math.sqrt(len(values[0])), rel=1e-9)
    with pytest.raises(UserError, match="side a holds 2 models on digits"):
        compare_results(a + b, b, across_models=True)
    assert main(["compare", str(tmp_path / "fvsbn"), str(tmp_path / "made"), "--across-models"]) == 0
    assert "| digits | fvsbn → made | log_prob NLL (nats) |" in capsys.readouterr().out


def test_eval_out_writes_what_compare_pairs(digits, tmp_path, capsys):
    """`eval --out` of two checkpoints of one run: compare pairs them on the same test examples; a
    validation evaluation is labelled as such and matches only another validation one."""
    from genmodels.compare import compare_results, read_results
    from genmodels.training import TrainConfig, train

    run = tmp_path / "run"
    train("fvsbn", digits, TrainConfig(steps=40, eval_every=20, batch_size=64, lr=3e-3, num_samples=4, keep_checkpoints=5),
          run, progress=False)
    early, late = run / "checkpoints" / "step-000000020", run / "checkpoints" / "step-000000040"
    assert main(["eval", str(early), "--out", str(tmp_path / "early")]) == 0
    capsys.readouterr()
    assert main(["eval", str(late), "--out", str(tmp_path / "late"), "--json"]) == 0
    report = json.loads((tmp_path / "late" / "eval.json").read_text())
    assert json.loads(capsys.readouterr().out) == report  # --json prints what --out writes
    assert (report["model"], report["data"], report["split"], report["per_example"]) == ("fvsbn", "digits", "test", "test_log_likelihoods.safetensors")
    line, = compare_results(read_results(tmp_path / "early"), read_results(tmp_path / "late"))
    assert line["paired"] and line["figure"] == "log_prob NLL (nats)"
    # the run's own results.json (its best checkpoint, step 40) pairs with the eval of step 40: no change at all
    same, = compare_results(read_results(run), read_results(tmp_path / "late"))
    assert same["paired"] and same["change"] == pytest.approx(0.0, abs=1e-9) and same["stderr"] == pytest.approx(0.0, abs=1e-9)
    assert main(["eval", str(late), "--split", "validation", "--out", str(tmp_path / "val")]) == 0
    lines = compare_results(read_results(tmp_path / "early"), read_results(tmp_path / "val"))
    assert {(line["figure"], line["only_in"]) for line in lines} == {("log_prob NLL (nats)", "a"), ("log_prob NLL (nats, validation)", "b")}
    assert main(["eval", str(late), "--out", str(tmp_path / "late")]) == 2  # nothing is overwritten
    assert "already holds files" in capsys.readouterr().err


def test_a_suite_runs_its_recipes_with_overrides_and_writes_the_leaderboard(tmp_path, capsys):
    """Two quick recipes with a shortened budget: the leaderboard has the likelihood, sample quality,
    cost and expected-figure tables, the montage and the bits/dim-against-time picture."""
    out = tmp_path / "bench"
    assert main(["bench", "--suite", "quick", "--models", "fvsbn,vqvae", "--steps", "4", "--eval-every", "2",
                 "--quality-samples", "50", "--num-samples", "4", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["suite"] == "quick" and results["overrides"]["steps"] == 4
    rows = {r["model"]: r for r in results["rows"]}
    assert rows["fvsbn"]["steps"] == 4 and rows["fvsbn"]["recipe"] == "digits-fvsbn"
    assert rows["fvsbn"]["train_config"]["lr"] == load_recipe("digits-fvsbn").train["lr"]  # the recipe's own lr
    assert {q["metric"] for q in rows["vqvae"]["sample_quality"]} >= {"fd", "kid", "precision", "recall"}
    assert all(q["samples"] == 50 for q in rows["fvsbn"]["sample_quality"])
    assert {f["name"] for f in rows["vqvae"]["test_figures"]} == {"reconstruction_nll", "mse", "psnr"}
    assert rows["fvsbn"]["samples_per_second"] > 0 and rows["fvsbn"]["wall_seconds"] >= rows["fvsbn"]["train_seconds"]
    table = (out / "results.md").read_text()
    for heading in ("| test NLL (nats) |", "| FD (genmodels features) |", "| samples/s |", "| mse |"):
        assert heading in table
    assert "| digits | fvsbn | digits-fvsbn | " in table  # each line names its recipe
    for picture in ("montage-digits.png", "bpd_vs_time-digits.png", "loss_curves-digits.png"):
        assert (out / picture).stat().st_size > 0
    assert main(["bench", "--suite", "quick", "--models", "fvsbn", "--out", str(out)]) == 2  # never overwritten
    assert main(["bench", "--suite", "nope", "--out", str(tmp_path / "x")]) == 2
    assert main(["bench", "--suite", "quick", "--models", "nope", "--out", str(tmp_path / "y")]) == 2


def test_train_runs_a_recipe_with_overrides_and_reports_its_expected_figures(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--recipe", "digits-fvsbn", "--steps", "3", "--eval-every", "3", "--out", str(run), "--no-progress"]) == 0
    stored = json.loads((run / "results.json").read_text())
    assert stored["model"] == "fvsbn" and stored["steps"] == 3
    assert main(["train", "made", "--recipe", "digits-fvsbn", "--out", str(tmp_path / "x")]) == 2
    assert "trains fvsbn, not made" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "y")]) == 2
    assert "name a model" in capsys.readouterr().err


def test_a_recipe_may_draw_fewer_quality_samples_than_its_suite(tmp_path):
    """A recipe's own ``quality_samples`` (slow samplers) replaces the suite's, and the table says how many."""
    from genmodels.bench import BenchEntry, run_entries

    recipe = Recipe("digits-fvsbn-few", "fvsbn", "digits", train={"steps": 2}, quality_samples=20)
    entries = [BenchEntry("fvsbn", "digits", recipe.train_config({"eval_every": 2, "num_samples": 4}), recipe=recipe),
               BenchEntry("independent", "digits", recipe.train_config({"eval_every": 2, "num_samples": 4}))]
    files = run_entries(entries, tmp_path / "bench", progress=False, quality_samples=30)
    rows = {r["model"]: r for r in json.loads(files["json"].read_text())["rows"]}
    assert {q["samples"] for q in rows["fvsbn"]["sample_quality"]} == {20}
    assert {q["samples"] for q in rows["independent"]["sample_quality"]} == {30}
    table = files["table"].read_text()
    assert "| digits | fvsbn | 20 |" in table and "| digits | independent | 30 |" in table


def test_train_from_a_recipe_keeps_its_typed_model_options_under_set_overrides(tmp_path, monkeypatch):
    """A recipe's TOML values are typed (a list for a tuple option); ``--set`` strings are parsed by the
    config's field types and override them. (Stringifying the recipe's list made "[16, 8]" unparseable.)"""
    import genmodels.recipes as recipes

    recipe = Recipe("digits-vae-lists", "vae", "digits", model_config={"hidden": [16, 8], "latent_dim": 2},
                    train={"steps": 1, "eval_every": 1, "num_samples": 2})
    monkeypatch.setattr(recipes, "load_recipe", lambda name: recipe)
    run = tmp_path / "run"
    assert main(["train", "--recipe", "digits-vae-lists", "--set", "latent_dim=3", "--out", str(run), "--no-progress",
                 "--eval-option", "k=2"]) == 0
    config = json.loads((run / "run.json").read_text())["model_config"]
    assert config["hidden"] == [16, 8] and config["latent_dim"] == 3
