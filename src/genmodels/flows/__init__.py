"""Normalizing flows: pure transforms (``transforms``, ``spline``), the flow distribution
(``distributions``), variational dequantization, and the models ``nice``, ``realnvp``, ``glow``,
``nsf`` and ``maf`` built on the shared :class:`~genmodels.flows.model.FlowModel`."""
