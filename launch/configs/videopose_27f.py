r"""VideoPose3D, 27-frame receptive field, fully supervised on Human3.6M (Pavllo et al. 2019).

Command::

  python launch/train.py --config=launch/configs/videopose_27f.py --workdir=workdir/vp27 \
    --config.data.path_3d=data/data_3d_h36m.npz \
    --config.data.path_2d=data/data_2d_h36m_cpn_ft_h36m_dbb.npz \
    --config.data.metadata_xml=data/metadata.xml --config.data.allow_pickle=True

(The VideoPose3D ``.npz`` files store pickled dicts: ``allow_pickle`` is an explicit
opt-in, only for files you trust.)

Runtime: VideoPose3D reports ~1.5 h for 80 epochs on one GPU; jpose's benchmark figures
are in benchmarks/training_throughput.py. Expected error (paper, CPN detections, no
test-time augmentation differences aside): Protocol #1 48.8 mm, Protocol #2 38.0 mm.
"""

from launch.configs import common


def get_config(arg: str = ""):
    switches = common.parse_arg(arg)
    c = common.base_config()
    c.model.variant = "videopose_27f"
    c.data.source = "h36m_videopose3d"
    c.num_epochs = 80
    if "tiny" in switches:
        common.apply_tiny(c)
    return c
