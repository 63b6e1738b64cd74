"""The latent-variable family: ``vae``, ``iwae`` and ``discrete-vae`` (one file per model), their
shared evaluation and sampling (``base``) and networks and decoder distributions (``networks``)."""
