"""genmodels: deep generative models behind one interface, with honest likelihoods."""

__version__ = "0.1.0"
