"""One interface over jpose's networks, built from a spec in one place.

A :class:`Network` bundles a network kind with its frozen config and exposes the pure
functions the training system, the evaluators and export need:

* :meth:`Network.init` -- ``rng -> {'params', 'batch_stats'}``;
* :meth:`Network.apply` -- the *training form* on a batch of examples, returning
  ``(outputs, batch_stats)`` with ``outputs`` a dict of named arrays (``"pose"`` always):

  - ``temporal``: receptive-field windows ``(B, receptive_field, J_in, C)`` ->
    ``{"pose": (B, 1, J_out, 3)}`` (the strided single-frame form of VideoPose3D);
  - ``mlp``: frames ``(B, J_in, C)`` -> ``{"pose": (B, J_out, 3)}`` plus the optional
    heads ``"root"`` ``(B, 3)`` and ``"scale"`` ``(B, 1)`` the config enables;

* :meth:`Network.predict` -- inference on whole sequences ``(..., T, J_in, C) ->
  (..., T, J_out, 3)`` in eval mode (the temporal model's sequence form with edge
  padding; the MLP frame by frame).

Lifter outputs are metres, camera frame. A pose network is trained against root-relative
poses; a trajectory network is the same architecture with ``num_joints_out = 1`` and
predicts the root's camera-frame position (VideoPose3D's ``model_traj``, no shared weights).

The image networks take images ``(B, H, W, 3)`` (``pose2d`` with TCE: windows ``(B, T,
H, W, 3)``), float RGB in [0, 1]; ``resnet`` and ``pose2d`` apply the ImageNet mean/std
themselves, the hourglasses take [0, 1] as is. Their outputs:

  - ``resnet`` (a backbone, no ``"pose"``): ``"stem"``, ``"stage{s}"`` features and
    ``"pooled"`` ``(B, C)``; ``predict`` gives ``"pooled"``;
  - ``pose2d`` (thesis ch. 2, optional TCE): ``"heatmaps"`` ``(B, H/4, W/4, J)``,
    ``"pose"`` ``(B, J, 2)`` (argmax, heatmap pixels) and ``"score"``;
  - ``hourglass`` (Newell et al.; with ``depth_resolutions`` the volumetric hourglass of
    Pavlakos et al.): per-stack ``"heatmaps_stack{i}"`` / ``"volumes_stack{k}"``,
    ``"features"``, and ``"pose"`` (2D argmax or 3D soft peak) with ``"score"``.

Their configs have no ``num_joints_in`` (nor ``receptive_field``: a ``pose2d`` window
is ``config.window`` frames), so :attr:`Network.num_joints_in` and
:func:`with_data_shapes` are for the lifters only.

Specs are mappings ``{"kind": "temporal" | "mlp" | ..., "variant": <name>, "overrides":
{field: value}}``: :func:`build` is the only place that dispatches on the kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax

from jpose.nets import mlp, temporal
from jpose.nets import embedding  # MCSS
from jpose.nets import factorization  # CFN (thesis ch. 4)
from jpose.nets import hourglass, pose2d, resnet  # image networks

__all__ = ["KINDS", "Network", "build", "kind_of", "with_data_shapes"]

#: Network kind -> the module implementing ``variant``, ``init``, ``apply``.
KINDS = {"temporal": temporal, "mlp": mlp}
KINDS["embedding"] = embedding  # MCSS pose embeddings (jpose/nets/embedding.py)
KINDS["factorization"] = factorization  # CFN (jpose/nets/factorization.py)
KINDS["resnet"] = resnet  # image backbone (jpose/nets/resnet.py)
KINDS["pose2d"] = pose2d  # image 2D pose net, optional TCE (jpose/nets/pose2d.py)
KINDS["hourglass"] = hourglass  # 2D and volumetric hourglass (jpose/nets/hourglass.py)


@dataclasses.dataclass(frozen=True)
class Network:
    kind: str  # a key of KINDS
    config: Any  # temporal.TemporalConfig | mlp.MLPConfig

    @property
    def module(self):
        return KINDS[self.kind]

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field if self.kind == "temporal" else 1

    @property
    def padding(self) -> tuple[int, int]:
        return self.config.padding if self.kind == "temporal" else (0, 0)

    @property
    def num_joints_in(self) -> int:
        return self.config.num_joints_in

    @property
    def num_joints_out(self) -> int:
        return self.config.num_joints_out

    def init(self, rng: jax.Array) -> dict[str, Any]:
        return self.module.init(rng, self.config)

    def apply(self, variables, inputs, *, train: bool, rng: jax.Array | None = None,
              bn_momentum: jax.Array | float = 0.0) -> tuple[dict[str, jax.Array], Any]:
        """``(outputs, batch_stats)`` for a batch of training examples (module doc)."""
        if hasattr(self.module, "network_apply"):  # kinds that name their own outputs
            return self.module.network_apply(variables, inputs, config=self.config,
                                             train=train, rng=rng, bn_momentum=bn_momentum)
        if self.kind == "temporal":
            pose, stats = temporal.apply_strided(variables, inputs, config=self.config,
                                                 train=train, rng=rng, bn_momentum=bn_momentum)
            return {"pose": pose}, stats
        outputs, stats = mlp.apply(variables, inputs, config=self.config, train=train,
                                   rng=rng, bn_momentum=bn_momentum)
        named = {"pose": outputs.pose, "root": outputs.root, "scale": outputs.scale}
        return {k: v for k, v in named.items() if v is not None}, stats

    def predict(self, variables, keypoints) -> jax.Array:
        """Eval-mode outputs ``(..., T, J_out, 3)`` for sequences ``(..., T, J_in, C)``."""
        if hasattr(self.module, "network_predict"):
            return self.module.network_predict(variables, keypoints, config=self.config)
        if self.kind == "temporal":
            poses, _ = temporal.apply(variables, keypoints, config=self.config, train=False)
            return poses
        outputs, _ = mlp.apply(variables, keypoints, config=self.config, train=False)
        return outputs.pose


def kind_of(config) -> str:
    """The kind whose module defines ``config``'s class (``ValueError`` if none)."""
    for kind, module in KINDS.items():
        if type(config).__module__ == module.__name__:
            return kind
    raise ValueError(f"config: {type(config).__name__} is not a config of any network kind "
                     f"({sorted(KINDS)})")


def build(spec: Mapping[str, Any], **overrides: Any) -> Network:
    """A :class:`Network` from ``{kind, variant, overrides}``; keyword ``overrides`` win.

    Raises ``ValueError`` naming the field for an unknown kind or variant.
    """
    kind = spec["kind"]
    if kind not in KINDS:
        raise ValueError(f"model.kind: unknown network kind {kind!r}; expected one of "
                         f"{sorted(KINDS)}.")
    fields = {**dict(spec.get("overrides", {}) or {}), **overrides}
    if "filter_widths" in fields:  # ml_collections and JSON give lists
        fields["filter_widths"] = tuple(int(w) for w in fields["filter_widths"])
    if "heads" in fields:
        fields["heads"] = tuple(fields["heads"])
    return Network(kind, KINDS[kind].variant(spec["variant"], **fields))


def with_data_shapes(spec: Mapping[str, Any], *, num_joints_in: int, num_joints_out: int,
                     in_features: int) -> dict[str, Any]:
    """``spec`` with the data's joint counts and input features filled in where the spec
    does not set them."""
    out = dict(spec)
    overrides = dict(out.get("overrides", {}) or {})
    overrides.setdefault("num_joints_in", int(num_joints_in))
    overrides.setdefault("num_joints_out", int(num_joints_out))
    overrides.setdefault("in_features", int(in_features))
    out["overrides"] = overrides
    return out
