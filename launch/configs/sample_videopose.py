r"""VideoPose3D temporal model (27 frames) on the embedded real-motion data: the main job.

Command (the README's first command runs it through launch/main.py)::

  python launch/train.py --config=launch/configs/sample_videopose.py --workdir=workdir/sample

Data: DeepMimic motion capture (15 clips) as a Human3.6M-like multi-view dataset: 5
pseudo-subjects, 8 virtual cameras around the subject (the thesis's view augmentation),
noisy detector-like 2D with outliers. Trains on S1-S4 through cameras 0-6; evaluates on
S5 (unseen subject) through camera 7 (unseen viewpoint).

Model: the 27-frame VideoPose3D model at half width (512 channels) so that it trains in
minutes on a CPU; 10 epochs of 177 steps, batch 256.

Runtime: about 3 minutes on 2 CPU cores. Expected error on the test split (action-wise
means): Protocol #1 about 95 mm, Protocol #2 about 73 mm, against 180 / 126 mm for a
linear lifter and 377 / 236 mm for the mean pose.
"""

from launch.configs import common


def get_config(arg: str = ""):
    switches = common.parse_arg(arg)
    c = common.base_config()
    c.model.variant = "videopose_27f"
    c.model.overrides = {"channels": 512}
    c.data.motion = "deepmimic"
    c.data.num_cameras = 8
    c.data.held_out_cameras = (7,)
    c.global_batch_size = 256
    c.num_epochs = 10
    c.log_every = 10
    c.eval_every = 354  # every 2 epochs: the validation curve in curves.png
    c.checkpoint_every = 177
    if "tiny" in switches:
        common.apply_tiny(c)
    return c
