"""What a recipe is: pure functions over named networks and named streams.

A recipe is one seed method's training objective, written without a loop, I/O or
devices. The generic loop (:mod:`jpose.training.loop`) builds its networks, initialises
them, differentiates its loss over a batch of named streams, and evaluates and exports
its named predictors. Everything a recipe needs is an argument:

``networks(hp, meta) -> {name: Network}``
    ``hp`` is the run's (locked) config, ``meta`` the data's shapes and layouts
    (``num_joints_in``, ``num_joints_out``, ``in_features``, ``layout``,
    ``input_layout``). Build networks with :func:`jpose.nets.network.build`.
``init(rng, nets, hp) -> {"params": {name: ...}, "batch_stats": {name: ...}}``
    Default :func:`init_networks`: one independent key per network (sorted names).
``loss(params, batch_stats, batch, step, *, nets, hp) -> (loss, (batch_stats, metrics))``
    ``batch`` is ``{stream: {key: array}}`` (global arrays, sharded on ``data``);
    ``step`` a :class:`Step`. Returns the scalar to minimise, the networks' new
    batch-norm statistics and ``metrics = {name: (sum, count)}`` (logged as
    ``sum / count``, so padding and uneven shards average exactly).
``predictors(nets) -> {name: Predictor}``
    Named inference functions; the config's evaluators and export pick one by name.

``streams`` lists the stream names the loss reads; the loop refuses a config that does
not define them.

``phases(hp) -> (epoch, ...)`` (optional) lists the epochs of the primary stream at which
the loss changes form (a warm-up on labelled data alone, a stage switch). ``step.phase``
is then a *static* Python int -- the number of those boundaries reached -- and the loop
compiles one train step per phase. Prefer this to ``lax.cond`` on a traced epoch: XLA
on CPU runs convolutions inside a conditional an order of magnitude slower (measured:
0.09 s vs 1.4 s per semi-supervised step), and a phase costs one compile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax

__all__ = ["Step", "Predictor", "Recipe", "init_networks", "network_variables",
           "phase_boundaries", "phase_of"]


class Step(NamedTuple):
    """What a loss may know about time (all traced: no recompile per step)."""

    rng: jax.Array  # fold_in(run key, step): dropout and any other per-step randomness
    step: jax.Array  # int32 global step: warm-ups and ramps
    bn_momentum: jax.Array  # float32 batch-norm momentum (PyTorch convention)
    epoch: jax.Array | int = 0  # int32 epoch of the primary stream: ramps in epochs
    phase: int = 0  # a Python int (static): which of the recipe's phases this step is in


class Predictor(NamedTuple):
    """A named inference function of a recipe.

    ``fn(variables, keypoints (B, T, J_in, C)) -> (B, T, J_out, 3)`` metres in eval mode,
    with ``variables`` the whole ``{"params": {net: ...}, "batch_stats": {net: ...}}``.
    ``network`` names the network whose weights an export of this predictor holds;
    ``output`` is ``"pose"`` (root-relative, camera frame) or ``"trajectory"`` (the
    root's camera-frame position, ``J_out = 1``).
    """

    fn: Callable[[Any, jax.Array], jax.Array]
    network: str
    output: str = "pose"


class Recipe(NamedTuple):
    name: str
    networks: Callable[[Any, Mapping[str, Any]], dict]
    loss: Callable[..., tuple]
    predictors: Callable[[Mapping[str, Any]], dict[str, Predictor]]
    streams: tuple[str, ...]
    init: Callable[..., dict] | None = None  # None: init_networks
    phases: Callable[[Any], tuple[int, ...]] | None = None  # None: one phase


def init_networks(rng: jax.Array, nets: Mapping[str, Any], hp=None) -> dict:
    """Each network's ``init`` with its own key (``fold_in`` of its sorted position)."""
    del hp
    params, stats = {}, {}
    for i, name in enumerate(sorted(nets)):
        v = nets[name].init(jax.random.fold_in(rng, i))
        params[name], stats[name] = v["params"], v["batch_stats"]
    return {"params": params, "batch_stats": stats}


def network_variables(variables: Mapping[str, Any], name: str) -> dict:
    """One network's ``{"params", "batch_stats"}`` out of the recipe's variables."""
    return {"params": variables["params"][name], "batch_stats": variables["batch_stats"][name]}


def phase_boundaries(recipe: Recipe, hp) -> tuple[int, ...]:
    """The recipe's phase boundaries in epochs, sorted, positive ones only."""
    if recipe.phases is None:
        return ()
    return tuple(sorted(int(e) for e in recipe.phases(hp) if int(e) > 0))


def phase_of(boundaries: tuple[int, ...], epoch: int) -> int:
    """The phase of ``epoch``: how many boundaries it has reached."""
    return sum(int(epoch) >= b for b in boundaries)
