"""Network architectures shared by the model families (no likelihoods here, only networks)."""
