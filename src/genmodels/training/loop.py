"""The training loop on Hugging Face Accelerate: one loop for every model.

The loop knows nothing of model families. Each step it asks the model's ``training_step`` for the
loss of every optimizer group that is due, and steps each group in isolation
(:func:`~genmodels.training.optim.step_group`); it keeps an optional EMA of the weights, evaluates
the validation split every ``eval_every`` steps, keeps the checkpoint that is best on validation
(test figures are measured once, at the end, on that checkpoint: ../shared/PROTOCOL.md), writes
metrics.csv, and resumes bit-exactly from its last checkpoint: model, optimizers, schedules, EMA,
RNG states and the position in the data order all come back.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, default_collate

from ..checkpoint import (
    BEST_POINTER, EMA_FILE, MODEL_FILE, check_state, checkpoint_name, list_checkpoints, read_checkpoint, read_json,
    remove_checkpoint, save_checkpoint, write_json_atomic,
)
from ..core import Batch, GenerativeModel, LikelihoodKind, Loss
from ..data.base import Dataset
from ..errors import UserError
from ..evaluate import FigureRecord, LikelihoodRecord, evaluate_figures, evaluate_likelihood, format_records
from .config import TrainConfig
from .ema import EMA
from .optim import accumulate_and_step, build_optimizers, build_schedulers
from .progress import ProgressLog
from .report import TrainResult, finish_run
from .rundir import RunDir, check_run_dir, invocation_record
from ..run_files import check_resumable, check_tracker_installed  # reliability: checks before use
from ..runlock import releases_run_lock  # reliability: the run folder's lock ends with the run
from .state import TrainState, rng_state, set_rng_state

__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted", "EpochSampler", "LossWindow", "train_loader"]


class TrainingDiverged(UserError):
    """The loss (or its gradient) stayed NaN or infinite through the non-finite guard's skips and
    roll-backs (``nan_tolerance``, ``nan_rollbacks``); the checkpoints written before are intact."""


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT stopped training after a checkpoint of the current step was written.

    ``exit_code`` is the shell's convention for death by that signal (128 + its number: 143 for
    SIGTERM, 130 for SIGINT), so schedulers (SLURM, Kubernetes) see what happened.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(
            f"{name} received: saved {checkpoint} at step {step}; continue with --resume --out {checkpoint.parent.parent}"
        )


class EpochSampler(Sampler[int]):
    """A shuffled order of the training set that depends only on (seed, epoch).

    A resumed run rebuilds the same order and skips the batches it already took.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


def train_loader(split, batch_size: int, seed: int, num_workers: int = 0) -> tuple[DataLoader, EpochSampler]:
    """The training loader before Accelerate shards it, and its sampler.

    Its batches are the per-process batches of one global order (:class:`EpochSampler`); Accelerate's
    ``prepare`` hands batch i to process i mod N, so a step of N processes takes N consecutive
    batches: the same examples as one process with an N times larger batch.
    """
    sampler = EpochSampler(len(split), seed)
    # The loader draws its workers' base seed from its own generator, not the global RNG, so that
    # starting an iterator (each epoch, and once more on resume) leaves the model's RNG stream alone.
    loader = DataLoader(
        split,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, sampler


class LossWindow:
    """Training losses summed on the device between two log lines (no per-step host sync)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}
        self.examples = 0
        self.started = time.perf_counter()

    @staticmethod
    def pieces(prefix: str, out: Loss) -> dict[str, Tensor]:
        """What :meth:`add` adds for ``out``: its loss and the mean of each term, detached."""
        pieces = {f"{prefix}loss": out.loss.detach().float()}
        pieces.update({f"{prefix}{k}": v.detach().float().mean() for k, v in out.terms.items()})
        return pieces

    def add(self, prefix: str, out: Loss) -> None:
        self.add_pieces(self.pieces(prefix, out))

    def add_pieces(self, pieces: dict[str, Tensor]) -> None:
        for key, value in pieces.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1

    def flush(self, step: int, accelerator=None) -> tuple[dict[str, float], float]:
        """The mean of each quantity since the last flush (averaged across processes), and the
        examples per second; raises :class:`TrainingDiverged` on a non-finite loss."""
        keys = list(self.sums)
        rate = self.examples / max(time.perf_counter() - self.started, 1e-9)
        if not keys:
            self._reset()
            return {}, rate
        means = torch.stack([self.sums[key] / self.counts[key] for key in keys])
        if accelerator is not None and accelerator.num_processes > 1:
            means = accelerator.reduce(means, reduction="mean")
        values = dict(zip(keys, means.tolist()))
        for key, value in values.items():
            if not math.isfinite(value) and key.endswith("loss"):
                raise TrainingDiverged(
                    f"the {key} became {value} by step {step}; lower --lr or set --grad-clip "
                    "(the checkpoints written before are intact)"
                )
        self._reset()
        return values, rate


def _records_to_rows(records: list[LikelihoodRecord], split: str) -> list[tuple[str, str, float]]:
    rows = []
    for r in records:
        rows.append((split, f"{r.measure}_nll", r.nll_nats))
        if r.bits_per_dim is not None:
            rows.append((split, f"{r.measure}_bpd", r.bits_per_dim))
    return rows


def _accelerator(config: TrainConfig, several_groups: bool, run_dir: Path):
    """The Accelerator of this run, through Accelerate's public API only.

    Accelerate keeps the precision in a process-wide state that its public API cannot change once
    set, so a process trains in one precision: a different one is refused with the fix (run it in a
    new process), never forced through a private reset.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, is_initialized
    from accelerate.utils import DistributedDataParallelKwargs

    if is_initialized() and AcceleratorState().mixed_precision != config.mixed_precision:
        raise UserError(
            f"this process already trains with mixed precision '{AcceleratorState().mixed_precision}'; "
            f"Accelerate keeps one precision per process: run the '{config.mixed_precision}' training in a new process"
        )
    # Several processes on a machine without a GPU (torchrun/accelerate launch on CPUs) form a gloo
    # group only when Accelerate is told cpu=True; on one process, cpu=False keeps MPS etc.
    several_cpu_processes = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    # With several groups each group's forward uses only part of the parameters (a discriminator's
    # loss on detached fakes never reaches the generator): DDP must be told, or it waits for them.
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if several_groups else []
    tracking = {} if config.log_with == "none" else {"log_with": config.log_with, "project_dir": str(run_dir)}
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        cpu=config.cpu or several_cpu_processes,
        kwargs_handlers=handlers,
        **tracking,
    )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        leave_process_group_at_exit()
    return accelerator


@functools.cache
def leave_process_group_at_exit() -> None:
    """Once per process: leave the process group (barrier, then destroy) when the interpreter exits.

    Left to the interpreter's teardown, gloo's worker threads can abort a finished process
    ("terminate called without an active exception"), failing a run that wrote everything. Whatever
    ran the training (the CLI, a script calling :func:`train` several times) exits through this.
    If another process failed, torchrun's agent ends this one, so the barrier cannot hang.
    """
    import atexit

    def leave() -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    atexit.register(leave)


class Trainer:
    """Train ``model`` on ``dataset`` into ``run_dir`` (see the module docstring).

    Args:
        model: a freshly built model (the caller seeds before building it; :func:`train` does).
        dataset: the data; ``dataset.source`` is stored so that ``genmodels eval`` can reload it.
        config: the budget and settings.
        run_dir: the run folder; must hold nothing unless ``resume``.
        resume: continue from the run folder's latest checkpoint.
        progress: show a progress bar on a terminal (log lines and validation lines stay).
        extra_record: more facts for run.json (e.g. a resume's allowed config changes).
    """

    def __init__(
        self,
        model: GenerativeModel,
        dataset: Dataset,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
        extra_record: dict[str, Any] | None = None,
    ):
        self.model, self.dataset, self.config = model, dataset, config
        self.run_dir = Path(run_dir)
        self.show_bar = progress
        self.extra_record = extra_record or {}
        self.resume_from = check_run_dir(self.run_dir, resume)
        if len(dataset.train) == 0:
            raise UserError(f"data set '{dataset.spec.name}' has no training examples")
        self._check_options()
        check_tracker_installed(config.log_with)
        self.groups, self.settings, self.optimizers = build_optimizers(model, config)
        self.accelerator = _accelerator(config, len(self.groups) > 1, self.run_dir)
        self.batch_size = min(config.batch_size, len(dataset.train))
        self.accumulation = config.grad_accumulation
        # Full batches only: every step sees B examples on each of N processes, G times (accumulation).
        self.global_batch = self.batch_size * self.accumulation * self.accelerator.num_processes
        self.steps_per_epoch = len(dataset.train) // self.global_batch
        if self.steps_per_epoch == 0:
            raise UserError(
                f"a step takes {self.global_batch} examples (--batch-size {self.batch_size} × --grad-accumulation "
                f"{self.accumulation} × {self.accelerator.num_processes} processes), more than the "
                f"{len(dataset.train)} training examples; lower --batch-size or --grad-accumulation"
            )
        budget = math.inf if config.steps is None else config.steps
        if config.epochs is not None:
            budget = min(budget, math.ceil(config.epochs * self.steps_per_epoch))
        self.budget_steps = budget
        self.schedulers = build_schedulers(self.optimizers, config, budget)
        model.to(self.accelerator.device)
        if self.resume_from is None:
            # Batches of the global batch, so that N processes (or G accumulated micro-batches)
            # initialize exactly as one process with the whole batch would (actnorm reads the first).
            init_loader = DataLoader(dataset.train, batch_size=min(self.global_batch, len(dataset.train)), shuffle=False)
            model.initialize(Batch.of(item).to(self.accelerator.device) for item in init_loader)
        self.ema = None
        if config.ema_decay is not None:
            self.ema = EMA(model, config.ema_decay, warmup=config.ema_warmup)
        self.state = TrainState()
        self.run = RunDir(self.run_dir, is_main=self.accelerator.is_main_process)
        self.window = LossWindow()
        self.display: ProgressLog | None = None
        self._ema_model: GenerativeModel | None = None
        self._fd_monitor = None  # FD on validation, built on first use (select_by)
        self._selected_by = "latest"
        self._signal: int = 0

    def _check_options(self) -> None:
        """Refuse a misspelt option now, not after the training it would follow: the sampling, test
        and validation options are parsed against the model's signatures (no evaluation)."""
        from .report import _likelihood_options, sampling_options

        sampling_options(self.model, self.config.sample_options)
        _likelihood_options(self.model, self.config.eval_options)
        _likelihood_options(self.model, self.config.validation_options)
        if self.config.select_measure is not None and self.model.likelihood_kind is LikelihoodKind.NONE:
            raise UserError(f"--select-measure {self.config.select_measure}: '{self.model.name}' has no likelihood records")

    def _check_select_measure(self) -> None:
        """``select_measure`` names a record of the model's validation: the records' measures are
        known only by evaluating, so one validation example is evaluated (with the validation
        options, on its own RNG stream) before anything is written."""
        if self.config.select_measure is None or len(self.dataset.validation) == 0:
            return
        first = Batch.of(default_collate([self.dataset.validation[0]]))
        example = Batch(first.x, first.y, seeds=torch.zeros(1, dtype=torch.int64)).to(self.accelerator.device)
        devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
        model = self.evaluation_model()
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            was_training = model.training
            model.eval()
            records = model.log_likelihoods(example, **self.validation_options)
            model.train(was_training)
        self._selection_record(records)

    # --- what a checkpoint says ------------------------------------------------------------------
    def description(self) -> dict[str, Any]:
        """What is trained on what, and how: enough to rebuild the model and reload the data."""
        return {
            "model": self.model.name,
            "model_module": type(self.model).__module__,
            "model_config": self.model.config.to_json(),
            "likelihood_kind": self.model.likelihood_kind.value,
            "data": {"source": self.dataset.source, "spec": self.dataset.spec.to_json()},
            "train_config": self.config.to_json(),
        }

    # --- the run ---------------------------------------------------------------------------------
    @releases_run_lock
    def fit(self) -> TrainResult:
        acc = self.accelerator
        rng_to_restore = self._restore() if self.resume_from is not None else None
        if self.resume_from is not None and acc.is_main_process:
            self._repoint_best()
        if self.resume_from is None:
            self._check_select_measure()
        self.run.prepare(
            {**self.description(), "num_parameters": self.model.num_parameters()},
            invocation_record(self.config.to_json(), str(acc.device), acc.num_processes, **self.extra_record),
            None if self.resume_from is None else self.state.step,
        )
        if self.config.log_with != "none":
            acc.init_trackers("tensorboard", config=_flat_hyperparameters(self.config))
        self.display = ProgressLog(
            self.budget_steps, self.state.step, f"train {self.model.name}",
            bar=self.show_bar, enabled=acc.is_local_main_process,
        )
        try:
            if not self.optimizers:
                self.display.message(f"{self.model.name}: no trainable parameters (fitted in closed form); evaluating")
                if not list_checkpoints(self.run_dir):
                    self.evaluate_and_checkpoint()
            else:
                loader, forward, sampler = self._prepare()
                if rng_to_restore is not None:
                    set_rng_state(rng_to_restore)
                if self.state.step == 0 and self.resume_from is None:
                    self.evaluate_and_checkpoint()  # the starting point, so that step 0 can be the best
                with self._signals_saved():
                    self._loop(loader, forward, sampler)
        finally:
            self.display.close()
        result = finish_run(self)
        if self.config.log_with != "none":
            acc.end_training()
        return result

    @contextlib.contextmanager
    def _signals_saved(self):
        """While the loop runs, SIGTERM and SIGINT only set a flag; the loop then checkpoints the
        current step and raises :class:`TrainingInterrupted`. Outside the loop they act as before."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def note(signum, frame):
            self._signal = signum

        previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _signalled(self) -> int:
        """The signal received by any process (0: none); every process agrees, so all stop together."""
        if self.accelerator.num_processes == 1:
            return self._signal
        flag = torch.tensor([self._signal], device=self.accelerator.device)
        return int(self.accelerator.reduce(flag, reduction="max").item())

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
                self.display.update(1)
                self._guard(failed)
                out_of_time = cfg.minutes is not None and state.seconds >= cfg.minutes * 60
                stop = state.step >= self.budget_steps or out_of_time
                if state.step % cfg.log_every == 0 or stop:
                    self._log_training(final=stop)
                if state.step % cfg.eval_every == 0 or stop:
                    eval_started = time.perf_counter()
                    self.evaluate_and_checkpoint()
                    start += time.perf_counter() - eval_started  # `seconds` counts training time only
                signum = self._signalled()
                if signum:
                    self._interrupt(signum)
                if stop:
                    break
            else:
                state.epoch += 1
                state.batch_in_epoch = 0

    def _interrupt(self, signum: int) -> None:
        """Checkpoint the current step (no evaluation: a scheduler's grace period is short) and stop."""
        name = checkpoint_name(self.state.step)
        if not (self.run_dir / "checkpoints" / name).exists():
            self._save([], move_best=False)
        if self.display is not None:
            self.display.close()
        raise TrainingInterrupted(signum, self.state.step, self.run_dir / "checkpoints" / name)

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

    # --- the non-finite guard --------------------------------------------------------------------
    def _guard(self, failed: list[str]) -> None:
        """Count a step whose update was skipped for a non-finite loss or gradient (``failed``: its
        groups). ``nan_tolerance`` such steps in a row roll model, optimizers, schedules and EMA back
        to the last good checkpoint (the step count and the data order go on: the batches that
        failed are not replayed); once ``nan_rollbacks`` roll-backs are spent, or with a tolerance
        of 0, training stops with :class:`TrainingDiverged`, keeping every checkpoint written."""
        cfg, state = self.config, self.state
        if not failed:
            state.nan_streak = 0
            return
        step = state.step - 1  # the step the model's loss was computed at
        state.nan_streak += 1
        state.skipped_steps += 1
        which = ", ".join(f"'{g}'" for g in failed)
        latest = list_checkpoints(self.run_dir)
        kept = f"every checkpoint written is intact (latest: {latest[-1].name})" if latest else "no checkpoint was written"
        if cfg.nan_tolerance == 0 or (state.nan_streak >= cfg.nan_tolerance and state.rollbacks >= cfg.nan_rollbacks):
            streak = f" and the {state.nan_streak - 1} step(s) before it" if state.nan_streak > 1 else ""
            after = f", after {state.rollbacks} roll-back(s) to {state.good_checkpoint}" if state.rollbacks else ""
            raise TrainingDiverged(
                f"the loss or gradient of group {which} was NaN or infinite at step {step}{streak}{after}; "
                f"training stopped, {kept}. Lower --lr, set --grad-clip, or raise --nan-tolerance/--nan-rollbacks"
            )
        if state.nan_streak < cfg.nan_tolerance:
            if self.display is not None:
                self.display.message(
                    f"step {step}: NaN or infinite loss or gradient of group {which}; update skipped "
                    f"({state.nan_streak} of {cfg.nan_tolerance} in a row before a roll-back)"
                )
            return
        self._roll_back(step)

    def _roll_back(self, step: int) -> None:
        """Load model, optimizers, schedules and EMA of the last good checkpoint (read from disk,
        checksums verified); the step count, data order, RNG and best checkpoint go on."""
        state = self.state
        name = state.good_checkpoint
        path = self.run_dir / "checkpoints" / name if name else None
        try:
            if path is None or not path.is_dir():
                raise UserError(f"the last good checkpoint {name} is gone")
            ckpt = read_checkpoint(path, with_trainer_state=True)
        except UserError as error:
            raise TrainingDiverged(
                f"{state.nan_streak} NaN or infinite steps in a row up to step {step}, and no roll-back is "
                f"possible ({error}); training stopped, the checkpoints written are kept"
            ) from None
        trainer_state = ckpt.trainer_state
        self.model.load_state_dict(ckpt.model_state)
        for group, optimizer in self.optimizers.items():
            optimizer.load_state_dict(trainer_state["optimizers"][group])
        for group, scheduler in self.schedulers.items():
            scheduler.load_state_dict(trainer_state["schedulers"][group])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt.ema_state)
            self.ema.updates = trainer_state["state"]["ema_updates"]
        state.rollbacks += 1
        state.nan_streak = 0
        if self.display is not None:
            self.display.message(
                f"step {step}: NaN or infinite loss or gradient {self.config.nan_tolerance} steps in a row; rolled back "
                f"model, optimizers, schedules and EMA to {name} (roll-back {state.rollbacks} of {self.config.nan_rollbacks})"
            )

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
        if self.ema is None:
            return model
        if self._ema_model is None:
            self._ema_model = copy.deepcopy(model)
        self._ema_model.load_state_dict(self.ema.state_dict())
        return self._ema_model

    @functools.cached_property
    def validation_options(self) -> dict[str, Any]:
        """The model's validation defaults, overridden by the config's ``validation_options``."""
        from .report import _likelihood_options

        return {**self.model.validation_options, **_likelihood_options(self.model, self.config.validation_options)}

    def evaluate_and_checkpoint(self) -> None:
        """Evaluate validation (with :attr:`validation_options`), log it, checkpoint,
        and move the best pointer if it improved. The test split waits for the end of the run."""
        state = self.state
        show = self.display.is_bar if self.display is not None else False
        split = self.dataset.validation.head(self.config.validation_examples)
        validation = evaluate_likelihood(
            self.evaluation_model(), split, batch_size=self.config.eval_batch_size,
            progress=show, options=self.validation_options,
        )
        figures = evaluate_figures(self.evaluation_model(), split, batch_size=self.config.eval_batch_size)
        rows = _records_to_rows(validation, "validation") + [("validation", f.name, f.mean) for f in figures]
        self.run.write_metrics(rows, state.to_json())
        if self.config.log_with != "none" and rows:
            self.accelerator.log({f"{split}/{metric}": v for split, metric, v in rows}, step=state.step)
        score, label = self._selection_score(validation, figures)
        if state.improves(score):
            state.best_nll, state.best_checkpoint = score, checkpoint_name(state.step)
        self._save(validation)
        if self.display is not None and label is not None:
            self.display.message(f"step {state.step}: validation {label}")

    def _selection_record(self, validation: list[Any]) -> Any:
        """The validation record that chooses checkpoints: the headline, or ``select_measure``'s
        (records of a split, or a model's per-example ``LogLikelihood`` list: anything with ``measure``)."""
        wanted = self.config.select_measure
        if wanted is None:
            return validation[0]
        for record in validation:
            if record.measure == wanted:
                return record
        measures = ", ".join(r.measure for r in validation)
        raise UserError(f"--select-measure {wanted}: '{self.model.name}' reports no such validation record; its measures are {measures}")

    def _selection_score(
        self, validation: list[LikelihoodRecord], figures: list[FigureRecord]
    ) -> tuple[float | None, str | None]:
        """What chooses the best checkpoint (lower is better), and its line for the log: the headline
        validation NLL; or, for a model without a likelihood, its ``selection_figure`` (an
        autoencoder's reconstruction MSE) where it names one, else the FD of its samples in
        genmodels' feature space; or nothing (None: the latest checkpoint is kept)."""
        mode = self.config.select_by
        self._selected_by = "latest"
        if mode == "latest":
            return None, format_records(validation[:1]) if validation else None
        if validation and mode in ("auto", "likelihood"):
            record = self._selection_record(validation)
            self._selected_by = f"validation {record.measure} NLL (nats)"
            return record.nll_nats, format_records([record])
        if self.config.select_measure is not None:
            raise UserError(f"--select-measure {self.config.select_measure}: '{self.model.name}' has no likelihood records")
        if mode == "likelihood":
            raise UserError(f"--select-by likelihood: '{self.model.name}' has no likelihood; use fd, figure or latest")
        wanted = self.model.selection_figure
        if mode == "figure" and wanted is None:
            raise UserError(f"--select-by figure: '{self.model.name}' names no selection figure; use fd or latest")
        if mode in ("auto", "figure") and wanted is not None:
            found = {f.name: f for f in figures}
            if wanted not in found:
                raise ValueError(f"{self.model.name}.selection_figure '{wanted}' is not among its evaluation figures {sorted(found)}")
            self._selected_by = f"validation {wanted} (lower is better)"
            return found[wanted].mean, f"{wanted} {found[wanted].mean:.6g}"
        from ..metrics import sample_quality_available

        if not sample_quality_available(self.dataset.spec.name):
            if mode == "fd":
                raise UserError(f"--select-by fd: no feature network for '{self.dataset.spec.name}' (digits, fashion-mnist)")
            return None, None
        devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
        # Evaluation leaves training's RNG stream alone (building the feature network draws its init).
        with torch.random.fork_rng(devices=devices):
            if self._fd_monitor is None:
                from ..metrics import FrechetValidation
                from .report import sampling_options

                self._fd_monitor = FrechetValidation(
                    self.dataset, split="validation", samples=self.config.fd_samples,
                    batch_size=self.config.eval_batch_size,
                    sampling_options=sampling_options(self.model, self.config.sample_options),
                    device=self.accelerator.device,
                )
            record = self._fd_monitor(self.evaluation_model())
        self._selected_by = f"validation {record.label}"
        where = self.state.to_json()
        self.run.write_metrics([("validation", "fd_genmodels_features", record.value)], where)
        return record.value, f"{record.label} {record.value:.4g} ({record.samples} samples)"

    def _save(self, validation: list[LikelihoodRecord], *, move_best: bool = True) -> None:
        acc, state = self.accelerator, self.state
        if self.ema is not None:
            state.ema_updates = self.ema.updates
        name = checkpoint_name(state.step)
        if state.nan_streak == 0:  # a checkpoint inside a run of skipped steps is no place to roll back to
            state.good_checkpoint = name
        if acc.is_main_process:
            folder = self.run_dir / "checkpoints" / name
            if not folder.exists():
                save_checkpoint(
                    folder,
                    model_state=acc.unwrap_model(self.model).state_dict(),
                    meta={**self.description(), "step": state.step, "epoch": state.epoch,
                          "validation": [r.to_json() for r in validation]},
                    ema_state=None if self.ema is None else self.ema.state_dict(),
                    trainer_state={
                        "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                        "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                        "state": state.to_json(),
                        "rng": rng_state(),
                    },
                )
            if move_best and state.best_checkpoint == name:
                write_json_atomic(
                    self.run_dir / "checkpoints" / BEST_POINTER,
                    {"checkpoint": name, "selected_by": self._selected_by, "value": state.best_nll},
                )
            # Keep the best checkpoint and the latest few; older intermediate ones go, renamed to a
            # temporary name first so that a process killed while deleting leaves no half checkpoint.
            for old in list_checkpoints(self.run_dir)[: -self.config.keep_checkpoints]:
                if old.name not in (state.best_checkpoint, state.good_checkpoint):
                    remove_checkpoint(old)  # a symlink is unlinked, never followed
        acc.wait_for_everyone()

    def _repoint_best(self) -> None:
        """A process killed between writing a checkpoint and moving best.json to it leaves the
        pointer behind the resumed state: point it where the state says."""
        pointer = self.run_dir / "checkpoints" / BEST_POINTER
        best = self.state.best_checkpoint
        try:
            current = read_json(pointer) if pointer.is_file() else {}
        except UserError:
            current = {}
        if best is None or not isinstance(current, dict) or current.get("checkpoint") == best:
            return
        selected_by = current.get("selected_by", "latest" if self.state.best_nll is None else "validation NLL (nats)")
        write_json_atomic(pointer, {"checkpoint": best, "selected_by": selected_by, "value": self.state.best_nll})

    def _restore(self) -> dict[str, Any]:
        """Load the model, optimizers, schedules, EMA and state of the checkpoint resumed from;
        return its RNG states (restored only once the data loader exists)."""
        ckpt = read_checkpoint(self.resume_from, with_trainer_state=True)
        trainer_state = ckpt.trainer_state or {}
        if "state" not in trainer_state:
            raise UserError(f"{self.resume_from} was written by an older genmodels and cannot be resumed; start a new run")
        check_resumable(trainer_state, self.optimizers, self.schedulers, self.steps_per_epoch * self.accumulation, ckpt.path)
        check_state(self.model, ckpt.model_state, ckpt.path / MODEL_FILE, self.model.name)
        self.model.load_state_dict(ckpt.model_state)
        if self.ema is not None:
            if ckpt.ema_state is None:
                raise UserError(f"{self.resume_from} has no EMA weights but --ema was given")
            check_state(self.model, ckpt.ema_state, ckpt.path / EMA_FILE, self.model.name)
            self.ema.load_state_dict(ckpt.ema_state)
        self.state = TrainState.from_json(trainer_state["state"])
        if self.state.good_checkpoint is None:  # written before the non-finite guard
            self.state.good_checkpoint = self.resume_from.name
        if self.ema is not None:
            self.ema.updates = self.state.ema_updates
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(trainer_state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(trainer_state["schedulers"][name])
        return trainer_state["rng"]


def _flat_hyperparameters(config: TrainConfig) -> dict[str, Any]:
    """TensorBoard's hyperparameters take numbers, strings and booleans only."""
    out = {}
    for key, value in config.to_json().items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        elif value is not None:
            out[key] = value
    return out


def kind_none_notice(model: GenerativeModel, config: TrainConfig) -> str | None:
    """For a model without a likelihood, one line saying what chooses its best checkpoint."""
    if model.likelihood_kind is not LikelihoodKind.NONE:
        return None
    from ..metrics import sample_quality_available

    how = "the latest checkpoint is kept as the best"
    if config.select_by in ("auto", "figure") and model.selection_figure is not None:
        how = f"the best checkpoint is the one with the lowest validation {model.selection_figure}"
    elif config.select_by in ("auto", "fd") and sample_quality_available(model.spec.name):
        how = "the best checkpoint is chosen by FD (genmodels features) of its samples on validation"
    return f"{model.name} has no likelihood: {how}"
