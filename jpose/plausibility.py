"""Is a 3D pose sequence a plausible metric human body? Checks without ground truth.

A lifter's output on someone's video has no 3D to compare with; what can still be
checked is the body it describes. :func:`body_report` measures, over a sequence:

* ``bone_lengths_m``: each bone's median length (metres), in the layout's bone order;
* ``bone_variation``: each bone's robust variation over time, ``1.4826 MAD / median``
  (a rigid body has none; jitter and depth errors show here);
* ``left_right_asymmetry``: per left/right bone pair, ``|L - R| / mean(L, R)`` of the
  medians (people are nearly symmetric: a few per cent);
* ``stature_m``: the standing height the bones imply -- the head-top-to-pelvis chain
  plus the mean leg chain (hip, knee, ankle; the pelvis-to-hip bone is sideways) plus
  0.08 m from ankle to sole (adult anthropometry) -- or None for layouts without a head
  top, hips and ankles. Adults are
  1.5-1.9 m; a lifter fed the wrong focal length reports a body too large or too small.

Poses are ``(T, J, 3)`` metres (root-relative or not); NaN frames are skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jpose import skeleton as skeleton_lib

__all__ = ["ANKLE_TO_SOLE_M", "body_report"]

#: Ankle-joint-centre height above the sole, metres (adult mean, ~4.5 % of stature).
ANKLE_TO_SOLE_M = 0.08


def _chain_length(lengths: dict[tuple[int, int], float], skel, start: int, stop: int):
    """Length of the tree path from joint ``start`` up to its ancestor ``stop``."""
    total, j = 0.0, start
    while j != stop:
        parent = skel.parents[j]
        if parent < 0:
            return None
        total += lengths[(j, parent)]
        j = parent
    return total


def body_report(poses: np.ndarray, layout: str | skeleton_lib.Skeleton) -> dict[str, Any]:
    """The module docstring's measures of ``poses (T, J, 3)`` metres in ``layout``."""
    skel = skeleton_lib.get(layout)
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (skel.num_joints, 3):
        raise ValueError(f"poses: expected shape (T, {skel.num_joints}, 3) for layout "
                         f"{skel.name!r}, got {poses.shape}")
    frames = poses[np.isfinite(poses).all(axis=(1, 2))]
    if not len(frames):
        return {"frames": 0}
    bones = skel.bones
    per_frame = np.stack([np.linalg.norm(frames[:, c] - frames[:, p], axis=-1)
                          for c, p in bones], axis=-1)  # (T, B)
    median = np.median(per_frame, axis=0)
    mad = np.median(np.abs(per_frame - median), axis=0)
    lengths = {b: float(m) for b, m in zip(bones, median)}
    flip = skel.flip_permutation
    asym, seen = {}, set()
    names = skel.joint_names
    for (c, p), m in zip(bones, median):
        mirror = (flip[c], flip[p])
        if mirror == (c, p) or (c, p) in seen or mirror not in lengths:
            continue
        seen.update({(c, p), mirror})
        other = lengths[mirror]
        asym[f"{names[c]}-{names[p]}"] = float(abs(m - other) / max(0.5 * (m + other), 1e-9))
    stature = None
    if {"head_top", "left_ankle", "right_ankle"} <= set(names):
        root = skel.root
        top = _chain_length(lengths, skel, names.index("head_top"), root)
        legs = [_chain_length(lengths, skel, names.index(f"{side}_ankle"),
                              names.index(f"{side}_hip")) if f"{side}_hip" in names else None
                for side in ("left", "right")]
        if top is not None and None not in legs:
            stature = float(top + np.mean(legs) + ANKLE_TO_SOLE_M)
    return {
        "frames": int(len(frames)),
        "bones": [f"{names[c]}-{names[p]}" for c, p in bones],
        "bone_lengths_m": [float(m) for m in median],
        "bone_variation": [float(v) for v in 1.4826 * mad / np.maximum(median, 1e-9)],
        "left_right_asymmetry": asym,
        "stature_m": stature,
    }
