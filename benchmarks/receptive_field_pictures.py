"""Receptive-field pictures of the plain and the gated PixelCNN, drawn by the gradient audit.

``genmodels audit RUN --pixel R,C --out rf.png`` draws one trained run's field; this script draws the
two variants side by side for the docs. For each variant it builds a PixelCNN — from a
run folder (``--run-plain`` / ``--run-gated``, its best checkpoint) or, by default, freshly initialized
with perturbed weights on a 28×28 image (the field is a property of the layer stack: a gradient is
nonzero wherever a path exists, trained or not) — audits the conditional of ``--pixel`` and draws
which inputs it depends on, beside the analytic field of the layer stack.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/receptive_field_pictures.py --out docs/images
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from genmodels.autoregressive.audit import audit_pixel
from genmodels.core import create_model
from genmodels.data import DataSpec
from genmodels.plotting import save_receptive_field


def _model(variant: str, run: str | None, args):
    if run is not None:
        from genmodels.checkpoint import load_model

        return load_model(run)[0].eval()
    torch.manual_seed(0)
    spec = DataSpec("image", (1, args.size, args.size), 17)
    config = {"variant": variant, "layers": args.layers, "first_kernel": args.first_kernel, "kernel": args.kernel, "channels": 8}
    model = create_model("pixelcnn", spec, config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


def draw(model, pixel: tuple[int, int], path: Path, title: str) -> tuple[int, int, int]:
    """Draw the audited receptive field of ``pixel`` (``genmodels audit`` does the same from a run)."""
    audit = audit_pixel(model, pixel)
    save_receptive_field(audit, path, title)
    return int(audit.field.sum()), int(audit.analytic.sum()), int(audit.blind.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--run-plain", help="a plain PixelCNN's run folder (default: a fresh 28×28 model)")
    parser.add_argument("--run-gated", help="a gated PixelCNN's run folder (default: a fresh 28×28 model)")
    parser.add_argument("--pixel", default="14,14", help="ROW,COL of the audited conditional")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--first-kernel", type=int, default=7)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--suffix", default="", help="added to the file names, e.g. -digits")
    args = parser.parse_args()
    pixel = tuple(int(v) for v in args.pixel.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    for variant, run in (("plain", args.run_plain), ("gated", args.run_gated)):
        model = _model(variant, run, args)
        cfg = model.config
        shape = "×".join(str(s) for s in model.spec.shape[1:])
        title = f"{variant} PixelCNN, {cfg.layers} layers ({cfg.first_kernel}×{cfg.first_kernel}, then {cfg.kernel}×{cfg.kernel}), {shape}, pixel {pixel}"
        path = args.out / f"receptive-field-pixelcnn-{variant}{args.suffix}.png"
        audited, analytic, blind = draw(model, pixel, path, title)
        print(f"{variant}: audited field {audited} pixels, analytic {analytic}, blind spot {blind}: {path}")


if __name__ == "__main__":
    main()
