r"""The default in-the-wild lifter: what ``launch/lift.py`` uses without ``--model``.

Commands (the shipped model, ``jpose/default_model/lifter/``, is exactly this)::

  python launch/train.py --config=launch/configs/default_lifter.py --workdir=workdir/default
  python launch/export.py --workdir=workdir/default --output=jpose/default_model/lifter --overwrite
  python launch/train.py --config=launch/configs/default_lifter.py:held_out_motion \
      --workdir=workdir/default_held_out      # generalisation to motions never seen

Data (:mod:`jpose.datasets.wild`): the 15 DeepMimic motion-capture clips with random
speeds, frame rates (25-60 fps) and smooth joint-rotation perturbations (new poses),
24 random bodies (1.43-1.85 m, varied proportions), one random camera per sequence
(focal 0.45-2.4 x the image's long side, landscape / portrait / square images, 1.2-30 m,
seen from -15 to 35 degrees of elevation, off-centre, rolled), a COCO-17 detector's noise, outliers, swaps and
occlusions, low-confidence joints filled in time as ``launch/lift.py`` fills them.
Evaluated on 3 more bodies with their own cameras.

Model: the 27-frame VideoPose3D network at 256 channels (2.4 MB of weights) taking
COCO-17 2D **with its confidence** (3 features per joint) in camera-independent
focal units (``(uv - c) / f * 2``, :func:`jpose.camera.pixels_to_focal_units`), giving
Human3.6M-17 root-relative 3D in metres. Flip augmentation, 12 epochs.

``held_out_motion`` trains without the ``walk``, ``punch`` and ``jump`` clips and
evaluates on them only; ``tiny`` is the CI-sized run.
"""

from jpose import skeleton
from launch.configs import common

HELD_OUT_MOTIONS = ("walk", "punch", "jump")
CENTRE_JOINTS = tuple(skeleton.get("coco_17").joint_names.index(n)
                      for n in ("left_hip", "right_hip"))


def get_config(arg: str = ""):
    switches = common.parse_arg(arg, extra=("held_out_motion",))
    c = common.base_config()
    c.model.variant = "videopose_27f"
    # Body-frame inputs (jpose.nets.temporal.body_frame_features): centred on the hips'
    # midpoint and scaled per frame, the centre and scale as extra features.
    c.model.overrides = {"channels": 256, "centre_joints": CENTRE_JOINTS}
    c.data.source = "wild"
    c.data.with_confidence = True
    c.data.input_normalisation = "focal"
    c.data.screen_focal = 2.0
    c.data.wild = {"num_subjects": 24, "test_subjects": 3, "views": 4, "seed": 0,
                   "held_out_actions": ()}
    c.global_batch_size = 512
    c.num_epochs = 12
    c.optimizer.lr_decay = 0.8
    c.log_every = 50
    c.eval_every = 0
    c.checkpoint_every = 1000
    if "held_out_motion" in switches:
        c.data.wild = dict(c.data.wild, held_out_actions=HELD_OUT_MOTIONS)
    if "tiny" in switches:
        common.apply_tiny(c)
        c.data.source = "wild"
        c.data.wild = {"num_subjects": 1, "test_subjects": 1, "views": 1, "seed": 0,
                       "actions": ("walk", "kick"), "held_out_actions": ()}
    return c
