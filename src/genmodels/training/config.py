"""``TrainConfig``: how to train, in one dataclass. The CLI's training flags are generated from it
(:mod:`genmodels.cli`), so a setting exists in exactly one place, with its type, default and doc."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import UserError, did_you_mean, option, register_flags
from ..trackers import TRACKERS

__all__ = ["TrainConfig", "RESUMABLE_CHANGES"]

#: Settings a resumed run may change freely: the budget and what is logged or kept. Anything else
#: (EMA, batch size, seed, learning rate, precision, ...) breaks bit-exactness or comparability with
#: the part already trained, and needs ``allow_config_change`` (recorded in run.json).
RESUMABLE_CHANGES = frozenset(
    {"steps", "epochs", "minutes", "eval_every", "log_every", "eval_batch_size", "keep_checkpoints",
     "num_samples", "num_workers", "sample_options", "eval_options", "log_with", "nan_tolerance", "nan_rollbacks"}
)


@dataclass
class TrainConfig:
    """How to train. The budget is ``steps``, ``epochs`` or ``minutes`` (training stops at the first
    reached); everything else has a default.

    Args:
        steps: optimizer steps of training.
        epochs: passes over the training split.
        minutes: minutes of training time (evaluation excluded).
        batch_size: examples per step (per process, per micro-batch): a step takes batch size × grad accumulation × processes.
        grad_accumulation: micro-batches per optimizer step, their gradients averaged (a batch this many times larger in the memory of one).
        compile: torch.compile the model's forward (its loss) for training; pays a compilation up front.
        lr: AdamW's learning rate; a model's optimizer group may set its own or a factor of it.
        weight_decay: AdamW's decoupled weight decay (a group may set its own and exempt parameters).
        grad_clip: clip each group's gradient norm to this (0 or none: no clipping).
        nan_tolerance: a step whose loss or gradient is NaN or infinite is skipped (no update, no EMA); this many such steps in a row roll back to the last good checkpoint (0: stop at the first).
        nan_rollbacks: roll-backs allowed before a further run of non-finite steps stops training (checkpoints kept).
        lr_schedule: constant or cosine (to 0 at the end of a steps/epochs budget), after the warm-up.
        warmup_steps: linear learning-rate warm-up from 0 over this many steps.
        ema_decay: keep an exponential moving average of the weights with this decay, used for evaluation and sampling.
        ema_warmup: ramp the EMA decay up as min(decay, (1+t)/(10+t)) over the first updates.
        eval_every: evaluate the validation split and checkpoint every this many steps, and at the end.
        log_every: log the mean training loss every this many steps.
        eval_batch_size: examples per evaluation batch (figures do not depend on it).
        validation_examples: evaluate only the validation split's first N examples during training (a cheaper, noisier choice of the best checkpoint for slow estimates).
        test_examples: measure the final test figures on the test split's first N examples only, for estimates too slow for the whole split (e.g. a U-Net's probability-flow ODE on a CPU); results.json and results.md then say "first N of M". Default: the whole split (reported figures are of the whole test split).
        keep_checkpoints: how many of the latest checkpoints to keep besides the best one.
        seed: seeds parameters' initialization, the data order and every random draw in training.
        mixed_precision: no, fp16 or bf16 (Accelerate's autocast; one precision per process).
        cpu: train on the CPU even where a GPU is present.
        num_samples: how many samples to draw for the grid at the end.
        num_workers: data-loader worker processes.
        log_with: also log to a tracker through Accelerate: tensorboard (into RUN/tensorboard), mlflow (a file store in RUN/mlruns unless MLFLOW_TRACKING_URI says otherwise), wandb, aim, comet_ml, clearml, dvclive, trackio or swanlab; each needs its package (the error says which).
        select_by: what chooses the best checkpoint on validation: auto (the likelihood; else the model's selection figure, e.g. an autoencoder's reconstruction MSE; else FD of samples where a feature network exists; else the latest), likelihood, figure, fd or latest.
        select_measure: which validation likelihood record chooses the best checkpoint, by its measure name (e.g. iwae for a VAE, whose headline record is its ELBO); default: the headline (first) record.
        fd_samples: samples drawn for FD (genmodels features) on validation when it chooses checkpoints.
        sample_options: the model's sampling options for the end-of-run grid, KEY=VALUE.
        eval_options: the model's likelihood options for the final test figures, KEY=VALUE.
        validation_options: likelihood options for the validation figures that choose the best checkpoint, KEY=VALUE, over the model's own (cheaper) validation defaults; e.g. marginal=true to select a class-conditional model by the label-marginal likelihood that eval_options reports.
    """

    steps: int | None = None
    epochs: float | None = None
    minutes: float | None = None
    batch_size: int = 128
    grad_accumulation: int = 1
    compile: bool = False
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    nan_tolerance: int = 3
    nan_rollbacks: int = 2
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    ema_decay: float | None = field(default=None, metadata={"flag": "--ema", "metavar": "DECAY"})
    ema_warmup: bool = False
    eval_every: int = 500
    log_every: int = 10
    eval_batch_size: int = 500
    validation_examples: int | None = None
    test_examples: int | None = None
    keep_checkpoints: int = 2
    seed: int = 0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    cpu: bool = False
    num_samples: int = 64
    num_workers: int = 0
    log_with: Literal[TRACKERS] = "none"  # type: ignore[valid-type]  # every tracker Accelerate drives
    select_by: Literal["auto", "likelihood", "figure", "fd", "latest"] = "auto"
    select_measure: str | None = None
    fd_samples: int = 1000
    sample_options: dict[str, str] = field(default_factory=dict, metadata={"flag": "--sample-option"})
    eval_options: dict[str, str] = field(default_factory=dict, metadata={"flag": "--eval-option"})
    validation_options: dict[str, str] = field(default_factory=dict, metadata={"flag": "--validation-option"})

    def __post_init__(self) -> None:
        if self.steps is None and self.epochs is None and self.minutes is None:
            raise UserError(f"give a training budget: {option('steps', 'N')}, {option('epochs', 'N')} or {option('minutes', 'M')}")
        for name in ("steps", "epochs", "minutes", "warmup_steps", "num_workers", "nan_tolerance", "nan_rollbacks"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise UserError(f"{option(name)} must be ≥ 0, got {value}")
        for name in ("batch_size", "grad_accumulation", "eval_every", "log_every", "eval_batch_size", "keep_checkpoints", "num_samples"):
            if not getattr(self, name) >= 1:
                raise UserError(f"{option(name)} must be ≥ 1, got {getattr(self, name)}")
        for name in ("validation_examples", "test_examples"):
            value = getattr(self, name)
            if value is not None and not value >= 1:
                raise UserError(f"{option(name)} must be ≥ 1 (or left out for the whole split), got {value}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"{option('lr')} must be a positive number, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UserError(f"{option('weight_decay')} must be ≥ 0, got {self.weight_decay}")
        if self.grad_clip == 0:
            self.grad_clip = None
        if self.grad_clip is not None and not (self.grad_clip > 0):
            raise UserError(f"{option('grad_clip')} must be > 0 (or 0/none for no clipping), got {self.grad_clip}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise UserError(f"{option('mixed_precision')} must be no, fp16 or bf16, got '{self.mixed_precision}'")
        if self.lr_schedule not in ("constant", "cosine"):
            raise UserError(f"{option('lr_schedule')} must be constant or cosine, got '{self.lr_schedule}'")
        if self.lr_schedule == "cosine" and self.steps is None and self.epochs is None:
            raise UserError(f"{option('lr_schedule', 'cosine')} needs a {option('steps')} or {option('epochs')} budget to decay over")
        if self.select_by not in ("auto", "likelihood", "figure", "fd", "latest"):
            raise UserError(f"{option('select_by')} must be auto, likelihood, figure, fd or latest, got '{self.select_by}'")
        if self.select_measure is not None and self.select_by not in ("auto", "likelihood"):
            raise UserError(f"{option('select_measure')} chooses among likelihood records; it cannot go with {option('select_by', self.select_by)}")
        if self.fd_samples < 2:
            raise UserError(f"{option('fd_samples')} must be ≥ 2, got {self.fd_samples}")
        if self.log_with not in TRACKERS:
            raise UserError(f"{option('log_with')} must be none or one of Accelerate's trackers ({', '.join(TRACKERS[1:])}), "
                            f"got '{self.log_with}'{did_you_mean(str(self.log_with), TRACKERS)}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise UserError(f"{option('ema_decay')} must be in (0, 1), got {self.ema_decay}")
        self.sample_options = {str(k): str(v) for k, v in dict(self.sample_options).items()}
        self.eval_options = {str(k): str(v) for k, v in dict(self.eval_options).items()}
        self.validation_options = {str(k): str(v) for k, v in dict(self.validation_options).items()}

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TrainConfig:
        valid = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in valid})

    def step_budget(self, steps_per_epoch: int) -> float:
        """The steps to train: ``steps``, or ``epochs`` of ``steps_per_epoch``, whichever comes first
        (infinite for a budget in minutes only)."""
        budget = math.inf if self.steps is None else self.steps
        if self.epochs is not None:
            budget = min(budget, math.ceil(self.epochs * steps_per_epoch))
        return budget

    def changes_from(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """{setting: (other's value, this value)} for every setting that differs."""
        mine, theirs = self.to_json(), other.to_json()
        return {k: (theirs[k], v) for k, v in mine.items() if theirs.get(k) != v}


#: The flags not spelt as their setting's name (the parser reads the same field metadata), and the
#: arguments of ``train`` that have flags.
register_flags({f.name: f.metadata["flag"] for f in dataclasses.fields(TrainConfig) if "flag" in f.metadata})
register_flags({"run_dir": "--out", "model_config": "--set"})
