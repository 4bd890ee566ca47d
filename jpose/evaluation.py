"""Per-action evaluation with the Human3.6M protocols, accumulated exactly.

:class:`ProtocolAccumulator` collects ``(sum, count)`` pairs per action for Protocol #1
(MPJPE), Protocol #2 (P-MPJPE), N-MPJPE and MPJVE (:mod:`jpose.metrics`), so results
from many sequences, batches or devices add up exactly. :meth:`ProtocolAccumulator.table`
reports, in **millimetres**, each action's mean and both averages the literature uses:
the *action-wise* mean (mean over actions of each action's frame mean; VideoPose3D's
Human3.6M tables) and the *frame-wise* mean (every frame weighs the same).

Inputs are root-relative poses in **metres**, ``(frames, J, 3)``; root-relative means the
root joint (pelvis) is subtracted in camera coordinates, as in all three protocols.

:class:`PCKAccumulator` does the same for the **MPI-INF-3DHP test set** (Mehta et al. 3DV
2017; the protocol of Li et al. ICCV 2019 Table 4): 3DPCK at 150 mm, AUC and MPJPE over
the valid frames, per scene group (:data:`MPI_INF_3DHP_SCENES`), per activity
(:data:`MPI_INF_3DHP_ACTIVITIES`) and in total.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np

from jpose import metrics

__all__ = [
        "PROTOCOLS", "ProtocolAccumulator", "sequence_errors", "format_table",
        "MPI_INF_3DHP_ACTIVITIES", "MPI_INF_3DHP_SCENES", "MPI_INF_3DHP_ROOT",
        "MPI_INF_3DHP_JOINTS_14", "mpi_inf_3dhp_scene", "pck_group_sums", "PCKAccumulator",
]

#: Protocol keys in reporting order, with their column titles.
PROTOCOLS: tuple[tuple[str, str], ...] = (
        ("mpjpe", "MPJPE #1"),
        ("p_mpjpe", "P-MPJPE #2"),
        ("n_mpjpe", "N-MPJPE"),
        ("mpjve", "MPJVE"),
)


@jax.jit
def _sequence_sums(pred, target):
    """Per-protocol (sum, count) over one sequence, in metres."""
    out = {}
    for key, values in (("mpjpe", metrics.mpjpe(pred, target)),
                                            ("p_mpjpe", metrics.p_mpjpe(pred, target)),
                                            ("n_mpjpe", metrics.n_mpjpe(pred, target)),
                                            ("mpjve", metrics.mpjve(pred, target, axis=-3))):
        out[key] = metrics.masked_sum_count(values)
    return out


def sequence_errors(pred: np.ndarray, target: np.ndarray) -> dict[str, tuple[float, int]]:
    """``{protocol: (sum in metres, count of joint errors)}`` for one sequence.

    Args:
        pred, target: ``(F, J, 3)`` root-relative poses in metres, ``F >= 2`` (the velocity
            error needs two frames).
    """
    pred = np.asarray(pred, np.float32)
    target = np.asarray(target, np.float32)
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"pred and target must both have shape (F, J, 3); got "
                                          f"{pred.shape} and {target.shape}.")
    if pred.shape[0] < 2:
        raise ValueError(f"sequences need at least 2 frames for MPJVE; got {pred.shape[0]}.")
    sums = jax.device_get(_sequence_sums(pred, target))
    return {k: (float(s), int(c)) for k, (s, c) in sums.items()}


@dataclasses.dataclass
class ProtocolAccumulator:
    """Accumulates per-action ``(sum, count)`` pairs for the four protocols.

    ``add`` is NumPy-side bookkeeping around one jitted metric call per sequence shape.
    """

    sums: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def add(self, action: str, pred: np.ndarray, target: np.ndarray) -> None:
        """Adds one sequence's errors under ``action`` (poses in metres, root-relative)."""
        self.add_sums(action, sequence_errors(pred, target))

    def add_sums(self, action: str, errors: dict[str, tuple[float, int]]) -> None:
        """Adds precomputed ``{protocol: (sum, count)}`` (e.g. from another device/host)."""
        for key, (s, c) in errors.items():
            self.sums.setdefault(key, {}).setdefault(action, 0.0)
            self.counts.setdefault(key, {}).setdefault(action, 0)
            self.sums[key][action] += s
            self.counts[key][action] += c

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(sorted(self.sums.get("mpjpe", {})))

    def per_action_mm(self, protocol: str) -> dict[str, float]:
        s, c = self.sums[protocol], self.counts[protocol]
        return {a: metrics.MILLIMETRES_PER_METRE * s[a] / c[a] for a in sorted(s) if c[a]}

    def action_wise_mm(self, protocol: str) -> float:
        """Mean over actions of each action's mean error (VideoPose3D's reporting), mm."""
        per = self.per_action_mm(protocol)
        return float(np.mean(list(per.values()))) if per else float("nan")

    def frame_wise_mm(self, protocol: str) -> float:
        """Total error over total count (every frame weighs the same), mm."""
        c = sum(self.counts[protocol].values())
        return metrics.MILLIMETRES_PER_METRE * sum(self.sums[protocol].values()) / c if c else float("nan")

    def summary_mm(self) -> dict[str, dict[str, float]]:
        """``{protocol: {"action_wise": mm, "frame_wise": mm}}``."""
        return {k: {"action_wise": self.action_wise_mm(k), "frame_wise": self.frame_wise_mm(k)}
                        for k, _ in PROTOCOLS if k in self.sums}

    def table(self, *, title: str = "") -> str:
        return format_table({title or "errors": self})


def format_table(results: dict[str, ProtocolAccumulator],
                                  protocols: Sequence[str] = ("mpjpe", "p_mpjpe")) -> str:
    """A plain-text table: one row per action, one column per (method, protocol), mm."""
    names = dict(PROTOCOLS)
    columns = [(m, p) for m in results for p in protocols]
    actions = sorted({a for acc in results.values() for a in acc.actions})
    head = ["action"] + [f"{m} {names[p]}" for m, p in columns]
    rows = [[a] + [f"{results[m].per_action_mm(p).get(a, float('nan')):.1f}"
                                  for m, p in columns] for a in actions]
    rows.append(["average (action-wise)"] +
                            [f"{results[m].action_wise_mm(p):.1f}" for m, p in columns])
    rows.append(["average (frame-wise)"] +
                            [f"{results[m].frame_wise_mm(p):.1f}" for m, p in columns])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(x.ljust(w) if i == 0 else x.rjust(w)
                                                          for i, (x, w) in enumerate(zip(r, widths)))
    rule = "-" * len(line(head))
    return "\n".join([line(head), rule] + [line(r) for r in rows[:-2]] + [rule] +
                                      [line(r) for r in rows[-2:]])


# ------------------------------------------------------------------ MPI-INF-3DHP test set

#: Test activity ids 1..7 -> name (index ``id - 1``); the same names as
#: ``jpose.datasets.mpi_inf_3dhp.raw.ACTIVITY_NAMES`` (repeated here so that this module
#: does not import the TFDS builder package; a test checks that the two agree).
MPI_INF_3DHP_ACTIVITIES: tuple[str, ...] = (
    "Stand/Walk", "Exercise", "Sit on Chair", "Reach/Crouch", "On Floor", "Sports", "Misc")

#: Scene group -> test sequences: TS1-2 green-screen studio, TS3-4 studio without green
#: screen, TS5-6 outdoor (official test README, as quoted in ``shared/DATASET_FORMATS.md``
#: section 3.5; the same split in metrabs). The column groups of Li et al. 2019 Table 4.
MPI_INF_3DHP_SCENES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "Studio GS": ("TS1", "TS2"),
    "Studio no GS": ("TS3", "TS4"),
    "Outdoor": ("TS5", "TS6"),
})

#: Root (pelvis) of ``mpi_inf_3dhp_17``: MATLAB joint 15 of ``mpii_get_joints('relevant')``.
MPI_INF_3DHP_ROOT = 14

#: The 14 joints of the 14-joint variant of ``mpii_get_pck_auc_joint_groups.m`` (head top,
#: neck, shoulders, elbows, wrists, hips, knees, ankles): ``mpi_inf_3dhp_17`` without
#: pelvis, spine and head. Pass as ``PCKAccumulator(joints=...)``; the default is all 17.
MPI_INF_3DHP_JOINTS_14: tuple[int, ...] = tuple(range(14))

_TOTAL = "total"


def mpi_inf_3dhp_scene(sequence_name: str) -> str | None:
    """The scene group of a test sequence (``"TS1"`` -> ``"Studio GS"``), else ``None``.

    Names must match exactly (``"TS1"`` .. ``"TS6"``, as the builder's ``sequence``
    feature); any other name has no scene group.
    """
    for scene, names in MPI_INF_3DHP_SCENES.items():
        if sequence_name in names:
            return scene
    return None


@functools.partial(jax.jit, static_argnames=("joints", "root_index", "threshold",
                                             "auc_max_threshold", "auc_num_thresholds"))
def _activity_sums(pred, target, valid, activity, *, joints, root_index, threshold,
                   auc_max_threshold, auc_num_thresholds):
    """Per-activity sums over the valid frames of one sequence, each ``(7,)``.

    ``mpjpe``: summed joint errors (metres, float); ``pck3d``: joints within
    ``threshold`` (int); ``auc``: (joint, threshold) hits on the AUC grid (int, exact:
    :func:`metrics.auc` gives ``hits / num_thresholds`` per joint); ``frames`` (int).
    """
    pred = metrics.root_relative(pred, root_index)[:, joints]
    target = metrics.root_relative(target, root_index)[:, joints]
    err = jnp.sum(metrics.mpjpe(pred, target), axis=-1)
    pck = jnp.sum(metrics.pck3d(pred, target, threshold=threshold).astype(jnp.int32), axis=-1)
    auc = metrics.auc(pred, target, max_threshold=auc_max_threshold,
                      num_thresholds=auc_num_thresholds)
    auc = jnp.sum(jnp.round(auc * auc_num_thresholds).astype(jnp.int32), axis=-1)
    ids = jnp.arange(1, len(MPI_INF_3DHP_ACTIVITIES) + 1, dtype=activity.dtype)
    mask = valid[:, None] & (activity[:, None] == ids[None, :])  # (F, 7)
    # `where`, not multiplication: a NaN error on an invalid frame must not reach a sum.
    return {"mpjpe": jnp.sum(jnp.where(mask, err[:, None], 0), axis=0),
            "pck3d": jnp.sum(jnp.where(mask, pck[:, None], 0), axis=0),
            "auc": jnp.sum(jnp.where(mask, auc[:, None], 0), axis=0),
            "frames": jnp.sum(mask, axis=0, dtype=jnp.int32)}


def _check_joints(joints, num_joints):
    if joints is None:
        return tuple(range(num_joints))
    joints = tuple(joints)
    if (not joints or len(set(joints)) != len(joints)
            or any(not isinstance(j, (int, np.integer)) or not 0 <= j < num_joints
                   for j in joints)):
        raise ValueError(f"joints must be distinct indices in [0, {num_joints}); got {joints}.")
    return tuple(int(j) for j in joints)


def pck_group_sums(sequence_name: str, pred: np.ndarray, target: np.ndarray, *,
                   valid: np.ndarray, activity: np.ndarray | None,
                   joints: Sequence[int] | None = None,
                   root_index: int = MPI_INF_3DHP_ROOT, threshold: float = 0.150,
                   auc_max_threshold: float = 0.150, auc_num_thresholds: int = 31,
                   ) -> dict[str, dict[str, tuple[float, int]]]:
    """MPI-INF-3DHP ``{metric: {group: (sum, count)}}`` for one (part of a) test sequence.

    Metrics: ``"mpjpe"`` (sum of joint errors in metres, count of joints), ``"pck3d"``
    (joints with error ``< threshold``, count of joints), ``"auc"`` ((joint, threshold)
    pairs with error ``< threshold`` on ``linspace(0, auc_max_threshold,
    auc_num_thresholds)``, count of joints x thresholds), and ``"frames"`` (valid frames,
    the same number as count). Groups: ``"total"``, the sequence's scene group if it has
    one (:func:`mpi_inf_3dhp_scene`) and each activity present among its valid frames.
    Frames with ``valid`` False contribute nothing. See :class:`PCKAccumulator` for the
    protocol; arguments as in :meth:`PCKAccumulator.add`.
    """
    pred = np.asarray(pred, np.float32)
    target = np.asarray(target, np.float32)
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"pred and target must both have shape (F, J, 3); got "
                         f"{pred.shape} and {target.shape}.")
    num_frames, num_joints = pred.shape[:2]
    if not isinstance(root_index, int) or not 0 <= root_index < num_joints:
        raise ValueError(f"root_index must be an int in [0, {num_joints}); got {root_index!r}.")
    joints = _check_joints(joints, num_joints)
    valid = np.asarray(valid)
    per_activity = activity is not None
    # Without activity ids (not the 3DHP test set), only the total and scene rows.
    activity = np.asarray(activity) if per_activity else np.ones(num_frames, np.int32)
    if valid.shape != (num_frames,) or activity.shape != (num_frames,):
        raise ValueError(f"valid and activity must have shape ({num_frames},); got "
                         f"{valid.shape} and {activity.shape}.")
    if valid.dtype != np.bool_:
        if not np.issubdtype(valid.dtype, np.integer) or not np.isin(valid, (0, 1)).all():
            raise ValueError(f"valid must be bool (or 0/1 integers); got dtype {valid.dtype}.")
        valid = valid.astype(np.bool_)
    if not np.issubdtype(activity.dtype, np.integer):
        raise ValueError(f"activity must be integer ids 1..7; got dtype {activity.dtype}.")
    bad = valid & ((activity < 1) | (activity > len(MPI_INF_3DHP_ACTIVITIES)))
    if bad.any():
        raise ValueError(f"activity must be 1..{len(MPI_INF_3DHP_ACTIVITIES)} on valid frames "
                         f"(raw activity_annotation ids); got {np.unique(activity[bad])}.")
    sums = jax.device_get(_activity_sums(
        pred, target, valid, activity.astype(np.int32), joints=joints, root_index=root_index,
        threshold=float(threshold), auc_max_threshold=float(auc_max_threshold),
        auc_num_thresholds=auc_num_thresholds))
    k = len(joints)
    per_unit = {"mpjpe": k, "pck3d": k, "auc": k * auc_num_thresholds, "frames": 1}
    out = {m: {} for m in per_unit}

    def put(group, index):
        frames = int(np.sum(sums["frames"][index]))
        for m, unit in per_unit.items():
            s = sums[m][index].sum()
            out[m][group] = (float(s) if m == "mpjpe" else int(s), frames * unit)

    put(_TOTAL, slice(None))
    scene = mpi_inf_3dhp_scene(sequence_name)
    if scene is not None:
        put(scene, slice(None))
    for a, name in enumerate(MPI_INF_3DHP_ACTIVITIES if per_activity else ()):
        if sums["frames"][a]:
            put(name, a)
    return out


@dataclasses.dataclass
class PCKAccumulator:
    """MPI-INF-3DHP test-set evaluation: 3DPCK, AUC and MPJPE per scene and activity.

    The protocol of Mehta et al. 3DV 2017 (``mpii_test_predictions.m``,
    ``mpii_evaluate_errors.m``, ``mpii_compute_3d_pck.m``), as reported by Li et al.
    ICCV 2019 (Table 4) and the thesis:

    * Only frames with ``valid_frame`` true count; frames with ``valid`` False are
      excluded entirely (the official code never evaluates them: 2929 frames in all).
    * Poses in the 17-joint test layout ``mpi_inf_3dhp_17``, metres. Errors are computed
      after subtracting each pose's root, the pelvis (index 14 =
      :data:`MPI_INF_3DHP_ROOT`), from all its joints: the official script root-centres
      the ground truth on the pelvis and expects pelvis-centred predictions; the
      prediction is centred here the same way (a no-op if it already is). No other
      alignment. Which ground truth to pass (``annot3``, or ``univ_annot3`` rescaled to
      the universal skeleton as the official script uses) is the caller's choice.
    * 3DPCK: the percentage of joints with error ``< 150 mm`` (:func:`metrics.pck3d`).
      AUC: the mean of 3DPCK over the 31 thresholds ``0, 5, ..., 150 mm``
      (:func:`metrics.auc`). MPJPE: mean joint error, mm (:func:`metrics.mpjpe`). All
      three pool joints and frames of a group (every joint of every frame weighs the
      same), as ``mpii_compute_3d_pck.m``'s "Total" does.
    * Joints: all 17 by default. The official MPJPE averages all 17; for PCK/AUC two
      versions of ``mpii_get_pck_auc_joint_groups.m`` circulate, one with all 17 joints
      and one with 14 (no pelvis, spine, head; pass ``joints=MPI_INF_3DHP_JOINTS_14``).
      The pelvis is always a hit (its error is 0 after root subtraction), so the
      17-joint numbers are slightly higher. ``joints`` applies to all three metrics.
    * Groups: ``"total"`` (all valid frames), the scene groups of
      :data:`MPI_INF_3DHP_SCENES` ("Studio GS" = TS1, TS2; "Studio no GS" = TS3, TS4;
      "Outdoor" = TS5, TS6) and the seven activities (:data:`MPI_INF_3DHP_ACTIVITIES`,
      from the per-frame ``activity`` ids 1..7). A sequence whose name is not
      ``TS1`` .. ``TS6`` counts only in ``"total"`` and the activity rows.

    Internally ``sums[metric][group]`` and ``counts[metric][group]`` with integer hit
    counts for PCK and AUC, so results from many sequences, chunks or hosts add up
    exactly (:meth:`add_sums`); MPJPE sums are floats (exact up to rounding).
    ``add`` is NumPy-side bookkeeping around one jitted call per input shape.
    """

    joints: tuple[int, ...] | None = None
    root_index: int = MPI_INF_3DHP_ROOT
    threshold: float = 0.150
    auc_max_threshold: float = 0.150
    auc_num_thresholds: int = 31
    sums: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def add(self, sequence_name: str, pred: np.ndarray, target: np.ndarray, *,
            valid: np.ndarray, activity: np.ndarray | None) -> None:
        """Adds one test sequence (or a chunk of one).

        Args:
            sequence_name: ``"TS1"`` .. ``"TS6"`` picks the scene group; other names
                count only in the total and per-activity rows.
            pred, target: ``(F, J, 3)`` poses in metres (``mpi_inf_3dhp_17``), root-relative
                or not (the root is subtracted here).
            valid: ``(F,)`` bool, the test set's ``valid_frame``; False frames are ignored.
            activity: ``(F,)`` int activity ids 1..7 (``activity_annotation``); only the
                valid frames' ids are read. None (data without activity labels): no
                per-activity rows.
        """
        self.add_sums(pck_group_sums(
            sequence_name, pred, target, valid=valid, activity=activity, joints=self.joints,
            root_index=self.root_index, threshold=self.threshold,
            auc_max_threshold=self.auc_max_threshold,
            auc_num_thresholds=self.auc_num_thresholds))

    def add_sums(self, sums: dict[str, dict[str, tuple[float, int]]]) -> None:
        """Adds precomputed ``{metric: {group: (sum, count)}}`` (:func:`pck_group_sums`)."""
        for metric, groups in sums.items():
            for group, (s, c) in groups.items():
                self.sums.setdefault(metric, {}).setdefault(group, 0)
                self.counts.setdefault(metric, {}).setdefault(group, 0)
                self.sums[metric][group] += s
                self.counts[metric][group] += c

    @property
    def groups(self) -> tuple[str, ...]:
        """Non-empty groups in reporting order: total, scenes, activities."""
        order = (_TOTAL, *MPI_INF_3DHP_SCENES, *MPI_INF_3DHP_ACTIVITIES)
        frames = self.counts.get("frames", {})
        return tuple(g for g in order if frames.get(g, 0) > 0)

    def _key(self) -> str:
        return f"pck3d_{round(self.threshold * metrics.MILLIMETRES_PER_METRE, 6):g}mm"

    def summary(self) -> dict[str, dict[str, float | int]]:
        """``{"pck3d_150mm": {group: %}, "auc": {group: %}, "mpjpe_mm": {group: mm},
        "num_frames": {group: int}}`` over the non-empty groups (empty groups are left out,
        so the dict is plain JSON)."""
        groups = self.groups
        ratio = lambda m, g, scale: scale * self.sums[m][g] / self.counts[m][g]
        return {
            self._key(): {g: ratio("pck3d", g, 100.0) for g in groups},
            "auc": {g: ratio("auc", g, 100.0) for g in groups},
            "mpjpe_mm": {g: ratio("mpjpe", g, metrics.MILLIMETRES_PER_METRE) for g in groups},
            "num_frames": {g: int(self.counts["frames"][g]) for g in groups},
        }

    def table(self) -> str:
        """A plain-text table: one row per group (total, scenes, activities)."""
        summary = self.summary()
        pck = summary[self._key()]
        head = ["group", "frames", f"3DPCK@{self._key()[6:-2]}mm (%)", "AUC (%)", "MPJPE (mm)"]
        sections = [[_TOTAL], list(MPI_INF_3DHP_SCENES), list(MPI_INF_3DHP_ACTIVITIES)]
        fmt = lambda d, g, spec: format(d[g], spec) if g in d else "-"
        rows = [[[g, fmt(summary["num_frames"], g, "d"), fmt(pck, g, ".1f"),
                  fmt(summary["auc"], g, ".1f"), fmt(summary["mpjpe_mm"], g, ".1f")]
                 for g in section] for section in sections]
        flat = [head] + [r for section in rows for r in section]
        widths = [max(len(r[i]) for r in flat) for i in range(len(head))]
        line = lambda r: "  ".join(x.ljust(w) if i == 0 else x.rjust(w)
                                   for i, (x, w) in enumerate(zip(r, widths)))
        rule = "-" * len(line(head))
        out = [line(head)]
        for section in rows:
            out += [rule] + [line(r) for r in section]
        return "\n".join(out)
