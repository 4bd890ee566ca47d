"""Turning per-frame detections into tracks, and choosing the person to lift.

Association (:func:`associate`) is greedy and frame to frame, for files that carry no
track ids (OpenPose, COCO results without ``track_id``, AlphaPose without ``--pose_track``):

1. Each live track predicts its pose in the new frame at constant velocity per joint
   (the velocity from its last two detections; zero for a joint seen once).
2. The cost of a (track, detection) pair is the mean pixel distance between the predicted
   and detected joints present in both, divided by the larger of the two bounding-box
   diagonals (boxes of the present joints; at least 1 pixel). With no joint in common it
   is the distance between the two centroids, divided the same way.
3. Pairs are taken in order of increasing cost (ties: lower track id, then earlier
   detection) while both are free and the cost is at most ``max_distance`` (default 0.5:
   half a body diagonal).
4. A detection left over starts a new track (ids 0, 1, 2, ... in order of appearance). A
   track not matched for more than ``max_gap`` frame numbers ends.

Selection (:func:`select_track`): the *largest* track is the one with the greatest
``number of frames with a detection x mean bounding-box diagonal (pixels)`` -- long and
near the camera wins over a passer-by; ties go to the lower id.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jpose.detections._common import Detections2D, Track

__all__ = ["associate", "select_track", "track_size", "box_diagonals"]


def _diagonal(points: np.ndarray) -> float:
    ok = np.isfinite(points).all(axis=-1)
    if not ok.any():
        return 0.0
    p = points[ok]
    return float(np.linalg.norm(p.max(axis=0) - p.min(axis=0)))


def box_diagonals(keypoints: np.ndarray) -> np.ndarray:
    """``(..., J, 2)`` -> ``(...)`` diagonal of the box of the present joints (pixels; NaN
    where no joint is present)."""
    kp = np.asarray(keypoints, np.float64)
    ok = np.isfinite(kp).all(axis=-1, keepdims=True)
    lo = np.where(ok, kp, np.inf).min(axis=-2)
    hi = np.where(ok, kp, -np.inf).max(axis=-2)
    diag = np.linalg.norm(hi - lo, axis=-1)
    return np.where(ok.any(axis=(-2, -1)), diag, np.nan)


def _cost(pred: np.ndarray, det: np.ndarray, scale: float) -> float:
    both = np.isfinite(pred).all(axis=-1) & np.isfinite(det).all(axis=-1)
    if both.any():
        d = np.linalg.norm(pred[both] - det[both], axis=-1).mean()
    else:
        d = np.linalg.norm(np.nanmean(pred, axis=0) - np.nanmean(det, axis=0))
    return float(d) / scale


class _Live:
    """A track being extended (mutable, local to one :func:`associate` call)."""

    def __init__(self, tid: int, pose: np.ndarray, frame: int):
        self.id, self.pose, self.frame = tid, pose, frame
        self.velocity = np.zeros_like(pose)
        self.diagonal = _diagonal(pose)

    def predict(self, frame: int) -> np.ndarray:
        return self.pose + self.velocity * (frame - self.frame)

    def update(self, det: np.ndarray, frame: int) -> None:
        dt = frame - self.frame
        both = np.isfinite(det).all(axis=-1) & np.isfinite(self.pose).all(axis=-1)
        vel = np.zeros_like(det)
        vel[both] = (det[both] - self.pose[both]) / dt
        # Joints missing now keep their predicted position, so a partial detection in the
        # next frame can still be compared with them.
        ok = np.isfinite(det).all(axis=-1)
        self.pose = np.where(ok[:, None], det, self.predict(frame))
        self.velocity, self.frame, self.diagonal = vel, frame, _diagonal(det)


def associate(people: Sequence[np.ndarray], frames: Sequence[int] | None = None, *,
              max_distance: float = 0.5, max_gap: int = 10) -> list[np.ndarray]:
    """Track ids for per-frame detections (rules in the module docstring).

    Args:
      people: per frame, ``(N_f, J, 2)`` pixel keypoints of its ``N_f`` people (NaN where
        missing); frames in time order.
      frames: ``(F,)`` increasing frame numbers (default ``0, 1, ...``); gaps count in
        the constant-velocity prediction and in ``max_gap``.
      max_distance: largest accepted cost (mean joint distance / box diagonal).
      max_gap: a track unmatched for more than this many frame numbers ends.

    Returns:
      Per frame, ``(N_f,)`` int64 track ids; no id repeats within a frame.
    """
    frames = np.arange(len(people)) if frames is None else np.asarray(frames, np.int64)
    if len(frames) != len(people):
        raise ValueError(f"frames: {len(frames)} numbers for {len(people)} frames")
    live: list[_Live] = []
    next_id = 0
    out = []
    for dets, f in zip(people, frames):
        dets = np.asarray(dets, np.float64).reshape(-1, *np.shape(dets)[-2:])
        live = [t for t in live if f - t.frame <= max_gap]
        pairs = []
        for ti, t in enumerate(live):
            pred = t.predict(int(f))
            for di, d in enumerate(dets):
                scale = max(t.diagonal, _diagonal(d), 1.0)
                c = _cost(pred, d, scale)
                if c <= max_distance:
                    pairs.append((c, t.id, di, ti))
        ids = np.full(len(dets), -1, np.int64)
        used = set()
        for c, tid, di, ti in sorted(pairs):
            if ids[di] == -1 and ti not in used:
                ids[di] = tid
                used.add(ti)
                live[ti].update(dets[di], int(f))
        for di in range(len(dets)):
            if ids[di] == -1:
                ids[di] = next_id
                live.append(_Live(next_id, dets[di].copy(), int(f)))
                next_id += 1
        out.append(ids)
    return out


def track_size(track: Track) -> float:
    """``frames with a detection x mean box diagonal`` (pixels), the selection score."""
    diag = box_diagonals(track.keypoints)
    seen = np.isfinite(diag)
    return float(seen.sum() * diag[seen].mean()) if seen.any() else 0.0


def select_track(detections: Detections2D, person: int | None = None) -> Track:
    """The track with id ``person``, or (``None``) the largest track.

    Largest = most frames with a detection times mean bounding-box diagonal in pixels
    (:func:`track_size`); ties go to the lower id.

    Raises:
      ValueError: the file has no tracks, or no track has id ``person`` (the message
        lists the ids and their sizes).
    """
    if not detections.tracks:
        raise ValueError(f"{detections.source}: no person detected in any frame")
    if person is None:
        return max(detections.tracks, key=lambda t: (track_size(t), -t.id))
    for t in detections.tracks:
        if t.id == person:
            return t
    sizes = ", ".join(f"{t.id} ({t.num_detections} frames)" for t in detections.tracks)
    raise ValueError(f"{detections.source}: no track {person!r}; tracks are {sizes}")
