"""Checkpoints: safetensors + JSON only, atomic, never overwritten, clear errors when corrupt."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch

from genmodels.checkpoint import (
    flatten_tensors,
    list_checkpoints,
    load_model,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    unflatten_tensors,
)
from genmodels.core import create_model
from genmodels.data import DataSpec
from genmodels.errors import UserError

SPEC = DataSpec("d", (1, 2, 3), 4)


def _save(path, **extra):
    model = create_model("fvsbn", SPEC)
    meta = {"model": "fvsbn", "model_config": model.config.to_json(), "data": {"source": {}, "spec": SPEC.to_json()}}
    return save_checkpoint(path, model_state=model.state_dict(), meta=meta, **extra), model


def test_optimizer_state_round_trips_through_json_and_safetensors(tmp_path):
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    opt = torch.optim.AdamW(params, lr=0.01, betas=(0.8, 0.9))
    for _ in range(3):
        opt.zero_grad()
        sum((p**2).sum() for p in params).backward()
        opt.step()
    state = {"optimizers": {"model": opt.state_dict()}, "rng": {"torch": torch.get_rng_state()}, "step": 3}
    _save(tmp_path / "ckpt", trainer_state=state)
    restored = read_checkpoint(tmp_path / "ckpt", with_trainer_state=True).trainer_state
    assert torch.equal(restored["rng"]["torch"], state["rng"]["torch"])
    fresh = torch.optim.AdamW([torch.nn.Parameter(p.detach().clone()) for p in params], lr=1.0)
    fresh.load_state_dict(restored["optimizers"]["model"])
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"] == 0.01
    for index in a["state"]:
        for key in a["state"][index]:
            assert torch.equal(a["state"][index][key], b["state"][index][key])


def test_flatten_keeps_non_string_keys_and_nesting():
    obj = {"a": [1, 2.5, None, {"b": torch.ones(2)}], 3: {"c": "text"}}
    skeleton, tensors = flatten_tensors(obj)
    json.dumps(skeleton)  # JSON-able
    back = unflatten_tensors(json.loads(json.dumps(skeleton)), tensors)
    assert back[3] == {"c": "text"} and torch.equal(back["a"][3]["b"], torch.ones(2))


def test_existing_checkpoint_is_never_overwritten(tmp_path):
    path, _ = _save(tmp_path / "ckpt")
    before = (path / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError):
        _save(tmp_path / "ckpt")
    assert (path / "model.safetensors").read_bytes() == before


def test_an_interrupted_write_leaves_no_checkpoint(tmp_path, monkeypatch):
    import genmodels.checkpoint as ck

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "_fsync_dir", fail)
    with pytest.raises(OSError):
        _save(tmp_path / "run" / "checkpoints" / "step-000000005")
    assert list_checkpoints(tmp_path / "run") == []  # the temporary folder is not a checkpoint


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_weights_give_a_clear_error(tmp_path, damage):
    path, _ = _save(tmp_path / "ckpt")
    file = path / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x80\x04garbage" * 10)
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_model(path)


def test_corrupt_json_and_missing_paths_give_clear_errors(tmp_path):
    path, _ = _save(tmp_path / "ckpt")
    (path / "checkpoint.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        load_model(path)
    with pytest.raises(UserError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no checkpoint"):
        resolve_checkpoint(tmp_path / "empty")


def test_weights_of_another_model_are_refused(tmp_path):
    path, _ = _save(tmp_path / "ckpt")
    meta = json.loads((path / "checkpoint.json").read_text())
    meta["model"] = "independent"
    meta["model_config"] = {}
    (path / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="does not match"):
        load_model(path)


def _tamper(path, file, change):
    """Rewrite one safetensors file of a checkpoint with ``change(state)`` applied."""
    from safetensors.torch import load_file, save_file

    state = load_file(path / file)
    change(state)
    save_file(state, path / file, metadata={"format": "pt"})


def _nan(state):
    state["weight"][0, 0, 0] = float("nan")


def _inf(state):
    state["bias"][1, 2] = float("-inf")


def _wrong_shape(state):
    state["weight"] = torch.zeros(6, 4, 5)


def _integer(state):
    state["bias"] = torch.zeros(6, 4, dtype=torch.int64)


def _boolean(state):
    state["mask"] = torch.ones(6, 6, dtype=torch.bool)


@pytest.mark.parametrize(
    "change, problem",
    [
        (_nan, r"model\.safetensors: tensor 'weight' holds 1 NaN or infinite value; .*use another \(earlier\) checkpoint"),
        (_inf, r"tensor 'bias' holds 1 NaN or infinite value"),
        # load_state_dict's RuntimeError traceback, before.
        (_wrong_shape, r"tensor 'weight' has shape \(6, 4, 5\), model 'fvsbn' expects \(6, 4, 6\); .*use another checkpoint"),
        # Cast silently to float and evaluated, before.
        (_integer, r"tensor 'bias' holds integer values \(torch\.int64\), model 'fvsbn' expects floating-point \(torch\.float32\)"),
        (_boolean, r"tensor 'mask' holds boolean values"),
    ],
)
def test_bad_weights_are_refused_naming_the_tensor(tmp_path, change, problem):
    path, _ = _save(tmp_path / "ckpt")
    _tamper(path, "model.safetensors", change)
    with pytest.raises(UserError, match=problem):
        load_model(path)


def test_ema_weights_are_checked_when_used_and_only_then(tmp_path):
    path, model = _save(tmp_path / "ckpt", ema_state=create_model("fvsbn", SPEC).state_dict())
    _tamper(path, "ema.safetensors", _nan)
    with pytest.raises(UserError, match=r"ema\.safetensors: tensor 'weight' holds 1 NaN"):
        load_model(path)
    loaded, _ = load_model(path, use_ema=False)
    assert torch.equal(loaded.weight, model.weight)


def test_higher_precision_weights_are_accepted(tmp_path):
    """float64 where the model has float32 is a precision, not a kind: loaded (cast), not refused."""
    from genmodels.checkpoint import file_sha256

    path, model = _save(tmp_path / "ckpt")
    _tamper(path, "model.safetensors", lambda state: state.update(bias=state["bias"].double()))
    with pytest.raises(UserError, match="does not match the SHA-256 recorded"):  # not the bytes written
        load_model(path)
    meta = json.loads((path / "checkpoint.json").read_text())  # as if written so
    meta["sha256"]["model.safetensors"] = file_sha256(path / "model.safetensors")
    (path / "checkpoint.json").write_text(json.dumps(meta))
    loaded, _ = load_model(path)
    assert loaded.bias.dtype == torch.float32 and torch.equal(loaded.bias, model.bias)


def test_non_finite_buffers_by_design_are_accepted(tmp_path):
    """A tensor the fresh model itself holds non-finite (an attention mask of -inf) is not refused."""
    from genmodels.checkpoint import check_state

    module = torch.nn.Module()
    module.register_buffer("mask", torch.tensor([0.0, float("-inf")]))
    check_state(module, {"mask": torch.tensor([0.0, float("-inf")])}, tmp_path / "model.safetensors", "m")
    module.mask.fill_(0.0)
    with pytest.raises(UserError, match="'mask' holds 1 NaN or infinite value"):
        check_state(module, {"mask": torch.tensor([0.0, float("-inf")])}, tmp_path / "model.safetensors", "m")


def test_lazy_parameters_take_their_shape_from_the_checkpoint(tmp_path):
    from genmodels.checkpoint import check_state

    trained = torch.nn.LazyLinear(3)
    trained(torch.zeros(2, 5))
    fresh = torch.nn.LazyLinear(3)
    check_state(fresh, trained.state_dict(), tmp_path / "model.safetensors", "m")
    fresh.load_state_dict(trained.state_dict())
    assert fresh.weight.shape == (3, 5)


def _edit_meta(path, change):
    meta = json.loads((path / "checkpoint.json").read_text())
    change(meta)
    (path / "checkpoint.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda m: m["data"]["spec"].update(levels=2**40), r"checkpoint\.json: data spec levels 1099511627776.*use another checkpoint"),
        (lambda m: m["data"]["spec"].update(shape=[1, -2, 3]), r"checkpoint\.json: data spec shape \[1, -2, 3\]"),
        (lambda m: m["data"]["spec"].update(shape="abc"), r"data spec shape 'abc'"),
        (lambda m: m["data"]["spec"].update(num_classes=0), r"data spec num_classes 0"),
        (lambda m: m.update(model_config=[1, 2]), r"'model_config' is list, expected dict"),
        (lambda m: m.update(model=3), r"'model' is int, expected str"),
        (lambda m: m.update(model="no-such-model"), r"checkpoint\.json: unknown model 'no-such-model'"),
        (lambda m: m["model_config"].update(no_such_option=1), r"checkpoint\.json: unknown config option"),
        (lambda m: m["data"].pop("spec"), r"lacks 'spec'"),
    ],
)
def test_damaged_meta_is_refused(tmp_path, change, problem):
    path, _ = _save(tmp_path / "ckpt")
    _edit_meta(path, change)
    with pytest.raises(UserError, match=problem):
        load_model(path)


def test_meta_that_is_not_an_object_is_refused(tmp_path):
    path, _ = _save(tmp_path / "ckpt")
    (path / "checkpoint.json").write_text("[1, 2, 3]")
    with pytest.raises(UserError, match="not an object"):
        load_model(path)


def test_trainer_state_that_does_not_match_its_tensors_is_refused(tmp_path):
    path, _ = _save(tmp_path / "ckpt", trainer_state={"step": 3, "rng": {"torch": torch.get_rng_state()}})
    _edit_meta(path, lambda m: m["trainer_state"]["rng"].update(torch={"__tensor__": "t.rng.gone"}))
    with pytest.raises(UserError, match="trainer state.*does not match.*resume from another checkpoint"):
        read_checkpoint(path, with_trainer_state=True)


def test_checkpoints_from_before_absolute_spec_names_find_their_data(tmp_path, monkeypatch):
    """Runs trained with ``--data good.npy`` before the fix stored spec name "good.npy" beside the
    resolved source name; they load with the source's name, so that their data compare equal."""
    import numpy as np

    from genmodels.data import load_dataset

    np.save(tmp_path / "good.npy", np.arange(30).reshape(10, 3) % 4)
    data_spec = load_dataset(str(tmp_path / "good.npy")).spec
    path, _ = _save(tmp_path / "ckpt")
    old_spec = {**data_spec.to_json(), "name": "good.npy"}
    old_source = {"name": str(tmp_path / "good.npy"), "data_dir": None}
    model_config = create_model("fvsbn", data_spec).config.to_json()

    def as_before(meta):
        meta["data"] = {"spec": old_spec, "source": old_source}
        meta["model_config"] = model_config
        meta.pop("sha256")  # such checkpoints predate checksums (the weights are rewritten below)

    _edit_meta(path, as_before)
    (path / "model.safetensors").unlink()
    from safetensors.torch import save_file

    save_file(create_model("fvsbn", data_spec).state_dict(), path / "model.safetensors")
    monkeypatch.chdir(tmp_path.parent)
    model, ckpt = load_model(path)
    assert model.spec == load_dataset(ckpt.meta["data"]["source"]["name"]).spec


def test_registered_names_are_kept(tmp_path):
    path, model = _save(tmp_path / "ckpt")
    _edit_meta(path, lambda m: m["data"].update(source={"name": "d", "data_dir": None}))
    assert load_model(path)[0].spec == SPEC


def test_a_good_checkpoint_round_trips(tmp_path):
    path, model = _save(tmp_path / "ckpt")
    loaded, ckpt = load_model(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    assert ckpt.meta["model"] == "fvsbn" and not loaded.training


def test_no_module_unpickles():
    """Loading reads safetensors and JSON only: no torch.load, pickle or exec in the package."""
    root = pathlib.Path(__import__("genmodels").__file__).parent
    for file in root.rglob("*.py"):
        text = file.read_text()
        for forbidden in ("torch.load(", "import pickle", "pickle.load", "exec(", "allow_pickle=True"):
            assert forbidden not in text, f"{file}: {forbidden}"
