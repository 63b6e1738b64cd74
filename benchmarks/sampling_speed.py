"""Samples per thread-CPU second of the autoregressive image models (PixelCNN, Transformer) at their
default sizes, on Fashion-MNIST's 1×28×28 and on 3×32×32 colour: sampling does not depend on the
weights, so untrained models of the default configuration are timed.

    OMP_NUM_THREADS=1 python benchmarks/sampling_speed.py --models pixelcnn,transformer -n 2

Run it from two checkouts (e.g. ``PYTHONPATH=/path/to/old/src``) to compare before and after; a
shape a checkout's model refuses (colour PixelCNN before it existed) is reported as refused.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

SHAPES = {"fashion-28x28": ((1, 28, 28), 256), "colour-32x32": ((3, 32, 32), 256)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="pixelcnn,transformer")
    parser.add_argument("-n", type=int, default=2, help="samples per timed draw")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    args = parser.parse_args(argv)
    import genmodels
    from genmodels.core import create_model
    from genmodels.data import DataSpec

    torch.set_num_threads(1)
    for shape_name in args.shapes.split(","):
        shape, levels = SHAPES[shape_name]
        spec = DataSpec(shape_name, shape, levels, None)
        for name in args.models.split(","):
            row = {"model": name, "data": shape_name, "n": args.n, "genmodels": genmodels.__file__}
            try:
                torch.manual_seed(0)
                model = create_model(name, spec, None).eval()
            except Exception as e:  # noqa: BLE001 - a refusal is a result here
                row["refused"] = str(e).splitlines()[0]
                print(json.dumps(row), flush=True)
                continue
            generator = torch.Generator().manual_seed(0)
            start = time.thread_time()
            model.sample(args.n, generator=generator)
            seconds = time.thread_time() - start
            row.update(cpu_seconds=seconds, samples_per_cpu_second=args.n / seconds)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
