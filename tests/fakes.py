"""Test doubles shared by the recipe tests."""


class FixedNetwork:
    """Stands in for a :class:`jpose.nets.network.Network`: returns the given poses (plus
    zero times its one parameter ``w``, so gradients flow), so a loss can be checked by
    hand."""

    def __init__(self, pose):
        self.pose = pose

    def apply(self, variables, inputs, *, train, rng=None, bn_momentum=0.0):
        return {"pose": self.pose + 0.0 * variables["params"]["w"]}, variables["batch_stats"]
