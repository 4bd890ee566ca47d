"""Synchronised multi-view tuples: all cameras of one instant, random access.

:func:`multiview_tuples` groups :class:`~jpose.datasets.multiview.SequenceRecord` s by
(subject, sequence) -- ``record.action`` is the sequence name -- and serves, as a
``grain.MapDataset``, one element per frame instant of every group: the requested
cameras' data at that instant (or at a temporal window around it), stacked along a
leading view axis ``V`` in the order of ``cameras``. Records from TFDS examples come
through :func:`jpose.datasets.records.records_from_examples`.

Synchrony: frame ``k`` of every camera's record of a group must show the same instant
(true of Human3.6M after VideoPose3D's truncation of the extra video frames, of
MPI-INF-3DHP, whose annotations are per frame for all cameras, and of the sample data).
A group serves the instants ``0 .. F_min - 1``, ``F_min`` the shortest of its cameras'
lengths, i.e. only instants where every requested camera has the frame; a group
lacking one of the requested cameras has no such instant and is skipped.

Element ``i`` (dict of NumPy arrays; ``T`` present only with ``padding``):

* ``positions_world`` ``(V, [T,] J, 3)`` metres, world frame (one copy per view, so every
  entry has the view axis; the copies are equal for synchronised data).
* ``positions_camera`` ``(V, [T,] J, 3)`` metres, each view's camera frame.
* ``keypoints_2d`` ``(V, [T,] J, 2)`` pixels, exact projections (``keypoints_clean``);
  ``keypoints_2d_detected`` ``(V, [T,] J, 2)`` pixels, detections (``keypoints``).
* ``confidence`` ``(V, [T,] J)`` float32; ``visible``, ``outlier`` ``(V, [T,] J)`` bool.
* ``camera_index`` ``(V,)`` int32; ``camera_<field>`` for every
  :class:`jpose.camera.CameraParams` field, stacked ``(V, ...)`` float32 (flat keys, so
  :func:`jpose.datasets.pipelines.training_batches` can batch them; rebuild a camera
  batch with :func:`cameras_of`).
* ``group_index``, ``frame_index`` int32 scalars (the target instant), ``subject``,
  ``sequence`` str.

With ``padding=(left, right)`` every per-frame entry covers the window ``frame - left ..
frame + right`` (``T = left + right + 1``), clamped to the group's instants: edge frames
are repeated, the receptive-field padding of
:func:`jpose.datasets.pipelines.temporal_windows`.

Augmentation (:mod:`jpose.datasets.augment`): an in-plane rotation/scale per view keeps
the views consistent (it changes that view's camera, not the world); a horizontal flip
mirrors the world differently per view and does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np

from jpose import camera as camera_lib
from jpose.datasets import multiview as multiview_lib

__all__ = ["MultiViewTuples", "multiview_tuples", "cameras_of", "CAMERA_KEYS"]

#: Flat keys of the stacked camera fields, in :class:`jpose.camera.CameraParams` order.
CAMERA_KEYS = tuple(f"camera_{f}" for f in camera_lib.CameraParams._fields)

# element key -> (record field, dtype)
_FRAME_FIELDS = {
    "positions_world": ("positions_world", np.float32),
    "positions_camera": ("positions_camera", np.float32),
    "keypoints_2d": ("keypoints_clean", np.float32),
    "keypoints_2d_detected": ("keypoints", np.float32),
    "confidence": ("confidence", np.float32),
    "visible": ("visible", bool),
    "outlier": ("outlier", bool),
}


def cameras_of(element: Mapping[str, Any]) -> camera_lib.CameraParams:
    """The stacked cameras of an element or batch as a :class:`jpose.camera.CameraParams`."""
    missing = [k for k in CAMERA_KEYS if k not in element]
    if missing:
        raise ValueError(f"element: missing camera keys {missing}")
    return camera_lib.CameraParams(*(element[k] for k in CAMERA_KEYS))


class MultiViewTuples(grain.MapDataset):
    """Random-access synchronised multi-view tuples (see :func:`multiview_tuples`).

    Element ``i`` is instant ``i - offsets[g]`` of group ``g`` (group-major). Indices wrap
    modulo ``len(self)``, as grain's own sources do.
    """

    def __init__(self, records: Sequence[multiview_lib.SequenceRecord], *,
                 cameras: Sequence[int] | None, padding: tuple[int, int] | None):
        super().__init__()
        records = tuple(records)
        if not records:
            raise ValueError("records: empty; expected at least one SequenceRecord")
        groups: dict[tuple[str, str], dict[int, multiview_lib.SequenceRecord]] = {}
        for i, r in enumerate(records):
            if not isinstance(r, multiview_lib.SequenceRecord):
                raise ValueError(f"records[{i}]: expected a SequenceRecord, got {type(r).__name__}")
            views = groups.setdefault((r.subject, r.action), {})
            if int(r.camera_index) in views:
                raise ValueError(
                    f"records[{i}]: a second record of subject {r.subject!r}, sequence "
                    f"{r.action!r}, camera {r.camera_index}"
                )
            views[int(r.camera_index)] = r
        if cameras is None:
            cams = tuple(sorted({int(r.camera_index) for r in records}))
        else:
            cams = tuple(int(c) for c in cameras)
            if not cams or len(set(cams)) != len(cams):
                raise ValueError(f"cameras: expected distinct camera indices, got {tuple(cameras)}")
        self._cameras = cams
        self._padding = padding
        keys, per_field, cam_fields, lengths = [], {k: [] for k in _FRAME_FIELDS}, [], []
        ref_shape = None
        for key, views in groups.items():
            if any(c not in views for c in cams):
                continue  # No instant has every requested camera.
            recs = [views[c] for c in cams]
            f = min(r.num_frames for r in recs)
            if f == 0:
                continue
            shape = recs[0].positions_world.shape[1:]
            if ref_shape is None:
                ref_shape = shape
            for r in recs:
                if r.positions_world.shape[1:] != ref_shape:
                    raise ValueError(
                        f"records: {r.subject!r} {r.action!r} camera {r.camera_index} has joints "
                        f"{r.positions_world.shape[1:]}; expected {ref_shape} like the others"
                    )
            for name, (field, dtype) in _FRAME_FIELDS.items():
                per_field[name].append(
                    np.stack([np.asarray(getattr(r, field)[:f], dtype) for r in recs], axis=0)
                )
            cam_fields.append(
                tuple(np.stack([np.asarray(getattr(r.camera, fld), np.float32) for r in recs], axis=0)
                      for fld in camera_lib.CameraParams._fields)
            )
            keys.append(key)
            lengths.append(f)
        if not keys:
            raise ValueError(
                f"records: no (subject, sequence) has all of the cameras {cams}; cameras "
                f"present: {sorted({int(r.camera_index) for r in records})}"
            )
        self._keys = tuple(keys)
        self._offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(np.asarray(lengths, np.int64))])
        self._lengths = np.asarray(lengths, np.int64)
        # (V, total_frames, ...) per field: one array each, gathered with fancy indexing.
        self._frames = {k: np.concatenate(v, axis=1) for k, v in per_field.items()}
        self._camera_fields = tuple(np.stack([c[i] for c in cam_fields], axis=0)
                                    for i in range(len(camera_lib.CameraParams._fields)))

    @property
    def cameras(self) -> tuple[int, ...]:
        """Camera indices of the view axis, in order."""
        return self._cameras

    @property
    def groups(self) -> tuple[tuple[str, str], ...]:
        """(subject, sequence) of each group, in group-index order."""
        return self._keys

    @property
    def group_lengths(self) -> tuple[int, ...]:
        """Instants served per group."""
        return tuple(int(n) for n in self._lengths)

    @property
    def padding(self) -> tuple[int, int] | None:
        return self._padding

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __str__(self) -> str:
        return (f"MultiViewTuples(num_instants={len(self)}, cameras={self._cameras}, "
                f"groups={len(self._keys)}, padding={self._padding})")

    def gather(self, indices) -> dict[str, np.ndarray]:
        """Elements ``indices`` stacked along a new leading axis ``B`` (vectorised);
        fresh arrays."""
        idx = np.asarray(indices)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise ValueError(f"indices: expected a 1-D integer array, got shape {idx.shape} dtype {idx.dtype}")
        idx = idx.astype(np.int64) % len(self)
        group = np.searchsorted(self._offsets, idx, side="right") - 1
        frame = idx - self._offsets[group]
        if self._padding is None:
            rows = idx  # (B,)
        else:
            left, right = self._padding
            t = np.arange(-left, right + 1, dtype=np.int64)
            local = np.clip(frame[:, None] + t[None, :], 0, self._lengths[group][:, None] - 1)
            rows = local + self._offsets[group][:, None]  # (B, T)
        out: dict[str, np.ndarray] = {}
        for name, arr in self._frames.items():
            # arr[:, rows]: (V, B[, T], ...) -> (B, V[, T], ...)
            out[name] = np.moveaxis(arr[:, rows], 0, 1)
        for key, arr in zip(CAMERA_KEYS, self._camera_fields):
            out[key] = arr[group]
        v = len(self._cameras)
        out["camera_index"] = np.broadcast_to(np.asarray(self._cameras, np.int32)[None], (idx.size, v)).copy()
        out["group_index"] = group.astype(np.int32)
        out["frame_index"] = frame.astype(np.int32)
        out["subject"] = np.asarray([self._keys[g][0] for g in group], dtype=np.str_)
        out["sequence"] = np.asarray([self._keys[g][1] for g in group], dtype=np.str_)
        return out

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return {k: v[0] for k, v in self.gather(np.asarray([index], np.int64)).items()}


def multiview_tuples(
    records: Sequence[multiview_lib.SequenceRecord],
    *,
    cameras: Sequence[int] | None = None,
    padding: tuple[int, int] | None = None,
) -> MultiViewTuples:
    """Synchronised multi-view tuples of ``records`` (module docstring).

    Args:
      records: one record per (subject, sequence, camera), any order; at most one per
        camera of a (subject, sequence).
      cameras: camera indices making the view axis, in this order; None: every camera
        index present in ``records``, ascending. Groups without all of them are skipped.
      padding: None: one instant per element (no ``T`` axis). ``(left, right)``
        non-negative ints: a ``left + right + 1``-frame window around the instant,
        edge-padded within the group.

    Raises:
      ValueError: no records, duplicate (subject, sequence, camera), mixed joint counts,
        bad ``cameras``/``padding``, or no group with every requested camera.
    """
    if padding is not None:
        try:
            left, right = (int(p) for p in padding)
        except (TypeError, ValueError):
            raise ValueError(f"padding: expected None or (left, right) non-negative ints, got {padding!r}") from None
        if left < 0 or right < 0:
            raise ValueError(f"padding: expected None or (left, right) non-negative ints, got {padding!r}")
        padding = (left, right)
    if isinstance(records, (multiview_lib.SequenceRecord, Mapping)):
        raise ValueError("records: expected a sequence of SequenceRecord, got a single item")
    return MultiViewTuples(records, cameras=cameras, padding=padding)
