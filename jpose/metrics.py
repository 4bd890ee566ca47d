"""Evaluation protocols for 2D and 3D human pose (STYLE habit 7).

Every metric returns **per-element values** (one per joint, shape ``(..., J)``, or one per
joint and frame for velocities), never a hidden mean. Reduce them with the
``(sum, count)`` helpers below, which take explicit masks, so that padding, invisible
joints and uneven shards average exactly: the ``(sum, count)`` pairs of two disjoint
halves add up to the pair of the whole (counts exactly, sums up to float rounding).

Protocols:

* :func:`mpjpe` -- MPJPE, Human3.6M **Protocol #1** (Ionescu et al. 2014; VideoPose3D
  ``mpjpe``).
* :func:`p_mpjpe` -- P-MPJPE, **Protocol #2**: error after per-pose similarity
  Procrustes alignment of the prediction to the target (VideoPose3D ``p_mpjpe``).
* :func:`n_mpjpe` -- N-MPJPE: error after per-pose least-squares scale alignment (Rhodin
  et al. 2018; VideoPose3D ``n_mpjpe``).
* :func:`mpjve` -- MPJVE: error of first time-differences (VideoPose3D
  ``mean_velocity_error``).
* :func:`pck` -- 2D PCK@alpha normalised by ``max(bbox height, width)`` (Sub-JHMDB /
  Penn Action protocol).
* :func:`pck3d`, :func:`auc` -- MPI-INF-3DHP 3DPCK at 150 mm and its AUC over
  thresholds ``0, 5, ..., 150`` mm (Mehta et al. 2017, ``mpii_compute_3d_pck.m``).

**Units.** Errors are returned **in the units of the inputs**. jpose poses are metres,
so 3D errors come out in metres; the literature reports millimetres: use
:func:`to_millimetres` on the final numbers (or on the per-element values; the sums and
means are linear). Thresholds of :func:`pck3d` / :func:`auc` are likewise in input
units, defaulting to 0.150 (= 150 mm for metres); pass ``150.0`` for millimetre inputs.
2D PCK works in pixels (any unit, as long as keypoints and box agree).

**NaN.** A NaN coordinate in ``pred`` or ``target`` propagates to that joint's error
(and, for :func:`p_mpjpe` / :func:`n_mpjpe`, to the whole pose's alignment unless the
joint's ``weights`` entry is 0). Masked-out elements never reach a sum:
:func:`masked_sum_count` selects with ``where``, so NaN at a masked position is harmless.
PCK hits are comparisons, so a NaN distance counts as a miss; mark such joints not
``visible`` instead.

**Shapes.** ``pred`` and ``target`` must have identical shapes ``(..., J, C)`` with
``C = 3`` for 3D metrics and ``C = 2`` for :func:`pck`; mismatches raise ``ValueError``
at trace time. Differentiable metrics (:func:`mpjpe`, :func:`p_mpjpe`, :func:`n_mpjpe`,
:func:`mpjve`) have finite gradients everywhere, including at zero error (gradient 0).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jpose import procrustes

__all__ = [
    "MILLIMETRES_PER_METRE",
    "to_millimetres",
    "root_relative",
    "mpjpe",
    "p_mpjpe",
    "n_mpjpe",
    "least_squares_scale",
    "mpjve",
    "pck",
    "pck3d",
    "auc",
    "masked_sum_count",
    "per_joint_sum_count",
    "per_group_sum_count",
    "mean_from",
    "action_wise_mean",
    "frame_wise_mean",
]

MILLIMETRES_PER_METRE = 1000.0


# --------------------------------------------------------------------------- helpers


def _float_dtype(*arrays):
    # Chosen by hand: strict dtype promotion refuses float32 + float64 even explicitly.
    floats = [a.dtype for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
    if not floats:
        return jnp.asarray(0.0).dtype
    return max(floats, key=lambda d: jnp.dtype(d).itemsize)


def _check_pair(pred, target, *, dim, names=("pred", "target")):
    """Validate ``(..., J, dim)`` arrays of equal shape; return them in one float dtype."""
    pred = jnp.asarray(pred)
    target = jnp.asarray(target)
    a, b = names
    if pred.ndim < 2 or pred.shape[-1] != dim:
        raise ValueError(f"`{a}` must have shape (..., J, {dim}); got {pred.shape}.")
    if target.shape != pred.shape:
        raise ValueError(
            f"`{b}` must have the same shape as `{a}` {pred.shape}; got {target.shape}."
        )
    dtype = _float_dtype(pred, target)
    return pred.astype(dtype), target.astype(dtype)


def _broadcast_to(x, shape, name):
    x = jnp.asarray(x)
    try:
        return jnp.broadcast_to(x, shape)
    except ValueError:
        raise ValueError(
            f"`{name}` must have shape {shape} (or broadcast to it); got {x.shape}."
        ) from None


def _norm(v):
    """Euclidean norm over the last axis with a finite gradient at 0 (where it is 0).

    NaN still propagates: only exact zeros take the safe branch.
    """
    sq = jnp.sum(v * v, axis=-1)
    is_zero = sq == 0
    return jnp.where(is_zero, 0, jnp.sqrt(jnp.where(is_zero, 1, sq)))


def to_millimetres(x):
    """Metres -> millimetres (multiply by 1000), keeping a floating dtype."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(_float_dtype(x))
    return x * MILLIMETRES_PER_METRE


def root_relative(poses, root_index=0):
    """Subtract the root joint from every joint: ``poses - poses[..., root, :]``.

    Args:
      poses: ``(..., J, C)`` joint positions (any units; the result has the same units).
      root_index: joint index of the root (pelvis / hip centre in Human3.6M order: 0);
        negative indices count from the end.

    Returns:
      ``(..., J, C)``; the root slot becomes exactly zero (this helper does not keep the
      trajectory in the root slot, unlike VideoPose3D's dataset preprocessing).
    """
    poses = jnp.asarray(poses)
    if poses.ndim < 2:
        raise ValueError(f"`poses` must have shape (..., J, C); got {poses.shape}.")
    num_joints = poses.shape[-2]
    if not isinstance(root_index, int) or not -num_joints <= root_index < num_joints:
        raise ValueError(
            f"`root_index` must be an int in [-{num_joints}, {num_joints}); "
            f"got {root_index!r}."
        )
    r = root_index % num_joints
    return poses - poses[..., r : r + 1, :]


# --------------------------------------------------------------------------- 3D errors


def mpjpe(pred, target):
    """MPJPE per joint, Human3.6M **Protocol #1** (Ionescu et al.; VideoPose3D ``mpjpe``).

    Args:
      pred: ``(..., J, 3)`` predicted joints.
      target: ``(..., J, 3)`` ground truth, same shape and units (jpose: metres;
        usually both root-relative, see :func:`root_relative`).

    Returns:
      ``(..., J)`` Euclidean distances ``||pred_j - target_j||`` in the input units. Mean
      them with :func:`masked_sum_count` / :func:`mean_from`.
    """
    pred, target = _check_pair(pred, target, dim=3)
    return _norm(pred - target)


def p_mpjpe(pred, target, *, weights=None, allow_reflection=False):
    """P-MPJPE per joint, Human3.6M **Protocol #2** (VideoPose3D ``p_mpjpe``).

    Each pose (each leading index) of ``pred`` is aligned to ``target`` by the
    least-squares similarity transform (scale, rotation, translation;
    :func:`jpose.procrustes.similarity_transform`), then per-joint distances are taken.
    **Reflections are not allowed by default**: the rotation has ``det = +1``, matching
    the sign fix in VideoPose3D's NumPy implementation. ``allow_reflection=True`` gives
    the plain orthogonal-Procrustes variant some papers use (never larger).

    Args:
      pred: ``(..., J, 3)`` predicted joints.
      target: ``(..., J, 3)`` ground truth, same shape and units.
      weights: optional ``(..., J)`` (or broadcastable, e.g. ``(J,)``) non-negative
        weights for fitting the alignment; joints with weight 0 do not influence it
        (and may hold NaN). Errors are still returned for *all* joints, so also pass
        the same mask to the aggregation helpers.
      allow_reflection: allow an improper (mirroring) alignment.

    Returns:
      ``(..., J)`` distances after alignment, in the input units. Poses whose
      alignment is undetermined (no weighted joint, or a collapsed prediction) fall back
      to the translation-only alignment documented in :mod:`jpose.procrustes`.
    """
    pred, target = _check_pair(pred, target, dim=3)
    aligned = procrustes.align(
        pred,
        target,
        weights=weights,
        allow_scale=True,
        allow_reflection=allow_reflection,
    )
    return _norm(aligned - target)


def least_squares_scale(pred, target, *, weights=None):
    """Per-pose scale ``s = Σ_j w_j <pred_j, target_j> / Σ_j w_j |pred_j|^2``.

    The minimiser of ``Σ_j w_j |s pred_j - target_j|^2`` (no centring: apply to
    root-relative poses, as N-MPJPE does). ``pred, target: (..., J, C)``; returns
    ``(...,)``. When ``pred`` is all zeros on the weighted joints the scale is
    undetermined and 1 is returned.
    """
    pred = jnp.asarray(pred)
    target = jnp.asarray(target)
    if pred.ndim < 2 or target.shape != pred.shape:
        raise ValueError(
            f"`pred` and `target` must have the same shape (..., J, C); "
            f"got {pred.shape} and {target.shape}."
        )
    dtype = _float_dtype(pred, target)
    pred, target = pred.astype(dtype), target.astype(dtype)
    if weights is None:
        w = jnp.ones(pred.shape[:-1], dtype)
    else:
        w = _broadcast_to(weights, pred.shape[:-1], "weights").astype(dtype)
    include = w > 0
    # Mask coordinates, not only weights, so that NaN at excluded joints cannot leak.
    p = jnp.where(include[..., None], pred, 0)
    t = jnp.where(include[..., None], target, 0)
    w = jnp.where(include, w, 0)
    num = jnp.sum(w * jnp.sum(p * t, axis=-1), axis=-1)
    den = jnp.sum(w * jnp.sum(p * p, axis=-1), axis=-1)
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 1)


def n_mpjpe(pred, target, *, weights=None):
    """N-MPJPE per joint: error after per-pose scale alignment (Rhodin et al. 2018).

    As VideoPose3D's ``n_mpjpe``: ``s = Σ_j <pred_j, target_j> / Σ_j |pred_j|^2`` per
    pose (see :func:`least_squares_scale`; no centring, so use root-relative poses), then
    ``||s pred_j - target_j||``.

    Args:
      pred: ``(..., J, 3)``; target: ``(..., J, 3)`` same shape and units.
      weights: optional ``(..., J)`` (or broadcastable) non-negative weights for fitting
        the scale; errors are returned for all joints.

    Returns:
      ``(..., J)`` distances in the input units.
    """
    pred, target = _check_pair(pred, target, dim=3)
    scale = least_squares_scale(pred, target, weights=weights)
    return _norm(scale[..., None, None] * pred - target)


def mpjve(pred, target, *, axis=-3):
    """MPJVE per joint and frame: error of first time-differences (velocity).

    As VideoPose3D's ``mean_velocity_error``:
    ``||diff(pred, axis) - diff(target, axis)||`` over the coordinate axis, where
    ``diff`` is the forward difference ``x[t + 1] - x[t]`` along the time axis. The
    result is per frame step, **not** divided by the frame interval (units: input units
    per frame; multiply by the frame rate for units per second).

    Args:
      pred: ``(..., T, ..., J, 3)`` predicted joints over time.
      target: same shape and units.
      axis: the time axis. Default ``-3`` means ``(..., T, J, 3)``. Must be one of the
        leading axes (not the joint or coordinate axis), with at least 2 frames.

    Returns:
      Array of the input shape minus the coordinate axis, with ``T - 1`` entries along
      the time axis: ``(..., T - 1, J)`` for the default layout.
    """
    pred, target = _check_pair(pred, target, dim=3)
    ndim = pred.ndim
    if not isinstance(axis, int) or not -ndim <= axis < ndim:
        raise ValueError(f"`axis` must be an int in [-{ndim}, {ndim}); got {axis!r}.")
    ax = axis % ndim
    if ax >= ndim - 2:
        raise ValueError(
            f"`axis` must name a leading (time) axis of the (..., J, 3) inputs, not the "
            f"joint or coordinate axis; got axis={axis} for shape {pred.shape}."
        )
    if pred.shape[ax] < 2:
        raise ValueError(
            f"need at least 2 frames along `axis`={axis}; got shape {pred.shape}."
        )
    velocity_pred = jnp.diff(pred, axis=ax)
    velocity_target = jnp.diff(target, axis=ax)
    return _norm(velocity_pred - velocity_target)


# --------------------------------------------------------------------------- PCK / AUC


def pck(pred_2d, target_2d, *, visible, bbox_size, alpha=0.2):
    """2D PCK@alpha hits per joint, normalised by ``max(bbox height, width)``.

    The Sub-JHMDB / Penn Action protocol: a visible joint is correct when
    ``||pred - target|| <= alpha * max(bbox_width, bbox_height)`` (ties count as hits,
    as in the deephar evaluation code). Only visible joints count.

    Args:
      pred_2d: ``(..., J, 2)`` predicted keypoints in pixels.
      target_2d: ``(..., J, 2)`` ground-truth keypoints in pixels.
      visible: ``(..., J)`` (or broadcastable) bool, or numeric with nonzero = visible.
      bbox_size: ``(..., 2)`` person box ``(width, height)`` in pixels, per pose.
      alpha: threshold as a fraction of the larger box side (0.2 for PCK@0.2).

    Returns:
      ``(hits, valid)``: ``hits (..., J)`` float 1.0 for a correct visible joint, else
      0.0 (invisible joints are 0); ``valid (..., J)`` bool, the joints to count.
      PCK = ``mean_from(*masked_sum_count(hits, valid))``.
    """
    pred_2d, target_2d = _check_pair(
        pred_2d, target_2d, dim=2, names=("pred_2d", "target_2d")
    )
    batch_joint_shape = pred_2d.shape[:-1]
    visible = _broadcast_to(visible, batch_joint_shape, "visible")
    valid = visible if visible.dtype == jnp.bool_ else visible != 0
    bbox_size = _broadcast_to(bbox_size, pred_2d.shape[:-2] + (2,), "bbox_size")
    bbox_size = bbox_size.astype(pred_2d.dtype)
    threshold = alpha * jnp.max(bbox_size, axis=-1)
    dist = _norm(pred_2d - target_2d)
    hit = valid & (dist <= threshold[..., None])
    return hit.astype(pred_2d.dtype), valid


def pck3d(pred, target, *, threshold=0.150):
    """MPI-INF-3DHP **3DPCK** hits per joint: ``||pred_j - target_j|| < threshold``.

    Strict inequality, as ``mpii_compute_3d_pck.m``. The threshold is in the input
    units: the default 0.150 is 150 mm for metres (pass 150.0 for millimetres). The
    protocol evaluates root-relative poses, without alignment.

    Args:
      pred: ``(..., J, 3)``; target: ``(..., J, 3)`` same shape and units.
      threshold: distance threshold (scalar).

    Returns:
      ``(..., J)`` float, 1.0 for a hit and 0.0 otherwise (NaN distance: 0.0).
    """
    dist = mpjpe(pred, target)
    return (dist < threshold).astype(dist.dtype)


def auc(pred, target, *, max_threshold=0.150, num_thresholds=31):
    """MPI-INF-3DHP **AUC** per joint: mean of 3DPCK over a uniform threshold grid.

    The grid is ``linspace(0, max_threshold, num_thresholds)``; the defaults give
    ``0, 5, 10, ..., 150`` mm (31 thresholds, for metre inputs), the grid of
    ``mpii_compute_3d_pck.m`` as used by most papers (note that a threshold of 0 never
    scores). A joint's value is the fraction of thresholds it is a hit at (strict
    ``<``), in ``[0, 1]``; since this is linear, averaging per-joint values over joints
    and frames with :func:`masked_sum_count` gives the usual AUC (report as a
    percentage by multiplying by 100).

    Args:
      pred: ``(..., J, 3)``; target: ``(..., J, 3)`` same shape and units.
      max_threshold: largest threshold, in input units.
      num_thresholds: number of grid points (a Python int >= 1).

    Returns:
      ``(..., J)`` float per-joint AUC values.
    """
    if not isinstance(num_thresholds, int) or num_thresholds < 1:
        raise ValueError(
            f"`num_thresholds` must be a Python int >= 1; got {num_thresholds!r}."
        )
    dist = mpjpe(pred, target)
    thresholds = jnp.linspace(0, max_threshold, num_thresholds, dtype=dist.dtype)
    thresholds = thresholds.reshape((1,) * dist.ndim + (num_thresholds,))
    hits = (dist[..., None] < thresholds).astype(dist.dtype)
    return jnp.mean(hits, axis=-1)


# --------------------------------------------------------------------------- aggregation


def _normalise_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, int) or not -ndim <= a < ndim:
            raise ValueError(
                f"`axis` entries must be ints in [-{ndim}, {ndim}); got {axis!r}."
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"`axis` has repeated entries: {axis!r}.")
    return tuple(sorted(out))


def masked_sum_count(values, mask=None, axis=None):
    """``(sum, count)`` of ``values`` over ``axis``, counting only where ``mask`` says.

    Args:
      values: array of per-element metric values (e.g. ``(..., J)`` errors).
      mask: optional bool array (True = count), or float weights (the sum becomes
        ``Σ w * values`` and the count ``Σ w``); same shape as ``values`` or broadcastable
        to it. Elements with mask False / weight 0 are excluded even if NaN.
      axis: int, tuple of ints, or None (all axes) to reduce.

    Returns:
      ``(sum, count)`` with the reduced shape. ``sum`` has the float dtype of
      ``values``; ``count`` is int32 (exact) for a bool or absent mask, and the weights'
      float dtype for float weights. Pairs from disjoint splits add up to the pair of the
      whole; divide with :func:`mean_from`.
    """
    values = jnp.asarray(values)
    if not jnp.issubdtype(values.dtype, jnp.floating):
        values = values.astype(_float_dtype(values))
    axes = _normalise_axes(axis, values.ndim)
    if mask is None:
        total = jnp.sum(values, axis=axes)
        n = math.prod(values.shape[a] for a in axes)
        return total, jnp.full(total.shape, n, jnp.int32)
    mask = _broadcast_to(mask, values.shape, "mask")
    if mask.dtype == jnp.bool_:
        total = jnp.sum(jnp.where(mask, values, 0), axis=axes)
        count = jnp.sum(mask, axis=axes, dtype=jnp.int32)
        return total, count
    w = mask.astype(values.dtype)
    keep = w != 0
    total = jnp.sum(jnp.where(keep, values * w, 0), axis=axes)
    return total, jnp.sum(w, axis=axes)


def per_joint_sum_count(values, mask=None):
    """``(sum, count)`` per joint: reduce every axis of ``(..., J)`` values but the last.

    Returns two ``(J,)`` arrays; see :func:`masked_sum_count` for ``mask`` and dtypes.
    """
    values = jnp.asarray(values)
    if values.ndim < 1:
        raise ValueError(f"`values` must have shape (..., J); got {values.shape}.")
    return masked_sum_count(values, mask, axis=tuple(range(values.ndim - 1)))


def per_group_sum_count(values, group_ids, num_groups, mask=None):
    """``(sum, count)`` per group (e.g. per Human3.6M action), via ``segment_sum``.

    Args:
      values: ``(*S, ...)`` per-element values, e.g. ``(N, J)`` per-joint errors.
      group_ids: integer array of shape ``S`` (the leading axes of ``values``): the group
        of each sample; all trailing axes of ``values`` belong to that sample and are
        summed. Ids outside ``[0, num_groups)`` (e.g. -1 for padding) are dropped.
      num_groups: number of groups (a Python int >= 1).
      mask: optional mask / weights as in :func:`masked_sum_count`, shaped like
        ``values`` (or broadcastable).

    Returns:
      ``(sums, counts)``, each ``(num_groups,)``; empty groups have count 0.
    """
    values = jnp.asarray(values)
    group_ids = jnp.asarray(group_ids)
    if not jnp.issubdtype(group_ids.dtype, jnp.integer):
        raise ValueError(
            f"`group_ids` must be an integer array; got dtype {group_ids.dtype}."
        )
    k = group_ids.ndim
    if values.shape[:k] != group_ids.shape:
        raise ValueError(
            f"`group_ids` shape {group_ids.shape} must equal the leading axes of "
            f"`values` {values.shape}."
        )
    if not isinstance(num_groups, int) or num_groups < 1:
        raise ValueError(f"`num_groups` must be a Python int >= 1; got {num_groups!r}.")
    sample_sum, sample_count = masked_sum_count(
        values, mask, axis=tuple(range(k, values.ndim))
    )
    ids = group_ids.reshape(-1)
    sums = jax.ops.segment_sum(sample_sum.reshape(-1), ids, num_segments=num_groups)
    counts = jax.ops.segment_sum(sample_count.reshape(-1), ids, num_segments=num_groups)
    return sums, counts


def mean_from(total, count):
    """``total / count`` elementwise, and **NaN where ``count == 0``** (empty groups).

    NaN is returned explicitly (via ``where``, no division by zero, finite gradients) so
    that an empty group is visible rather than silently 0. ``count`` is cast to the
    dtype of ``total``.
    """
    total = jnp.asarray(total)
    if not jnp.issubdtype(total.dtype, jnp.floating):
        total = total.astype(_float_dtype(total))
    count = jnp.asarray(count).astype(total.dtype)
    total, count = jnp.broadcast_arrays(total, count)
    nonempty = count > 0
    return jnp.where(nonempty, total / jnp.where(nonempty, count, 1), jnp.nan)


def action_wise_mean(sums, counts, *, axis=-1):
    """Mean of per-group means (e.g. per-action MPJPE averaged over actions).

    This is how VideoPose3D reports Human3.6M: each action's mean error, then the
    unweighted mean over actions. Groups with count 0 are skipped; if all are empty the
    result is NaN. Compare :func:`frame_wise_mean`, which weights every frame equally.

    Args:
      sums, counts: ``(..., G)`` per-group pairs, e.g. from :func:`per_group_sum_count`.
      axis: the group axis.
    """
    means = mean_from(sums, counts)
    nonempty = jnp.asarray(counts) > 0
    nonempty = jnp.broadcast_to(nonempty, means.shape)
    num = jnp.sum(jnp.where(nonempty, means, 0), axis=axis)
    den = jnp.sum(nonempty, axis=axis, dtype=jnp.int32)
    return mean_from(num, den)


def frame_wise_mean(sums, counts, *, axis=None):
    """Total sum over total count along ``axis`` (None: all); NaN if the count is 0."""
    sums = jnp.asarray(sums)
    counts = jnp.asarray(counts)
    return mean_from(jnp.sum(sums, axis=axis), jnp.sum(counts, axis=axis))
