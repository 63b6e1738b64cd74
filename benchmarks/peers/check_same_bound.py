"""Check that the peers' dequantization bound (flows_digits.DequantizedPeer) is genmodels' bound.

With the same density on h (a standard normal: genmodels' ``maf`` without actnorm is the identity at
initialization, its MADE outputs start at zero) and the same per-example seeds, both must give the
same per-example bound up to float32 rounding.

    OMP_NUM_THREADS=1 /work/venv-peers/bin/python benchmarks/peers/check_same_bound.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flows_digits import DequantizedPeer  # noqa: E402

from genmodels.core import Batch, create_model  # noqa: E402
from genmodels.data import load_dataset  # noqa: E402


class StandardNormal(torch.nn.Module):
    def forward(self):
        return torch.distributions.Independent(torch.distributions.Normal(torch.zeros(64), torch.ones(64)), 1)


def main() -> None:
    data = load_dataset("digits")
    ours = create_model("maf", data.spec, {"actnorm": False})
    peer = DequantizedPeer(StandardNormal(), data.spec, 0.05)
    x, seeds = data.test.x.long(), torch.arange(len(data.test.x))
    with torch.no_grad():
        a = ours.log_likelihoods(Batch(x, seeds=seeds), draws=3)[0].values
        b = peer.log_likelihoods(Batch(x, seeds=seeds), 3)
    difference = (a - b).abs().max().item()
    print(f"max |genmodels − peer| over {len(x)} test images: {difference:.2e} nats (mean bound {a.mean():.4f})")
    assert difference < 1e-3, difference


if __name__ == "__main__":
    main()
