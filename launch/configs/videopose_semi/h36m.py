r"""VideoPose3D semi-supervised on Human3.6M: the protocols of seed 001 §6.2 and Fig. 5.

Command (one labelled setting per run; the rest of S1, S5-S8 is the unlabelled stream)::

  python launch/train.py --workdir=workdir/semi_f1 \
    --config=launch/configs/videopose_semi/h36m.py:fraction=0.01,fps=10 \
    --config.data.path_3d=data/data_3d_h36m.npz \
    --config.data.path_2d=data/data_2d_h36m_gt.npz \
    --config.data.metadata_xml=data/metadata.xml --config.data.allow_pickle=True

Settings (the config-string argument, comma-separated):

* ``fraction=F`` -- F of S1 labelled (0.001, 0.01, 0.05, 0.1, 0.5), VideoPose3D's
  contiguous chunks; or ``subjects=S1+S5`` (S1, S1+S5, S1+S5+S6 labelled);
* ``fps=10`` or ``fps=50`` -- frame rate of training *and* evaluation (the paper reports
  N-MPJPE at 10 fps and MPJPE at 50 fps; both are in every evaluation);
* ``no_bone`` -- without the bone-length term; ``supervised`` -- the same labelled set
  alone (the supervised baseline of Fig. 5); ``tiny`` -- CI-sized.

Receptive fields as the paper chooses them: at 10 fps 9 frames (3 for 1 % and 5 % of S1,
1 for 0.1 %); at 50 fps 27 (9 for 1 %, 1 for 0.1 %), as filter widths (3, 3, 1), (3, 1,
1), (1, 1, 1) of the 27-frame model (same depth, smaller field). Warm-up: 1 epoch of labelled data
alone for S1 and larger, 20 for smaller subsets.

Expected (paper, 1 % of S1 with ground-truth 2D): 78.1 mm N-MPJPE semi-supervised, 91.3
without the bone term, 100.7 supervised. Runtime: hours on one GPU (the unlabelled
stream is all of S5-S8).
"""

from launch.configs import common

# (fps, labelled fraction or None for whole subjects) -> receptive field (seed 001 §6.2).
_FIELDS = {(10, 0.001): 1, (10, 0.01): 3, (10, 0.05): 3, (50, 0.001): 1, (50, 0.01): 9}
# Receptive field -> filter widths: the 27-frame model's two residual blocks, with width 1
# where the field is smaller (the paper shrinks the field, not the depth).
_WIDTHS = {1: (1, 1, 1), 3: (3, 1, 1), 9: (3, 3, 1), 27: (3, 3, 3)}


def _parse(arg: str) -> dict:
    settings = {"fraction": None, "subjects": None, "fps": 50, "flags": set()}
    for part in (p for p in (arg or "").split(",") if p):
        key, _, value = part.partition("=")
        if key == "fraction" and value:
            settings["fraction"] = float(value)
        elif key == "subjects" and value:
            settings["subjects"] = tuple(value.split("+"))
        elif key == "fps" and value in ("10", "50"):
            settings["fps"] = int(value)
        elif key in ("no_bone", "supervised", "tiny") and not value:
            settings["flags"].add(key)
        else:
            raise ValueError(f"config argument: unknown setting {part!r}; expected "
                             "fraction=F, subjects=S1+S5, fps=10|50, no_bone, supervised, tiny")
    if settings["fraction"] is not None and settings["subjects"] is not None:
        raise ValueError("config argument: give fraction= or subjects=, not both")
    return settings


def get_config(arg: str = ""):
    settings = _parse(arg)
    c = common.base_config()
    c.data.source = "h36m_videopose3d"
    c.data.downsample_fps = 10.0 if settings["fps"] == 10 else 0.0
    if settings["fraction"] is not None:
        c.data.protocol = "fraction"
        c.data.labelled_subjects = ("S1",)
        c.data.labelled_fraction = settings["fraction"]
    else:
        c.data.protocol = "subjects"
        c.data.labelled_subjects = settings["subjects"] or ("S1",)
    default = 9 if settings["fps"] == 10 else 27
    field = _FIELDS.get((settings["fps"], settings["fraction"]), default)
    c.model.variant = "videopose_27f"
    c.model.overrides = {"filter_widths": _WIDTHS[field]}
    small = settings["fraction"] is not None and settings["fraction"] < 1.0
    c.recipe = {"name": "videopose_semi", "stream": "labelled", "trajectory": True,
                "warmup_epochs": 20 if small else 1, "reconstruction_weight": 1.0,
                "bone_weight": 0.0 if "no_bone" in settings["flags"] else 1.0}
    c.streams = {"labelled": {"split": "labelled", "global_batch_size": 0, "network": ""},
                 "unlabelled": {"split": "unlabelled", "global_batch_size": 0, "network": "",
                                "source": "data", "paths": (), "layout": ""}}
    if "supervised" in settings["flags"]:
        c.recipe = {"name": "supervised", "stream": "labelled", "trajectory": True}
        c.streams = {"labelled": {"split": "labelled", "global_batch_size": 0, "network": ""}}
    c.num_epochs = 80
    if "tiny" in settings["flags"]:
        common.apply_tiny(c)
        c.data.protocol = "subjects"
        c.data.downsample_fps = 0.0
        c.recipe.warmup_epochs = 0
    return c
