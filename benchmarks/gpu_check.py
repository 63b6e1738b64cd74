"""One short, prepared GPU check: train ``edm``, ``pixelcnn`` and ``glow`` on Fashion-MNIST in fp32
and bf16, evaluate and sample each, and write the figures (examples/s, peak GPU memory, bits/dim,
FD in genmodels' feature space, samples/s) to one JSON file.

Each (model, precision) runs in its own process: Accelerate keeps one mixed precision per process,
and the peak GPU memory of one run must not include another's. Every run goes through the public
CLI (``genmodels train`` then ``genmodels eval --samples``), so the check measures what a user runs.

    python benchmarks/gpu_check.py --out gpu_check.json            # on a CUDA machine, ≤ 8 min
    python benchmarks/gpu_check.py --dry-run --out /tmp/dry.json    # on a CPU, tiny sizes, seconds

``benchmarks/gpu_check.sh`` installs the project first and then runs the first line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: (model, training seconds on the GPU, model options). Sizes are the models' Fashion-MNIST defaults.
MODELS = [("edm", 75, {}), ("pixelcnn", 60, {}), ("glow", 60, {})]
PRECISIONS = ["no", "bf16"]

#: The dry run: a few steps of tiny networks on the CPU, enough to exercise every code path.
DRY_OPTIONS = {
    "edm": {"channels": "8", "channel_mults": "1", "attention": "false", "hidden": "16"},
    "pixelcnn": {"channels": "8", "layers": "2"},
    "glow": {"levels": "1", "steps": "1", "hidden": "8"},
}


def run_one(model: str, precision: str, seconds: float, options: dict[str, str], out: Path, *, dry: bool) -> dict:
    """Train, evaluate and sample one (model, precision) in this process; return its figures."""
    import torch

    from genmodels.cli import main as genmodels

    cuda = torch.cuda.is_available() and not dry
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    run = out / f"{model}-{precision}"
    # The dry run uses digits: sample quality against Fashion-MNIST's 55 000 training images alone
    # costs minutes on a CPU.
    data = "digits" if dry else "fashion-mnist"
    budget = ["--steps", "3", "--eval-every", "3", "--validation-examples", "16", "--test-examples", "16",
              "--num-samples", "4", "--batch-size", "8", "--eval-batch-size", "8"] if dry else \
             ["--minutes", f"{seconds / 60:.3f}", "--validation-examples", "500", "--test-examples", "1000",
              "--num-samples", "64"]
    sets = [a for k, v in options.items() for a in ("--set", f"{k}={v}")]
    start = time.perf_counter()
    code = genmodels(["train", model, "--data", data, "--out", str(run), "--mixed-precision", precision,
                      "--no-progress", *(["--cpu"] if not cuda else []), *budget, *sets])
    if code:
        return {"model": model, "precision": precision, "error": f"train exited {code}"}
    results = json.loads((run / "results.json").read_text())
    samples = 8 if dry else 1000
    eval_json = out / f"{model}-{precision}-eval"
    sample_start = time.perf_counter()
    code = genmodels(["eval", str(run), "--examples", str(16 if dry else 1000), "--samples", str(samples),
                      "--out", str(eval_json), *(["--cpu"] if not cuda else [])])
    sample_seconds = time.perf_counter() - sample_start
    quality = json.loads((eval_json / "eval.json").read_text()) if code == 0 else {"error": f"eval exited {code}"}
    test = results["test"][0] if results.get("test") else {}
    return {
        "model": model, "precision": precision, "data": data,
        "steps": results["steps"], "train_seconds": results["train_seconds"],
        "examples_per_second": results["examples_per_second"],
        "parameters": results["num_parameters"],
        "bits_per_dim": test.get("bits_per_dim"), "kind": test.get("kind"), "measure": test.get("measure"),
        "test_examples": results.get("test_examples"),
        "eval_and_sample_seconds": sample_seconds, "samples": samples,
        "sample_quality": {q["metric"]: q["value"] for q in quality.get("sample_quality", [])}
        if "sample_quality" in quality else quality,
        "sample_quality_features": next((q["features"] for q in quality.get("sample_quality", [])), None),
        "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "wall_seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check.json", help="the JSON file of figures to write")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (seconds): the test of this script")
    parser.add_argument("--models", default=",".join(m for m, _, _ in MODELS))
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "PRECISION"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    table = {m: (s, o) for m, s, o in MODELS}
    if args.one:  # a child process: one (model, precision)
        model, precision = args.one
        seconds, options = table[model]
        options = DRY_OPTIONS[model] if args.dry_run else options
        row = run_one(model, precision, seconds, options, Path(args.work), dry=args.dry_run)
        Path(args.work, f"{model}-{precision}.json").write_text(json.dumps(row))
        return 0
    import torch

    if not torch.cuda.is_available() and not args.dry_run:
        print("gpu_check: no CUDA device; pass --dry-run for the CPU rehearsal", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        for model in args.models.split(","):
            for precision in PRECISIONS:
                print(f"gpu_check: {model} {precision} ...", flush=True)
                cmd = [sys.executable, __file__, "--one", model, precision, "--work", work,
                       *(["--dry-run"] if args.dry_run else [])]
                code = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
                row_file = Path(work, f"{model}-{precision}.json")
                row = json.loads(row_file.read_text()) if row_file.exists() else \
                    {"model": model, "precision": precision, "error": f"exited {code}"}
                rows.append(row)
                print(f"gpu_check: {model} {precision}: " + ", ".join(
                    f"{k} {row[k]:.4g}" for k in ("examples_per_second", "bits_per_dim") if isinstance(row.get(k), float)),
                    flush=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.dry_run else "cpu"
    report = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "machine": platform.machine(),
              "dry_run": args.dry_run, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": rows}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"gpu_check: wrote {args.out}")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
