"""Choosing the best checkpoint: the validation figure that scores a checkpoint (the headline NLL,
``--select-measure``'s record, a model's ``selection_figure``, or the FD of its samples), the checks
of those settings before training starts, and the one line a model without a likelihood prints."""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
from torch.utils.data import default_collate

from ..core import Batch, GenerativeModel, LikelihoodKind, likelihood_options, sampling_options
from ..data.base import Dataset
from ..errors import UserError, option
from ..evaluate import LONG_PASSES, FigureRecord, LikelihoodRecord, evaluate_figures, evaluate_likelihood, format_records
from .. import progress as phases
from ..progress import format_duration
from .config import TrainConfig

__all__ = ["CheckpointSelector", "check_training_options", "kind_none_notice", "validation_budget_seconds"]

#: the fewest validation examples a measured cost may shrink the split to (a noisier choice below)
MIN_VALIDATION_EXAMPLES = 64
#: examples timed once, before the first validation, to size the validation subset
TIMED_EXAMPLES = 8


def validation_budget_seconds(config: TrainConfig) -> float:
    """What one validation pass during training may cost: 60 s (env ``GENMODELS_VALIDATION_SECONDS``),
    and under ``--minutes`` at most 5 % of the budget, so evaluation stays a bounded share of training."""
    try:
        budget = float(os.environ.get("GENMODELS_VALIDATION_SECONDS") or 60.0)
    except ValueError:
        budget = 60.0
    if config.minutes is not None:
        budget = min(budget, 0.05 * config.minutes * 60)
    return budget


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def check_training_options(model: GenerativeModel, config: TrainConfig) -> None:
    """Refuse a misspelt option now, not after the training it would follow: the sampling, test
    and validation options are parsed against the model's signatures (no evaluation)."""
    sampling_options(model, config.sample_options)
    likelihood_options(model, config.eval_options)
    likelihood_options(model, config.validation_options)
    if config.select_measure is not None and model.likelihood_kind is LikelihoodKind.NONE:
        raise UserError(f"{option('select_measure', config.select_measure)}: '{model.name}' has no likelihood records")


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


def _forked_rng(device: torch.device):
    """Evaluation leaves training's RNG stream alone (on the CPU, and on the CUDA device in use)."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


class CheckpointSelector:
    """Scores checkpoints on validation as ``config.select_by`` says (lower is better).

    ``selected_by`` says, after each :meth:`score`, what chose (best.json records it).
    """

    def __init__(self, model: GenerativeModel, dataset: Dataset, config: TrainConfig, device: torch.device):
        self.model, self.dataset, self.config, self.device = model, dataset, config, device
        self.selected_by = "latest"
        self._fd_monitor = None  # FD on validation, built on first use
        self._validation_examples: int | None = config.validation_examples
        self._sized = config.validation_examples is not None
        #: the line that says the validation split was cut to fit its budget (None: it was not)
        self.sizing_notice: str | None = None

    @functools.cached_property
    def validation_options(self) -> dict[str, Any]:
        """The model's validation defaults, overridden by the config's ``validation_options``."""
        return {**self.model.validation_options, **likelihood_options(self.model, self.config.validation_options)}

    def evaluate(self, evaluation_model, *, progress: bool, say=None) -> tuple[list[LikelihoodRecord], list[FigureRecord]]:
        """The validation records (with :attr:`validation_options`) and figures of the model that
        ``evaluation_model()`` gives, on the first :meth:`validation_examples` of the split;
        ``progress`` shows the pass, ``say(line)`` prints the sizing notice once."""
        examples = self.validation_examples(evaluation_model(), say=say)
        shown = LONG_PASSES if progress else False
        split = self.dataset.validation.head(examples)
        options = self.validation_options
        cheaper = "--validation-examples N" + (f" or a cheaper --validation-option than {_options_text(options)}" if options else "")
        validation = evaluate_likelihood(
            evaluation_model(), split, batch_size=self.config.eval_batch_size, progress=shown,
            options=options, desc=f"validation {self.model.name}", cheaper=cheaper,
        )
        figures = evaluate_figures(evaluation_model(), split, batch_size=self.config.eval_batch_size, progress=shown,
                                   desc=f"validation figures {self.model.name}")
        return validation, figures

    def validation_examples(self, model: GenerativeModel, *, say=None) -> int | None:
        """How many validation examples each evaluation uses: ``--validation-examples``, else the whole
        split unless one pass would cost more than :func:`validation_budget_seconds` (measured once,
        on a few examples, before the first validation), then as many as fit (at least
        ``MIN_VALIDATION_EXAMPLES``). Decided once per run, so every checkpoint meets the same examples."""
        if self._sized:
            return self._validation_examples
        self._sized = True
        whole = len(self.dataset.validation)
        if model.likelihood_kind is LikelihoodKind.NONE or whole <= MIN_VALIDATION_EXAMPLES:
            return None
        per_example = self._seconds_per_example(model)
        budget = validation_budget_seconds(self.config)
        if per_example * whole <= budget:
            return None
        fit = max(MIN_VALIDATION_EXAMPLES, int(budget / per_example))
        if fit >= whole:
            return None
        self._validation_examples = fit
        options = _options_text(self.validation_options)
        self.sizing_notice = (
            f"validation: the whole split ({whole:,} examples{', ' + options if options else ''}) would take about "
            f"{format_duration(per_example * whole)} per evaluation (measured on {TIMED_EXAMPLES} examples); each "
            f"evaluation uses its first {fit:,} (about {format_duration(per_example * fit)}); "
            "--validation-examples N sets it"
        )
        if say is not None:
            say(self.sizing_notice)
        return fit

    def _seconds_per_example(self, model: GenerativeModel) -> float:
        """The validation measure's cost per example, timed on the split's first few examples (on a
        forked RNG stream, so training's draws do not change)."""
        head = self.dataset.validation.head(TIMED_EXAMPLES)
        first = Batch.of(default_collate([head[i] for i in range(len(head))]))
        batch = Batch(first.x, first.y, seeds=torch.arange(len(head), dtype=torch.int64)).to(self.device)
        was_training = model.training
        model.eval()
        with _forked_rng(self.device), torch.no_grad():
            started = phases.now()
            model.log_likelihoods(batch, **self.validation_options)
            seconds = phases.now() - started
        model.train(was_training)
        return seconds / len(head)

    def check_select_measure(self, model: GenerativeModel) -> None:
        """``select_measure`` names a record of the model's validation: the records' measures are
        known only by evaluating, so one validation example is evaluated (with the validation
        options, on its own RNG stream) before anything is written."""
        if self.config.select_measure is None or len(self.dataset.validation) == 0:
            return
        first = Batch.of(default_collate([self.dataset.validation[0]]))
        example = Batch(first.x, first.y, seeds=torch.zeros(1, dtype=torch.int64)).to(self.device)
        with _forked_rng(self.device), torch.no_grad():
            was_training = model.training
            model.eval()
            records = model.log_likelihoods(example, **self.validation_options)
            model.train(was_training)
        self.record(records)

    def record(self, validation: list[Any]) -> Any:
        """The validation record that chooses checkpoints: the headline, or ``select_measure``'s
        (records of a split, or a model's per-example ``LogLikelihood`` list: anything with ``measure``)."""
        wanted = self.config.select_measure
        if wanted is None:
            return validation[0]
        for record in validation:
            if record.measure == wanted:
                return record
        measures = ", ".join(r.measure for r in validation)
        raise UserError(f"{option('select_measure', wanted)}: '{self.model.name}' reports no such validation record; its measures are {measures}")

    def score(
        self, validation: list[LikelihoodRecord], figures: list[FigureRecord], evaluation_model, write_metrics
    ) -> tuple[float | None, str | None]:
        """What chooses the best checkpoint (lower is better), and its line for the log: the headline
        validation NLL; or, for a model without a likelihood, its ``selection_figure`` (an
        autoencoder's reconstruction MSE) where it names one, else the FD of its samples in
        genmodels' feature space; or nothing (None: the latest checkpoint is kept).
        ``evaluation_model()`` gives the model evaluated; ``write_metrics(rows)`` records an FD in metrics.csv."""
        mode = self.config.select_by
        self.selected_by = "latest"
        if mode == "latest":
            return None, format_records(validation[:1]) if validation else None
        if validation and mode in ("auto", "likelihood"):
            record = self.record(validation)
            self.selected_by = f"validation {record.measure} NLL (nats)"
            return record.nll_nats, format_records([record])
        if self.config.select_measure is not None:
            raise UserError(f"{option('select_measure', self.config.select_measure)}: '{self.model.name}' has no likelihood records")
        if mode == "likelihood":
            raise UserError(f"{option('select_by', 'likelihood')}: '{self.model.name}' has no likelihood; use fd, figure or latest")
        wanted = self.model.selection_figure
        if mode == "figure" and wanted is None:
            raise UserError(f"{option('select_by', 'figure')}: '{self.model.name}' names no selection figure; use fd or latest")
        if mode in ("auto", "figure") and wanted is not None:
            found = {f.name: f for f in figures}
            if wanted not in found:
                raise ValueError(f"{self.model.name}.selection_figure '{wanted}' is not among its evaluation figures {sorted(found)}")
            self.selected_by = f"validation {wanted} (lower is better)"
            return found[wanted].mean, f"{wanted} {found[wanted].mean:.6g}"
        return self._fd_score(mode, evaluation_model, write_metrics)

    def _fd_score(self, mode: str, evaluation_model, write_metrics) -> tuple[float | None, str | None]:
        from ..metrics import sample_quality_available

        if not sample_quality_available(self.dataset.spec.name):
            if mode == "fd":
                raise UserError(f"{option('select_by', 'fd')}: no feature network for '{self.dataset.spec.name}' (digits, fashion-mnist)")
            return None, None
        # Building the feature network draws its init: on a forked stream.
        with _forked_rng(self.device):
            if self._fd_monitor is None:
                from ..metrics import FrechetValidation

                self._fd_monitor = FrechetValidation(
                    self.dataset, split="validation", samples=self.config.fd_samples,
                    batch_size=self.config.eval_batch_size,
                    sampling_options=sampling_options(self.model, self.config.sample_options),
                    device=self.device,
                )
            record = self._fd_monitor(evaluation_model())
        self.selected_by = f"validation {record.label}"
        write_metrics([("validation", "fd_genmodels_features", record.value)])
        return record.value, f"{record.label} {record.value:.4g} ({record.samples} samples)"
