r"""VideoPose3D temporal model (27 frames) on the embedded real-motion data: the main job.

Command (the README's first command runs it through launch/main.py)::

  python launch/train.py --config=launch/configs/sample_videopose.py --workdir=workdir/sample

Data: DeepMimic motion capture (15 clips) as a Human3.6M-like multi-view dataset: 5
pseudo-subjects, 8 virtual cameras around the subject (the thesis's view augmentation),
noisy detector-like 2D with outliers. Trains on S1-S4 through cameras 0-6; evaluates on
S5 (unseen subject) through camera 7 (unseen viewpoint).

Model: the 27-frame VideoPose3D model at half width (512 channels) so that it trains in
minutes on a CPU; 5 epochs of 354 steps, batch 256 (an epoch is VideoPose3D's: every
window once as is and once mirrored).

Runtime: about 2.5 minutes on 2 CPU cores. Expected error on the test split (action-wise
means): Protocol #1 about 71 mm, Protocol #2 about 58 mm, against 186 / 130 mm for a
linear lifter and 371 / 235 mm for the mean pose.
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
    c.num_epochs = 5
    c.log_every = 10
    c.eval_every = 354  # every epoch: the validation curve in curves.png
    c.checkpoint_every = 354
    if "tiny" in switches:
        common.apply_tiny(c)
    return c
