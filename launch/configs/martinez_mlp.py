r"""Martinez et al. (ICCV 2017) residual MLP lifter on Human3.6M, single frames.

Command::

  python launch/train.py --config=launch/configs/martinez_mlp.py --workdir=workdir/mlp \
    --config.data.path_3d=data/data_3d_h36m.npz \
    --config.data.path_2d=data/data_2d_h36m_cpn_ft_h36m_dbb.npz \
    --config.data.metadata_xml=data/metadata.xml --config.data.allow_pickle=True

Optimiser as the paper: Adam, lr 1e-3, exponential-ish step decay (here x0.96 every 100k
steps approximated by a piecewise schedule), batch 64, 200 epochs. Runtime: a few hours on
one GPU. Expected error (paper, ground-truth 2D): Protocol #1 45.5 mm; with detections
(stacked hourglass) 62.9 mm.
"""

from launch.configs import common


def get_config(arg: str = ""):
    switches = common.parse_arg(arg)
    c = common.base_config()
    c.model.kind = "mlp"
    c.model.variant = "martinez_mlp"
    c.data.source = "h36m_videopose3d"
    c.optimizer.name = "adam_steps"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.boundaries = tuple(100_000 * k for k in range(1, 31))
    c.optimizer.factor = 0.96
    c.global_batch_size = 64
    c.num_epochs = 200
    if "tiny" in switches:
        common.apply_tiny(c)
    return c
