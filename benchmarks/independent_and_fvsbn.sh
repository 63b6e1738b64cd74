#!/usr/bin/env bash
# The figures of BENCHMARKS.md's "First models" section: `independent` and `fvsbn` through
# `genmodels bench` (test split, checkpoint best on validation).
#   bash benchmarks/independent_and_fvsbn.sh [OUT_DIR]
set -euo pipefail
out=${1:-runs/benchmarks-$(date +%Y%m%d-%H%M%S)}
genmodels bench --models independent,fvsbn --data digits --steps 3000 --eval-every 250 --lr 3e-3 --out "$out/digits"
genmodels bench --models independent,fvsbn --data binary-digits --steps 3000 --eval-every 250 --lr 3e-3 --out "$out/binary-digits"
# Fashion-MNIST: apt-get install dataset-fashion-mnist (or --data-dir); fvsbn factors its weights (rank 16).
genmodels bench --models independent,fvsbn --data fashion-mnist --steps 500 --eval-every 250 --lr 3e-3 --out "$out/fashion-mnist"
