r"""Relative-depth weak supervision (Ronchi et al. BMVC 2018, seed 003 §3.2) on the
embedded real-motion data, keypoint-input form (2D keypoints in, 3D out).

Commands (about 2-3 minutes each on one CPU core)::

  python launch/train.py --config=launch/configs/relative_depth/sample.py --workdir=W
  python launch/train.py --config=launch/configs/relative_depth/sample.py:all_pairs --workdir=W1
  python launch/train.py --config=launch/configs/relative_depth/sample.py:noisy --workdir=W2
  python launch/train.py --config=launch/configs/relative_depth/sample.py:no_rel --workdir=W3
  python launch/train.py --config=launch/configs/relative_depth/sample.py:supervised --workdir=W4

Data: the DeepMimic sample as a Human3.6M-like dataset (8 virtual cameras), all of
S1-S4 for training, evaluation on S5 through camera 7 (unseen subject and viewpoint);
ground-truth 2D inputs (the paper's Human3.6M setting; ``:detected_2d`` for the sample's
noisy 2D). The training 3D is used **only** to simulate the annotations: 1 random
relative-depth pair per image per step (100 mm tie tolerance).

Switches: ``all_pairs`` (all 136 pairs per image), ``noisy`` (simulated annotator noise,
:mod:`jpose.datasets.depth_pairs`), ``no_rel`` (the depth-ambiguous baseline: projection
+ skeleton only), ``supervised`` (full 3D supervision, the ``supervised`` recipe with the
same network: the reference), ``detected_2d``, ``tiny`` (CI-sized).

Evaluators: ``test`` (Protocols #1, #2, N-MPJPE in mm; report P-MPJPE: these losses fix
the pose only up to scale) and ``test_depth`` (% of relative-depth pairs wrong, all pairs of
every test frame with |dz| >= 100 mm). The paper on Human3.6M with GT 2D: 50.3 mm
P-MPJPE (supervised 37.5 mm); 34.3 % of LSP's pairs wrong trained on Human3.6M. The
figures on this data are in the README ("Relative-depth weak supervision").
"""

from launch.configs import common

#: The reference skeleton of L_skel: mean bone lengths (metres, h36m_17 bones in
#: jpose.skeleton order) of the DeepMimic humanoid over the sample's training subjects,
#: computed once -- a population prior, as the paper takes Human3.6M's average skeleton
#: (only the ratios matter).
DEEPMIMIC_BONE_LENGTHS = (0.0805, 0.4141, 0.4059, 0.0805, 0.4141, 0.4059, 0.2352, 0.2229,
                          0.1727, 0.1209, 0.1856, 0.2751, 0.2556, 0.1856, 0.2751, 0.2556)


def get_config(arg: str = ""):
    switches = common.parse_arg(
        arg, extra=("all_pairs", "noisy", "no_rel", "supervised", "detected_2d"))
    c = common.base_config()
    c.model.kind = "mlp"
    c.model.variant = "martinez_mlp"
    c.model.overrides = {"hidden": 256}  # recipe.scale="head" adds the scale head
    common.deepmimic_sample(c, num_cameras=8, held_out_cameras=(7,), protocol="all")
    c.data.use_clean_2d = "detected_2d" not in switches
    c.recipe = {
        "name": "relative_depth", "stream": "labelled",
        "pairs": "all" if "all_pairs" in switches else "random", "num_pairs": 1,
        "tolerance": 0.1, "noise": "noisy" in switches, "flip_max": 0.5, "flip_scale": 0.1,
        "lam": 1.0, "alpha": 0.0 if "no_rel" in switches else 1.0, "beta": 10.0,
        "gamma": 1.0, "root_weight": 1.0, "projection": "orthographic", "scale": "least_squares",
        "all_visible": True, "reference_bone_lengths": DEEPMIMIC_BONE_LENGTHS}
    c.streams = {"labelled": {"split": "labelled", "global_batch_size": 0, "network": ""}}
    c.evals = {"test": {"type": "h36m_protocols", "predictor": "pose"},
               "test_depth": {"type": "relative_depth", "predictor": "pose"}}
    c.optimizer.name = "amsgrad_epoch_decay"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.lr_decay = 0.9
    c.global_batch_size = 256
    c.num_epochs = 4
    c.log_every = 50
    c.eval_every = 0
    c.checkpoint_every = 1000
    # The loss is dimensionless, but a fresh network's projection term is far above 1
    # (metre-sized random poses at an arbitrary scale): no divergence check below 1e6.
    c.max_loss = 1e6
    if "supervised" in switches:
        c.recipe = {"name": "supervised", "stream": "labelled", "trajectory": False}
    if "tiny" in switches:
        common.apply_tiny(c)
        c.model.variant = "tiny_mlp"
        c.model.overrides = {"hidden": 16}
        c.eval.flip = False
    return c
