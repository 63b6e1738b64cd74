"""Compress, then generate: vector quantization, ``vqvae``, ``vqgan`` and the ``two-stage`` prior."""

from .quantizer import Quantized, VectorQuantizer, perplexity

__all__ = ["Quantized", "VectorQuantizer", "perplexity"]
