"""Autoregressive models: p(x) = Π_i p(x_i | x_<i), an exact likelihood of discrete data."""
