"""Recipes: shipped TOML files, each one benchmark line with the test figures it should reproduce.

A recipe (``src/genmodels/recipes/<name>.toml``, read with the standard library's ``tomllib``)::

    description = "fvsbn on digits"
    model = "fvsbn"
    data = "digits"
    suites = ["quick"]               # the bench suites that run it (suites.toml describes them)
    quality_samples = 100            # optional: fewer sample-quality samples than the suite's (slow samplers)

    [model_config]                   # the model's options (as `--set KEY=VALUE`)
    [train]                          # TrainConfig fields: the budget, batch size, lr, ...
    steps = 300
    [sample_options]                 # the end-of-run grid's and the sample-quality draw's options
    [eval_options]                   # likelihood options of the final test figures

    [expected]                       # test figures with an absolute tolerance
    bits_per_dim = { value = 2.07, tolerance = 0.05 }

Expected figures may name ``bits_per_dim`` or ``nll_nats`` (of the headline likelihood record),
``<measure>_nll_nats`` of any test likelihood record (e.g. ``iwae_nll_nats``, the VAE's importance-
weighted estimate beside its headline ELBO), any of the model's test ``evaluation_figures`` (``mse``, ``bits_per_code``) or a sample-quality metric
measured by the bench (``fd``, ``kid``, ``precision``, ``recall``, ...). ``genmodels train --recipe
NAME`` runs one recipe; ``genmodels bench --suite NAME`` runs a suite and says which figures fall
outside their expected range.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UserError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport (a dependency there)
    import tomli as tomllib

__all__ = ["Recipe", "Suite", "Expected", "RENAMED", "recipe_names", "load_recipe", "load_config_file", "config_toml", "suites", "suite_recipes", "check_expected"]

#: Former names of renamed recipes (old → new): still accepted by ``load_recipe``, with a one-line note.
RENAMED = {
    "fashion-ddpm": "fashion-ddpm-gpu",
    "fashion-diffusion-ddpm": "fashion-ddpm-shared-unet",
    "fashion-diffusion-edm": "fashion-edm-shared-unet",
    "fashion-diffusion-rectified-flow": "fashion-rectified-flow-shared-unet",
    "fashion-nade-hybrid": "fashion-nade-conditional-hybrid",
}

_KEYS = {"description", "model", "data", "suites", "model_config", "train", "sample_options", "eval_options", "expected",
         "quality_samples"}


@dataclass(frozen=True)
class Expected:
    """One expected test figure: value ± tolerance (absolute)."""

    value: float
    tolerance: float

    def holds(self, got: float) -> bool:
        return abs(got - self.value) <= self.tolerance


@dataclass
class Recipe:
    """One benchmark line: what to train, on what, for how long, and what it should give."""

    name: str
    model: str
    data: str
    description: str = ""
    suites: list[str] = field(default_factory=list)
    model_config: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    sample_options: dict[str, str] = field(default_factory=dict)
    eval_options: dict[str, str] = field(default_factory=dict)
    expected: dict[str, Expected] = field(default_factory=dict)
    #: samples for the sample-quality metrics in place of the suite's (fewer where sampling is slow,
    #: e.g. a PixelCNN's D sequential network passes on CPU; 0: none); None: the suite's
    quality_samples: int | None = None
    #: a user's config file (``--config``), not a shipped recipe: its data may be a path, its model
    #: and data may be left to the command line
    from_file: bool = False

    def train_config(self, overrides: dict[str, Any] | None = None):
        """The recipe's TrainConfig, with its sampling and likelihood options, and ``overrides``
        (flags given on the command line) on top."""
        from ..training.config import TrainConfig

        values = {**self.train, "sample_options": self.sample_options, "eval_options": self.eval_options}
        return TrainConfig.from_json({**values, **(overrides or {})})

    def check(self, overrides: dict[str, Any] | None = None) -> None:
        """Raise a UserError unless the model, its options, the training settings (with ``overrides``
        on top), the sampling and likelihood options and the data name are all known (nothing is
        trained or loaded)."""
        from ..core import likelihood_options, model_class, sampling_options
        from ..data import dataset_names

        cls = model_class(self.model)
        if self.data not in dataset_names() and not self.from_file:
            raise UserError(f"recipe '{self.name}': unknown data set '{self.data}'; known: {', '.join(dataset_names())}")
        try:
            cls.Config.from_json(self.model_config)  # unknown keys named, with a "did you mean"
        except (TypeError, ValueError, UserError) as e:
            raise UserError(f"recipe '{self.name}': bad [model_config] for {self.model}: {e}") from None
        self.train_config(overrides)
        sampling_options(cls, self.sample_options)
        likelihood_options(cls, self.eval_options)


@dataclass(frozen=True)
class Suite:
    """A named set of recipes (``suites.toml``), with how many samples the sample-quality metrics draw."""

    name: str
    description: str
    quality_samples: int


def _read_toml(name: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise UserError(f"recipe file {name}: nested too deeply to read; give a plain TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"recipe file {name}: not valid TOML ({e})") from None


def _files():
    return resources.files(__name__)


def recipe_names() -> list[str]:
    """Every shipped recipe, sorted."""
    return sorted(f.name[: -len(".toml")] for f in _files().iterdir() if f.name.endswith(".toml") and f.name != "suites.toml")


def load_recipe(name: str) -> Recipe:
    """The shipped recipe ``name`` (a UserError naming the known ones if there is none); a former name
    (``RENAMED``) loads the recipe under its new name, with a note on stderr."""
    if name in RENAMED:
        print(f"genmodels: recipe '{name}' is now called '{RENAMED[name]}'; the old name will go", file=sys.stderr)
        name = RENAMED[name]
    if name.lower().endswith(".toml") or "/" in name:
        return load_config_file(name)
    if name not in recipe_names():
        raise UserError(f"no recipe '{name}'; known: {', '.join(recipe_names())}{did_you_mean(name, recipe_names())}")
    raw = _read_toml(f"{name}.toml", (_files() / f"{name}.toml").read_text())
    return _recipe(name, raw)


#: The largest config file read (a recipe is a few hundred bytes).
MAX_CONFIG_BYTES = 1 << 20


def load_config_file(path: str | Path) -> Recipe:
    """A config file of the user's (``--config FILE``, or ``--recipe FILE.toml``): TOML of the shipped
    recipes' schema, at any path. ``model`` and ``data`` may be left out (the command line, or
    digits, gives them); ``data`` may name a file of the user's."""
    from ..safe_files import read_bytes_bounded

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"config file {path} does not exist (or is not a file); give the path of a TOML file "
                        "(`genmodels train … --print-config > my.toml` writes one)")
    try:
        text = read_bytes_bounded(path, MAX_CONFIG_BYTES, "give a TOML config file").decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"config file {path}: not UTF-8 text; give a TOML file") from None
    raw = _read_toml(str(path), text)
    raw.setdefault("model", "")
    raw.setdefault("data", "")
    recipe = _recipe(str(path), raw)
    recipe.from_file = True
    return recipe


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # inf and nan are TOML floats too
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def _toml_key(key: str) -> str:
    import json
    import re

    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def _toml_table(name: str, values: dict[str, Any]) -> list[str]:
    """``[name]`` and its ``key = value`` lines; a None (TOML has no null) is left out: it is the default."""
    return [f"[{name}]", *(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items() if v is not None), ""]


def config_toml(model: str, data: str, model_config: dict[str, Any], train, *, description: str = "",
                expected: dict[str, Expected] | None = None) -> str:
    """A run's whole config as TOML of the recipes' schema (``--print-config``): what
    ``genmodels train --config FILE`` reads back to the same run. ``train`` is the TrainConfig."""
    settings = train.to_json()
    sample_options, eval_options = settings.pop("sample_options"), settings.pop("eval_options")
    if settings.get("grad_clip") is None:
        settings["grad_clip"] = 0  # no clipping (TOML has no null; 0 means none)
    from .. import __version__

    lines = [f"# genmodels {__version__}: genmodels train --config FILE", ""]
    if description:
        lines.append(f"description = {_toml_value(description)}")
    lines += [f"model = {_toml_value(model)}", f"data = {_toml_value(data)}", ""]
    lines += _toml_table("model_config", model_config) + _toml_table("train", settings)
    lines += _toml_table("sample_options", sample_options) + _toml_table("eval_options", eval_options)
    if expected:
        lines += _toml_table("expected", {k: {"value": e.value, "tolerance": e.tolerance} for k, e in expected.items()})
    return "\n".join(lines)


def _check_train_keys(name: str, train: dict[str, Any]) -> None:
    """Every [train] key a TrainConfig setting (a misspelt one would be dropped silently)."""
    from ..training.config import TrainConfig

    valid = [f.name for f in dataclasses.fields(TrainConfig)]
    for key in train:
        if key not in valid:
            raise UserError(f"recipe '{name}': unknown [train] setting '{key}' (the settings are the flags of "
                            f"`genmodels train --help`, with _ for -){did_you_mean(key, valid)}")


def _recipe(name: str, raw: dict[str, Any]) -> Recipe:
    """A recipe from its parsed TOML, every key checked."""
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise UserError(f"recipe '{name}': unknown keys {', '.join(unknown)}; a recipe has {', '.join(sorted(_KEYS))}")
    for key in ("model", "data"):
        if not isinstance(raw.get(key), str):
            raise UserError(f"recipe '{name}': '{key}' must be a string")
    for table in ("model_config", "train", "sample_options", "eval_options", "expected"):
        if not isinstance(raw.get(table, {}), dict):
            raise UserError(f"recipe '{name}': '{table}' must be a table ([{table}])")
    _check_train_keys(name, raw.get("train", {}))
    samples = raw.get("quality_samples")
    if samples is not None and not (isinstance(samples, int) and (samples == 0 or samples >= 2)):
        raise UserError(f"recipe '{name}': quality_samples must be 0 (none) or an integer ≥ 2, got {samples!r}")
    expected = {}
    for figure, spec in raw.get("expected", {}).items():
        if not (isinstance(spec, dict) and set(spec) == {"value", "tolerance"}):
            raise UserError(f"recipe '{name}': expected.{figure} must be {{ value = ..., tolerance = ... }}")
        expected[figure] = Expected(float(spec["value"]), float(spec["tolerance"]))
    known = {f.name for f in dataclasses.fields(Recipe)}
    values = {k: v for k, v in raw.items() if k in known and k != "expected"}
    values["sample_options"] = {str(k): str(v) for k, v in raw.get("sample_options", {}).items()}
    values["eval_options"] = {str(k): str(v) for k, v in raw.get("eval_options", {}).items()}
    return Recipe(name=name, expected=expected, **{k: v for k, v in values.items() if k not in ("sample_options", "eval_options")},
                  sample_options=values["sample_options"], eval_options=values["eval_options"])


def suites() -> dict[str, Suite]:
    """The suites described in ``suites.toml``."""
    raw = _read_toml("suites.toml", (_files() / "suites.toml").read_text())
    return {name: Suite(name, str(s.get("description", "")), int(s.get("quality_samples", 0))) for name, s in raw.items()}


def suite_recipes(suite: str) -> list[Recipe]:
    """The recipes of ``suite``, sorted by data set, then model."""
    known = suites()
    if suite not in known:
        raise UserError(f"no suite '{suite}'; known: {', '.join(known)}{did_you_mean(suite, known)}")
    members = [r for r in map(load_recipe, recipe_names()) if suite in r.suites]
    return sorted(members, key=lambda r: (r.data, r.model, r.name))


def _found_figures(row: dict[str, Any]) -> dict[str, float]:
    """The figures a bench row or a run's results.json offers for expectations."""
    found: dict[str, float] = {}
    test = row.get("test") or []
    if test:
        found["nll_nats"] = test[0]["nll_nats"]
        if test[0].get("bits_per_dim") is not None:
            found["bits_per_dim"] = test[0]["bits_per_dim"]
    found.update({f"{record['measure']}_nll_nats": record["nll_nats"] for record in test if "measure" in record})
    found.update({f["name"]: f["mean"] for f in row.get("test_figures") or []})
    found.update({q["metric"]: q["value"] for q in row.get("sample_quality") or []})
    return found


def check_expected(recipe: Recipe, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Each expected figure against what the run gave: {figure, expected, tolerance, got, within}
    (``got`` None and ``within`` False when the run did not report that figure)."""
    found = _found_figures(row)
    checks = []
    for figure, want in recipe.expected.items():
        got = found.get(figure)
        checks.append({"figure": figure, "expected": want.value, "tolerance": want.tolerance, "got": got,
                       "within": got is not None and want.holds(got)})
    return checks
