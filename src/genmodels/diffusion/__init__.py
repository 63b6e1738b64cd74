"""Diffusion and flow matching as one framework (Karras et al. 2022): processes x_t = s(t)(x_0 + σ(t) ε),
parameterizations over one denoiser contract D(x̂; σ), one loss, stateless samplers and the
probability-flow ODE likelihood. Models: ``ddpm`` (DDIM is its ``solver=ddim`` option), ``ve``,
``edm``, ``rectified-flow``."""
