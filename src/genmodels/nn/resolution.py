"""How deep an image architecture goes, chosen from the data's shape C×H×W.

Every image family halves the resolution a few times (the U-Net's levels, Glow's and RealNVP's
scales, the convolutional VAE's and the GAN's stride-2 layers). Their defaults were sized on 8×8
digits and 28×28 Fashion-MNIST; on larger images the same two halvings leave a 16×16 or 32×32 map
at the bottom, whose receptive field covers a fraction of the image. One rule serves them all:
halve down to about 4×4, and at least twice (so digits and Fashion-MNIST keep exactly their earlier
architectures):

    levels(H, W) = max(2, ⌊log₂ min(H, W)⌋ − 2)

=========  ======  ===============================================================================
 H×W       levels  what each family builds by default
=========  ======  ===============================================================================
 8×8        2      U-Net mults (1, 2); Glow L = 2; RealNVP 2 scales; VAE conv (32, 64); GAN mlp
 28×28      2      as 8×8 (GAN conv from 7×7: two upsamplings); VQ-VAE codes 7×7
 32×32      3      U-Net (1, 2, 2), bottom 8×8; Glow L = 3 (16, 8, 4); RealNVP 3 scales (32, 16, 8);
                   VAE conv (32, 64, 128) to 4×4; GAN conv from 4×4 (three upsamplings); VQ codes 8×8
 64×64      4      U-Net (1, 2, 2, 2), bottom 8×8; Glow L = 4 (32 … 4); RealNVP 4 scales;
                   VAE conv (32, 64, 128, 256) to 4×4; GAN conv from 4×4 (four); VQ codes 16×16
=========  ======  ===============================================================================

(Glow's L = 3 on 32×32 and L = 4 on 64×64 are Kingma & Dhariwal 2018's, sec. 5; the VQ-VAE's factor
4, 32×32 → 8×8 codes, is van den Oord et al. 2017's on CIFAR-10.) Channel counts C (1 or 3, or any
other) change only the first and last layers. Each family's config takes an explicit value instead
(``channel_mults``, ``levels``, ``scales``, ``channels``, ``downsample``), which wins over the rule.
"""

from __future__ import annotations

import math

__all__ = ["resolution_levels", "even_halvings"]


def resolution_levels(height: int, width: int) -> int:
    """The number of resolutions an image architecture uses for H×W: max(2, ⌊log₂ min(H, W)⌋ − 2).

    >>> [resolution_levels(s, s) for s in (8, 16, 28, 32, 48, 64)]
    [2, 2, 2, 3, 3, 4]
    """
    side = min(height, width)
    return max(2, int(math.floor(math.log2(side))) - 2) if side >= 1 else 2


def even_halvings(height: int, width: int, smallest: int = 4) -> int:
    """How many times both sides halve exactly while the halves stay at least ``smallest``.

    >>> [even_halvings(s, s) for s in (8, 28, 32, 36, 64)]
    [1, 2, 3, 2, 4]
    """
    steps = 0
    while height % 2 == 0 and width % 2 == 0 and min(height, width) // 2 >= smallest:
        height, width, steps = height // 2, width // 2, steps + 1
    return steps
