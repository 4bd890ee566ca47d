r"""VideoPose3D semi-supervised training (seed 001 §4) on the embedded real-motion data.

Commands::

  python launch/train.py --config=launch/configs/videopose_semi/sample.py --workdir=W
  python launch/train.py --config=launch/configs/videopose_semi/sample.py:supervised --workdir=W0
  python launch/train.py --config=launch/configs/videopose_semi/sample.py:no_bone --workdir=W1

Data: the DeepMimic sample as a Human3.6M-like dataset (8 virtual cameras, noisy 2D):
subject S1 labelled, S2-S4 unlabelled (their 2D and camera intrinsics only), evaluation
on S5 through camera 7 (unseen subject and viewpoint), Protocols in millimetres.

Your own unlabelled videos instead of S2-S4 (files in the format of
:mod:`jpose.datasets.user_sequences`: 2D detections in pixels plus camera intrinsics)::

  python launch/train.py --config=launch/configs/videopose_semi/sample.py --workdir=W2 \
      --config.streams.unlabelled.source=files \
      --config.streams.unlabelled.paths='("my_videos/",)'

Switches: ``few`` labels only 10 % of S1 (contiguous chunks); ``supervised`` trains the same labelled set without the unlabelled stream
(the ``supervised`` recipe, same networks); ``no_bone`` ablates the bone-length term;
``tiny`` is the CI-sized run.

Model: pose and trajectory networks, 27-frame VideoPose3D at 256 channels; 1 warm-up
epoch on S1 alone (the paper's setting for S1), then joint training. Runtime and the
errors they reach are in the closing note of jpose issue 11 and the README.
"""

from launch.configs import common


def get_config(arg: str = ""):
    switches = common.parse_arg(arg, extra=("supervised", "no_bone", "few"))
    c = common.base_config()
    c.model.variant = "videopose_27f"
    c.model.overrides = {"channels": 256}
    c.data.motion = "deepmimic"
    c.data.num_cameras = 8
    c.data.held_out_cameras = (7,)
    c.data.protocol = "subjects"
    c.data.labelled_subjects = ("S1",)
    c.recipe = {"name": "videopose_semi", "stream": "labelled", "trajectory": True,
                "warmup_epochs": 1, "reconstruction_weight": 1.0, "bone_weight": 1.0}
    c.streams = {"labelled": {"split": "labelled", "global_batch_size": 0, "network": ""},
                 # source="files" with paths=(...) reads your own unlabelled sequences.
                 "unlabelled": {"split": "unlabelled", "global_batch_size": 0, "network": "",
                                "source": "data", "paths": (), "layout": ""}}
    c.global_batch_size = 256
    c.num_epochs = 20
    c.log_every = 10
    c.eval_every = 0
    c.checkpoint_every = 500
    if "few" in switches:
        # 10 % of S1 labelled (VideoPose3D's contiguous chunks): the low-label regime of
        # the paper's Fig. 5. An epoch of the labelled stream is ~10x shorter, so there
        # are 10x more epochs for the same steps, the per-epoch decay is the 10th root of
        # the default's and the warm-up is 20 epochs (the paper's for small subsets).
        c.data.protocol = "fraction"
        c.data.labelled_fraction = 0.1
        c.num_epochs = 200
        c.optimizer.lr_decay = 0.95 ** 0.1
        c.recipe.warmup_epochs = 20
    if "no_bone" in switches:
        c.recipe.bone_weight = 0.0
    if "supervised" in switches:
        c.recipe = {"name": "supervised", "stream": "labelled", "trajectory": True}
        c.streams = {"labelled": {"split": "labelled", "global_batch_size": 0,
                                  "network": ""}}
    if "tiny" in switches:
        common.apply_tiny(c)
        c.model.variant = "tiny_9f"
        c.recipe.warmup_epochs = 0
    return c
