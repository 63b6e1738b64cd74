"""What data a model takes, stated on its class so that ``genmodels list`` can print it.

A model class sets ``accepts = Accepts(...)``: how it reads images C×H×W (with an image architecture:
convolutions, a U-Net, a multi-scale flow), which channel counts and sizes, and what it does with any
other shape. The constructor still decides (a refused shape is a ``UserError`` naming the fix); this
is the description a user reads before choosing a model, and the contract tests use ``images`` to
run every image model on 3×32×32 colour data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Accepts", "FLATTENED", "accepts_of"]


@dataclass(frozen=True)
class Accepts:
    """Args:
    images: how the model reads images C×H×W with an architecture made for them (one phrase), or ""
        when it reads every shape as a flat vector.
    channels: which channel counts C it takes as images ("any", or e.g. "1, 3").
    sizes: which H×W it takes as images, and how its depth follows from them.
    other: what it does with data of any other shape (or with images under another option), or ""
        when it refuses them.
    """

    images: str = ""
    channels: str = "any"
    sizes: str = "any"
    other: str = ""

    def describe(self) -> str:
        """One line for ``genmodels list``."""
        parts = []
        if self.images:
            parts.append(f"images C×H×W ({self.images}; C: {self.channels}; H×W: {self.sizes})")
        if self.other:
            parts.append(self.other)
        return "; ".join(parts) or "(not stated)"


#: the description of a model that reads every example as one flat vector of D = C·H·W dimensions
FLATTENED = Accepts(other="any shape, flattened to D = C·H·W (colour and size allowed; cost grows with D)")


def accepts_of(cls: Any) -> Accepts | None:
    """A model class's :class:`Accepts`, or None where it states none (a plugin's, say)."""
    value = getattr(cls, "accepts", None)
    return value if isinstance(value, Accepts) else None
