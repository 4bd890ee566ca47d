r"""Li et al. ICCV 2019 two-stage boosting on the embedded real-motion data.

Command (``launch/boost.py`` runs every stage; this is its default config)::

  python launch/boost.py --workdir=W
  python launch/boost.py --workdir=W --config=launch/configs/li_boosting/sample.py:tiny

Data: the DeepMimic sample as a Human3.6M-like dataset: subject S1 labelled, S2-S4 the
unlabelled videos, evaluation on S5 through camera 7 (unseen subject and viewpoint).

Stage A trains the single-frame lifter (the temporal model's 1-frame form, 256
channels) on S1; stage B predicts S2-S4, completes each video's low-confidence joints
(``boost.tau``; the confidence is the 2D detector's per joint) and takes each video's
median bone lengths; stage C fine-tunes from A three ways (the rows of the paper's
Table 3). Runtime: a few minutes on 2 CPU cores.
"""

import ml_collections

from launch.configs import common


def boost_section() -> ml_collections.ConfigDict:
    """What ``launch/boost.py`` does between its runs (every boosting config has it)."""
    return ml_collections.ConfigDict({
        "tau": 0.7,  # Human3.6M's (0.5 for MPI-INF-3DHP)
        # The per-joint score s (jpose.confidence): detector | flip | temporal, or a
        # product such as "detector*temporal"; sigmas in metres.
        "confidence": "detector",
        "flip_sigma": 0.05,
        "temporal_sigma": 0.15,  # 72 % of joints above tau on the sample (README)
        "gamma": 1.0,  # weight of the bone-length consistency U
        "finetune_epochs": 10,
        "finetune_learning_rate": 3e-4,
        "completion_batch": 16,
        # data overrides naming another dataset whose training videos are the unlabelled
        # ones (cross-dataset boosting); empty: the unlabelled split of data.protocol.
        "target": {},
    })


def get_config(arg: str = ""):
    switches = common.parse_arg(arg)
    c = common.base_config()
    c.model.variant = "videopose_27f"
    c.model.overrides = {"channels": 256, "filter_widths": (1, 1, 1)}
    c.data.motion = "deepmimic"
    c.data.num_cameras = 8
    c.data.held_out_cameras = (7,)
    c.data.protocol = "subjects"
    c.data.labelled_subjects = ("S1",)
    c.global_batch_size = 256
    c.num_epochs = 20
    c.log_every = 20
    c.eval_every = 0
    c.checkpoint_every = 1000
    c.boost = boost_section()
    if "tiny" in switches:
        common.apply_tiny(c)
        c.model.variant = "tiny_1f"
        c.model.overrides = {"channels": 16}
        c.boost.finetune_epochs = 1
        c.boost.completion_batch = 4
    return c
