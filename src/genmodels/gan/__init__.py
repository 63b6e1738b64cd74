"""Generative adversarial networks and hubness-guided latent sampling."""

from .hubness import k_occurrence, select_hubs

__all__ = ["k_occurrence", "select_hubs"]
