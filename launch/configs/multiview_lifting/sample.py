r"""Multi-view self-supervised lifting (Yang Li, thesis 2020, ch. 3) on the embedded data.

Commands::

  python launch/train.py --config=launch/configs/multiview_lifting/sample.py --workdir=W
  python launch/train.py --config=launch/configs/multiview_lifting/sample.py:reproj_only --workdir=W0
  python launch/train.py --config=launch/configs/multiview_lifting/sample.py:virtual_views --workdir=W1
  python launch/train.py --config=launch/configs/multiview_lifting/sample.py:unknown_extrinsics --workdir=W2

Data: the DeepMimic sample as a Human3.6M-like dataset, 4 calibrated cameras, noisy
detector-like 2D with confidences; training on subjects S1-S4 **without any 3D label**
(the ``multiview`` stream: pairs of synchronised views with their cameras), evaluation
on the unseen subject S5 (all 4 cameras), Protocols #1/#2 in millimetres.

Schedule (the thesis' shape, epochs scaled down to run in minutes on 2 CPU cores): Adam,
learning rate 1e-3, ``pretrain_epochs`` epochs of ``L_pre`` then ``L_T = L_reproj +
lambda L_t-reproj`` (lambda 1, Human3.6M-like), the learning rate x 0.1 at 2/3 of the
run (the thesis: 20 pre-training epochs, then 300 epochs with x 0.1 every 100). The full
thesis setting is ``full``: the 1024-channel, 4-block lifting MLP and 20 + 300 epochs.

Switches: ``reproj_only`` is the thesis' ablation (``L_reproj`` alone: depth is
unconstrained, 468.5 mm on Human3.6M); ``virtual_views`` rings the 4 real views with
virtual ones up to 12 (``recipe.virtual_views``); ``unknown_extrinsics`` replaces the
calibration by relative poses estimated from the 2D (``jpose.solvers.relative_pose``,
scaled by the known camera distances); ``full`` the thesis' network and epochs;
``tiny`` the CI-sized run. Runtime and the errors reached are in the README section
"Multi-view self-supervised lifting" (measured on 2 CPU cores).
"""

from launch.configs import common

# Steps per epoch of the sample's training split (6480 instants of S1-S4) at batch 128.
_SAMPLE_STEPS_PER_EPOCH = 6480 // 128


def get_config(arg: str = ""):
    switches = common.parse_arg(
        arg, extra=("reproj_only", "virtual_views", "unknown_extrinsics", "full"))
    if {"virtual_views", "unknown_extrinsics"} <= switches:
        raise ValueError("config argument: virtual_views needs the calibrated, Z-up world "
                         "extrinsics; it cannot be combined with unknown_extrinsics")
    c = common.base_config()
    # No dropout in either branch: with the thesis' 0.5 the root depth (exp of a noisy
    # output) and the carried-over views jitter so much that L_T diverges after the phase
    # switch (measured on this data: 1941 mm MPJPE with dropout 0.5, 200 mm without).
    c.model = {"kind": "mlp", "variant": "thesis_mlp",
               "overrides": {"hidden": 256, "dropout": 0.0}}
    c.data.motion = "deepmimic"
    c.data.num_cameras = 4
    c.data.held_out_cameras = ()
    c.data.protocol = "all"  # every training subject; no 3D is read in training anyway
    c.data.flip_augment = False
    c.recipe = {"name": "multiview_lifting", "mode": "total", "lam": 1.0,
                "pretrain_epochs": 4, "root_depth_init": 5.0, "virtual_views": 0,
                "virtual_weight": 1.0,
                "root_model": {"kind": "mlp", "variant": "martinez_mlp",
                               "overrides": {"hidden": 128, "num_blocks": 1,
                                             "dropout": 0.0}}}
    c.streams = {"multiview": {"source": "multiview", "split": "train", "views": 4,
                               "global_batch_size": 0, "network": "pose", "flip": False,
                               "extrinsics": "calibrated"}}
    c.primary_stream = "multiview"
    c.global_batch_size = 128
    c.num_epochs = 72
    decay_epoch = 48
    c.optimizer = {"name": "adam_steps", "learning_rate": 1e-3, "lr_decay": 1.0,
                   "boundaries": (decay_epoch * _SAMPLE_STEPS_PER_EPOCH,), "factor": 0.1,
                   "clip_norm": 0.0, "param_groups": {}}
    c.max_loss = 1e3
    c.log_every = 25
    c.eval_every = 0
    c.checkpoint_every = 1000
    if "full" in switches:
        c.model.overrides = {"dropout": 0.0}  # 1024 channels, 4 residual blocks
        c.recipe.pretrain_epochs = 20
        c.num_epochs = 320
        c.optimizer.boundaries = tuple(e * _SAMPLE_STEPS_PER_EPOCH for e in (120, 220))
    if "reproj_only" in switches:
        c.recipe.mode = "reproj_only"
    if "virtual_views" in switches:
        c.recipe.virtual_views = 12
    if "unknown_extrinsics" in switches:
        c.streams.multiview.extrinsics = "relative_pose"
    if "tiny" in switches:
        common.apply_tiny(c)
        c.data.num_cameras = 3
        c.streams.multiview.views = min(int(c.streams.multiview.views), 3)
        c.recipe.virtual_views = min(int(c.recipe.virtual_views), 6)
        c.model.variant = "tiny_thesis_mlp"
        c.recipe.root_model = {"kind": "mlp", "variant": "tiny_mlp", "overrides": {}}
        c.global_batch_size = 64  # 11 steps per epoch: the run crosses the phase switch
        c.recipe.pretrain_epochs = 1
        c.num_epochs = 2
        c.num_steps = 14
        c.checkpoint_every = 7
        c.eval_every = 0
        c.optimizer.boundaries = ()
    return c
