"""The image-"tokenizer" view of a model with a discrete code grid (``vqvae``, ``vqgan``, ``two-stage``):
images → code grids (``genmodels encode``) and code grids → images (``genmodels decode``).

A model offers this view by two methods, found by name (no registry entry, no special case):
``encode(x)``: (B, C, H, W) int64 levels → (B, h, w) int64 codes, and ``decode(codes)``: the reverse
(the decoder's most probable image). Inputs to encode are read here:

- a ``.npy`` array in the data's own levels: (N, C, H, W), or (N, H, W) for one channel;
- image files or folders of them (8-bit grayscale or RGB, as the data loaders read them), whose
  values 0..255 are mapped to the model's K levels by round(v·(K−1)/255), the inverse of how sample
  grids are drawn, so a PNG written from the data's levels reads back exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .core import GenerativeModel
from .data.images import IMAGE_SUFFIXES, read_image
from .errors import UserError

__all__ = ["check_tokenizer", "read_inputs", "encode_all", "decode_all", "check_codes"]


def check_tokenizer(model: GenerativeModel) -> None:
    """Raise a UserError unless ``model`` maps images to code grids and back."""
    if not (callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))):
        raise UserError(
            f"model '{model.name}' has no discrete code grid (no encode/decode); "
            "train a vqvae, vqgan or two-stage model for the tokenizer view"
        )


def _image_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise UserError(f"{path}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
        return files
    return [path]


def read_inputs(paths: Sequence[str | Path], model: GenerativeModel) -> Tensor:
    """Images or arrays (see the module doc) as one (N, *shape) int64 batch in the model's levels."""
    spec = model.spec
    if not spec.is_discrete or len(spec.shape) != 3:
        raise UserError(f"encode needs image data with discrete levels; the model's data are {spec.shape}, levels {spec.levels}")
    arrays = []
    for name in paths:
        path = Path(name).expanduser()
        if not path.exists():
            raise UserError(f"{path}: no such file or folder; give .npy arrays or images ({', '.join(IMAGE_SUFFIXES)})")
        if path.suffix.lower() == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise UserError(f"{path}: cannot read this .npy ({e})") from None
            if array.dtype.kind not in "iub":
                raise UserError(f"{path}: holds {array.dtype} values; encode wants integer levels 0..{spec.levels - 1}")
            if array.ndim == 3 and spec.shape[0] == 1:
                array = array[:, None]
            arrays.append(array.astype(np.int64))
            continue
        for f in _image_files(path):
            image, _, _ = read_image(f)  # (C, H, W) uint8
            arrays.append(np.round(image[None].astype(np.float64) * (spec.levels - 1) / 255.0).astype(np.int64))
    if not arrays:
        raise UserError("nothing to encode: give .npy arrays, images or folders of images, or --split")
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1 or shapes.pop() != tuple(spec.shape):
        found = ", ".join(sorted({str(a.shape[1:]) for a in arrays}))
        raise UserError(f"the inputs have shape {found}; the model's data are {tuple(spec.shape)} (C, H, W)")
    x = torch.from_numpy(np.concatenate(arrays))
    spec.check(x)
    return x


@torch.no_grad()
def encode_all(model: GenerativeModel, x: Tensor, batch_size: int = 500) -> Tensor:
    """(N, C, H, W) levels → (N, h, w) int64 code grids, on the CPU."""
    check_tokenizer(model)
    model.eval()
    return torch.cat([model.encode(x[i:i + batch_size].to(model.device)).cpu() for i in range(0, len(x), batch_size)])


def check_codes(codes: np.ndarray, where: str) -> Tensor:
    """A code array as int64 (N, h, w); a clear error for floats or the wrong number of axes."""
    if codes.dtype.kind not in "iu":
        raise UserError(f"{where}: holds {codes.dtype} values; code grids are integers (genmodels encode writes them)")
    if codes.ndim == 2:
        codes = codes[None]
    if codes.ndim != 3 or len(codes) == 0:
        raise UserError(f"{where}: has shape {codes.shape}; code grids are (N, h, w)")
    return torch.from_numpy(codes.astype(np.int64))


@torch.no_grad()
def decode_all(model: GenerativeModel, codes: Tensor, batch_size: int = 500) -> Tensor:
    """(N, h, w) code grids → (N, C, H, W) images in the data's levels, on the CPU."""
    check_tokenizer(model)
    model.eval()
    return torch.cat([model.decode(codes[i:i + batch_size].to(model.device)).cpu() for i in range(0, len(codes), batch_size)])
