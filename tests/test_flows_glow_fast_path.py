"""Glow's fast path (its throughput options): the channel-split coupling, channels-last
networks and bfloat16 conditioners keep the flow exact (inverse round trip, log-det = autograd's)."""

from __future__ import annotations


import pytest
import torch
from torch.autograd.functional import jacobian

from genmodels.core import Batch, create_model
from genmodels.data import DataSpec
from genmodels.errors import UserError
from genmodels.flows.transforms import AffineCoupling, ChannelCoupling, channel_mask
from genmodels.nn.flow_nets import ConvNet

from .flow_checks import assert_log_det_matches_autograd

IMAGES = DataSpec("images", (1, 4, 4), 17)


def _perturb(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def _coupling(C, parity, affine=True, channels_last=False, autocast_dtype=None, dtype=torch.float32):
    torch.manual_seed(3)
    conditioning = C // 2 if parity == 0 else C - C // 2
    net = ConvNet(conditioning, (2 if affine else 1) * (C - conditioning), 8)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    t = ChannelCoupling(C, parity, net, affine=affine, channels_last=channels_last, autocast_dtype=autocast_dtype)
    _perturb(t)
    return t.to(dtype).eval()


CASES = {
    "affine-p0": dict(C=4, parity=0),
    "affine-p1-odd": dict(C=3, parity=1),
    "affine-p0-odd": dict(C=3, parity=0),
    "additive-p1": dict(C=4, parity=1, affine=False),
    "affine-channels-last": dict(C=4, parity=1, channels_last=True),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("bf16", [False, True])
def test_channel_coupling_inverse_round_trip_in_float32(case, bf16):
    t = _coupling(**CASES[case], autocast_dtype=torch.bfloat16 if bf16 else None)
    x = torch.randn(16, CASES[case]["C"], 4, 4, generator=torch.Generator().manual_seed(2)) * 2
    with torch.no_grad():
        y, ladj = t.call_and_ladj(x)
        back = t.inverse(y)
    assert y.dtype == torch.float32 and ladj.shape == (16,)
    assert torch.allclose(back, x, atol=1e-4), (back - x).abs().max()


@pytest.mark.parametrize("case", CASES)
def test_channel_coupling_log_det_matches_the_autograd_jacobian_in_float64(case):
    t = _coupling(**CASES[case], dtype=torch.float64)
    reported = assert_log_det_matches_autograd(t, (CASES[case]["C"], 2, 2))
    if not CASES[case].get("affine", True):
        assert reported == [0.0, 0.0, 0.0]


def test_bfloat16_conditioner_is_used_and_keeps_the_exact_log_det():
    """The autocast changes the network's values (so it is in effect) but not the exactness: the
    log-det is still log|det| of the whole map's Jacobian (float32, tolerance of float32 slogdet)."""
    t16 = _coupling(C=4, parity=0, autocast_dtype=torch.bfloat16)
    t32 = _coupling(C=4, parity=0)
    shape = (4, 2, 2)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(5)) * 1.5
    with torch.no_grad():
        y16, l16 = t16.call_and_ladj(x)
        y32, _ = t32.call_and_ladj(x)
    assert not torch.equal(y16, y32) and torch.allclose(y16, y32, atol=0.1)

    def f(v):
        return t16.call_and_ladj(v.reshape(1, *shape))[0].reshape(-1)

    _, logabsdet = torch.linalg.slogdet(jacobian(f, x.reshape(-1)).double())
    assert l16.item() == pytest.approx(logabsdet.item(), abs=1e-4)


@pytest.mark.parametrize("parity", [0, 1])
def test_channel_coupling_is_the_masked_coupling_without_its_dead_weights(parity):
    """ChannelCoupling(C, parity, net) is AffineCoupling(channel_mask(parity), big_net) when big_net
    carries net's weights: the masked net's weights on the zeroed input channels and on the
    discarded outputs do not change the map."""
    C, h = 5, 8
    split = _coupling(C=C, parity=parity, dtype=torch.float64)
    mask = channel_mask((C, 3, 3), parity)
    big = ConvNet(C, 2 * C, h).double()
    _perturb(big, seed=7)  # the dead weights: anything
    a, b = split.conditioning, split.free
    free = list(range(C))[b]
    with torch.no_grad():
        big.first[0].weight[:, a] = split.net.first[0].weight
        big.first[0].bias.copy_(split.net.first[0].bias)
        for name in ("first", "middle"):
            getattr(big, name)[1].load_state_dict(getattr(split.net, name)[1].state_dict())
        big.middle[0].load_state_dict(split.net.middle[0].state_dict())
        Cb = len(free)
        for j, c in enumerate(free):
            for p in range(2):  # the masked net orders its outputs (channel, parameter), the split net (parameter, channel)
                big.last.weight[2 * c + p] = split.net.last.weight[p * Cb + j]
                big.last.bias[2 * c + p] = split.net.last.bias[p * Cb + j]
    masked = AffineCoupling(mask, big).double()
    x = torch.randn(6, C, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y1, l1 = split.call_and_ladj(x)
        y2, l2 = masked.call_and_ladj(x)
    assert torch.allclose(y1, y2, atol=1e-12) and torch.allclose(l1, l2, atol=1e-12)


def test_channels_last_is_the_same_function():
    t_cl = _coupling(C=4, parity=1, channels_last=True)
    t = _coupling(C=4, parity=1)
    assert t_cl.net.first[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(8, 4, 6, 6, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        (y1, l1), (y2, l2) = t_cl.call_and_ladj(x), t.call_and_ladj(x)
    assert torch.allclose(y1, y2, atol=1e-5) and torch.allclose(l1, l2, atol=1e-4)


FAST = {"levels": 2, "steps": 2, "hidden": 8, "split": "channel"}


@pytest.mark.parametrize("options", [{}, {"channels_last": True}, {"channels_last": True, "conditioner_dtype": "bfloat16"},
                                     {"coupling": "additive"}, {"norm": False, "channels_last": True, "conditioner_dtype": "bfloat16"}])
def test_glow_channel_split_model_is_exact_and_trains(options):
    torch.manual_seed(0)
    model = create_model("glow", IMAGES, {**FAST, **options})
    x = torch.randint(0, 17, (32, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    model.initialize([Batch(x)])
    _perturb(model.flow, scale=0.05)
    couplings = [m for m in model.modules() if isinstance(m, ChannelCoupling)]
    assert len(couplings) == 2 * 2  # every step of both levels (4 and 2 channels) is a channel split
    for coupling in couplings:
        assert coupling.channels_last == options.get("channels_last", False)
        assert coupling.net.first[0].weight.is_contiguous(memory_format=torch.channels_last) or not coupling.channels_last
        assert coupling.autocast_dtype == (torch.bfloat16 if options.get("conditioner_dtype") == "bfloat16" else None)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == (2 * 4 if options.get("norm", True) else 0)
    with torch.no_grad():
        u = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
        z = model.encode(x, noise=u)
        assert torch.equal(model.decode(z), x)  # x = f⁻¹(f(x)) lands in x's cell
    loss = model.loss(Batch(x)).loss
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    record = model.log_likelihoods(Batch(x[:4], seeds=torch.arange(4)))[0]
    assert torch.allclose(sum(record.terms.values()), record.values, atol=1e-3)
    assert model.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, 1, 4, 4)


def test_channel_split_drops_the_masked_couplings_dead_weights():
    spec = DataSpec("f", (1, 8, 8), 256)
    masked = create_model("glow", spec, {"levels": 2, "steps": 2, "hidden": 16})
    split = create_model("glow", spec, {"levels": 2, "steps": 2, "hidden": 16, "split": "channel"})
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # per coupling: the first 3×3 conv loses C//2 input channels, the last one C of its 2C outputs
    dead = sum(9 * (C // 2) * 16 + (16 * 9 + 1) * C for C in (4, 4, 8, 8))
    assert count(masked) - count(split) == dead


def test_glow_channel_split_state_dict_round_trip():
    config = {**FAST, "channels_last": True}
    a = create_model("glow", IMAGES, config)
    _perturb(a.flow)
    b = create_model("glow", IMAGES, config)
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 17, (4, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    batch = lambda: Batch(x, seeds=torch.arange(4))  # noqa: E731
    assert torch.equal(a.log_likelihoods(batch())[0].values, b.log_likelihoods(batch())[0].values)


@pytest.mark.parametrize("bad", [{"split": "diagonal"}, {"conditioner_dtype": "float16", "split": "channel"},
                                 {"channels_last": True}, {"conditioner_dtype": "bfloat16"}])
def test_glow_fast_path_options_are_validated(bad):
    with pytest.raises(UserError):
        create_model("glow", IMAGES, bad)
