"""Test doubles shared by the tests."""

import numpy as np


class FixedNetwork:
    """Stands in for a :class:`jpose.nets.network.Network`: returns the given poses (plus
    zero times its one parameter ``w``, so gradients flow), so a loss can be checked by
    hand."""

    def __init__(self, pose):
        self.pose = pose

    def apply(self, variables, inputs, *, train, rng=None, bn_momentum=0.0):
        return {"pose": self.pose + 0.0 * variables["params"]["w"]}, variables["batch_stats"]


def perturbed_batch_norm(variables, seed: int, *, scale: float):
    """Host copy of ``variables`` with non-identity batch-norm statistics (means
    N(0, scale), log-variances N(0, scale)), so an export that skipped or misapplied
    batch norm would differ from the model."""
    import jax

    rng = np.random.default_rng(seed)
    out = jax.tree.map(np.asarray, variables)
    for stats in out["batch_stats"].values():
        stats["mean"] = rng.normal(0.0, scale, stats["mean"].shape).astype(np.float32)
        stats["var"] = np.exp(rng.normal(0.0, scale, stats["var"].shape)).astype(np.float32)
    return out
