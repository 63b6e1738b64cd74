"""Check that the peers' dequantization bounds are genmodels' bound.

``digits`` (contenders.DequantizedPeer, flattened, logit): with the same density on h (a standard normal: genmodels'
``maf`` without actnorm is the identity at initialization, its MADE outputs start at zero) and the same
per-example seeds, both must give the same per-example bound up to float32 rounding.

``fashion-mnist`` (contenders.DequantizedPeer on images, the wrapper of normflows' Glow): the wrapper
around a genmodels ``glow``'s own flow density (actnorm initialized on data, every parameter then
perturbed so that no layer is the identity) must give the per-example bound that this ``glow``
reports, with its logit preprocessing and with none (normflows' example's), on the same seeds.

    OMP_NUM_THREADS=1 /work/peer-venv/bin/python benchmarks/peers/check_same_bound.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import DequantizedPeer  # noqa: E402

from genmodels.core import Batch, create_model  # noqa: E402
from genmodels.data import load_dataset  # noqa: E402


class StandardNormal(torch.nn.Module):
    def forward(self):
        return torch.distributions.Independent(torch.distributions.Normal(torch.zeros(64), torch.ones(64)), 1)


class FlowDensity(torch.nn.Module):
    """A genmodels flow model's density on h (its NormalizingFlow), as a peer density ``log_prob(h)``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def log_prob(self, h):
        return sum(self.model.flow.log_prob_terms(h))


def check_images(images: int = 300) -> None:
    data = load_dataset("fashion-mnist")
    x, seeds = data.test.x[:images].long(), torch.arange(images)
    for preprocess in ("logit", "none"):
        torch.manual_seed(0)
        ours = create_model("glow", data.spec, {"levels": 2, "steps": 2, "hidden": 16, "preprocess": preprocess})
        ours.initialize([Batch(data.train.x[:64].long())])
        with torch.no_grad():
            for p in ours.parameters():
                p.add_(0.01 * torch.randn_like(p))
        density = FlowDensity(ours)
        peer = DequantizedPeer(density, density.log_prob, data.spec, preprocess, 0.05, flatten=False)
        with torch.no_grad():
            a = ours.log_likelihoods(Batch(x, seeds=seeds), draws=2)[0].values
            b = peer.log_likelihoods(Batch(x, seeds=seeds), 2)
        difference = (a - b).abs().max().item()
        print(f"fashion-mnist, glow with preprocess={preprocess}: max |genmodels − peer wrapper| over {images} test "
              f"images: {difference:.2e} nats (mean bound {a.mean():.2f})")
        assert difference < 1e-2, difference  # bounds of ~−2000 nats, float32


def main() -> None:
    data = load_dataset("digits")
    ours = create_model("maf", data.spec, {"actnorm": False})
    normal = StandardNormal()
    peer = DequantizedPeer(normal, lambda h: normal().log_prob(h), data.spec, "logit", 0.05)
    x, seeds = data.test.x.long(), torch.arange(len(data.test.x))
    with torch.no_grad():
        a = ours.log_likelihoods(Batch(x, seeds=seeds), draws=3)[0].values
        b = peer.log_likelihoods(Batch(x, seeds=seeds), 3)
    difference = (a - b).abs().max().item()
    print(f"max |genmodels − peer| over {len(x)} test images: {difference:.2e} nats (mean bound {a.mean():.4f})")
    assert difference < 1e-3, difference
    check_images()


if __name__ == "__main__":
    main()
