"""Evaluating a lifter on whole sequences with the Human3.6M protocols.

Sequences run through the model's inference form (the temporal model's sequence form,
edge-padded so every frame gets a prediction). To compile once per length *bucket* rather
than once per sequence, each sequence is extended to a multiple of ``bucket`` frames by
repeating its last frame: the sequence form pads borders by repeating edge frames
anyway, so the predictions for the real frames are unchanged, and the extra ones are
dropped.

Test-time flip augmentation (VideoPose3D ``--test-time-augmentation``): the model also
sees the mirrored input (x negated, left/right swapped), its prediction is mirrored back,
and the two are averaged.

Errors are accumulated per action in a :class:`jpose.evaluation.ProtocolAccumulator`
(Protocol #1, #2, N-MPJPE, MPJVE; frame-wise and action-wise means, millimetres).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jpose import evaluation, skeleton
from jpose.training.models import Lifter

__all__ = ["make_predict_fn", "predict_sequence", "evaluate"]


def make_predict_fn(model: Lifter, *, flip_layouts: tuple[str, str] | None = None):
    """A jitted ``predict(variables, keypoints (B, T, J, C)) -> (B, T, J_out, 3)``.

    ``flip_layouts = (input_layout, output_layout)`` turns on flip augmentation.
    """

    def predict(variables, keypoints):
        poses = model.predict(variables, keypoints)
        if flip_layouts is None:
            return poses
        layout_in, layout_out = flip_layouts
        # Only the coordinates (first two features) flip; extra features move with joints.
        coords, extra = keypoints[..., :2], keypoints[..., 2:]
        flipped = skeleton.mirror(coords, layout_in)
        perm = np.array(skeleton.get(layout_in).flip_permutation)
        flipped_in = jnp.concatenate([flipped, extra[..., perm, :]], axis=-1)
        poses_flipped = skeleton.mirror(model.predict(variables, flipped_in), layout_out)
        return (poses + poses_flipped) / 2

    return jax.jit(predict)


def predict_sequence(predict_fn, variables, keypoints: np.ndarray, *,
                     bucket: int = 256) -> np.ndarray:
    """Predictions ``(F, J_out, 3)`` for one sequence ``(F, J, C)`` (see module doc)."""
    frames = keypoints.shape[0]
    padded_len = -(-frames // bucket) * bucket
    padded = np.concatenate(
        [keypoints, np.repeat(keypoints[-1:], padded_len - frames, axis=0)], axis=0)
    out = predict_fn(variables, jnp.asarray(padded[None], jnp.float32))
    return np.asarray(out[0, :frames])


def evaluate(model: Lifter, variables: Any, sequences: Iterable[tuple[str, np.ndarray, np.ndarray]],
             *, flip_layouts: tuple[str, str] | None = None, bucket: int = 256,
             predict_fn=None, keep_predictions: bool = False):
    """Evaluates ``(action, inputs (F, J, C), targets (F, J_out, 3))`` sequences.

    Targets are root-relative camera-frame poses in metres. Returns the
    :class:`~jpose.evaluation.ProtocolAccumulator` (and the list of predictions with
    ``keep_predictions``).
    """
    predict_fn = predict_fn or make_predict_fn(model, flip_layouts=flip_layouts)
    acc = evaluation.ProtocolAccumulator()
    kept = []
    for action, inputs, targets in sequences:
        pred = predict_sequence(predict_fn, variables, inputs, bucket=bucket)
        # The root slot of the pose model carries no information (root-relative
        # training); compare root-relative poses as all three protocols do.
        pred = pred - pred[:, :1]
        acc.add(action, pred, targets - targets[:, :1])
        if keep_predictions:
            kept.append(pred)
    return (acc, kept) if keep_predictions else acc
