"""Pseudo-labelled sequences on disk: what Li et al.'s stage B hands to stage C.

One ``.npz`` (no pickle) holding N sequences concatenated along frames:

* ``inputs`` (sum F, J_in, C) float32: the network inputs (normalised screen coordinates);
* ``poses_3d`` (sum F, J, 3) float32 metres, root-relative, camera frame: the completed
  pseudo-labels (:func:`jpose.solvers.trajectory_completion.complete_trajectories`);
* ``confidence`` (sum F, J) float32: the per-joint scores the completion used;
* ``lengths`` (N,) int: frames per sequence; ``bone_lengths`` (N, K) float32 metres:
  each video's median bone lengths of the completed poses (Li et al.'s ``b_ik``);
* ``layout`` (the joint layout) and ``subjects`` / ``actions`` (N,) strings.

:func:`load` gives :class:`~jpose.datasets.pipelines.Sequences` (trajectory zero, no
cameras) plus the per-sequence ``bone_lengths`` that a stream gathers by
``sequence_index``.
"""

from __future__ import annotations

import numpy as np

from jpose import io
from jpose.datasets import pipelines

__all__ = ["save", "load"]


def save(path: str, *, inputs, poses_3d, confidence, bone_lengths, layout: str,
         subjects, actions) -> None:
    """Writes per-sequence lists (``inputs[i]`` (F_i, J_in, C), ...) atomically."""
    lengths = np.asarray([len(x) for x in inputs], np.int64)
    for name, arrays in (("poses_3d", poses_3d), ("confidence", confidence)):
        if [len(a) for a in arrays] != lengths.tolist():
            raise ValueError(f"{name}: per-sequence lengths {[len(a) for a in arrays]} differ "
                             f"from the inputs' {lengths.tolist()}")
    io.save_npz_atomic(path, {
        "inputs": np.concatenate(inputs).astype(np.float32),
        "poses_3d": np.concatenate(poses_3d).astype(np.float32),
        "confidence": np.concatenate(confidence).astype(np.float32),
        "lengths": lengths, "bone_lengths": np.asarray(bone_lengths, np.float32),
        "layout": np.asarray(layout), "subjects": np.asarray([str(s) for s in subjects]),
        "actions": np.asarray([str(a) for a in actions])})


def load(path: str) -> tuple[pipelines.Sequences, dict[str, np.ndarray]]:
    """``(sequences, {"bone_lengths": (N, K)})`` from a file written by :func:`save`."""
    arrays = io.load_npz(path, what="pseudo labels")
    missing = [k for k in ("inputs", "poses_3d", "confidence", "lengths", "bone_lengths",
                           "layout", "subjects", "actions") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing {missing}; write it with "
                         "jpose.datasets.pseudo_labels.save")
    lengths = arrays["lengths"].astype(np.int64)
    if lengths.sum() != len(arrays["inputs"]) or len(arrays["bone_lengths"]) != len(lengths):
        raise ValueError(f"{path}: 'lengths' ({int(lengths.sum())} frames, {len(lengths)} "
                         f"sequences) do not match 'inputs' ({len(arrays['inputs'])} frames) "
                         f"or 'bone_lengths' ({len(arrays['bone_lengths'])} rows)")
    cuts = np.cumsum(lengths)[:-1]
    actions = [str(a) for a in arrays["actions"]]
    names = tuple(sorted(set(actions)))
    items = [pipelines.TrainingSequence(
        inputs=x, poses_3d=p, trajectory=np.zeros((len(x), 3), np.float32),
        action=names.index(a), action_name=a, subject=str(s), camera_index=-1,
        confidence=c)
        for x, p, c, a, s in zip(np.split(arrays["inputs"], cuts),
                                 np.split(arrays["poses_3d"], cuts),
                                 np.split(arrays["confidence"], cuts), actions,
                                 arrays["subjects"])]
    seqs = pipelines.Sequences(items=tuple(items), action_names=names,
                               layout=str(arrays["layout"]))
    return seqs, {"bone_lengths": arrays["bone_lengths"]}
