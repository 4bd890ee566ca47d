r"""Consistent factorization network (CFN; Yang Li, thesis 2020, ch. 4) on the embedded data.

Commands (two stages: the dictionary, then the network; no 3D labels anywhere)::

  # 1. the hierarchical dictionary from the training 2D alone (NRSfM, ~1 min):
  python launch/pretrain_dictionary.py --config=launch/configs/factorization/sample.py \
      --output=W/dictionary.npz
  # 2. the CFN, its decoder started from that dictionary (~3 min on 2 CPU cores):
  python launch/train.py --config=launch/configs/factorization/sample.py --workdir=W/cfn \
      --config.recipe.dictionary_path=W/dictionary.npz
  # ablations (same dictionary where there is one):
  python launch/train.py --config=launch/configs/factorization/sample.py:no_consistency \
      --workdir=W/dict_only --config.recipe.dictionary_path=W/dictionary.npz
  python launch/train.py --config=launch/configs/factorization/sample.py:baseline \
      --workdir=W/baseline
  # Deep-NRSfM encoder-decoder pre-training instead of NRSfM (Eq. 4.5-4.7):
  python launch/pretrain_dictionary.py \
      --config=launch/configs/factorization/sample.py:deep_nrsfm_init --output=W/deep.npz

Data: the DeepMimic sample as a multi-view dataset (4 cameras, noisy 2D), every training
subject (S1-S4) *unlabelled*: the multi-view stream serves 2 synchronised views per
instant; evaluation on S5 (unseen subject), all cameras.

Switches: ``baseline`` (no dictionary: the backbone regresses the canonical shape
directly, re-projection only; thesis 144.6 mm P-MPJPE on Human3.6M), ``no_consistency``
(+dictionary, re-projection only; thesis 118.9), the default is the full CFN (thesis
52.1); ``deep_nrsfm_init`` makes ``launch/pretrain_dictionary.py`` pre-train the
dictionary as a Deep-NRSfM encoder-decoder; ``thesis`` the paper's schedule (1024-wide
backbone, batch 1024, 70 epochs, learning rate x0.1 at epoch 50); ``tiny`` the CI run.

Optimiser: Adam, learning rate 1e-3 for the backbone and 1e-4 (``lr_mult`` 0.1) for the
dictionary (``optimizer.param_groups.dictionary``), x0.1 at 5/7 of the run.

Evaluation: orthographic factorisation has no scale, so read **N-MPJPE** (MPJPE after
restoring each pose's scale to the ground truth) and **P-MPJPE** (#2); MPJPE #1 uses the
network's fixed body-size prior (``output_scale``). Measured numbers: README "Consistent
factorization network".
"""

from launch.configs import common

# Instants (frames seen by every camera) of the sample's training split at these data
# settings: 6480; an epoch is 6480 // batch steps.
_INSTANTS = 6480


def get_config(arg: str = ""):
    switches = common.parse_arg(
        arg, extra=("baseline", "no_consistency", "deep_nrsfm_init", "thesis"))
    c = common.base_config()
    c.model = {"kind": "factorization", "variant": "cfn",
               "overrides": {"hidden": 256, "num_blocks": 2, "dictionary_sizes": (125, 10)}}
    c.data.motion = "deepmimic"
    c.data.num_cameras = 4
    c.data.held_out_cameras = ()
    c.data.protocol = "all"
    c.data.flip_augment = False
    c.recipe = {"name": "factorization", "stream": "views", "reprojection_weight": 1.0,
                "consistency_weight": 1.0, "dictionary_path": "",
                # launch/pretrain_dictionary.py: "nrsfm" or "deep_nrsfm", its settings.
                "dictionary_init": "nrsfm",
                "pretrain": {"max_samples": 3000, "nrsfm_maxiter": 100, "sparsity": 0.03,
                             "epochs": 40, "batch_size": 256, "learning_rate": 1e-3,
                             "seed": 0}}
    c.streams = {"views": {"source": "multiview", "split": "train", "views": 2,
                           "global_batch_size": 0, "network": "", "flip": False}}
    c.primary_stream = "views"
    c.global_batch_size = 256
    c.num_epochs = 35
    c.optimizer = {"name": "adam_steps", "learning_rate": 1e-3, "lr_decay": 1.0,
                   "boundaries": (), "factor": 0.1, "clip_norm": 0.0,
                   "param_groups": {"dictionary": {"pattern": "/dictionary/",
                                                   "lr_mult": 0.1}}}
    c.bn_momentum = {"initial": 0.1, "final": 0.01}
    c.eval.flip = False  # trained without flips (a multi-view stream cannot mirror)
    c.log_every = 25
    c.eval_every = 0
    c.checkpoint_every = 500
    if "thesis" in switches:
        c.model.overrides.hidden = 1024
        c.global_batch_size = 1024
        c.num_epochs = 70
    if "baseline" in switches:
        c.model.variant = "cfn_baseline"
        c.recipe.consistency_weight = 0.0
    if "no_consistency" in switches:
        c.recipe.consistency_weight = 0.0
    if "deep_nrsfm_init" in switches:
        c.recipe.dictionary_init = "deep_nrsfm"
    if "tiny" in switches:
        common.apply_tiny(c)
        c.model.variant = "tiny_cfn_baseline" if "baseline" in switches else "tiny_cfn"
        c.model.overrides = {}
        c.data.flip_augment = False
        c.recipe.pretrain.update(max_samples=200, nrsfm_maxiter=5, epochs=2, batch_size=32)
    # x0.1 at 5/7 of the run (the thesis: epoch 50 of 70), in steps of the primary stream.
    steps_per_epoch = max(1, _INSTANTS // int(c.global_batch_size))
    if "tiny" not in switches:
        c.optimizer.boundaries = (int(c.num_epochs * 5 / 7) * steps_per_epoch,)
    return c
