"""The training loop on Hugging Face Accelerate: one loop for every model.

The loop knows nothing of model families. Each step it asks the model's ``training_step`` for the
loss of every optimizer group that is due, and steps each group in isolation
(:func:`~genmodels.training.optim.step_group`); it keeps an optional EMA of the weights, evaluates
the validation split every ``eval_every`` steps and checkpoints. What is not stepping the optimizer
lives beside it: choosing the best checkpoint (:mod:`.selection`), saving and resuming bit-exactly
(:mod:`.resume`), the non-finite guard (:mod:`.guard`), stopping on a signal (:mod:`.signals`), and
the end-of-run report (:mod:`.report`), which :meth:`Trainer.fit` hands the loop's outcome to.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..checkpoint import checkpoint_name, list_checkpoints
from ..core import Batch, GenerativeModel
from ..data.base import Dataset
from ..errors import UserError, option
from .accelerator import build_accelerator
from .batches import EpochSampler, train_loader
from .config import TrainConfig
from .ema import EMA
from .guard import NonFiniteGuard, TrainingDiverged
from .optim import accumulate_and_step, build_optimizers, build_schedulers
from .progress import ProgressLog
from ..runlock import releases_run_lock
from ..trackers import flat_hyperparameters as _flat_hyperparameters  # noqa: F401 (tests reach it here)
from ..trackers import tracking
from .report import TrainResult, finish_run
from .resume import ResumePlan, load_training_state, repoint_best, write_checkpoint
from .rundir import RunDir, check_run_dir, invocation_record, likelihood_rows, run_description
from .selection import CheckpointSelector, check_training_options
from .signals import SignalFlag, TrainingInterrupted
from .state import RunOutcome, TrainState, gathered_rng_states, restore_noise_stream
from .window import LossWindow

__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted"]


class Trainer:
    """Train ``model`` on ``dataset`` into ``run_dir`` (see the module docstring).

    Args:
        model: a freshly built model (the caller seeds before building it; :func:`train` does).
        dataset: the data; ``dataset.source`` is stored so that ``genmodels eval`` can reload it.
        config: the budget and settings.
        run_dir: the run folder; must hold nothing unless ``resume``.
        resume: the resumed run's plan (:func:`~genmodels.training.resume.plan_resume`), or None.
        progress: show a progress bar on a terminal (log lines and validation lines stay).
    """

    def __init__(
        self,
        model: GenerativeModel,
        dataset: Dataset,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        resume: ResumePlan | None = None,
        progress: bool = True,
    ):
        self.model, self.dataset, self.config = model, dataset, config
        self.run_dir = Path(run_dir)
        self.show_bar = progress
        self.resume = resume
        self.resume_from = resume.checkpoint if resume is not None else check_run_dir(self.run_dir, False)
        if len(dataset.train) == 0:
            raise UserError(f"data set '{dataset.spec.name}' has no training examples")
        check_training_options(model, config)
        self.groups, self.settings, self.optimizers = build_optimizers(model, config)
        self.accelerator = build_accelerator(config, len(self.groups) > 1, self.run_dir)
        self.batch_size = min(config.batch_size, len(dataset.train))
        self.accumulation = config.grad_accumulation
        # Full batches only: every step sees B examples on each of N processes, G times (accumulation).
        self.global_batch = self.batch_size * self.accumulation * self.accelerator.num_processes
        self.steps_per_epoch = len(dataset.train) // self.global_batch
        if self.steps_per_epoch == 0:
            raise UserError(
                f"a step takes {self.global_batch} examples ({option('batch_size', self.batch_size)} × "
                f"{option('grad_accumulation', self.accumulation)} × {self.accelerator.num_processes} processes), more than the "
                f"{len(dataset.train)} training examples; lower {option('batch_size')} or {option('grad_accumulation')}"
            )
        self.budget_steps = config.step_budget(self.steps_per_epoch)
        self.schedulers = build_schedulers(self.optimizers, config, self.budget_steps)
        model.to(self.accelerator.device)
        if self.resume_from is None:
            # Batches of the global batch, so that N processes (or G accumulated micro-batches)
            # initialize exactly as one process with the whole batch would (actnorm reads the first).
            init_loader = DataLoader(dataset.train, batch_size=min(self.global_batch, len(dataset.train)), shuffle=False)
            model.initialize(Batch.of(item).to(self.accelerator.device) for item in init_loader)
        self.ema = EMA(model, config.ema_decay, warmup=config.ema_warmup) if config.ema_decay is not None else None
        self.state = TrainState()
        self.run = RunDir(self.run_dir, is_main=self.accelerator.is_main_process)
        self.window = LossWindow()
        self.display: ProgressLog | None = None
        self.selector = CheckpointSelector(model, dataset, config, self.accelerator.device)
        self.guard = NonFiniteGuard(config, self.run_dir, self._load_training_state, self._say)
        self.signals = SignalFlag()

    def _say(self, text: str) -> None:
        if self.display is not None:
            self.display.message(text)

    # --- the run ---------------------------------------------------------------------------------
    @releases_run_lock
    @tracking  # the --log-with tracker: started before the loop, finished after the report
    def fit(self) -> TrainResult:
        """Train (:meth:`run_loop`), then report on the best checkpoint (:func:`~.report.finish_run`)."""
        return finish_run(self.run_loop(), self.dataset, self.config)

    def run_loop(self) -> RunOutcome:
        """Train until the budget is spent; checkpoints, metrics.csv and run.json are written."""
        acc = self.accelerator
        rng_to_restore = None
        if self.resume_from is not None:
            self.state, rng_to_restore = self._load_training_state(self.resume_from)
            if self.state.good_checkpoint is None:  # written before the non-finite guard
                self.state.good_checkpoint = self.resume_from.name
            if acc.is_main_process:
                repoint_best(self.run_dir, self.state)
        else:
            self.selector.check_select_measure(self.evaluation_model())
        self.run.prepare(
            {**run_description(self.model, self.dataset, self.config), "num_parameters": self.model.num_parameters()},
            invocation_record(self.config.to_json(), str(acc.device), acc.num_processes,
                              **(self.resume.record if self.resume else {})),
            None if self.resume_from is None else self.state.step,
        )
        self.display = ProgressLog(
            self.budget_steps, self.state.step, f"train {self.model.name}",
            bar=self.show_bar, enabled=acc.is_local_main_process, budget_minutes=self.config.minutes,
        )
        try:
            if not self.optimizers:
                self.display.message(f"{self.model.name}: no trainable parameters (fitted in closed form); evaluating")
                if not list_checkpoints(self.run_dir):
                    self.evaluate_and_checkpoint()
            else:
                loader, forward, sampler = self._prepare()
                restore_noise_stream(rng_to_restore, self.config.seed, acc.process_index, self.state.step)  # per process
                if self.state.step == 0 and self.resume_from is None:
                    self.evaluate_and_checkpoint()  # the starting point, so that step 0 can be the best
                with self.signals.installed():
                    self._loop(loader, forward, sampler)
        finally:
            self.display.close()
        acc.wait_for_everyone()  # the first process has written the checkpoint
        best = self.run_dir / "checkpoints" / self.state.best_checkpoint
        return RunOutcome(self.run_dir, best, self.state, acc, self._say)

    def _prepare(self):
        """The data loader (sharded across processes) and the model's forward as Accelerate wraps it."""
        acc = self.accelerator
        loader, sampler = train_loader(self.dataset.train, self.batch_size, self.config.seed, self.config.num_workers)
        prepared = acc.prepare(self.model, *self.optimizers.values(), loader)
        forward, optimizers, loader = prepared[0], prepared[1:-1], prepared[-1]
        self.optimizers = dict(zip(self.optimizers, optimizers))
        if self.config.compile:
            # Compiles the module's forward (the model's loss); unwrap_model still finds the model.
            forward = torch.compile(forward)
        return loader, forward, sampler

    def _loop(self, loader, forward, sampler: EpochSampler) -> None:
        """The loop alone: steps, log lines, evaluations, until the budget is spent."""
        cfg, acc, state = self.config, self.accelerator, self.state
        start = time.perf_counter() - state.seconds
        stop = state.step >= self.budget_steps
        while not stop:
            epoch_loader = acc.skip_first_batches(loader, state.batch_in_epoch) if state.batch_in_epoch else loader
            # Accelerate's loader passes its own epoch counter to the sampler when iterated; set it.
            epoch_loader.set_epoch(state.epoch)
            sampler.set_epoch(state.epoch)
            self.dataset.train.set_epoch(state.epoch)
            micro: list[Batch] = []
            for item in epoch_loader:
                micro.append(Batch.of(item))
                if len(micro) < self.accumulation:
                    continue
                failed = self.train_step(forward, micro)
                examples = sum(len(b) for b in micro) * acc.num_processes
                micro = []
                state.step += 1
                state.batch_in_epoch += self.accumulation
                state.examples += examples
                self.window.examples += examples
                state.seconds = time.perf_counter() - start
                self.display.update(1, seconds=state.seconds)
                self.guard.check(failed, state)
                out_of_time = cfg.minutes is not None and state.seconds >= cfg.minutes * 60
                stop = state.step >= self.budget_steps or out_of_time
                if state.step % cfg.log_every == 0 or stop:
                    self._log_training(final=stop)
                if state.step % cfg.eval_every == 0 or stop:
                    eval_started = time.perf_counter()
                    self.evaluate_and_checkpoint()
                    start += time.perf_counter() - eval_started  # `seconds` counts training time only
                signum = self.signals.received(acc)
                if signum:
                    self._interrupt(signum)
                if stop:
                    break
            else:
                state.epoch += 1
                state.batch_in_epoch = 0

    def train_step(self, forward, batch: Batch | list[Batch]) -> list[str]:
        """One training step: every group that is due, in order, each updated in isolation.

        With G micro-batches (gradient accumulation), each group's gradient is the mean over all G
        of them before that group steps: the step of one batch G times larger under a mean loss.
        A later group's losses see the earlier groups' updated parameters, as without accumulation.

        A group whose loss or gradient is NaN or infinite (on any process) is not stepped, its
        gradients are zeroed and its losses are not logged; the EMA is not updated on such a step.
        Returns the groups skipped so (every process returns the same).
        """
        acc, step = self.accelerator, self.state.step
        micro = batch if isinstance(batch, list) else [batch]
        due = [name for name, s in self.settings.items() if s.due(step)]
        model = acc.unwrap_model(forward)
        streams = [model.training_step(b, step, due, forward) for b in micro]
        prefix = "" if len(self.groups) == 1 else "{}/"
        stepped: list[str] = []
        pending: list[dict[str, Tensor]] = []  # this group's losses, logged once it has stepped
        failed: list[str] = []

        def next_loss(i: int):
            with acc.autocast():
                try:
                    group, out = next(streams[i])
                except StopIteration:
                    return None
            if (group != stepped[-1]) if i > 0 else (group not in due or group in stepped):
                raise RuntimeError(
                    f"{type(model).__name__}.training_step yielded group '{group}' at step {step}; "
                    f"due once each, in order: {due}"
                )
            if i == 0:
                stepped.append(group)
            pending.append(self.window.pieces(prefix.format(group), out))
            return out.loss

        # With several processes and micro-batches, every forward but the last skips DDP's gradient
        # averaging (no_sync), so gradients are averaged once per group and step.
        quiet = len(micro) > 1 and acc.num_processes > 1
        while True:
            with acc.no_sync(forward) if quiet else contextlib.nullcontext():
                first = next_loss(0)
            if first is None:
                break
            group = stepped[-1]

            def losses():
                yield first
                for i in range(1, len(micro)):
                    loss = next_loss(i)
                    if loss is None:
                        raise RuntimeError(f"{type(model).__name__}.training_step yielded fewer groups for another micro-batch")
                    yield loss

            if accumulate_and_step(acc, forward, model, losses(), len(micro), self.groups[group].params,
                                   self.optimizers[group], self.settings[group]):
                for pieces in pending:
                    self.window.add_pieces(pieces)
            else:
                failed.append(group)
            pending.clear()
        with warnings.catch_warnings():
            # A group not due this step (n_critic, a warm-up) has not stepped its optimizer; its
            # schedule still counts the global step, which is what we want.
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            for scheduler in self.schedulers.values():
                scheduler.step()
        if self.ema is not None and not failed:
            self.ema.update(model)
        return failed

    def _log_training(self, *, final: bool) -> None:
        values, rate = self.window.flush(self.state.step, self.accelerator)  # raises on a non-finite loss
        values["lr"] = next(iter(self.schedulers.values())).get_last_lr()[0]
        self.run.write_metrics([("train", k, v) for k, v in values.items()], self.state.to_json())
        self.display.log(self.state.step, values, rate, final=final)
        if self.config.log_with != "none":
            self.accelerator.log({f"train/{k}": v for k, v in values.items()}, step=self.state.step)

    # --- evaluation and checkpoints --------------------------------------------------------------
    def evaluation_model(self) -> GenerativeModel:
        """The model evaluated and checkpointed as best: the EMA weights when training keeps them."""
        model = self.accelerator.unwrap_model(self.model)
        return model if self.ema is None else self.ema.averaged(model)

    def evaluate_and_checkpoint(self) -> None:
        """Evaluate validation (with the selector's validation options), log it, checkpoint,
        and move the best pointer if it improved. The test split waits for the end of the run."""
        state = self.state
        show = self.display is not None and self.display.enabled
        validation, figures = self.selector.evaluate(self.evaluation_model, progress=show, say=self._say)
        rows = likelihood_rows(validation, "validation") + [("validation", f.name, f.mean) for f in figures]
        self.run.write_metrics(rows, state.to_json())
        if self.config.log_with != "none" and rows:
            self.accelerator.log({f"{split}/{metric}": v for split, metric, v in rows}, step=state.step)
        score, label = self.selector.score(
            validation, figures, self.evaluation_model, lambda rows: self.run.write_metrics(rows, state.to_json())
        )
        if state.improves(score):
            state.best_nll, state.best_checkpoint = score, checkpoint_name(state.step)
        self._save(validation)
        if label is not None:
            self._say(f"step {state.step}: validation {label}")

    def _save(self, validation: list, *, move_best: bool = True) -> None:
        acc, state = self.accelerator, self.state
        if self.ema is not None:
            state.ema_updates = self.ema.updates
        name = checkpoint_name(state.step)
        if state.nan_streak == 0:  # a checkpoint inside a run of skipped steps is no place to roll back to
            state.good_checkpoint = name
        rng = gathered_rng_states(acc)  # every process takes part; the first writes
        if acc.is_main_process:
            meta = {**run_description(self.model, self.dataset, self.config), "step": state.step, "epoch": state.epoch,
                    "validation": [r.to_json() for r in validation]}
            write_checkpoint(self.run_dir, name, state, meta=meta, model=acc.unwrap_model(self.model), ema=self.ema,
                             optimizers=self.optimizers, schedulers=self.schedulers, keep=self.config.keep_checkpoints,
                             best_by=self.selector.selected_by if move_best else None, rng=rng)
        acc.wait_for_everyone()

    def _load_training_state(self, path: Path) -> tuple[TrainState, dict[str, Any]]:
        return load_training_state(path, model=self.model, ema=self.ema, optimizers=self.optimizers, schedulers=self.schedulers,
                                   batches_per_epoch=self.steps_per_epoch * self.accumulation)

    def _interrupt(self, signum: int) -> None:
        """Checkpoint the current step (no evaluation: a scheduler's grace period is short) and stop."""
        name = checkpoint_name(self.state.step)
        if not (self.run_dir / "checkpoints" / name).exists():
            self._save([], move_best=False)
        if self.display is not None:
            self.display.close()
        raise TrainingInterrupted(signum, self.state.step, self.run_dir / "checkpoints" / name)
