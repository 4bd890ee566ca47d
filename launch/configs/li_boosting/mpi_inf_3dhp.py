r"""Li et al. ICCV 2019 boosting on MPI-INF-3DHP, and the cross-dataset protocol.

Commands (datasets built by ``launch/prepare_data.py`` into ``DATA``)::

  # S1 labelled, S2-S8 the unlabelled videos, 12.5 fps, test set TS1-TS6
  python launch/boost.py --workdir=workdir/boost_3dhp \
    --config=launch/configs/li_boosting/mpi_inf_3dhp.py --config.data.data_dir=DATA

  # cross-dataset: Human3.6M (S1, S5-S8) labelled, MPI-INF-3DHP's training videos
  # unlabelled, evaluated on the MPI-INF-3DHP test set
  python launch/boost.py --workdir=workdir/boost_cross \
    --config=launch/configs/li_boosting/mpi_inf_3dhp.py:cross_dataset \
    --config.data.data_dir=DATA

Protocol: training videos at 12.5 fps (every 2nd frame of the 25 fps sequences, every
4th of the 50 fps ones), the standard training cameras (``vnect``: 0, 1, 2, 4-8); the
test set at its full rate, valid frames only; 3DPCK at 150 mm, AUC and MPJPE, total and
per scene group (Studio GS TS1-2, Studio no GS TS3-4, Outdoor TS5-6) and activity
(:class:`jpose.evaluation.PCKAccumulator`; Table 3 of ``boost.json`` holds the totals,
``<workdir>/C_*/eval.json`` the groups). ``tau`` 0.5 (seed 000's MPI-INF-3DHP value).
Joints: the 17-joint test layout ``mpi_inf_3dhp_17`` throughout (Human3.6M's joints are
converted to it by name for the cross-dataset run).

The 2D of both datasets are projections of the motion capture, without per-joint
scores, so the completion score is the lifter's temporal consistency (see
``li_boosting/h36m.py``). ``tiny``: CI-sized (synthetic data).
"""

from launch.configs import common
from launch.configs.li_boosting import sample

# The MPI-INF-3DHP dataset as built by launch/prepare_data.py (data.data_dir, set on the
# command line, is shared by both datasets of the cross-dataset run).
_3DHP = {"source": "tfds", "dataset": "mpi_inf_3dhp", "tfds_config": "",
         "layout": "mpi_inf_3dhp_17",
         "train_subjects": ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8"),
         "cameras": (0, 1, 2, 4, 5, 6, 7, 8),  # the "vnect" set
         "downsample_fps": 12.5, "downsample_eval": False}


def get_config(arg: str = ""):
    switches = common.parse_arg(arg, extra=("cross_dataset",))
    c = common.base_config()
    c.data.update(_3DHP)
    c.data.protocol = "subjects"
    c.data.labelled_subjects = ("S1",)
    c.model.variant = "videopose_27f"
    c.model.overrides = {"filter_widths": (1, 1, 1)}  # the single-frame lifter
    c.evals = {"test": {"type": "pck3d_auc", "predictor": "pose"}}
    c.num_epochs = 80
    c.boost = sample.boost_section()
    c.boost.tau = 0.5
    c.boost.confidence = "temporal"
    c.boost.finetune_learning_rate = 1e-4
    if "cross_dataset" in switches:
        # Labelled: Human3.6M's training subjects; the 3DHP videos come in as boost.target
        # and the evaluator reads the 3DHP test set (evals.test.data).
        c.data.update({"dataset": "h36m", "tfds_config": "poses", "cameras": (),
                       "train_subjects": ("S1", "S5", "S6", "S7", "S8"),
                       "test_subjects": ("S9", "S11"), "downsample_fps": 0.0,
                       "downsample_eval": True})
        c.data.protocol = "all"
        target = {k: v for k, v in _3DHP.items() if k != "source"}
        c.boost.target = target
        c.evals = {"test": {"type": "pck3d_auc", "predictor": "pose", "data": target}}
    if "tiny" in switches:  # synthetic motion; cross_dataset: another generator seed
        common.apply_tiny(c)
        c.data.downsample_fps = 0.0
        c.data.cameras = ()
        c.data.protocol = "all" if "cross_dataset" in switches else "subjects"
        c.model.variant = "tiny_1f"
        c.boost.finetune_epochs = 1
        c.boost.completion_batch = 4
        if "cross_dataset" in switches:
            c.boost.target = {"generator_seed": 1}
            c.evals.test.data = {"generator_seed": 1}
    return c
