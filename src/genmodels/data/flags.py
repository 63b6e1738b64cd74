"""The command line's data flags (``--resize``, ``--center-crop``, ``--hflip``, ``--max-pixels``), kept
beside the code that reads them, so the CLI adds them with one call and passes them on with another.
"""

from __future__ import annotations

import argparse
from typing import Any

from .transforms import DEFAULT_MAX_PIXELS, ImageTransform

__all__ = ["add_data_flags", "data_options"]


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """Add the image transform flags and ``--max-pixels`` to a command that loads data by name."""
    group = parser.add_argument_group(
        "image data", "recorded with the run and applied again by eval, classify, mixture, encode; --resume needs the same flags"
    )
    group.add_argument("--resize", metavar="H[xW]",
                       help="resize every image to H x W (one number: a square), bilinear; every split")
    group.add_argument("--center-crop", action="store_true",
                       help="before resizing, crop the centred region with the output's aspect ratio "
                            "(without --resize: the centred square); every split")
    group.add_argument("--hflip", action="store_true",
                       help="mirror training images left-right with probability 1/2, redrawn each epoch "
                            "(training split only)")
    group.add_argument("--max-pixels", type=int, metavar="N",
                       help=f"refuse images larger than N pixels (width x height), from their header "
                            f"(default {DEFAULT_MAX_PIXELS:,})")


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`~genmodels.data.load_dataset` that the flags ask for."""
    transform = ImageTransform.from_flags(args.resize, args.center_crop, args.hflip)
    return {"transform": transform, "max_pixels": args.max_pixels}
