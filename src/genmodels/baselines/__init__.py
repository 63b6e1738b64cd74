"""Baselines: the floors every model must beat."""
