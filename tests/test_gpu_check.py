"""The prepared GPU check (benchmarks/gpu_check.py) rehearsed on the CPU: every model and precision
it would run on a GPU trains, evaluates and samples, and the JSON it writes has the figures that
BENCHMARKS.md records."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_every_figure(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["device"] == "cpu" and report["cpu_capability"]
    runs = {(r["model"], r["precision"]): r for r in report["runs"]}
    assert set(runs) == {(m, p) for m in ("edm", "pixelcnn", "glow") for p in ("no", "bf16")}
    for row in runs.values():
        assert "error" not in row, row
        assert row["examples_per_second"] > 0 and row["bits_per_dim"] > 0 and row["kind"]
        assert row["sample_quality"]["fd"] >= 0 and row["sample_quality_features"]


def test_gpu_check_refuses_without_cuda_unless_dry_run():
    import torch

    if torch.cuda.is_available():
        return  # the real check would run: nothing to refuse
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", "/dev/null"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--dry-run" in done.stderr
