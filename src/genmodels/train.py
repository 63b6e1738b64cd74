"""Training on Hugging Face Accelerate: one loop for every model.

The loop knows nothing of model families. Each step it steps every optimizer group the model
declares (``optimizer_groups``, in order) on ``model(batch, step=, group=)``; it keeps an optional
EMA of the weights, evaluates the validation and test splits every ``eval_every`` steps, keeps the
checkpoint that is best on validation (test figures never choose anything, ../shared/PROTOCOL.md),
writes metrics.csv, and can resume bit-exactly from its last checkpoint: model, optimizers, EMA,
RNG states and the position in the data order all come back.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from . import __version__
from .checkpoint import (
    BEST_POINTER,
    checkpoint_name,
    list_checkpoints,
    load_model,
    read_checkpoint,
    save_checkpoint,
    write_json_atomic,
)
from .core import Batch, GenerativeModel, LikelihoodKind, create_model
from .data.base import Dataset
from .errors import UserError
from .evaluate import LikelihoodRecord, evaluate_likelihood, format_records
from .plotting import save_loss_curves, save_samples

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train", "TrainingDiverged", "EMA", "EpochSampler"]

METRIC_COLUMNS = ["step", "epoch", "examples", "seconds", "split", "metric", "value"]


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the checkpoints written before it are intact."""


@dataclass
class TrainConfig:
    """How to train. The budget is ``steps``, ``epochs`` or ``minutes`` (training stops at the first
    reached); everything else has a default.

    Args:
        batch_size: examples per step (per process).
        lr: learning rate of AdamW, for every optimizer group.
        weight_decay: AdamW's decoupled weight decay.
        grad_clip: clip each group's gradient norm to this (None: no clipping).
        ema_decay: keep an exponential moving average of the weights with this decay, used for
            evaluation and sampling (None: no EMA).
        eval_every: evaluate (validation and test) and checkpoint every this many steps, and at the end.
        log_every: write the mean training loss to metrics.csv every this many steps.
        eval_batch_size: examples per evaluation batch.
        keep_checkpoints: how many of the latest checkpoints to keep besides the best one.
        seed: seeds parameters' initialization, the data order and every random draw in training.
        mixed_precision: "no", "fp16" or "bf16" (Accelerate's autocast).
        cpu: train on the CPU even where a GPU is present.
        num_samples: how many samples to draw for the grid at the end.
        num_workers: data-loader worker processes.
    """

    steps: int | None = None
    epochs: float | None = None
    minutes: float | None = None
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    ema_decay: float | None = None
    eval_every: int = 500
    log_every: int = 10
    eval_batch_size: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    mixed_precision: str = "no"
    cpu: bool = False
    num_samples: int = 64
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.steps is None and self.epochs is None and self.minutes is None:
            raise UserError("give a training budget: --steps N, --epochs N or --minutes M")
        for name in ("steps", "epochs", "minutes"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UserError(f"--{name} must be ≥ 0, got {value}")
        if self.keep_checkpoints < 1 or self.num_workers < 0:
            raise UserError("--keep-checkpoints must be ≥ 1 and --num-workers ≥ 0")
        for name in ("batch_size", "eval_every", "log_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be ≥ 1")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise UserError(f"--mixed-precision must be no, fp16 or bf16, got '{self.mixed_precision}'")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise UserError(f"--ema must be in (0, 1), got {self.ema_decay}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    best_checkpoint: Path
    test: list[LikelihoodRecord]
    validation: list[LikelihoodRecord]
    steps: int
    train_seconds: float
    examples_per_second: float
    num_parameters: int
    files: dict[str, Path] = field(default_factory=dict)


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


class EMA:
    """Exponential moving average of a model's state: θ̄ ← d·θ̄ + (1 − d)·θ for floating tensors.

    Works on the state_dict so that buffers follow too (integer buffers are copied, not averaged).
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].lerp_(value.detach(), 1.0 - self.decay)
            else:
                self.shadow[key].copy_(value)

    def state_dict(self) -> dict[str, Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for key, value in state.items():
            self.shadow[key].copy_(value)


class _LossWindow:
    """Training losses summed on the device between two log lines (no per-step host sync)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}
        self.examples = 0
        self.started = time.perf_counter()
        self.examples_per_second = 0.0

    def add(self, prefix: str, out, examples: int) -> None:
        pieces = {f"{prefix}loss": out.loss.detach().float()}
        pieces.update({f"{prefix}{k}": v.detach().float().mean() for k, v in out.terms.items()})
        for key, value in pieces.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1
        self.examples += examples

    def flush(self, step: int, accelerator=None) -> list[tuple[str, str, float]]:
        """Mean of each quantity since the last flush, as metrics rows; checks they are finite.

        With several processes the means are averaged across them (equal batches per process).
        """
        keys = list(self.sums)
        means = torch.stack([self.sums[key] / self.counts[key] for key in keys])
        if accelerator is not None and accelerator.num_processes > 1:
            means = accelerator.reduce(means, reduction="mean")
        rows = [("train", key, value) for key, value in zip(keys, means.tolist())]
        for _, key, value in rows:
            if not math.isfinite(value) and key.endswith("loss"):
                raise TrainingDiverged(
                    f"the {key} became {value} by step {step}; lower --lr or --grad-clip "
                    "(the checkpoints written before are intact)"
                )
        rate = self.examples / max(time.perf_counter() - self.started, 1e-9)
        self._reset()
        self.examples_per_second = rate
        return rows


def _records_to_rows(records: list[LikelihoodRecord], split: str) -> list[tuple[str, str, float]]:
    rows = []
    for r in records:
        rows.append((split, f"{r.measure}_nll", r.nll_nats))
        if r.bits_per_dim is not None:
            rows.append((split, f"{r.measure}_bpd", r.bits_per_dim))
    return rows


class Trainer:
    """Train ``model`` on ``dataset`` into ``run_dir`` (see the module docstring).

    Args:
        model: a freshly built model (the caller seeds before building it; :func:`train` does).
        dataset: the data; ``dataset.source`` is stored so that ``genmodels eval`` can reload it.
        config: the budget and settings.
        run_dir: the run folder; must hold no checkpoint unless ``resume``.
        resume: continue from the run folder's latest checkpoint.
        progress: show a progress bar.
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
    ):
        from accelerate import Accelerator

        self.model = model
        self.dataset = dataset
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        existing = list_checkpoints(self.run_dir)
        if not resume and self.run_dir.is_dir() and any(self.run_dir.iterdir()):
            what = "checkpoints" if existing else "files"
            raise UserError(
                f"{self.run_dir} already holds {what}; pass --resume to continue that run, "
                "or --out a new folder (nothing is overwritten)"
            )
        if resume and not existing:
            raise UserError(f"--resume: {self.run_dir} holds no checkpoint to resume from")
        self.resume_from = existing[-1] if resume else None
        if len(dataset.train) == 0:
            raise UserError(f"data set '{dataset.spec.name}' has no training examples")
        # Accelerate keeps its settings in a process-wide singleton; a library that trains several
        # models in one process (bench, notebooks) resets it so each run gets its own precision.
        # The distributed set-up (PartialState) is kept.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=False)
        # Several processes on a machine without a GPU (torchrun/accelerate launch on CPUs) form a
        # gloo group only when Accelerate is told cpu=True; on one process, cpu=False keeps MPS etc.
        several_cpu_processes = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        self.accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=config.cpu or several_cpu_processes)
        self._ema_model: GenerativeModel | None = None  # a copy holding the EMA weights, made on first use

    # --- bookkeeping -----------------------------------------------------------------------------
    def _description(self) -> dict[str, Any]:
        """What is trained on what, and how: enough to rebuild the model and reload the data."""
        return {
            "model": self.model.name,
            "model_config": self.model.config.to_json(),
            "data": {"source": self.dataset.source, "spec": self.dataset.spec.to_json()},
            "train_config": self.config.to_json(),
        }

    def _meta(self, step: int, epoch: int, validation: list[LikelihoodRecord]) -> dict[str, Any]:
        return {
            **self._description(),
            "step": step,
            "epoch": epoch,
            "validation": [r.to_json() for r in validation],
            "genmodels_version": __version__,
            "torch_version": torch.__version__,
        }

    def _write_metrics(self, rows: list[tuple[str, str, float]], progress: dict[str, Any]) -> None:
        if not self.accelerator.is_main_process or not rows:
            return
        with open(self.metrics_path, "a", newline="") as handle:
            writer = csv.writer(handle)
            for split, metric, value in rows:
                writer.writerow(
                    [progress["step"], progress["epoch"], progress["examples"], f"{progress['seconds']:.3f}",
                     split, metric, repr(float(value))]
                )

    def _prepare_run_dir(self, start_step: int) -> None:
        self.metrics_path = self.run_dir / "metrics.csv"
        if not self.accelerator.is_main_process:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.resume_from is not None and self.metrics_path.exists():
            # Rows logged after the checkpoint will be logged again by the resumed run.
            with open(self.metrics_path, newline="") as handle:
                kept = [row for row in csv.DictReader(handle) if int(row["step"]) <= start_step]
            tmp = self.metrics_path.with_suffix(".csv.tmp")
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
                writer.writeheader()
                writer.writerows(kept)
            tmp.replace(self.metrics_path)
        elif not self.metrics_path.exists():
            with open(self.metrics_path, "w", newline="") as handle:
                csv.writer(handle).writerow(METRIC_COLUMNS)
        invocation = {
            "command": sys.argv,
            "train_config": self.config.to_json(),
            "versions": {"genmodels": __version__, "torch": torch.__version__, "python": platform.python_version()},
            "device": str(self.accelerator.device),
            "processes": self.accelerator.num_processes,
        }
        run_json = self.run_dir / "run.json"
        if self.resume_from is not None and run_json.exists():
            # The first invocation stays as it was; each resume is appended.
            record = json.loads(run_json.read_text())
            record.setdefault("resumed", []).append({**invocation, "from_step": start_step})
        else:
            record = {**self._description(), "num_parameters": self.model.num_parameters(), **invocation}
        write_json_atomic(run_json, record)

    def _rng_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    # --- the loop --------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg, acc = self.config, self.accelerator
        model = self.model
        model.to(acc.device)
        train_split = self.dataset.train
        batch_size = min(cfg.batch_size, len(train_split))
        steps_per_epoch = len(train_split) // batch_size  # full batches only: every step sees B examples
        budget_steps = math.inf
        if cfg.steps is not None:
            budget_steps = cfg.steps
        if cfg.epochs is not None:
            budget_steps = min(budget_steps, math.ceil(cfg.epochs * steps_per_epoch))

        if self.resume_from is None:
            init_loader = DataLoader(train_split, batch_size=cfg.eval_batch_size, shuffle=False)
            model.initialize(Batch.of(item).to(acc.device) for item in init_loader)

        groups = model.optimizer_groups()
        optimizers = {
            name: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay) for name, params in groups.items()
        }
        ema = EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None

        progress = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "examples": 0, "seconds": 0.0}
        best: dict[str, Any] = {"nll": math.inf, "checkpoint": None}
        if self.resume_from is not None:
            progress, best, rng_to_restore = self._restore(optimizers, ema)
        self._prepare_run_dir(progress["step"])

        sampler = EpochSampler(len(train_split), cfg.seed)
        # The loader draws its workers' base seed from its own generator, not the global RNG, so that
        # starting an iterator (each epoch, and once more on resume) leaves the model's RNG stream alone.
        loader = DataLoader(
            train_split,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=cfg.num_workers,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        if optimizers:
            prepared = acc.prepare(model, *optimizers.values(), loader)
            wrapped_model, prepared_optimizers, loader = prepared[0], prepared[1:-1], prepared[-1]
            optimizers = dict(zip(optimizers, prepared_optimizers))
        else:  # nothing to train (a closed-form fit): no wrapper, which DDP would refuse anyway
            wrapped_model = model
        if self.resume_from is not None:
            self._set_rng_state(rng_to_restore)

        self._progress, self._best, self._optimizers, self._ema = progress, best, optimizers, ema
        if not optimizers:
            if self.progress:
                tqdm.write(f"{model.name}: no trainable parameters (fitted in closed form); evaluating")
            if not list_checkpoints(self.run_dir):
                self._evaluate_and_checkpoint()
            return self._finish()
        if progress["step"] == 0 and self.resume_from is None:
            self._evaluate_and_checkpoint()  # the starting point, so that step 0 can be the best one

        bar = tqdm(
            total=None if math.isinf(budget_steps) else budget_steps,
            initial=progress["step"],
            disable=not (self.progress and acc.is_local_main_process),
            desc=f"train {model.name}",
            unit="step",
            dynamic_ncols=True,
            # A log file (no terminal) gets a line every 15 s instead of a redraw every 0.5 s.
            mininterval=0.5 if sys.stderr.isatty() else 15.0,
        )
        start = time.perf_counter() - progress["seconds"]
        window = _LossWindow()
        stop = progress["step"] >= budget_steps
        while not stop:
            epoch_loader = acc.skip_first_batches(loader, progress["batch_in_epoch"]) if progress["batch_in_epoch"] else loader
            # Accelerate's loader passes its own epoch counter to the sampler when iterated; set it.
            epoch_loader.set_epoch(progress["epoch"])
            sampler.set_epoch(progress["epoch"])
            train_split.set_epoch(progress["epoch"])
            for item in epoch_loader:
                batch = Batch.of(item)
                self._train_step(wrapped_model, batch, groups, window)
                progress["step"] += 1
                progress["batch_in_epoch"] += 1
                progress["examples"] += len(batch) * acc.num_processes
                progress["seconds"] = time.perf_counter() - start
                bar.update(1)
                step = progress["step"]
                out_of_time = cfg.minutes is not None and progress["seconds"] >= cfg.minutes * 60
                stop = step >= budget_steps or out_of_time
                if step % cfg.log_every == 0 or stop:
                    rows = window.flush(step, acc)  # raises TrainingDiverged on a non-finite loss
                    self._write_metrics(rows, progress)
                    bar.set_postfix({rows[0][1]: f"{rows[0][2]:.4g}", "ex/s": f"{window.examples_per_second:.0f}"})
                if step % cfg.eval_every == 0 or stop:
                    eval_started = time.perf_counter()
                    self._evaluate_and_checkpoint()
                    start += time.perf_counter() - eval_started  # `seconds` counts training time only
                if stop:
                    break
            else:
                progress["epoch"] += 1
                progress["batch_in_epoch"] = 0
        bar.close()
        return self._finish()

    def _restore(self, optimizers: dict[str, torch.optim.Optimizer], ema: EMA | None):
        """Load the model, optimizers and EMA of the checkpoint resumed from; return its progress,
        best-so-far and RNG states (restored only once the data loader exists)."""
        ckpt = read_checkpoint(self.resume_from, with_trainer_state=True)
        self.model.load_state_dict(ckpt.model_state)
        if ema is not None:
            if ckpt.ema_state is None:
                raise UserError(f"{self.resume_from} has no EMA weights but --ema was given")
            ema.load_state_dict(ckpt.ema_state)
        state = ckpt.trainer_state
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        return dict(state["progress"]), dict(state["best"]), state["rng"]

    def _train_step(self, model: torch.nn.Module, batch: Batch, groups: dict, window: _LossWindow) -> None:
        """One step: each optimizer group in turn computes its loss, backpropagates and steps."""
        acc, step = self.accelerator, self._progress["step"]
        for group, optimizer in self._optimizers.items():
            with acc.autocast():
                out = model(batch, step=step, group=group)
            acc.backward(out.loss)
            if self.config.grad_clip is not None:
                acc.clip_grad_norm_(groups[group], self.config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            prefix = "" if len(self._optimizers) == 1 else f"{group}/"
            window.add(prefix, out, len(batch) * acc.num_processes)
        if self._ema is not None:
            self._ema.update(acc.unwrap_model(model))

    def _evaluate_and_checkpoint(self) -> None:
        """Evaluate validation and test, log them, checkpoint, and move the best pointer if improved."""
        progress, best, batch_size = self._progress, self._best, self.config.eval_batch_size
        eval_model = self._eval_model()
        show = self.progress and self.accelerator.is_local_main_process
        validation = evaluate_likelihood(eval_model, self.dataset.validation, batch_size=batch_size, progress=show)
        test = evaluate_likelihood(eval_model, self.dataset.test, batch_size=batch_size, progress=show)
        self._write_metrics(_records_to_rows(validation, "validation") + _records_to_rows(test, "test"), progress)
        # Without a likelihood (kind none) there is nothing to select on: the latest checkpoint is used.
        nll = validation[0].nll_nats if validation else math.inf
        if not validation or nll < best["nll"]:
            best.update(nll=nll, checkpoint=checkpoint_name(progress["step"]))
        self._save(validation)
        if validation and self.progress:
            tqdm.write(f"step {progress['step']}: validation {format_records(validation[:1])}")

    def _eval_model(self) -> GenerativeModel:
        """The model evaluated and checkpointed as best: the EMA weights when training keeps them."""
        model = self.accelerator.unwrap_model(self.model)
        if self._ema is None:
            return model
        if self._ema_model is None:
            self._ema_model = copy.deepcopy(model)
        self._ema_model.load_state_dict(self._ema.state_dict())
        return self._ema_model

    def _save(self, validation: list[LikelihoodRecord]) -> None:
        acc, progress, best, ema = self.accelerator, self._progress, self._best, self._ema
        if not acc.is_main_process:
            return
        name = checkpoint_name(progress["step"])
        folder = self.run_dir / "checkpoints" / name
        if not folder.exists():
            save_checkpoint(
                folder,
                model_state=acc.unwrap_model(self.model).state_dict(),
                meta=self._meta(progress["step"], progress["epoch"], validation),
                ema_state=None if ema is None else ema.state_dict(),
                trainer_state={
                    "optimizers": {k: o.state_dict() for k, o in self._optimizers.items()},
                    "progress": progress,
                    "best": best,
                    "rng": self._rng_state(),
                },
            )
        if best["checkpoint"] == name:
            write_json_atomic(self.run_dir / "checkpoints" / BEST_POINTER, {"checkpoint": name, "validation_nll_nats": best["nll"]})
        # Keep the best checkpoint and the latest few; older intermediate ones go.
        for old in list_checkpoints(self.run_dir)[: -self.config.keep_checkpoints]:
            if old.name != best["checkpoint"]:
                shutil.rmtree(old)

    def _finish(self) -> TrainResult:
        """Reload the best checkpoint from disk (as ``genmodels eval`` does) and report on it."""
        acc, progress, best = self.accelerator, self._progress, self._best
        acc.wait_for_everyone()  # the first process has written the checkpoint
        best_dir = self.run_dir / "checkpoints" / best["checkpoint"]
        model, ckpt = load_model(best_dir, device=acc.device)
        # Validation was measured when the checkpoint was chosen; test is measured now, from disk,
        # exactly as `genmodels eval` does.
        validation = [LikelihoodRecord(**r) for r in ckpt.meta["validation"]]
        test = evaluate_likelihood(model, self.dataset.test, batch_size=self.config.eval_batch_size)
        files: dict[str, Path] = {}
        seconds = progress["seconds"]
        rate = progress["examples"] / seconds if seconds > 0 else 0.0
        if acc.is_main_process:
            generator = torch.Generator(device=acc.device).manual_seed(self.config.seed)
            samples = model.sample(self.config.num_samples, generator=generator)
            files["samples"] = save_samples(samples, model.spec, self.run_dir / "samples.png", title=model.name)
            files["loss_curves"] = save_loss_curves({model.name: self.metrics_path}, self.run_dir / "loss_curves.png")
            files["metrics"] = self.metrics_path
            files["results"] = self.run_dir / "results.json"
            write_json_atomic(
                files["results"],
                {
                    "model": model.name,
                    "data": model.spec.name,
                    "likelihood_kind": model.likelihood_kind.value,
                    "best_checkpoint": str(best_dir),
                    "best_step": ckpt.meta["step"],
                    "steps": progress["step"],
                    "examples_seen": progress["examples"],
                    "train_seconds": seconds,
                    "examples_per_second": rate,
                    "num_parameters": model.num_parameters(),
                    "validation": [r.to_json() for r in validation],
                    "test": [r.to_json() for r in test],
                },
            )
        return TrainResult(
            run_dir=self.run_dir,
            best_checkpoint=best_dir,
            test=test,
            validation=validation,
            steps=progress["step"],
            train_seconds=seconds,
            examples_per_second=rate,
            num_parameters=model.num_parameters(),
            files=files,
        )


def train(
    model_name: str,
    dataset: Dataset,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    model_config: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Build ``model_name`` for ``dataset`` (seeded by ``config.seed``) and train it into ``run_dir``.

    On resume the model is rebuilt from the run's stored config, and ``model_config`` must agree.
    """
    from accelerate.utils import set_seed

    if resume:
        stored = json.loads((Path(run_dir) / "run.json").read_text()) if (Path(run_dir) / "run.json").exists() else {}
        if stored and stored["model"] != model_name:
            raise UserError(f"--resume: {run_dir} trained '{stored['model']}', not '{model_name}'")
        if stored and model_config and any(stored["model_config"].get(k) != v for k, v in model_config.items()):
            raise UserError(f"--resume: config differs from the one {run_dir} was trained with: {stored['model_config']}")
        model_config = stored.get("model_config", model_config)
    set_seed(config.seed)
    model = create_model(model_name, dataset.spec, model_config)
    if model.likelihood_kind is LikelihoodKind.NONE and progress:
        tqdm.write(f"{model_name} has no likelihood: the latest checkpoint is kept as the best")
    return Trainer(model, dataset, config, run_dir, resume=resume, progress=progress).fit()
