r"""MCSS metric learning and view-invariant retrieval (seed 004) on the embedded data.

Commands::

  python launch/train.py --config=launch/configs/mcss/sample.py --workdir=W
  python launch/train.py --config=launch/configs/mcss/sample.py:no_metric --workdir=W0
  python launch/retrieve.py --workdir=W --output=W/retrieval.json
  python launch/retrieve.py --workdir=W0 --predictor=canonical_pose --output=W0/retrieval.json
  python launch/retrieve.py --workdir=W --features=raw_2d --output=W/retrieval_2d.json

Data: the DeepMimic sample as 7 pseudo-subjects filmed by 4 cameras (noisy 2D): S1
labelled (3D for the regression head H), S1-S5 as synchronised view pairs for the
metric loss (their 2D only), retrieval evaluated on the held-out S6 and S7 (every
camera: queries from one view, neighbours from the others; same-subject and
cross-subject), Mean-PA-MPJPE@K in millimetres with its P-MPJPE oracle.

Model: the ``embedding`` network (residual MLP, 512 wide, 2 blocks; G: 128-d unit
embedding; H: canonical pose), metric:pose batches 192:64 (3:1), alpha 0.6, beta 0.3,
no negatives within 10 frames of the anchor in its own sequence.

Switches: ``no_metric`` is the baseline -- the same network trained by H's regression
loss alone (``jpose.recipes.mcss:REGRESSION_RECIPE``, no metric stream), retrieving by
its canonical-pose prediction; ``tiny`` is the CI-sized run. The measured figures are in
README "MCSS metric learning and retrieval".
"""

from launch.configs import common


def get_config(arg: str = ""):
    switches = common.parse_arg(arg, extra=("no_metric",))
    c = common.base_config()
    c.model = {"kind": "embedding", "variant": "mcss_mlp", "overrides": {"hidden": 512}}
    # 7 subjects: the test split is S6, S7 (two subjects: cross-subject retrieval).
    common.deepmimic_sample(c, num_cameras=4, protocol="subjects",
                            labelled_subjects=("S1",), num_subjects=7)
    c.recipe = {"name": "mcss", "metric_stream": "metric", "pose_stream": "pose",
                "alpha": 0.6, "beta": 0.3, "min_frame_gap": 10, "metric_weight": 1.0,
                "regression_weight": 1.0}
    c.streams = {
        # Synchronised view pairs of every training subject (2D only is read).
        "metric": {"source": "multiview", "split": "train", "views": 2,
                   "global_batch_size": 192, "network": "", "flip": False},
        # S1's labelled single views for the canonical-pose head.
        "pose": {"split": "labelled", "global_batch_size": 64, "network": "", "flip": False},
    }
    c.primary_stream = "pose"
    c.evals = {"retrieval": {"type": "retrieval", "predictor": "embedding", "flip": False}}
    c.optimizer.learning_rate = 1e-3
    c.optimizer.lr_decay = 0.98
    c.global_batch_size = 64
    c.num_epochs = 20
    c.num_steps = 2000
    c.log_every = 100
    c.eval_every = 0
    c.checkpoint_every = 1000
    c.max_loss = 1e3
    if "no_metric" in switches:
        c.recipe.name = "jpose.recipes.mcss:REGRESSION_RECIPE"
        c.recipe.metric_weight = 0.0
        c.streams = {"pose": dict(c.streams.pose)}
        c.evals.retrieval.predictor = "canonical_pose"
    if "tiny" in switches:
        common.apply_tiny(c)
        c.model.variant = "tiny_mcss_mlp"
        c.model.overrides = {}  # apply_tiny's width field is another kind's
        c.data.num_subjects = 7
        c.data.max_eval_sequences = 0  # retrieval needs every view of a take
        c.streams.pose.global_batch_size = 4
        if "metric" in c.streams:
            c.streams.metric.global_batch_size = 12
        c.global_batch_size = 4
        c.eval_every = 0  # one retrieval evaluation, at the end
    return c
