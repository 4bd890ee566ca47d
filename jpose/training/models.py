"""One interface over the lifting networks for training, evaluation and export.

A :class:`Lifter` bundles a network kind (``temporal`` or ``mlp``) with its frozen config
and exposes the three pure functions the training system needs:

* :meth:`Lifter.init` -- ``rng -> {'params', 'batch_stats'}``;
* :meth:`Lifter.apply_train` -- the training form on a batch: the temporal model's
  strided single-frame form on windows ``(B, receptive_field, J, C)`` giving
  ``(B, 1, J_out, 3)``, or the MLP on frames ``(B, J, C)`` giving ``(B, J_out, 3)``;
* :meth:`Lifter.predict` -- inference on whole sequences ``(B, T, J, C) -> (B, T, J_out, 3)``
  (the temporal model's sequence form with edge padding; the MLP frame by frame).

Outputs are metres, camera frame, root-relative (see :mod:`jpose.nets`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax

from jpose.nets import mlp, temporal

__all__ = ["Lifter", "make_lifter"]


@dataclasses.dataclass(frozen=True)
class Lifter:
    kind: str  # "temporal" | "mlp"
    config: temporal.TemporalConfig | mlp.MLPConfig

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field if self.kind == "temporal" else 1

    @property
    def padding(self) -> tuple[int, int]:
        return self.config.padding if self.kind == "temporal" else (0, 0)

    @property
    def num_joints_in(self) -> int:
        return self.config.num_joints_in

    def init(self, rng: jax.Array) -> dict[str, Any]:
        module = temporal if self.kind == "temporal" else mlp
        return module.init(rng, self.config)

    def apply_train(self, variables, inputs, *, rng, bn_momentum, train: bool = True):
        """``(predictions, batch_stats)`` for a training batch (see module doc)."""
        if self.kind == "temporal":
            return temporal.apply_strided(variables, inputs, config=self.config, train=train,
                                          rng=rng, bn_momentum=bn_momentum)
        outputs, stats = mlp.apply(variables, inputs, config=self.config, train=train,
                                   rng=rng, bn_momentum=bn_momentum)
        return outputs.pose, stats

    def predict(self, variables, keypoints):
        """Eval-mode poses ``(..., T, J_out, 3)`` for sequences ``(..., T, J_in, C)``."""
        if self.kind == "temporal":
            poses, _ = temporal.apply(variables, keypoints, config=self.config, train=False)
            return poses
        outputs, _ = mlp.apply(variables, keypoints, config=self.config, train=False)
        return outputs.pose


def make_lifter(cfg: Mapping[str, Any]) -> Lifter:
    """From a model config: ``kind``, ``variant`` and optional ``overrides`` (a mapping)."""
    kind = cfg["kind"]
    overrides = dict(cfg.get("overrides", {}) or {})
    if "filter_widths" in overrides:
        overrides["filter_widths"] = tuple(overrides["filter_widths"])
    if kind == "temporal":
        return Lifter(kind, temporal.variant(cfg["variant"], **overrides))
    if kind == "mlp":
        return Lifter(kind, mlp.variant(cfg["variant"], **overrides))
    raise ValueError(f"model.kind: unknown model kind {kind!r}; expected 'temporal' or 'mlp'.")
