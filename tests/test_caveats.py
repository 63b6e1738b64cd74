"""A run whose checkpoint chosen on validation is the first evaluated (step 0) says so at its end:
the validation figure never improved."""

from __future__ import annotations

from genmodels.cli import main
from genmodels.training.caveats import never_improved

TINY = ["train", "fvsbn", "--data", "digits", "--steps", "40", "--eval-every", "20", "--batch-size", "32",
        "--num-samples", "4", "--no-progress"]


def test_only_a_best_first_evaluation_among_several_is_a_caveat():
    assert never_improved([0, 20, 40], 20) is None
    assert never_improved([0, 20, 40], 40) is None
    assert never_improved([0], 0) is None  # one evaluation (a closed-form fit): nothing to improve on
    assert never_improved([], 0) is None
    assert never_improved([0, 0, 20, 20, 40], 0) == (
        "warning: the checkpoint chosen on validation is step 0 (the untrained model): the validation figure never "
        "improved over 3 evaluations up to step 40 (overfit from the start, or no learning); try a lower --lr, a "
        "smaller model or more data")
    assert never_improved([30, 50], 30).startswith("warning: the checkpoint chosen on validation is step 30, the first evaluated:")


def test_a_run_that_never_improved_on_step_0_says_so_and_one_that_did_does_not(tmp_path, capsys):
    assert main([*TINY, "--lr", "3", "--out", str(tmp_path / "diverged")]) == 0
    err = capsys.readouterr().err
    assert ("warning: the checkpoint chosen on validation is step 0 (the untrained model): the validation figure never "
            "improved over 3 evaluations up to step 40") in err
    assert main([*TINY, "--out", str(tmp_path / "fine")]) == 0
    assert "never improved" not in capsys.readouterr().err
