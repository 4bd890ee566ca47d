"""Training and evaluation data for the lifting models, built from a config.

Sources (``config.data.source``):

* ``multiview`` -- the generated multi-view dataset (:mod:`jpose.datasets.multiview`):
  DeepMimic motion capture (the embedded default) or synthetic motion, or a saved
  ``.npz`` of one (``data.path``). Train on ``data.train_splits``, evaluate on
  ``data.eval_split`` (held-out subjects, and cameras if ``data.held_out_cameras``).
* ``tfds`` -- a dataset built by ``launch/prepare_data.py`` (``data.dataset``: ``h36m``
  or ``mpi_inf_3dhp``; ``data.data_dir``, ``data.tfds_config``), training subjects
  ``data.train_subjects`` and evaluation subjects ``data.test_subjects`` (3DHP: the
  ``test`` split), with a labelled-data protocol (``data.protocol``, see
  :func:`_labelled`) from :mod:`jpose.datasets.protocols`, ``data.cameras`` (a camera set
  name or indices; empty: all) and ``data.downsample_fps`` (0: keep every frame).
* ``h36m_videopose3d`` -- Human3.6M from VideoPose3D's preprocessed ``.npz`` files plus
  the raw release's ``metadata.xml`` cameras (:mod:`jpose.datasets.h36m_videopose3d`);
  those files hold pickles, so ``data.allow_pickle`` must be set explicitly.

The sample data and the built datasets share one path: both become pose-sequence
examples of the builders' schema (:mod:`jpose.datasets.records`), then
:class:`~jpose.datasets.multiview.SequenceRecord` s, then training windows.

Training examples are the temporal model's receptive-field windows (or single frames for
the MLP), served by :func:`jpose.datasets.pipelines.training_batches`: batch ``k`` of the
run is a pure function of ``(seed, k)``, and each process reads only its slice.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from jpose import skeleton
from jpose.datasets import multiview, pipelines, protocols
from jpose.datasets import records as records_lib
from jpose.nets import temporal

__all__ = ["TrainData", "build", "model_config"]


#: Batch entries the train step reads; the others (indices, flags) stay on the host.
BATCH_KEYS = ("inputs", "poses_3d", "trajectory", "weight")


class TrainData(NamedTuple):
    train: Any  # pipelines training batches: .batch(step) -> local numpy batch
    eval_sequences: tuple  # ((action, inputs (F, J, C), poses_3d (F, J, 3)), ...)
    layout: str  # joint layout of inputs and targets
    num_joints: int
    in_features: int
    steps_per_epoch: int
    train_sequences: Any  # pipelines.Sequences used for training


def _records(config) -> tuple[tuple, tuple, tuple | None]:
    """``(train records, eval records, action names or None)``."""
    d = config.data
    if d.source == "multiview":
        if d.get("path"):
            ds = multiview.load_multiview_dataset(d.path)
        else:
            ds = multiview.make_multiview_dataset(
                d.motion, layout=d.layout, num_subjects=int(d.num_subjects),
                num_cameras=int(d.num_cameras),
                held_out_cameras=tuple(int(c) for c in d.held_out_cameras),
                synthetic_frames=int(d.get("synthetic_frames", 100)),
                seed=int(d.generator_seed))
        # Through the builders' example schema, as the real datasets go.
        train = tuple(r for s in d.train_splits for r in records_lib.records_from_examples(
            records_lib.examples_from_multiview(ds, s), layout=ds.layout))
        test = records_lib.records_from_examples(
            records_lib.examples_from_multiview(ds, d.eval_split), layout=ds.layout)
        return train, test, ds.actions
    if d.source == "tfds":
        return _tfds_records(d)
    if d.source == "h36m_videopose3d":
        from jpose.datasets import h36m_videopose3d as h36m
        records = h36m.load_videopose3d_h36m(
            d.path_3d, d.path_2d, d.metadata_xml, allow_pickle=bool(d.allow_pickle),
            subjects=tuple(d.train_subjects) + tuple(d.test_subjects), layout=d.layout)
        train = tuple(r for r in records if r.subject in tuple(d.train_subjects))
        test = tuple(r for r in records if r.subject in tuple(d.test_subjects))
        # Report per action class, merging takes ('Walking 1' + 'Walking'), as VideoPose3D.
        test = tuple(r._replace(action=h36m.action_class(r.action)) for r in test)
        return train, test, None
    raise ValueError(f"data.source: unknown source {d.source!r}; expected 'multiview', "
                     "'tfds' or 'h36m_videopose3d'.")


#: ``data.protocol`` values of the ``tfds`` source.
PROTOCOLS = ("all", "subjects", "fraction", "action_half", "hard_actions")


def _labelled(d, train: tuple) -> tuple:
    """The labelled training records under ``data.protocol``:

    * ``all``: every training subject;
    * ``subjects``: ``data.labelled_subjects`` (e.g. ``("S1",)``, ``("S1", "S5")``);
    * ``fraction``: ``data.labelled_fraction`` (0.001, 0.01, 0.05, 0.1) of
      ``data.labelled_subjects``, VideoPose3D's contiguous chunks;
    * ``action_half``: the first 8 actions labelled (Li et al.);
    * ``hard_actions``: every action but Photo, Purchases, Sitting, SittingDown.
    """
    protocol = d.get("protocol", "all")
    subjects = tuple(d.get("labelled_subjects", ("S1",)))
    if protocol == "all":
        return train
    if protocol == "subjects":
        return protocols.select(train, subjects=subjects)
    if protocol == "fraction":
        return protocols.subset_frames(protocols.select(train, subjects=subjects),
                                       float(d.labelled_fraction))
    if protocol == "action_half":
        return protocols.h36m_action_split(train, subjects=tuple(d.train_subjects)).labelled
    if protocol == "hard_actions":
        return protocols.h36m_hard_action_split(train, subjects=tuple(d.train_subjects)).labelled
    raise ValueError(f"data.protocol: unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def _tfds_records(d) -> tuple[tuple, tuple, None]:
    from jpose.datasets import tfds_build

    config = d.get("tfds_config", "") or None
    def load(splits):
        # One example at a time: only the record's arrays stay (a Human3.6M example also
        # holds the 32-joint arrays, about 4x the memory of the record).
        records = []
        for split in splits:
            source = tfds_build.load(d.dataset, data_dir=d.data_dir, split=split, config=config)
            for i in range(len(source)):
                records.extend(records_lib.records_from_examples([source[i]], layout=d.layout))
        return tuple(records)

    test_splits = ("test",) if d.dataset == "mpi_inf_3dhp" else tuple(d.test_subjects)
    train, test = load(tuple(d.train_subjects)), load(test_splits)
    if d.get("cameras", ()):
        cams = d.cameras if isinstance(d.cameras, str) else tuple(int(c) for c in d.cameras)
        train = protocols.select_cameras(train, cams)
    train = _labelled(d, train)
    if float(d.get("downsample_fps", 0) or 0) > 0:
        train = protocols.downsample(train, target_fps=float(d.downsample_fps))
    if d.dataset == "h36m":
        from jpose.datasets import h36m_videopose3d as h36m

        # Report per action class, merging takes, as VideoPose3D.
        test = tuple(r._replace(action=h36m.action_class(r.action)) for r in test)
    else:
        test = tuple(r._replace(action=r.subject) for r in test)  # per test sequence
    return tuple(train), test, None


def _limit(records: tuple, count: int) -> tuple:
    """At most ``count`` records (0: all), spread over actions for a fair small sample."""
    if count <= 0 or len(records) <= count:
        return records
    by_action: dict[str, list] = {}
    for r in records:
        by_action.setdefault(r.action, []).append(r)
    picked, i = [], 0
    while len(picked) < count:
        for recs in by_action.values():
            if i < len(recs) and len(picked) < count:
                picked.append(recs[i])
        i += 1
    return tuple(picked)


def build(config, *, process_index: int = 0, process_count: int = 1) -> TrainData:
    d = config.data
    train_records, eval_records, actions = _records(config)
    eval_records = _limit(eval_records, int(d.get("max_eval_sequences", 0) or 0))
    use_clean = bool(d.get("use_clean_2d", False))
    train_seqs = pipelines.sequences_from_records(
        train_records, layout=d.layout, actions=actions, use_clean_2d=use_clean,
        with_cameras=False)
    eval_seqs = pipelines.sequences_from_records(
        eval_records, layout=d.layout, actions=actions, use_clean_2d=use_clean,
        with_cameras=False)
    model = config.model
    if model.kind == "temporal":
        cfg = temporal.variant(model.variant, **dict(model.get("overrides", {}) or {}))
        examples = pipelines.temporal_windows(train_seqs, receptive_field=cfg.receptive_field,
                                              padding=cfg.padding)
    else:
        examples = pipelines.single_frames(train_seqs)
    batches = pipelines.training_batches(
        examples, global_batch_size=int(config.global_batch_size), seed=int(config.seed),
        process_index=process_index, process_count=process_count,
        flip_augment=skeleton.get(d.layout) if d.flip_augment else None)
    evals = tuple((s.action_name, s.inputs, s.poses_3d) for s in eval_seqs)
    first = train_seqs[0]
    return TrainData(train=batches, eval_sequences=evals, layout=d.layout,
                     num_joints=int(first.inputs.shape[-2]),
                     in_features=int(first.inputs.shape[-1]),
                     steps_per_epoch=int(batches.steps_per_epoch), train_sequences=train_seqs)


def model_config(config, data: TrainData) -> dict:
    """The model config with the data's joint counts and input features filled in."""
    model = dict(config.model)
    overrides = dict(model.get("overrides", {}) or {})
    overrides.setdefault("num_joints_in", data.num_joints)
    overrides.setdefault("num_joints_out", data.num_joints)
    overrides.setdefault("in_features", data.in_features)
    model["overrides"] = overrides
    return model
