"""Networks: pure functions of ``(variables, inputs)`` over Flax linen modules.

* :mod:`jpose.nets.temporal` -- VideoPose3D dilated temporal convolutions (sequence form
  :func:`~jpose.nets.temporal.apply` and strided training form
  :func:`~jpose.nets.temporal.apply_strided`, one parameter tree), causal and trajectory
  variants, VideoPose3D checkpoint conversion.
* :mod:`jpose.nets.mlp` -- Martinez et al. residual MLP lifter with optional root/scale heads.
* Image networks: :mod:`jpose.nets.resnet` (torchvision-layout ResNet-18/50 backbones;
  weights from torchvision state dicts via :mod:`jpose.nets.torch_weights`),
  :mod:`jpose.nets.pose2d` (2D heatmap network with the Temporal Consistency Exploration
  ops of :mod:`jpose.nets.tce`), :mod:`jpose.nets.hourglass` (stacked and volumetric
  hourglasses). Images are ``(..., H, W, 3)`` float RGB in [0, 1].

Each module offers ``variant(name, **overrides) -> config``, ``init(rng, config) ->
{'params', 'batch_stats'}`` and ``apply(variables, inputs, *, config, train, rng=None,
bn_momentum=0.1, with_intermediates=False) -> (outputs, batch_stats[, intermediates])``.
The image networks have no dropout (no ``rng``) and no ``with_intermediates``: their
named features are outputs. Batch-norm momentum is PyTorch's convention and a runtime
argument (schedulable).
"""

from jpose.nets import hourglass, mlp, pose2d, resnet, tce, temporal, torch_weights
from jpose.nets.hourglass import HourglassConfig
from jpose.nets.mlp import LifterOutputs, MLPConfig
from jpose.nets.pose2d import Pose2DConfig
from jpose.nets.resnet import ResNetConfig
from jpose.nets.temporal import TemporalConfig

__all__ = ["HourglassConfig", "LifterOutputs", "MLPConfig", "Pose2DConfig", "ResNetConfig",
           "TemporalConfig", "hourglass", "mlp", "pose2d", "resnet", "tce", "temporal",
           "torch_weights"]
