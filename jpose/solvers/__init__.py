"""Pure, jit-compiled solvers: frozen config + NamedTuple state + one ``lax.while_loop``.

* :mod:`jpose.solvers.trajectory_completion` -- low-rank + smooth completion of
  unreliable joints across a video (Li et al., ICCV 2019, Eq. 1) by the ALM; batched,
  padded and windowed forms.
* :mod:`jpose.solvers.nrsfm` -- hierarchical pose dictionary learning (orthographic NRSfM).
* :mod:`jpose.solvers.relative_pose` -- relative pose of two calibrated cameras from
  corresponding 2D joints (eight-point, RANSAC, refinement).
* :mod:`jpose.solvers.procrustes` -- orthogonal / similarity Procrustes (shared with the
  P-MPJPE metric).

Every solver reports a :class:`~jpose.solvers._loop.Status` and its iteration count.
Import the submodule you need (``from jpose.solvers import nrsfm``).
"""

from jpose.solvers._loop import Status, status_name

__all__ = ["Status", "status_name"]
