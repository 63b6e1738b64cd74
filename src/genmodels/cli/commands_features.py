"""``genmodels features fit``: a feature network fit to the user's own data, for sample quality."""

from __future__ import annotations

import argparse

__all__ = ["cmd_features"]


def cmd_features(args: argparse.Namespace) -> None:
    from ..data import load_dataset
    from ..data.flags import data_options
    from ..errors import UserError
    from ..metrics.fitted import main_fit

    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be ≥ 1, got {args.epochs}")
    dataset = load_dataset(args.data, args.data_dir, **data_options(args))
    main_fit(dataset, args.out, epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
