"""Training: one loop for every model, on Accelerate. One job per module:

- :mod:`.config`: ``TrainConfig`` (the CLI's training flags are generated from it);
- :mod:`.loop`: the ``Trainer``: the loop, the step, the evaluation schedule;
- :mod:`.optim`: per-group optimizers, schedules, and the isolated step of one group;
- :mod:`.selection`: which checkpoint is best (validation NLL, a figure, or FD of samples);
- :mod:`.resume`: the resume plan, saving and loading the training state, best.json, pruning;
- :mod:`.guard`: the non-finite guard and its roll-back;
- :mod:`.signals`: stopping cleanly on SIGTERM/SIGINT;
- :mod:`.batches`, :mod:`.window`: the data order, and the training losses between log lines;
- :mod:`.state`, :mod:`.ema`, :mod:`.accelerator`: the training state and RNG, the EMA, the Accelerator;
- :mod:`.report`: the end-of-run test figures, grid, curves and results, shared with ``bench``;
- :mod:`.progress`, :mod:`.rundir`: what a person sees, and the run folder's files.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..core import create_model
from ..data.base import Dataset
from ..errors import UserError
from .batches import EpochSampler
from .config import RESUMABLE_CHANGES, TrainConfig
from .ema import EMA
from .guard import TrainingDiverged
from .loop import Trainer
from ..runlock import releases_run_lock
from .report import TrainResult
from .resume import ResumePlan, plan_resume, resumed_config
from .selection import kind_none_notice
from .signals import TrainingInterrupted

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train", "TrainingDiverged", "TrainingInterrupted", "EMA", "EpochSampler",
           "resumed_config", "plan_resume", "ResumePlan", "RESUMABLE_CHANGES"]


@releases_run_lock
def train(
    model_name: str,
    dataset: Dataset,
    config: TrainConfig | dict[str, Any] | None,
    run_dir: str | Path,
    *,
    model_config: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    allow_config_change: bool = False,
    quiet: bool = False,
) -> TrainResult:
    """Build ``model_name`` for ``dataset`` (seeded by ``config.seed``) and train it into ``run_dir``.

    On resume the model is rebuilt from the run's stored config (``model_config`` must agree), and
    the training config is the stored one unless ``config`` (a whole config, or the settings given
    explicitly) changes it (see :func:`~genmodels.training.resume.plan_resume`); ``config`` may then be None.
    ``progress=False`` drops the bar (log and validation lines stay, as ``--no-progress``);
    ``quiet=True`` prints nothing at all (errors are still raised). An error names the Python
    arguments to change (``lr``, ``resume=True``), where the command line names its flags.
    """
    import contextlib
    import io

    silenced = (contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())) if quiet else ()
    with contextlib.ExitStack() as stack:
        for redirect in silenced:
            stack.enter_context(redirect)
        return _train(model_name, dataset, config, run_dir, model_config=model_config, resume=resume,
                      progress=progress and not quiet, allow_config_change=allow_config_change)


def _train(
    model_name: str, dataset: Dataset, config: TrainConfig | dict[str, Any] | None, run_dir: str | Path, *,
    model_config: dict[str, Any] | None, resume: bool, progress: bool, allow_config_change: bool,
) -> TrainResult:
    from accelerate.utils import set_seed

    plan = None
    if resume:
        plan = plan_resume(run_dir, model_name, dataset, config, model_config=model_config,
                           allow_config_change=allow_config_change)
        config, model_config = plan.config, plan.model_config
    elif not isinstance(config, TrainConfig):
        raise UserError("give a TrainConfig (a budget at least) to train a new model")
    set_seed(config.seed)
    model = create_model(model_name, dataset.spec, model_config)
    notice = kind_none_notice(model, config)
    trainer = Trainer(model, dataset, config, run_dir, resume=plan, progress=progress)
    if notice and trainer.accelerator.is_local_main_process:
        print(notice, file=sys.stderr)
    return trainer.fit()
