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


def test_no_module_unpickles():
    """Loading reads safetensors and JSON only: no torch.load, pickle or exec in the package."""
    root = pathlib.Path(__import__("genmodels").__file__).parent
    for file in root.rglob("*.py"):
        text = file.read_text()
        for forbidden in ("torch.load(", "import pickle", "pickle.load", "exec(", "allow_pickle=True"):
            assert forbidden not in text, f"{file}: {forbidden}"
