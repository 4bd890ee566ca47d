"""MPI-INF-3DHP test-set evaluation (``pck3d_auc``): 3DPCK at 150 mm, AUC and MPJPE per
scene group (Studio GS, Studio no GS, Outdoor) and activity, valid frames only.

The protocol, joints and root convention are :class:`jpose.evaluation.PCKAccumulator`'s
(Mehta et al. 3DV 2017, as Li et al. ICCV 2019 Table 4 and the thesis report it); the
predictor runs on whole sequences as in :mod:`jpose.evaluators.protocols`.
"""

from __future__ import annotations

import numpy as np

from jpose import evaluation
from jpose.evaluators.protocols import make_predict_fn, predict_sequence

__all__ = ["PCKEvaluator"]


class PCKEvaluator:
    """``pck3d_auc``: needs per-frame ``valid`` and ``activity`` (the MPI-INF-3DHP test
    split's ``valid_frame`` and activity ids) for every evaluation sequence.

    ``run(variables) -> (accumulator, {"pck3d_150mm": %, "auc": %, "mpjpe_mm": mm,
    "pck3d_150mm/<group>": %, ...})`` (the unprefixed values are the totals).
    """

    kind = "pck3d_auc"

    def __init__(self, predictor, sequences, *, layouts: tuple[str, str], flip: bool,
                 bucket: int, frames=None):
        if predictor.output != "pose":
            raise ValueError(f"evals: the pck3d_auc evaluator needs a pose predictor, got a "
                             f"{predictor.output!r} one")
        self.sequences = tuple(sequences)
        if frames is None or len(frames) != len(self.sequences):
            raise ValueError("evals: the pck3d_auc evaluator needs per-frame valid flags and "
                             "activities for every evaluation sequence (the MPI-INF-3DHP "
                             "test split, data.dataset='mpi_inf_3dhp')")
        self.frames = tuple(frames)
        self.bucket = int(bucket)
        self.predict_fn = make_predict_fn(predictor.fn, flip_layouts=layouts if flip else None)

    def run(self, variables):
        acc = evaluation.PCKAccumulator()
        for (name, inputs, target), frames in zip(self.sequences, self.frames):
            pred = predict_sequence(self.predict_fn, variables, inputs, bucket=self.bucket)
            activity = np.asarray(frames["activity"], np.int64)
            acc.add(name, pred, target, valid=np.asarray(frames["valid"], bool),
                    activity=activity if activity.any() else None)  # 0: not annotated
        summary = acc.summary()
        values = {}
        for metric in ("pck3d_150mm", "auc", "mpjpe_mm"):
            for group, value in summary[metric].items():
                values[metric if group == "total" else f"{metric}/{group}"] = float(value)
        return acc, values
