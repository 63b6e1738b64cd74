#!/usr/bin/env bash
# The prepared GPU check (≤ 8 minutes on one GPU): install the project beside the machine's own
# CUDA build of torch, then train edm, pixelcnn and glow on Fashion-MNIST in fp32 and bf16,
# evaluate and sample each, and write the figures to ${1:-gpu_check.json}.
#   bash benchmarks/gpu_check.sh [OUT.json] [--dry-run]
# Record the JSON's figures in BENCHMARKS.md with the device it names.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check.json}"; shift || true
if python3 -c "import torch, accelerate, safetensors, sklearn, matplotlib, PIL, tqdm" 2>/dev/null; then
  python3 -m pip install -q --no-deps -e . 2>/dev/null || export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
  python3 -m pip install -q -e .
fi
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${GENMODELS_DATA_DIR:-}" ]; then
  echo "gpu_check: Fashion-MNIST not found (apt-get install dataset-fashion-mnist)" >&2
fi
PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out "$out" "$@"
