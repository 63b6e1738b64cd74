"""Generative adversarial networks (hubness-guided latent sampling lives in ``latent.hubness``)."""

from ..latent.hubness import k_occurrence, select_hubs

__all__ = ["k_occurrence", "select_hubs"]
