"""benchmarks/readme_leaderboard.py: README's leaderboard from several seeds' bench results. The
table writer on hand-made results.json rows (no training), the replacement that touches only the
marked block, the check of a fresh run, and the quick recipes' [expected] figures against the
committed summary."""

from __future__ import annotations

import json
import math
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def lb():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import readme_leaderboard
    finally:
        sys.path.remove(str(BENCHMARKS))
    return readme_leaderboard


def _record(measure: str, kind: str, nll: float, *, samples: int | None = None, evaluations: float | None = None,
            stderr: float = 0.5) -> dict:
    """A test record as results.json holds it (digits: 64 dimensions)."""
    return {"measure": measure, "kind": kind, "nll_nats": nll, "bits_per_dim": nll / (64 * math.log(2)),
            "stderr_nats": stderr, "examples": 360, "dims": 64, "samples": samples, "evaluations": evaluations,
            "terms_nats": {}, "options": {}, "discrete": True, "biased": False, "note": None}


def _quality(fd: float, precision: float, recall: float) -> list[dict]:
    return [{"metric": "fd", "value": fd}, {"metric": "kid", "value": 1.0},
            {"metric": "precision", "value": precision}, {"metric": "recall", "value": recall}]


def _bench(seed: int, vae_iwae: float, vae_fd: float, vqvae_mse: float) -> dict:
    """A bench's results.json: an exact model whose figures do not depend on the seed, a VAE (ELBO
    headline, IWAE estimate below it) and a VQ-VAE without a likelihood."""
    rows = [
        {"model": "independent", "data": "digits", "num_parameters": 1088, "train_seconds": 0.01 + seed,
         "test": [_record("log_prob", "exact", 107.5)], "test_figures": [], "sample_quality": _quality(162.2, 0.61, 0.29)},
        {"model": "vae", "data": "digits", "num_parameters": 154976, "train_seconds": 4.0,
         "test": [_record("elbo", "bound", vae_iwae + 4, samples=1000), _record("iwae", "estimate", vae_iwae, samples=1000)],
         "test_figures": [], "sample_quality": _quality(vae_fd, 0.65, 0.91)},
        {"model": "vqvae", "data": "digits", "num_parameters": 234145, "train_seconds": 10.0, "test": [],
         "test_figures": [{"name": "mse", "mean": vqvae_mse}], "sample_quality": _quality(51.0, 0.42, 0.85)},
        {"model": "maf", "data": "digits", "skipped": "refuses"},
    ]
    return {"suite": "quick", "overrides": {"seed": seed}, "rows": rows}


PROVENANCE = {"commit": "abc1234", "command": "python benchmarks/readme_leaderboard.py run --seeds 0,1,2",
              "machine": {"description": "a test machine", "capability": "AVX512", "cores": 2, "threads": 1,
                          "torch": "2.13.0+cpu"}}


@pytest.fixture
def summary(lb):
    benches = [_bench(0, 91.0, 40.0, 0.0190), _bench(1, 91.2, 42.0, 0.0200), _bench(2, 91.4, 44.0, 0.0210)]
    return lb.summarize(benches, seeds=[0, 1, 2], provenance=PROVENANCE)


def test_each_figure_is_its_mean_and_sd_over_seeds_and_a_seed_independent_figure_its_value(lb, summary):
    table = lb.leaderboard_table(summary).splitlines()
    assert table[0].startswith("| family | model | kind | test NLL (nats) | bits/dim | FD |")
    rows = {line.split(" | ")[1]: line for line in table[2:]}
    assert set(rows) == {"independent", "vae", "vqvae"}  # the skipped model has no row
    # independent: the same at every seed, so the value alone; bits/dim = 107.5 / (64 ln 2) = 2.42329
    assert rows["independent"] == "| baseline | independent | exact | 107.50 | 2.423 | 162.2 | 0.61 / 0.29 | 1,088 | 1 |"
    # vae: the IWAE estimate (the lower record), mean 91.2 and sd 0.2 of 91.0, 91.2, 91.4;
    # bits/dim sd 0.2 / (64 ln 2) = 0.0045 shows as 0.005; FD 42 ± 2
    assert rows["vae"] == ("| latent variable | vae | estimate (k=1000) | 91.20 ± 0.20 | 2.056 ± 0.005 | 42.0 ± 2.0 | "
                           "0.65 / 0.91 | 154,976 | 4 |")
    # vqvae: no likelihood, its reconstruction MSE instead: mean 0.0200, sd 0.0010
    assert rows["vqvae"] == "| compress, then generate | vqvae | none | — | MSE 0.0200 ± 0.0010 | 51.0 | 0.42 / 0.85 | 234,145 | 10 |"
    assert table.index(rows["independent"]) < table.index(rows["vae"]) < table.index(rows["vqvae"])  # by family


def test_tolerance_is_the_prediction_interval_for_one_more_seed_or_one_percent(lb, summary):
    fd = summary["models"]["vae"]["figures"]["fd"]
    # 95 % prediction interval at n = 3: t(0.975, 2) = 4.303, times sd 2 and √(1 + 1/3)
    assert fd["tolerance"] == pytest.approx(4.303 * 2.0 * math.sqrt(4 / 3))
    assert fd["values"] == [40.0, 42.0, 44.0] and fd["n"] == 3
    flat = summary["models"]["independent"]["figures"]["fd"]
    assert flat["identical"] and flat["tolerance"] == pytest.approx(1.622)  # 1 % of 162.2
    # the recipes' name for the headline record (the VAE's ELBO) is kept too
    assert summary["models"]["vae"]["figures"]["bits_per_dim"]["mean"] == pytest.approx(95.2 / (64 * math.log(2)))


def test_replace_touches_only_the_marked_block(lb):
    text = "# Title\n\nbefore, with trailing spaces  \n<!-- leaderboard:begin -->\nold\ntable\n<!-- leaderboard:end -->\nafter\n"
    new = lb.replace_block(text, "new table")
    assert new == "# Title\n\nbefore, with trailing spaces  \n<!-- leaderboard:begin -->\nnew table\n<!-- leaderboard:end -->\nafter\n"
    assert lb.current_block(new) == "new table"
    assert lb.replace_block(new, "new table") == new  # regenerating the same table changes nothing
    for broken in ("no markers", text + lb.BEGIN, text.replace(lb.END, "")):
        with pytest.raises(SystemExit, match="leaderboard:begin"):
            lb.replace_block(broken, "x")


def test_check_accepts_a_run_within_tolerance_and_names_a_figure_outside(lb, summary):
    inside = {c["figure"]: c for c in lb.check_run(summary, _bench(3, 91.5, 45.0, 0.0205)) if c["model"] == "vae"}
    assert all(c["within"] for c in inside.values())
    assert set(inside) == {"iwae_nll_nats", "iwae_bits_per_dim", "bits_per_dim", "fd", "precision", "recall"}
    # FD 60: 18 above the mean of 42, beyond its tolerance of 9.94
    outside = [c for c in lb.check_run(summary, _bench(3, 91.2, 60.0, 0.0200)) if not c["within"]]
    assert [(c["model"], c["figure"]) for c in outside] == [("vae", "fd")]


def test_the_readme_block_is_the_summary_s_and_says_how_it_was_made(lb, summary):
    block = lb.leaderboard_block(summary)
    assert block.count(lb.leaderboard_table(summary)) == 1
    words = " ".join(block.split())  # the prose is wrapped at 100 columns
    assert "python benchmarks/readme_leaderboard.py run --seeds 0,1,2" in words and "commit abc1234" in words
    assert "n = 3 seeds" in words and "AVX512" in words and "mean ± 4.97 sd" in words
    assert all(len(line) <= 100 for line in block.splitlines() if not line.startswith("|"))


def test_expected_line_is_rewritten_alone(lb, tmp_path):
    recipe = tmp_path / "digits-x.toml"
    recipe.write_text('model = "x"\n[expected]\n# why\nbits_per_dim = { value = 2.0462, tolerance = 0.03 }\nfd = { value = 1, tolerance = 2 }\n')
    lb.write_expected(recipe, "bits_per_dim", 2.05123, 0.041)
    assert recipe.read_text() == ('model = "x"\n[expected]\n# why\nbits_per_dim = { value = 2.0512, tolerance = 0.041 }\n'
                                  "fd = { value = 1, tolerance = 2 }\n")
    assert lb._round_up(0.01234) == pytest.approx(0.013) and lb._round_up(4.0) == pytest.approx(4.0)


def test_the_committed_summary_matches_the_readme_and_the_quick_recipes(lb):
    """README's block is the committed summary's table, and every quick recipe's [expected] figure
    lies within the summary's tolerance with at least that tolerance (benchmarks/readme_leaderboard.py
    expected --write sets them)."""
    summary = json.loads(lb.SUMMARY.read_text())
    assert lb.current_block(lb.README.read_text()) == lb.leaderboard_block(summary)
    lines = lb.expected_lines(summary)
    assert lines, "the quick recipes' expected figures are in the summary"
    for path, figure, value, tolerance, mean, needed in lines:
        assert abs(value - mean) <= max(1e-4 * abs(mean), 1e-4), f"{path.name} {figure}: {value} is not the seeds' mean {mean}"
        assert tolerance >= needed * (1 - 1e-9), f"{path.name} {figure}: tolerance {tolerance} below the seeds' {needed:.3g}"


def test_compare_names_moved_figures_and_different_weights(lb, tmp_path):
    """Two bench folders with hand-made results.json and weight files: one model alike, one moved."""
    for name, fd, weights in (("a", 40.0, b"w1"), ("b", 40.5, b"w2")):
        bench = _bench(0, 91.0, fd, 0.0190)
        for row in bench["rows"]:
            if "skipped" not in row:
                row.update(run_dir=f"/elsewhere/digits/digits-{row['model']}", best_checkpoint="/x/step-000000010", best_step=10)
                folder = tmp_path / name / "digits" / f"digits-{row['model']}" / "checkpoints" / "step-000000010"
                folder.mkdir(parents=True)
                (folder / "model.safetensors").write_bytes(weights if row["model"] == "vae" else b"same")
        (tmp_path / name / "results.json").write_text(json.dumps(bench))
    found = {c["model"]: c for c in lb.compare_benches(tmp_path / "a", tmp_path / "b")}
    assert found["independent"]["same_weights"] and not any(found["independent"]["differences"].values())
    assert not found["vae"]["same_weights"]
    assert {k: v for k, v in found["vae"]["differences"].items() if v} == {"fd": 0.5}
