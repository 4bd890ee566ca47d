"""Networks: pure functions of ``(variables, inputs)`` over Flax linen modules.

* :mod:`jpose.nets.temporal` -- VideoPose3D dilated temporal convolutions (sequence form
  :func:`~jpose.nets.temporal.apply` and strided training form
  :func:`~jpose.nets.temporal.apply_strided`, one parameter tree), causal and trajectory
  variants, VideoPose3D checkpoint conversion.
* :mod:`jpose.nets.mlp` -- Martinez et al. residual MLP lifter with optional root/scale heads.

Each module offers ``variant(name, **overrides) -> config``, ``init(rng, config) ->
{'params', 'batch_stats'}`` and ``apply(variables, inputs, *, config, train, rng=None,
bn_momentum=0.1, with_intermediates=False) -> (outputs, batch_stats[, intermediates])``.
Batch-norm momentum is PyTorch's convention and a runtime argument (schedulable).
"""

from jpose.nets import mlp, temporal
from jpose.nets.mlp import LifterOutputs, MLPConfig
from jpose.nets.temporal import TemporalConfig

__all__ = ["LifterOutputs", "MLPConfig", "TemporalConfig", "mlp", "temporal"]
