r"""VideoPose3D, 243-frame receptive field, fully supervised on Human3.6M (Pavllo et al. 2019).

Command::

  python launch/train.py --config=launch/configs/videopose_243f.py --workdir=workdir/vp243 \
    --config.data.path_3d=data/data_3d_h36m.npz \
    --config.data.path_2d=data/data_2d_h36m_cpn_ft_h36m_dbb.npz \
    --config.data.metadata_xml=data/metadata.xml --config.data.allow_pickle=True

Runtime: 80 epochs as the paper trains it (§5.3; each epoch sees every window and its
mirror); VideoPose3D's README reports ~1 day on one GPU for 243 frames with the
unoptimised form, and the strided form used here is much faster. Expected error
(paper, CPN detections): Protocol #1 46.8 mm, Protocol #2 36.5 mm.
"""

from launch.configs import common


def get_config(arg: str = ""):
    switches = common.parse_arg(arg)
    c = common.base_config()
    c.model.variant = "videopose_243f"
    c.data.source = "h36m_videopose3d"
    c.num_epochs = 80  # paper §5.3
    if "tiny" in switches:
        common.apply_tiny(c)
    return c
