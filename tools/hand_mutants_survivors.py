"""The survivors of the mutmut runs recorded in docs/mutation-runs/, remade by hand on today's code: each
must make the named tests fail (or is listed in docs/MUTATION.md as argued equivalent, with ``expect
survive`` here, so that a change of verdict shows).

Usage: OMP_NUM_THREADS=1 python tools/hand_mutants_survivors.py [NAME_SUBSTRING...]
Prints one line per mutant, with the first failing test; exit 1 if a mutant's verdict is not the one
expected. Each mutant runs in a scratch copy of src/ and tests/ (the repository is never changed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

repo = Path(__file__).resolve().parent.parent
EVAL = "src/genmodels/evaluate.py"
RUNDIR = "src/genmodels/training/rundir.py"
LOOP = "src/genmodels/training/loop.py"
PROGRESS = "src/genmodels/training/progress.py"
UNITS = "src/genmodels/units.py"
REPORT = "src/genmodels/training/report.py"
T_EVAL = ["tests/test_evaluate.py"]
T_RUN = ["tests/test_training_report.py"]
T_LOOP = ["tests/test_training_modules.py", "tests/test_training_ema_settings_logs.py"]
T_DDP = ["tests/test_reliability.py::test_num_processes_trains_as_one_process_and_skips_a_nan_of_one_process_on_all"]
T_TB = ["tests/test_trackers.py"]
T_PROG = ["tests/test_training_ema_settings_logs.py", "tests/test_training_modules.py"]
T_UNITS = ["tests/test_units.py", "tests/test_units_noise.py", "src/genmodels/units.py"]
VALUES = 'values = ll.values.detach().to("cpu", torch.float64)'
TERM = 'append(term.detach().to("cpu", torch.float64))'
NFE = "float(ll.evaluations), dtype=torch.float64)"
BAR = 'tqdm(total=self.total, initial=initial, desc=desc, unit="step", dynamic_ncols=True,\n                             file=self.stream)'

# (name as in docs/mutation-runs, file, old text, new text, tests, expected: "killed" or "survive")
MUTANTS: list[tuple[str, str, str, str, list[str], str]] = [
    # evaluate.py (docs/mutation-runs/evaluate.txt; the code has since moved into _seeded_batches)
    ("evaluate 36", EVAL, "math.ceil(len(data) / batch_size)", "math.ceil(len(data) * batch_size)", T_EVAL, "killed"),
    ("evaluate 58", EVAL, "shard = data if world == 1 else", "shard = data if (world == 1) and False else", T_EVAL, "survive"),
    ("evaluate 69", EVAL, "shuffle=False)", "shuffle=None)", T_EVAL, "survive"),
    ("evaluate 72", EVAL, ", shuffle=False)", ")", T_EVAL, "survive"),
    ("evaluate 88", EVAL, "disable=not progress or rank != 0", "disable=None", T_EVAL, "killed"),
    ("evaluate 114", EVAL, "torch.arange(len(batch), dtype=torch.int64)", "torch.arange(len(batch), dtype=None)", T_EVAL, "survive"),
    ("evaluate 116", EVAL, "torch.arange(len(batch), dtype=torch.int64)", "torch.arange(len(batch), )", T_EVAL, "survive"),
    ("evaluate 123", EVAL, VALUES, VALUES.replace('"cpu"', "None"), T_EVAL, "survive"),
    ("evaluate 124", EVAL, VALUES, VALUES.replace("torch.float64", "None"), T_EVAL, "killed"),
    ("evaluate 125", EVAL, VALUES, VALUES.replace('"cpu", ', ""), T_EVAL, "survive"),
    ("evaluate 126", EVAL, VALUES, VALUES.replace("torch.float64", ""), T_EVAL, "killed"),
    ("evaluate 160", EVAL, NFE, NFE.replace("torch.float64", "None"), T_EVAL, "killed"),
    ("evaluate 163", EVAL, NFE, NFE.replace(", dtype=torch.float64", ", "), T_EVAL, "killed"),
    ("evaluate 172", EVAL, TERM, TERM.replace('"cpu"', "None"), T_EVAL, "survive"),
    ("evaluate 173", EVAL, TERM, TERM.replace("torch.float64", "None"), T_EVAL, "killed"),
    ("evaluate 174", EVAL, TERM, TERM.replace('"cpu", ', ""), T_EVAL, "survive"),
    ("evaluate 175", EVAL, TERM, TERM.replace("torch.float64", ""), T_EVAL, "killed"),
    ("evaluate 300", EVAL, "max(n - 1, 1)", "max(n - 1, 2)", T_EVAL, "killed"),
    # evaluate.py, rerun 2026-11-23: the evaluation bar's mutants in _seeded_batches that mutmut timed out on
    ("evaluate _seeded_batches 47", EVAL, "disable=not progress or rank != 0, leave=False", "disable=None, leave=False", T_EVAL, "killed"),
    ("evaluate _seeded_batches 48", EVAL, "leave=False):", "leave=None):", T_EVAL, "killed"),
    ("evaluate _seeded_batches 49", EVAL, "tqdm(loader, desc=", "tqdm(desc=", T_EVAL, "killed"),
    ("evaluate _seeded_batches 50", EVAL, 'desc="evaluate", unit="batch"', 'unit="batch"', T_EVAL, "killed"),
    ("evaluate _seeded_batches 51", EVAL, 'unit="batch", disable', "disable", T_EVAL, "killed"),
    ("evaluate _seeded_batches 52", EVAL, "disable=not progress or rank != 0, leave=False", "leave=False", T_EVAL, "killed"),
    ("evaluate _seeded_batches 53", EVAL, ", leave=False):", ", ):", T_EVAL, "killed"),
    ("evaluate _seeded_batches 54", EVAL, 'desc="evaluate", unit="batch"', 'desc="XXevaluateXX", unit="batch"', T_EVAL, "killed"),
    ("evaluate _seeded_batches 55", EVAL, 'desc="evaluate", unit="batch"', 'desc="EVALUATE", unit="batch"', T_EVAL, "killed"),
    ("evaluate _seeded_batches 56", EVAL, 'unit="batch", disable', 'unit="XXbatchXX", disable', T_EVAL, "killed"),
    ("evaluate_figures 13", EVAL, "else (0, 1)\n    was_training = model.training\n    model.eval()\n    found: dict[str, list",
     "else (1, 1)\n    was_training = model.training\n    model.eval()\n    found: dict[str, list", T_EVAL, "killed"),
    ("evaluate_figures 49", EVAL, 'append(values.detach().to("cpu", torch.float64))', 'append(values.detach().to(None, torch.float64))', T_EVAL, "survive"),
    ("evaluate_figures 51", EVAL, 'append(values.detach().to("cpu", torch.float64))', 'append(values.detach().to(torch.float64))', T_EVAL, "survive"),
    # rundir.py (docs/mutation-runs/rundir.txt; the leftover removal is now remove_leftovers)
    ("rundir resume_checkpoint 21", RUNDIR, "ignore_errors=True", "ignore_errors=None", T_RUN, "killed"),
    ("rundir resume_checkpoint 23", RUNDIR, ", ignore_errors=True", ", ", T_RUN, "killed"),
    ("rundir resume_checkpoint 24", RUNDIR, "ignore_errors=True", "ignore_errors=False", T_RUN, "killed"),
    ("rundir prepare 11", RUNDIR, 'open(self.metrics, newline="")', "open(self.metrics, newline=None)", T_RUN, "killed"),
    ("rundir prepare 13", RUNDIR, 'open(self.metrics, newline="")', "open(self.metrics, )", T_RUN, "killed"),
    ("rundir prepare 30", RUNDIR, 'with_suffix(".csv.tmp")', 'with_suffix(".CSV.TMP")', T_RUN, "killed"),
    ("rundir prepare 33", RUNDIR, 'open(tmp, "w", newline="")', 'open(tmp, "w", newline=None)', T_RUN, "killed"),
    ("rundir prepare 36", RUNDIR, 'open(tmp, "w", newline="")', 'open(tmp, "w", )', T_RUN, "killed"),
    ("rundir prepare 50", RUNDIR, 'open(self.metrics, "w", newline="")', 'open(self.metrics, "w", newline=None)', T_RUN, "killed"),
    ("rundir prepare 53", RUNDIR, 'open(self.metrics, "w", newline="")', 'open(self.metrics, "w", )', T_RUN, "killed"),
    ("rundir write_metrics 6", RUNDIR, 'open(self.metrics, "a", newline="")', 'open(self.metrics, "a", newline=None)', T_RUN, "killed"),
    ("rundir write_metrics 9", RUNDIR, 'open(self.metrics, "a", newline="")', 'open(self.metrics, "a", )', T_RUN, "killed"),
    # rundir.py, rerun 2026-11-23: remove_leftovers and _complete (added by the reliability merge)
    ("rundir remove_leftovers 13", RUNDIR, 'for folder in (run_dir, run_dir / "checkpoints")', 'for folder in (run_dir, run_dir / "XXcheckpointsXX")', T_RUN, "killed"),
    ("rundir remove_leftovers 14", RUNDIR, 'for folder in (run_dir, run_dir / "checkpoints")', 'for folder in (run_dir, run_dir / "CHECKPOINTS")', T_RUN, "killed"),
    ("rundir remove_leftovers 16", RUNDIR, 'folder.glob(".*.tmp-*")', 'folder.glob("XX.*.tmp-*XX")', T_RUN, "killed"),
    ("rundir remove_leftovers 17", RUNDIR, 'folder.glob(".*.tmp-*")', 'folder.glob(".*.TMP-*")', T_RUN, "killed"),
    ("rundir remove_leftovers 18", RUNDIR, "leftover.unlink(missing_ok=True)", "leftover.unlink(missing_ok=None)", T_RUN, "survive"),
    ("rundir remove_leftovers 19", RUNDIR, "leftover.unlink(missing_ok=True)", "leftover.unlink(missing_ok=False)", T_RUN, "survive"),
    ("rundir _complete 1", RUNDIR, "if None in row or any(", "if None in row and any(", T_RUN, "killed"),
    ("rundir _complete 6", RUNDIR, 'in (None, "") for c', 'in (None, "XXXX") for c', T_RUN, "killed"),
    ("rundir _complete 7", RUNDIR, "for c in METRIC_COLUMNS):\n        return False", "for c in METRIC_COLUMNS):\n        return True", T_RUN, "killed"),
    ("rundir _complete 14", RUNDIR, "except ValueError:\n        return False", "except ValueError:\n        return True", T_RUN, "killed"),
    # loop.py Trainer.train_step, rerun 2026-11-23 (test_training_modules + test_training_ema_settings_logs only)
    ("train_step r4", LOOP, "micro = batch if isinstance(batch, list) else [batch]", "micro = batch if (isinstance(batch, list)) or True else [batch]", T_LOOP, "killed"),
    ("train_step r11", LOOP, "model.training_step(b, step, due, forward)", "model.training_step(b, None, due, forward)", T_LOOP, "killed"),
    ("train_step r12", LOOP, "model.training_step(b, step, due, forward)", "model.training_step(b, step, None, forward)", T_LOOP, "killed"),
    ("train_step r19", LOOP, 'prefix = "" if len(self.groups) == 1 else', 'prefix = "" if (len(self.groups) == 1) and False else', T_LOOP, "killed"),
    ("train_step r21", LOOP, 'prefix = "" if len(self.groups) == 1 else', 'prefix = "XXXX" if len(self.groups) == 1 else', T_LOOP, "killed"),
    ("train_step r27", LOOP, "failed: list[str] = []", "failed: list[str] = None", T_LOOP, "killed"),
    ("train_step r96", LOOP, "failed.append(group)", "failed.append(None)", T_LOOP, "killed"),
    ("train_step r108", LOOP, "if self.ema is not None and not failed:", "if self.ema is not None and failed:", T_LOOP, "killed"),
    ("train_step r109", LOOP, "self.ema.update(model)", "self.ema.update(None)", T_LOOP, "killed"),
    # several processes: only the torch.distributed test (2 CPU processes, gloo; it imports the mutant)
    ("train_step r52", LOOP, "quiet = len(micro) > 1 and acc.num_processes > 1", "quiet = len(micro) > 1 or acc.num_processes > 1", T_DDP, "killed"),
    ("train_step r53", LOOP, "quiet = len(micro) > 1 and acc.num_processes > 1", "quiet = len(micro) >= 1 and acc.num_processes > 1", T_DDP, "killed"),
    ("train_step r55", LOOP, "quiet = len(micro) > 1 and acc.num_processes > 1", "quiet = len(micro) > 1 and acc.num_processes >= 1", T_LOOP, "survive"),
    ("train_step r59", LOOP, "acc.no_sync(forward) if quiet else", "acc.no_sync(forward) if (quiet) or True else", T_DDP, "killed"),
    # DDP's gradient all-reduce once per group and step instead of once per micro-batch: the same
    # gradients, one process or several (performance only)
    ("train_step r51", LOOP, "quiet = len(micro) > 1 and acc.num_processes > 1", "quiet = None", T_LOOP, "survive"),
    ("train_step r54", LOOP, "quiet = len(micro) > 1 and acc.num_processes > 1", "quiet = len(micro) > 2 and acc.num_processes > 1", T_LOOP, "survive"),
    ("train_step r56", LOOP, "quiet = len(micro) > 1 and acc.num_processes > 1", "quiet = len(micro) > 1 and acc.num_processes > 2", T_LOOP, "survive"),
    ("train_step r58", LOOP, "acc.no_sync(forward) if quiet else", "acc.no_sync(forward) if (quiet) and False else", T_LOOP, "survive"),
    ("train_step r60", LOOP, "acc.no_sync(forward) if quiet else", "acc.no_sync(None) if quiet else", T_LOOP, "survive"),
    ("train_step r80", LOOP, "accumulate_and_step(acc, forward, model,", "accumulate_and_step(acc, None, model,", T_LOOP, "survive"),
    # loop.py Trainer.train_step (docs/mutation-runs/loop-train_step.txt; the code has since changed)
    ("train_step 20", LOOP, "(group not in due or group in stepped)", "(group not in due and group in stepped)", T_LOOP, "killed"),
    ("train_step 23", LOOP, """f"{type(model).__name__}.training_step yielded group '{group}' at step {step}; "
                    f"due once each, in order: {due}\"""", "None", T_LOOP, "killed"),
    ("train_step 24", LOOP, "f\"{type(model).__name__}.training_step yielded group", "f\"{type(None).__name__}.training_step yielded group", T_LOOP, "killed"),
    ("train_step 25", LOOP, "stepped.append(group)", "stepped.append(None)", T_LOOP, "killed"),
    ("train_step 50", LOOP, 'warnings.filterwarnings("ignore", message=r"Detected call', 'warnings.filterwarnings("ignore", ) or (r"Detected call', T_LOOP, "killed"),
    ("train_step 53", LOOP, 'message=r"Detected call of `lr_scheduler\\.step\\(\\)`"', 'message=r"XXDetected call of `lr_scheduler\\.step\\(\\)`XX"', T_LOOP, "killed"),
    ("train_step 54", LOOP, 'message=r"Detected call of', 'message=r"detected call of', T_LOOP, "survive"),
    ("train_step 55", LOOP, 'message=r"Detected call of `lr_scheduler\\.step\\(\\)`"', 'message=r"DETECTED CALL OF `LR_SCHEDULER\\.STEP\\(\\)`"', T_LOOP, "survive"),
    # loop.py LossWindow.flush (docs/mutation-runs/loop-parts.txt)
    ("LossWindow.flush 10", LOOP, "max(time.perf_counter() - self.started, 1e-9)", "max(time.perf_counter() - self.started, 1.000000001)", T_LOOP, "killed"),
    # progress.py: the 3 survivors, then the bar mutants mutmut timed out on (killed outright by hand)
    ("progress __init__ 3", PROGRESS, "min_seconds: float = 10.0", "min_seconds: float = 11.0", T_PROG, "killed"),
    ("progress __init__ 30", PROGRESS, "tqdm(total=self.total,", "tqdm(total=None,", T_PROG, "killed"),
    ("progress update 1", PROGRESS, "def update(self, steps: int = 1)", "def update(self, steps: int = 2)", T_PROG, "killed"),
    ("progress __init__ 32", PROGRESS, "desc=desc, unit=", "desc=None, unit=", T_PROG, "killed"),
    ("progress __init__ 33", PROGRESS, 'unit="step"', "unit=None", T_PROG, "killed"),
    ("progress __init__ 34", PROGRESS, "dynamic_ncols=True", "dynamic_ncols=None", T_PROG, "killed"),
    ("progress __init__ 35", PROGRESS, BAR, BAR.replace("file=self.stream", "file=None"), T_PROG, "killed"),
    ("progress __init__ 36", PROGRESS, "tqdm(total=self.total, ", "tqdm(", T_PROG, "killed"),
    ("progress __init__ 37", PROGRESS, "initial=initial, desc=desc", "desc=desc", T_PROG, "killed"),
    ("progress __init__ 38", PROGRESS, "desc=desc, unit=", "unit=", T_PROG, "killed"),
    ("progress __init__ 39", PROGRESS, 'unit="step", ', "", T_PROG, "killed"),
    ("progress __init__ 40", PROGRESS, BAR, 'tqdm(total=self.total, initial=initial, desc=desc, unit="step", file=self.stream)', T_PROG, "killed"),
    ("progress __init__ 41", PROGRESS, BAR, BAR.replace("file=self.stream", ""), T_PROG, "killed"),
    ("progress __init__ 42", PROGRESS, 'unit="step"', 'unit="XXstepXX"', T_PROG, "killed"),
    ("progress __init__ 43", PROGRESS, 'unit="step"', 'unit="STEP"', T_PROG, "killed"),
    ("progress __init__ 44", PROGRESS, "dynamic_ncols=True", "dynamic_ncols=False", T_PROG, "killed"),
    ("progress log 7", PROGRESS, 'set_postfix({**shown, "ex/s": f"{examples_per_second:.0f}"}, ', "set_postfix(None, ", T_PROG, "killed"),
    ("progress log 8", PROGRESS, "refresh=False", "refresh=None", T_PROG, "survive"),
    ("progress log 9", PROGRESS, 'set_postfix({**shown, "ex/s": f"{examples_per_second:.0f}"}, ', "set_postfix(", T_PROG, "killed"),
    ("progress log 10", PROGRESS, ", refresh=False", ", ", T_PROG, "killed"),
    ("progress log 11", PROGRESS, '"ex/s": f"{examples', '"XXex/sXX": f"{examples', T_PROG, "killed"),
    ("progress log 12", PROGRESS, '"ex/s": f"{examples', '"EX/S": f"{examples', T_PROG, "killed"),
    ("progress log 13", PROGRESS, "refresh=False", "refresh=True", T_PROG, "killed"),
    ("progress message 3", PROGRESS, "self._bar.write(text, file=self.stream)", "self._bar.write(None, file=self.stream)", T_PROG, "killed"),
    ("progress message 4", PROGRESS, "self._bar.write(text, file=self.stream)", "self._bar.write(text, file=None)", T_PROG, "killed"),
    ("progress message 5", PROGRESS, "self._bar.write(text, file=self.stream)", "self._bar.write(file=self.stream)", T_PROG, "killed"),
    ("progress message 6", PROGRESS, "self._bar.write(text, file=self.stream)", "self._bar.write(text, )", T_PROG, "killed"),
    ("progress message 9", PROGRESS, "print(text, file=self.stream, flush=True)", "print(text, file=self.stream, flush=None)", T_PROG, "killed"),
    ("progress message 12", PROGRESS, "print(text, file=self.stream, flush=True)", "print(text, file=self.stream, )", T_PROG, "killed"),
    ("progress message 13", PROGRESS, "print(text, file=self.stream, flush=True)", "print(text, file=self.stream, flush=False)", T_PROG, "killed"),
    # training/report.py (first run 2026-11-23, tests/test_training_report.py only: docs/mutation-runs/report.txt)
    ("report results_markdown 11", REPORT, '("steps", "epochs", "minutes"', '("steps", "XXepochsXX", "minutes"', T_RUN, "killed"),
    ("report results_markdown 13", REPORT, '("steps", "epochs", "minutes"', '("steps", "epochs", "XXminutesXX"', T_RUN, "killed"),
    ("report results_markdown 55", REPORT, "| | | | | |\")\n            continue", "| | | | | |\")\n            break", T_RUN, "killed"),
    ("report results_markdown 100", REPORT, 'kind += " " + ", ".join(', 'kind += " " + "XX, XX".join(', T_RUN, "killed"),
    ("report results_markdown 124", REPORT, 'figures = [(row, FigureRecord.from_json(f)) for row in rows for f in row.get("test_figures") or []]', "figures = None", T_RUN, "killed"),
    ("report results_markdown 128", REPORT, 'row.get("test_figures")', 'row.get("XXtest_figuresXX")', T_RUN, "killed"),
    ("report results_markdown 130", REPORT, 'lines += [\n            "",\n            "Other test', 'lines = [\n            "",\n            "Other test', T_RUN, "killed"),
    ("report results_markdown 134", REPORT, '"Other test figures', '"other test figures', T_RUN, "killed"),
    ("report results_markdown 138", REPORT, '"| data | model | figure | test value | examples |"', '"| DATA | MODEL | FIGURE | TEST VALUE | EXAMPLES |"', T_RUN, "killed"),
    ("report results_markdown 140", REPORT, "lines += [f\"| {row['data']} | {row['model']} | {f.name}", "lines = [f\"| {row['data']} | {row['model']} | {f.name}", T_RUN, "killed"),
    ("report results_markdown 142", REPORT, "[f\"| {row['data']} | {row['model']} | {f.name}", "[f\"| {row['XXdataXX']} | {row['model']} | {f.name}", T_RUN, "killed"),
    ("report results_markdown 144", REPORT, "[f\"| {row['data']} | {row['model']} | {f.name}", "[f\"| {row['data']} | {row['XXmodelXX']} | {f.name}", T_RUN, "killed"),
    ("report _likelihood_options 3", REPORT, 'what="likelihood", model=model.name', 'what=None, model=model.name', T_RUN, "killed"),
    ("report _likelihood_options 4", REPORT, 'what="likelihood", model=model.name', 'what="likelihood", model=None', T_RUN, "killed"),
    ("report _likelihood_options 10", REPORT, 'what="likelihood", model=model.name', 'what="LIKELIHOOD", model=model.name', T_RUN, "killed"),
    ("report sampling_options 4", REPORT, 'what="sampling", model=model.name', 'what="sampling", model=None', T_RUN, "killed"),
    # report.finish_run: its tracker lines, against the tensorboard test (digits data)
    ("report finish_run 50", REPORT, 'if config.log_with != "none" and test_rows:', 'if config.log_with == "none" and test_rows:', T_TB, "killed"),
    ("report finish_run 53", REPORT, 'acc.log({f"{split}/{metric}": value for split, metric, value in test_rows}, step=state.step)', 'acc.log(None, step=state.step)', T_TB, "killed"),
    ("report finish_run 177", REPORT, 'if config.log_with != "none":\n            _log_images', 'if config.log_with == "none":\n            _log_images', T_TB, "killed"),
    # report.finish_run's survivors, against test_training_report (its end-to-end tests)
    ('report finish_run r16', REPORT, 'eval_options = _likelihood_options(model, config.eval_options)', 'eval_options = None', T_RUN, 'killed'),
    ('report finish_run r25', REPORT, 'test = evaluate_likelihood(model, trainer.dataset.test, batch_size=config.eval_batch_size, options=eval_options)', 'test = evaluate_likelihood(model, trainer.dataset.test, batch_size=config.eval_batch_size, options=None)', T_RUN, 'killed'),
    ('report finish_run r28', REPORT, 'test = evaluate_likelihood(model, trainer.dataset.test, batch_size=config.eval_batch_size, options=eval_options)', 'test = evaluate_likelihood(model, trainer.dataset.test, options=eval_options)', T_RUN, 'killed'),
    ('report finish_run r29', REPORT, 'test = evaluate_likelihood(model, trainer.dataset.test, batch_size=config.eval_batch_size, options=eval_options)', 'test = evaluate_likelihood(model, trainer.dataset.test, batch_size=config.eval_batch_size, )', T_RUN, 'killed'),
    ('report finish_run r32', REPORT, 'test_figures = evaluate_figures(model, trainer.dataset.test, batch_size=config.eval_batch_size)', 'test_figures = evaluate_figures(model, None, batch_size=config.eval_batch_size)', T_RUN, 'killed'),
    ('report finish_run r33', REPORT, 'test_figures = evaluate_figures(model, trainer.dataset.test, batch_size=config.eval_batch_size)', 'test_figures = evaluate_figures(model, trainer.dataset.test, batch_size=None)', T_RUN, 'killed'),
    ('report finish_run r36', REPORT, 'test_figures = evaluate_figures(model, trainer.dataset.test, batch_size=config.eval_batch_size)', 'test_figures = evaluate_figures(model, trainer.dataset.test, )', T_RUN, 'killed'),
    ('report finish_run r49', REPORT, 'if config.log_with != "none" and test_rows:', 'if config.log_with != "none" or test_rows:', T_RUN, 'survive'),
    ('report finish_run r51', REPORT, 'if config.log_with != "none" and test_rows:', 'if config.log_with != "XXnoneXX" and test_rows:', T_RUN, 'survive'),
    ('report finish_run r54', REPORT, 'acc.log({f"{split}/{metric}": value for split, metric, value in test_rows}, step=state.step)', 'acc.log({f"{split}/{metric}": value for split, metric, value in test_rows}, step=None)', T_RUN, 'killed'),
    ('report finish_run r55', REPORT, 'acc.log({f"{split}/{metric}": value for split, metric, value in test_rows}, step=state.step)', 'acc.log(step=state.step)', T_RUN, 'killed'),
    ('report finish_run r56', REPORT, 'acc.log({f"{split}/{metric}": value for split, metric, value in test_rows}, step=state.step)', 'acc.log({f"{split}/{metric}": value for split, metric, value in test_rows}, )', T_RUN, 'killed'),
    ('report finish_run r71', REPORT, 'draw_samples(model, config.num_samples, seed=config.seed, options=config.sample_options)', 'draw_samples(model, config.num_samples, seed=config.seed, options=None)', T_RUN, 'killed'),
    ('report finish_run r75', REPORT, 'draw_samples(model, config.num_samples, seed=config.seed, options=config.sample_options)', 'draw_samples(model, config.num_samples, seed=config.seed, )', T_RUN, 'killed'),
    ('report finish_run r178', REPORT, 'if config.log_with != "none":\n            _log_images', 'if config.log_with != "XXnoneXX":\n            _log_images', T_RUN, 'survive'),
    ('report finish_run r180', REPORT, '_log_images(acc, files, ckpt.meta["step"])', '_log_images(None, files, ckpt.meta["step"])', T_RUN, 'killed'),
    ('report finish_run r181', REPORT, '_log_images(acc, files, ckpt.meta["step"])', '_log_images(acc, None, ckpt.meta["step"])', T_RUN, 'killed'),
    ('report finish_run r182', REPORT, '_log_images(acc, files, ckpt.meta["step"])', '_log_images(acc, files, None)', T_RUN, 'killed'),
    ('report finish_run r184', REPORT, '_log_images(acc, files, ckpt.meta["step"])', '_log_images(acc, ckpt.meta["step"])', T_RUN, 'killed'),
    # units.py, dequantize_with_noise (added after the first units run; mutmut rerun 2026-11-23)
    ("units uniform_dequantize 12", UNITS, "return (x.to(torch.float32) + u) / levels", "return (x.to(None) + u) / levels", T_UNITS, "survive"),
    ("units dequantize_with_noise 2", UNITS, 'raise ValueError(f"noise of shape', 'raise ValueError(None) or (f"noise of shape', T_UNITS, "killed"),
    ("units dequantize_with_noise 3", UNITS, "{tuple(u.shape)} for data", "{tuple(None)} for data", T_UNITS, "killed"),
    ("units dequantize_with_noise 4", UNITS, "of shape {tuple(x.shape)}", "of shape {tuple(None)}", T_UNITS, "killed"),
    ("units dequantize_with_noise 7", UNITS, "return (x.to(u.dtype) + u) / levels", "return (x.to(None) + u) / levels", T_UNITS, "killed"),
]


def run(name: str, file: str, old: str, new: str, tests: list[str]) -> tuple[bool, str]:
    text = (repo / file).read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{name}: {text.count(old)} matches of {old!r} in {file}")
    scratch = Path(tempfile.mkdtemp(prefix="hand-mutant-"))
    try:
        shutil.copytree(repo / "src", scratch / "src")
        shutil.copytree(repo / "tests", scratch / "tests")
        shutil.copy(repo / "pyproject.toml", scratch)
        (scratch / file).write_text(text.replace(old, new))
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE", *tests],
            cwd=scratch, env={**os.environ, "PYTHONPATH": str(scratch / "src"), "OMP_NUM_THREADS": "1"},
            capture_output=True, text=True, timeout=300,
        )
        failed = re.search(r"^(?:FAILED|ERROR) (\S+)", r.stdout, re.M)
        return r.returncode != 0, failed.group(1) if failed else ""
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(mutants: list[tuple[str, str, str, str, list[str], str]] = MUTANTS) -> int:
    """Run the mutants whose names contain one of the command line's arguments (all without any)."""
    wanted = sys.argv[1:]
    wrong = []
    for name, file, old, new, tests, expected in mutants:
        if wanted and not any(w in name for w in wanted):
            continue
        killed, by = run(name, file, old, new, tests)
        verdict = "killed" if killed else "survive"
        mark = "" if verdict == expected else "   <-- expected " + expected
        print(f"{'KILLED  ' if killed else 'SURVIVED'} {name}: {by}{mark}", flush=True)
        if verdict != expected:
            wrong.append(name)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
