"""Network building blocks shared by the model families (architectures only, no likelihoods)."""
