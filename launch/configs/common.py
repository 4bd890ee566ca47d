"""Defaults shared by every experiment config, and the ``tiny`` switch.

``get_config("tiny")`` in any config file calls :func:`apply_tiny`: synthetic motion,
a 16-channel model, a handful of steps; it exercises the whole path (data, sharded
training, checkpoints, evaluation) in seconds. CI runs every config this way.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.model = ml_collections.ConfigDict(
        {"kind": "temporal", "variant": "videopose_27f", "overrides": {}})
    c.data = ml_collections.ConfigDict({
        "source": "multiview",
        "layout": "h36m_17",
        # multiview source
        "motion": "deepmimic",
        "path": "",
        "num_subjects": 5,
        "num_cameras": 4,
        "held_out_cameras": (),
        "generator_seed": 0,
        "synthetic_frames": 100,
        "train_splits": ("labelled", "unlabelled"),
        "eval_split": "test",
        # capture source (jpose.datasets.capture): manifests of your multi-camera
        # captures; labelled ones to evaluate on (none: the sample's eval_split)
        "capture": (),
        "eval_capture": (),
        # h36m_videopose3d source
        "path_3d": "",
        "path_2d": "",
        "metadata_xml": "",
        "allow_pickle": False,
        "train_subjects": ("S1", "S5", "S6", "S7", "S8"),
        "test_subjects": ("S9", "S11"),
        # tfds source (a dataset built by launch/prepare_data.py); also uses the subjects
        "dataset": "h36m",
        "data_dir": "",
        "tfds_config": "",
        "protocol": "all",  # all | subjects | fraction | action_half | hard_actions
        "labelled_subjects": ("S1",),
        "labelled_fraction": 0.01,
        "cameras": (),
        "downsample_fps": 0.0,
        "downsample_eval": True,  # downsample_fps applies to the evaluation set too
        # common
        "use_clean_2d": False,
        "with_confidence": False,  # the detector's confidence as a third input feature
        "input_normalisation": "screen",  # screen (VideoPose3D) | focal (any camera)
        "screen_focal": 0.0,  # the scale of the focal normalisation
        "wild": {},  # wild source: jpose.datasets.wild.WildConfig fields
        "flip_augment": True,
        "max_eval_sequences": 0,
    })
    # The recipe (jpose.recipes): a registry name or "module:ATTR"; its own fields too.
    c.recipe = ml_collections.ConfigDict(
        {"name": "supervised", "stream": "labelled", "trajectory": False})
    # Named training streams (jpose.training.streams): split, global_batch_size (0: the
    # run's), network (whose receptive field sizes the windows; "": the pose network),
    # flip (default data.flip_augment). The primary stream defines the epoch.
    c.streams = ml_collections.ConfigDict(
        {"labelled": {"split": "labelled", "global_batch_size": 0, "network": ""}})
    c.primary_stream = "labelled"
    # Evaluators (jpose.evaluators) by name: type and the recipe predictor they run.
    c.evals = ml_collections.ConfigDict(
        {"test": {"type": "h36m_protocols", "predictor": "pose"}})
    # A stage: start the named networks from another run's latest checkpoint (fresh
    # optimiser, step 0). Empty workdir: from scratch.
    c.init_from = ml_collections.ConfigDict({"workdir": "", "networks": ()})
    # VideoPose3D: AMSGrad (as PyTorch computes it), lr 1e-3 decayed by 0.95 per epoch,
    # batch 1024, 80 epochs, batch-norm momentum 0.1 -> 0.001. param_groups: {name:
    # {pattern, lr_mult, frozen}} over parameter paths "network/layer/...".
    c.optimizer = ml_collections.ConfigDict({
        "name": "amsgrad_epoch_decay", "learning_rate": 1e-3, "lr_decay": 0.95,
        "boundaries": (), "factor": 0.1, "clip_norm": 0.0, "param_groups": {}})
    c.bn_momentum = ml_collections.ConfigDict({"initial": 0.1, "final": 0.001})
    c.global_batch_size = 1024
    c.num_epochs = 80
    c.num_steps = 0  # > 0 overrides num_epochs * steps_per_epoch
    # A logged loss above this stops the run as diverged (recipe loss units; metres for
    # the supervised MPJPE, where 1 km is far beyond any pose).
    c.max_loss = 1e3
    c.log_every = 50
    c.eval_every = 0  # steps; 0 evaluates at the end only
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    c.eval = ml_collections.ConfigDict({"flip": True, "bucket": 256})
    return c


def deepmimic_sample(c: ml_collections.ConfigDict, *, num_cameras: int,
                     held_out_cameras: tuple[int, ...] = (), protocol: str = "all",
                     labelled_subjects: tuple[str, ...] | None = None,
                     num_subjects: int | None = None) -> ml_collections.ConfigDict:
    """Sets ``c.data`` to the embedded DeepMimic sample (the ``multiview`` source's
    ``deepmimic`` motion) filmed by ``num_cameras`` cameras, of which
    ``held_out_cameras`` are seen only in evaluation; ``protocol`` (and, for
    ``"subjects"``, ``labelled_subjects``) picks the labelled data. None leaves a field
    at the base config's value."""
    c.data.motion = "deepmimic"
    c.data.num_cameras = num_cameras
    c.data.held_out_cameras = tuple(held_out_cameras)
    c.data.protocol = protocol
    if labelled_subjects is not None:
        c.data.labelled_subjects = tuple(labelled_subjects)
    if num_subjects is not None:
        c.data.num_subjects = num_subjects
    return c


def apply_tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks a config to a seconds-long end-to-end run (CI, laptops)."""
    c.data.source = "multiview"
    c.data.motion = "synthetic"
    c.data.path = ""
    c.data.num_subjects = 4
    c.data.num_cameras = 2
    c.data.held_out_cameras = (1,) if c.data.held_out_cameras else ()
    c.data.synthetic_frames = 40
    c.data.max_eval_sequences = 2
    width = "hidden" if c.model.kind == "mlp" else "channels"
    c.model.overrides = dict(c.model.overrides, **{width: 16})
    c.global_batch_size = 8
    c.num_epochs = 1
    c.num_steps = 6
    c.log_every = 2
    c.eval_every = 3
    c.checkpoint_every = 3
    c.keep_checkpoints = 2
    c.eval.bucket = 64
    return c


def parse_arg(arg: str, extra: tuple[str, ...] = ()) -> set[str]:
    """Switches from the config-string argument (``--config=file.py:tiny,supervised``):
    ``tiny`` everywhere, plus a config's own ``extra`` switches."""
    switches = {s for s in (arg or "").split(",") if s}
    known = {"tiny", *extra}
    unknown = switches - known
    if unknown:
        raise ValueError(f"config argument: unknown switches {sorted(unknown)}; known: "
                         f"{', '.join(sorted(known))}.")
    return switches
