"""Invertible transforms, each returning its value and its log|det J| in one pass (zuko's layering).

A :class:`Transform` maps x (B, *event) to y and offers

- ``call_and_ladj(x, context=None) -> (y, ladj)`` with ladj = log|det ∂y/∂x| per example, (B,);
- ``inverse(y, context=None) -> x``.

Transforms point from data to latent (the density direction): a flow's log-density is
log p(x) = log p_Z(f(x)) + log|det ∂f/∂x| (Dinh et al. 2017, RealNVP, eq. 3).

>>> from genmodels.nn.flow_nets import MLP
>>> t = ComposedTransform(AffineCoupling(torch.tensor([1.0, 0.0]), MLP(2, 4)), Reverse())
>>> x = torch.randn(3, 2)
>>> y, ladj = t.call_and_ladj(x)
>>> bool(torch.allclose(t.inverse(y), x, atol=1e-6)), tuple(ladj.shape)
(True, (3,))
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .spline import rational_quadratic_spline, spline_params_per_dim

__all__ = [
    "Transform",
    "ComposedTransform",
    "Permutation",
    "Reverse",
    "MaskedCoupling",
    "AdditiveCoupling",
    "AffineCoupling",
    "SplineCoupling",
    "ChannelCoupling",
    "DiagonalScaling",
    "ActNorm",
    "InvertibleLinearLU",
    "Squeeze",
    "MultiScale",
    "MaskedAutoregressive",
    "checkerboard_mask",
    "channel_mask",
    "parity_mask",
    "random_half_mask",
    "soft_clamp",
]


def _sum_per_example(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).sum(dim=1)


def soft_clamp(s: Tensor, bound: float) -> Tensor:
    """bound · tanh(s / bound): a log-scale kept in (−bound, bound), ≈ s near 0 (keeps training stable)."""
    return bound * torch.tanh(s / bound)


class Transform(nn.Module):
    """An invertible map with a tractable log-determinant (see the module docstring)."""

    def call_and_ladj(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.call_and_ladj(x, context)[0]


class ComposedTransform(Transform):
    """f = f_n ∘ … ∘ f_1; log-determinants add (chain rule)."""

    def __init__(self, *transforms: Transform):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def call_and_ladj(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ladj = x.new_zeros(x.shape[0])
        for t in self.transforms:
            x, l = t.call_and_ladj(x, context)
            ladj = ladj + l
        return x, ladj

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        for t in reversed(self.transforms):
            y = t.inverse(y, context)
        return y


class Permutation(Transform):
    """A fixed permutation of dimension 1 (features of vectors, channels of images); |det| = 1."""

    def __init__(self, permutation: Tensor):
        super().__init__()
        self.register_buffer("permutation", permutation.long())
        self.register_buffer("inverse_permutation", torch.argsort(permutation.long()))

    def call_and_ladj(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.index_select(1, self.permutation), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return y.index_select(1, self.inverse_permutation)


class Reverse(Transform):
    """Reverses the order of dimension 1 (RealNVP/MAF alternation); |det| = 1."""

    def call_and_ladj(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.flip(1), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return y.flip(1)


# --- masks ----------------------------------------------------------------------------------------
def parity_mask(features: int, parity: int) -> Tensor:
    """(D,) 1 on the indices i with i % 2 == parity (NICE's odd/even partition, sec. 5.1)."""
    return (torch.arange(features) % 2 == parity).float()


def random_half_mask(features: int, pair: int) -> Tensor:
    """(D,) 1 on a random half of the indices, fixed by ``pair`` (the same mask at every build).

    Odd/even halves only ever condition a dimension on the other parity's, so two correlated columns
    of the same parity meet only through a third; a fresh random split per pair of couplings (and its
    complement in the pair's second coupling) mixes every pair of dimensions in some coupling, as the
    random permutations between layers of RealNVP/Glow-style vector flows do.
    """
    order = torch.randperm(features, generator=torch.Generator().manual_seed(pair))
    mask = torch.zeros(features)
    mask[order[: (features + 1) // 2]] = 1.0
    return mask


def checkerboard_mask(shape: tuple[int, int, int], parity: int) -> Tensor:
    """(C, H, W) RealNVP's spatial checkerboard, 1 where (h + w) % 2 == parity (sec. 3.4, fig. 3)."""
    c, h, w = shape
    board = (torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == parity
    return board.float().expand(c, h, w).clone()


def channel_mask(shape: tuple[int, int, int], parity: int) -> Tensor:
    """(C, H, W) RealNVP's channel-wise mask: 1 on the first half of the channels (parity 0) or the second."""
    c, h, w = shape
    first = (torch.arange(c) < c // 2).float()
    mask = first if parity == 0 else 1 - first
    return mask[:, None, None].expand(c, h, w).clone()


# --- couplings ------------------------------------------------------------------------------------
class MaskedCoupling(Transform):
    """y = m ⊙ x + (1 − m) ⊙ g(x; θ), θ = NN(m ⊙ x, context) (RealNVP, eq. 9).

    The entries where the mask is 1 pass unchanged and condition the elementwise bijection g of the
    others; the Jacobian is triangular, so log|det| = Σ (1 − m) log|g'| (eq. 6).

    Args:
        mask: (*event) 0/1.
        net: maps (B, *event) [and a context] to (B, C·P, *spatial) (images) or (B, D·P) (vectors).
    """

    params_per_dim: int = 1

    def __init__(self, mask: Tensor, net: nn.Module):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.get_default_dtype()))
        self.net = net

    def _params(self, x: Tensor, context: Tensor | None) -> Tensor:
        h = self.net(x * self.mask, context)
        # (B, C·P, *spatial) → (B, C, P, *spatial) → (B, C, *spatial, P)
        return h.reshape(x.shape[0], x.shape[1], self.params_per_dim, *x.shape[2:]).movedim(2, -1)

    def elementwise(self, x: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        """g (or g⁻¹) applied elementwise, and its elementwise log|derivative|."""
        raise NotImplementedError

    def call_and_ladj(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, log_derivative = self.elementwise(x, self._params(x, context), inverse=False)
        free = 1 - self.mask
        return self.mask * x + free * y, _sum_per_example(free * log_derivative)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        x, _ = self.elementwise(y, self._params(y, context), inverse=True)
        return self.mask * y + (1 - self.mask) * x


class AdditiveCoupling(MaskedCoupling):
    """NICE's additive coupling y₂ = x₂ + m(x₁) (Dinh et al. 2015, eq. 5): volume preserving, log|det| = 0."""

    params_per_dim = 1

    def elementwise(self, x: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        t = params[..., 0]
        return (x - t if inverse else x + t), torch.zeros_like(x)

    def call_and_ladj(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        t = self._params(x, context)[..., 0]
        return x + (1 - self.mask) * t, x.new_zeros(x.shape[0])  # exactly 0, not a sum of zeros


class AffineCoupling(MaskedCoupling):
    """RealNVP's affine coupling y₂ = x₂ ⊙ exp(s(x₁)) + t(x₁) (eq. 7), log|det| = Σ s (eq. 6).

    The log-scale is soft-clamped to (−clamp, clamp) (Glow and later flows bound it for stability).
    """

    params_per_dim = 2

    def __init__(self, mask: Tensor, net: nn.Module, clamp: float = 3.0):
        super().__init__(mask, net)
        self.clamp = clamp

    def elementwise(self, x: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        s, t = soft_clamp(params[..., 0], self.clamp), params[..., 1]
        if inverse:
            return (x - t) * torch.exp(-s), -s
        return x * torch.exp(s) + t, s


class SplineCoupling(MaskedCoupling):
    """Rational-quadratic spline coupling (Durkan et al. 2019, RQ-NSF (C)): g is a monotonic RQ spline
    on [−bound, bound] with ``bins`` bins whose 3K − 1 parameters the network gives."""

    def __init__(self, mask: Tensor, net: nn.Module, bins: int = 8, bound: float = 5.0):
        super().__init__(mask, net)
        self.params_per_dim = spline_params_per_dim(bins)
        self.bound = bound

    def elementwise(self, x: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        return rational_quadratic_spline(x, params, self.bound, inverse)


class ChannelCoupling(Transform):
    """Glow's coupling on a channel split (Kingma & Dhariwal 2018, sec. 3.3, table 1): x = (x_a, x_b)
    along dimension 1, (log s, t) = NN(x_a), y_b = x_b ⊙ exp(log s) + t (affine; log|det| = Σ log s)
    or y_b = x_b + t (additive; log|det| = 0), y = (x_a, y_b).

    The same map as :class:`MaskedCoupling` with :func:`channel_mask` (parity 0: the first C//2
    channels condition the rest; parity 1: the last C − C//2 condition the first), but the network
    reads only the C_a conditioning channels and gives only the free channels' parameters, so none of
    its weights multiply a masked zero or feed a discarded output (half the work of the first and
    last layers).

    Args:
        channels: C.
        parity: 0 or 1, as for :func:`channel_mask`.
        net: maps (B, C_a, *spatial) to (B, P·C_b, *spatial), ordered (p, c): log s then t (affine, P = 2),
            t (additive, P = 1); C_a conditioning and C_b free channels.
        affine: affine (True) or additive (False).
        clamp: bound of the soft clamp on log s.
        channels_last: run the network on a channels-last (NHWC) copy of x_a (images): oneDNN's
            convolutions are several times faster in that layout on CPUs. The same function.
        autocast_dtype: run the network under ``torch.autocast`` in this dtype (e.g. ``torch.bfloat16``):
            the network's convolutions in low precision, its output cast back to x's dtype. The
            coupling stays exactly invertible with the exact log-determinant (the inverse runs the
            same network on the same x_a); only the function NN is computed differently. Float64
            inputs are never cast (autocast leaves them alone).
    """

    def __init__(
        self, channels: int, parity: int, net: nn.Module, affine: bool = True, clamp: float = 3.0,
        channels_last: bool = False, autocast_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if channels < 2 or parity not in (0, 1):
            raise ValueError(f"a channel coupling needs ≥ 2 channels and parity 0 or 1, got {channels}, {parity}")
        self.channels, self.parity, self.net = channels, parity, net
        self.affine, self.clamp = affine, clamp
        self.channels_last, self.autocast_dtype = channels_last, autocast_dtype
        half = channels // 2
        self.conditioning = slice(0, half) if parity == 0 else slice(half, channels)
        self.free = slice(half, channels) if parity == 0 else slice(0, half)

    def _scale_shift(self, x_a: Tensor, context: Tensor | None) -> tuple[Tensor | None, Tensor]:
        if self.channels_last and x_a.dim() == 4:
            x_a = x_a.contiguous(memory_format=torch.channels_last)
        if self.autocast_dtype is not None:
            with torch.autocast(device_type=x_a.device.type, dtype=self.autocast_dtype):
                h = self.net(x_a, context)
        else:
            h = self.net(x_a, context)
        h = h.to(x_a.dtype)
        if not self.affine:
            return None, h
        c_b = h.shape[1] // 2
        return soft_clamp(h[:, :c_b], self.clamp), h[:, c_b:]

    def _join(self, x_a: Tensor, y_b: Tensor) -> Tensor:
        return torch.cat([x_a, y_b] if self.parity == 0 else [y_b, x_a], dim=1)

    def call_and_ladj(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a, x_b = x[:, self.conditioning], x[:, self.free]
        log_s, t = self._scale_shift(x_a, context)
        if log_s is None:
            return self._join(x_a, x_b + t), x.new_zeros(x.shape[0])
        return self._join(x_a, x_b * torch.exp(log_s) + t), _sum_per_example(log_s)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        y_a, y_b = y[:, self.conditioning], y[:, self.free]
        log_s, t = self._scale_shift(y_a, context)
        x_b = y_b - t if log_s is None else (y_b - t) * torch.exp(-log_s)
        return self._join(y_a, x_b)


# --- elementwise and linear layers ----------------------------------------------------------------
class DiagonalScaling(Transform):
    """NICE's diagonal scaling layer y = x ⊙ exp(s) (sec. 3.3), log|det| = Σ s."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(shape))

    def call_and_ladj(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return y * torch.exp(-self.log_scale)


def _channel_view(p: Tensor, x: Tensor) -> Tensor:
    """A per-channel (C,) parameter shaped to broadcast against x (B, C, *spatial)."""
    return p.reshape(1, -1, *([1] * (x.dim() - 2)))


class ActNorm(Transform):
    """Glow's activation normalization y = (x + b) ⊙ exp(log s), per channel (Kingma & Dhariwal 2018,
    sec. 3.1), log|det| = (H·W) Σ log s.

    Data-dependent initialization: after :meth:`request_init`, the next call sets b and log s so that
    its input gives outputs of zero mean and unit variance per channel. The model's ``initialize``
    hook does this on the first training batch; ``initialized`` is saved with the weights.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))
        self.eps = eps
        self._init_pending = False

    def request_init(self) -> None:
        self._init_pending = True

    @torch.no_grad()
    def _data_init(self, x: Tensor) -> None:
        dims = [d for d in range(x.dim()) if d != 1]
        mean = x.mean(dim=dims)
        std = x.std(dim=dims, unbiased=False)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)
        self._init_pending = False

    def call_and_ladj(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self._init_pending:
            self._data_init(x)
        spatial = math.prod(x.shape[2:])
        y = (x + _channel_view(self.bias, x)) * torch.exp(_channel_view(self.log_scale, x))
        return y, (spatial * self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return y * torch.exp(-_channel_view(self.log_scale, y)) - _channel_view(self.bias, y)


class InvertibleLinearLU(Transform):
    """Glow's invertible 1×1 convolution, LU-parameterized (sec. 3.2, eq. 10): W = P L (U + diag(sign · exp(log s))),
    P a fixed permutation, L unit lower-triangular, U strictly upper-triangular; log|det| = (H·W) Σ log|s|.

    Acts on dimension 1: the channels of images (a 1×1 convolution) or the features of vectors (a linear map).
    Starts at a random rotation (Glow's initialization).
    """

    def __init__(self, channels: int):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))
        p, l, u = torch.linalg.lu(q)
        s = torch.diagonal(u)
        dtype = torch.get_default_dtype()  # float64 under a float64 default (exactness tests)
        self.register_buffer("P", p.to(dtype))
        self.register_buffer("sign_s", torch.sign(s).to(dtype))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.L = nn.Parameter(l.to(dtype))
        self.U = nn.Parameter(torch.triu(u, 1).to(dtype))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).to(dtype))

    def weight(self) -> Tensor:
        L = self.L * self.lower_mask + self.eye
        U = self.U * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.P @ L @ U

    @staticmethod
    def _mix(W: Tensor, x: Tensor) -> Tensor:
        return torch.einsum("ij,bj...->bi...", W, x)

    def call_and_ladj(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        spatial = math.prod(x.shape[2:])
        return self._mix(self.weight(), x), (spatial * self.log_s.sum()).expand(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return self._mix(torch.linalg.inv(self.weight()), y)


# --- multi-scale ----------------------------------------------------------------------------------
class Squeeze(Transform):
    """(B, C, H, W) → (B, 4C, H/2, W/2): each 2×2 block becomes 4 channels (RealNVP sec. 3.6, fig. 3); |det| = 1."""

    def call_and_ladj(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return y, x.new_zeros(b)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        b, c4, h2, w2 = y.shape
        c = c4 // 4
        return y.reshape(b, c, 2, 2, h2, w2).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * h2, 2 * w2)


class MultiScale(Transform):
    """One scale of the multi-scale architecture (RealNVP sec. 3.6, eq. 14-16; Glow fig. 2b):
    h = steps(x); half of h's channels are factored out (sent to the base density as they are) and
    ``inner`` (the next scale) transforms the rest. Output: the flattened latent (B, D), factored-out
    part first.

    Args:
        steps: the transform of this scale (its squeeze included).
        shape: (C, H, W), the shape ``steps`` outputs.
        inner: the next scale, acting on the last C − C//2 channels; None at the last scale.
    """

    def __init__(self, steps: Transform, shape: tuple[int, int, int], inner: Transform | None = None):
        super().__init__()
        self.steps = steps
        self.shape = tuple(shape)
        self.inner = inner
        self.factored = shape[0] // 2 if inner is not None else shape[0]

    def call_and_ladj(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, ladj = self.steps.call_and_ladj(x, context)
        if self.inner is None:
            return h.flatten(1), ladj
        z, ladj_inner = self.inner.call_and_ladj(h[:, self.factored :], context)
        return torch.cat([h[:, : self.factored].flatten(1), z], dim=1), ladj + ladj_inner

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        c, hh, ww = self.shape
        if self.inner is None:
            h = z.reshape(len(z), c, hh, ww)
        else:
            n = self.factored * hh * ww
            kept = self.inner.inverse(z[:, n:], context)
            h = torch.cat([z[:, :n].reshape(len(z), self.factored, hh, ww), kept], dim=1)
        return self.steps.inverse(h, context)


# --- autoregressive -------------------------------------------------------------------------------
class MaskedAutoregressive(Transform):
    """MAF's layer (Papamakarios et al. 2017, eq. 2-5), in the density direction x → u:

        u_i = (x_i − μ_i(x_<i)) exp(−α_i(x_<i)),   log|det ∂u/∂x| = −Σ α_i,

    one MADE pass; the inverse (sampling) takes D passes, one dimension at a time.

    Args:
        net: a MADE-masked network (B, D) [, context] → (B, D·2), ordered (i, (μ, α)).
        clamp: bound of the soft clamp on α.
    """

    def __init__(self, net: nn.Module, clamp: float = 3.0):
        super().__init__()
        self.net = net
        self.clamp = clamp

    def _mu_alpha(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.net(x, context).reshape(x.shape[0], x.shape[1], 2)
        return h[..., 0], soft_clamp(h[..., 1], self.clamp)

    def call_and_ladj(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mu, alpha = self._mu_alpha(x, context)
        return (x - mu) * torch.exp(-alpha), -alpha.sum(dim=1)

    def inverse(self, u: Tensor, context: Tensor | None = None) -> Tensor:
        x = torch.zeros_like(u)
        for _ in range(u.shape[1]):  # after pass i, x_0..x_i are exact (x_i depends only on x_<i)
            mu, alpha = self._mu_alpha(x, context)
            x = mu + u * torch.exp(alpha)
        return x
