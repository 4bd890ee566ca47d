"""Human3.6M-style evaluation of a predictor on whole sequences (``h36m_protocols``).

Sequences run through the predictor's inference form (the temporal model's sequence
form, edge-padded so every frame gets a prediction). To compile once per length *bucket*
rather than once per sequence, each sequence is extended to a multiple of ``bucket``
frames by repeating its last frame: the sequence form pads borders by repeating edge
frames anyway, so the predictions for the real frames are unchanged, and the extra ones
are dropped.

Test-time flip augmentation (VideoPose3D ``--test-time-augmentation``): the predictor
also sees the mirrored input (x negated, left/right swapped), its prediction is mirrored
back, and the two are averaged.

Root convention: every protocol compares **root-relative** poses, the prediction's root
joint (the pelvis, index 0 of ``h36m_17``) subtracted from all its joints and the
target's from the target's. This is VideoPose3D's convention: its pose model is trained
against targets with a zero root, and ``evaluate()`` zeroes the root of both before
``mpjpe`` (the root joint itself then contributes a zero error and counts in the mean
over 17 joints, as there). Errors are accumulated per action in a
:class:`jpose.evaluation.ProtocolAccumulator` (Protocol #1, #2, N-MPJPE, MPJVE;
frame-wise and action-wise means, millimetres).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jpose import evaluation, skeleton

__all__ = ["mirrored", "make_predict_fn", "predict_sequence", "evaluate", "ProtocolsEvaluator"]


def mirrored(predict: Callable, flip_layouts: tuple[str, str]) -> Callable:
    """``predict`` of the mirrored input, mirrored back: ``(variables, keypoints) ->
    poses`` (x negated, left/right swapped on both sides; ``flip_layouts = (input_layout,
    output_layout)``). Only the coordinates (first two features) flip; extra features
    move with their joints."""
    layout_in, layout_out = flip_layouts
    perm = np.array(skeleton.get(layout_in).flip_permutation)

    def predict_mirrored(variables, keypoints):
        coords, extra = keypoints[..., :2], keypoints[..., 2:]
        flipped_in = jnp.concatenate([skeleton.mirror(coords, layout_in), extra[..., perm, :]],
                                     axis=-1)
        return skeleton.mirror(predict(variables, flipped_in), layout_out)

    return predict_mirrored


def make_predict_fn(predict: Callable, *, flip_layouts: tuple[str, str] | None = None):
    """A jitted ``predict(variables, keypoints (B, T, J, C)) -> (B, T, J_out, 3)``.

    ``predict`` is a recipe predictor's function; ``flip_layouts = (input_layout,
    output_layout)`` turns on flip augmentation (the mean of :func:`mirrored` and the
    plain prediction).
    """
    if flip_layouts is None:
        return jax.jit(predict)
    predict_mirrored = mirrored(predict, flip_layouts)
    return jax.jit(lambda v, k: (predict(v, k) + predict_mirrored(v, k)) / 2)


def predict_sequence(predict_fn, variables, keypoints: np.ndarray, *,
                     bucket: int = 256) -> np.ndarray:
    """Predictions ``(F, J_out, 3)`` for one sequence ``(F, J, C)`` (see module doc)."""
    frames = keypoints.shape[0]
    padded_len = -(-frames // bucket) * bucket
    padded = np.concatenate(
        [keypoints, np.repeat(keypoints[-1:], padded_len - frames, axis=0)], axis=0)
    out = predict_fn(variables, jnp.asarray(padded[None], jnp.float32))
    return np.asarray(out[0, :frames])


def evaluate(predict_fn, variables: Any,
             sequences: Iterable[tuple[str, np.ndarray, np.ndarray]], *, bucket: int = 256,
             keep_predictions: bool = False):
    """Evaluates ``(action, inputs (F, J, C), targets (F, J_out, 3))`` sequences.

    ``predict_fn`` from :func:`make_predict_fn`. Targets are camera-frame poses in metres
    (root-relative or not: both sides are made root-relative, module doc). Returns the
    :class:`~jpose.evaluation.ProtocolAccumulator` (and the list of root-relative
    predictions with ``keep_predictions``).
    """
    acc = evaluation.ProtocolAccumulator()
    kept = []
    for action, inputs, targets in sequences:
        pred = predict_sequence(predict_fn, variables, inputs, bucket=bucket)
        pred = pred - pred[:, :1]
        acc.add(action, pred, targets - targets[:, :1])
        if keep_predictions:
            kept.append(pred)
    return (acc, kept) if keep_predictions else acc


class ProtocolsEvaluator:
    """``h36m_protocols``: Protocol #1, #2, N-MPJPE, MPJVE per action of a pose predictor.

    ``run(variables) -> (accumulator, {"mpjpe_mm": action-wise mean, ...})``.
    """

    kind = "h36m_protocols"

    def __init__(self, predictor, sequences, *, layouts: tuple[str, str], flip: bool,
                 bucket: int, frames=None):
        del frames  # every frame counts in these protocols
        if predictor.output != "pose":
            raise ValueError(f"evals: the h36m_protocols evaluator needs a pose predictor, "
                             f"got a {predictor.output!r} one")
        self.sequences = tuple(sequences)
        self.bucket = int(bucket)
        self.predict_fn = make_predict_fn(predictor.fn, flip_layouts=layouts if flip else None)

    def run(self, variables) -> tuple[evaluation.ProtocolAccumulator, dict[str, float]]:
        acc = evaluate(self.predict_fn, variables, self.sequences, bucket=self.bucket)
        values = {f"{k}_mm": v["action_wise"] for k, v in acc.summary_mm().items()}
        return acc, values
