r"""Li et al. ICCV 2019 boosting on Human3.6M: the subject-wise and action-wise protocols.

Command (``launch/boost.py`` runs every stage; one protocol per workdir)::

  python launch/boost.py --workdir=workdir/boost_s1 \
    --config=launch/configs/li_boosting/h36m.py:subjects=S1 \
    --config.data.path_3d=data/data_3d_h36m.npz \
    --config.data.path_2d=data/data_2d_h36m_cpn_ft_h36m_dbb.npz \
    --config.data.metadata_xml=data/metadata.xml --config.data.allow_pickle=True

Settings (the config-string argument, comma-separated):

* ``subjects=S1`` | ``S1+S5`` | ``S1+S5+S6`` | ``S1+S5+S6+S7`` -- subject-wise: those
  labelled, the other training subjects (of S1, S5-S8) the unlabelled videos (default
  ``S1``);
* ``actions=half`` -- action-wise: the first 8 actions of the result tables labelled,
  the other 7 unlabelled; ``actions=hard`` -- Photo, Purchases, Sitting, SittingDown
  unlabelled (:mod:`jpose.datasets.protocols`);
* ``fps=10`` -- train, complete and evaluate at 10 fps (every 5th frame; default 50);
* ``tiny`` -- CI-sized (synthetic data, a few steps).

Evaluation: S9 and S11, MPJPE / N-MPJPE / P-MPJPE action-wise (``boost.json`` Table 3).

The network is the single-frame lifter (VideoPose3D's architecture with a 1-frame
receptive field, 1024 channels); the image model joins when it exists. The VideoPose3D
2D files carry no per-joint confidences, so the score that decides which joints are
completed is the lifter's **temporal consistency** (``boost.confidence = "temporal"``,
:func:`jpose.confidence.temporal_consistency`): on the embedded data it ranks the
errors best of the scores measured (README, "Boosting"). With detections that have
scores, ``--config.boost.confidence=detector`` (or ``detector*temporal``) uses them.

The paper's Human3.6M tables are for its volumetric image model; a lifter's numbers
are not comparable with them, only its own rows in ``boost.json`` with each other.
"""

from launch.configs import common
from launch.configs.li_boosting import sample

_SUBJECT_SETS = {"+".join(s): s for s in (("S1",), ("S1", "S5"), ("S1", "S5", "S6"),
                                          ("S1", "S5", "S6", "S7"))}
_ACTIONS = {"half": "action_half", "hard": "hard_actions"}


def _parse(arg: str) -> dict:
    settings = {"subjects": ("S1",), "actions": None, "fps": 50, "tiny": False}
    for part in (p for p in (arg or "").split(",") if p):
        key, _, value = part.partition("=")
        if key == "subjects" and value in _SUBJECT_SETS:
            settings["subjects"] = _SUBJECT_SETS[value]
        elif key == "actions" and value in _ACTIONS:
            settings["actions"] = _ACTIONS[value]
        elif key == "fps" and value in ("10", "50"):
            settings["fps"] = int(value)
        elif key == "tiny" and not value:
            settings["tiny"] = True
        else:
            raise ValueError(f"config argument: unknown setting {part!r}; expected "
                             f"subjects={'|'.join(_SUBJECT_SETS)}, actions=half|hard, "
                             "fps=10|50, tiny")
    return settings


def get_config(arg: str = ""):
    settings = _parse(arg)
    c = common.base_config()
    c.data.source = "h36m_videopose3d"
    c.data.downsample_fps = 10.0 if settings["fps"] == 10 else 0.0
    if settings["actions"]:
        c.data.protocol = settings["actions"]
    else:
        c.data.protocol = "subjects"
        c.data.labelled_subjects = settings["subjects"]
    c.model.variant = "videopose_27f"
    c.model.overrides = {"filter_widths": (1, 1, 1)}  # the single-frame lifter
    c.global_batch_size = 1024
    c.num_epochs = 80
    c.boost = sample.boost_section()
    c.boost.confidence = "temporal"
    c.boost.finetune_epochs = 10
    c.boost.finetune_learning_rate = 1e-4
    if settings["tiny"]:
        common.apply_tiny(c)
        c.data.protocol = "subjects"
        c.data.labelled_subjects = ("S1",)
        c.data.downsample_fps = 0.0
        c.model.variant = "tiny_1f"
        c.boost.finetune_epochs = 1
        c.boost.completion_batch = 4
    return c
