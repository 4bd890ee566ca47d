"""Per-action evaluation with the Human3.6M protocols, accumulated exactly.

:class:`ProtocolAccumulator` collects ``(sum, count)`` pairs per action for Protocol #1
(MPJPE), Protocol #2 (P-MPJPE), N-MPJPE and MPJVE (:mod:`jpose.metrics`), so results
from many sequences, batches or devices add up exactly. :meth:`ProtocolAccumulator.table`
reports, in **millimetres**, each action's mean and both averages the literature uses:
the *action-wise* mean (mean over actions of each action's frame mean; VideoPose3D's
Human3.6M tables) and the *frame-wise* mean (every frame weighs the same).

Inputs are root-relative poses in **metres**, ``(frames, J, 3)``; root-relative means the
root joint (pelvis) is subtracted in camera coordinates, as in all three protocols.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from jpose import metrics

__all__ = ["PROTOCOLS", "ProtocolAccumulator", "sequence_errors", "format_table"]

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
