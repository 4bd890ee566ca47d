"""The shared solver driver: statuses, counts, carry stability, jit/vmap, maxiter 0."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpose.solvers import _loop
from jpose.solvers._loop import Status


def _halving(x, tol):
    """x <- x / 2 until |x| < tol: converges after ceil(log2(|x0| / tol)) steps."""
    def update(s):
        new = s / 2
        return new, jnp.abs(new) < tol
    return update


def test_iteration_counts_and_status_by_hand():
    out = _loop.iterate(jnp.float32(8.0), _halving(None, 1.0), max_iterations=100)
    # 8 -> 4 -> 2 -> 1 -> 0.5: converged after 4 updates.
    assert int(out.iterations) == 4 and int(out.status) == Status.CONVERGED
    assert float(out.state) == 0.5
    out = _loop.iterate(jnp.float32(8.0), _halving(None, 1.0), max_iterations=2)
    assert int(out.iterations) == 2 and int(out.status) == Status.MAX_ITERATIONS
    out = _loop.iterate(jnp.float32(8.0), _halving(None, 1.0), max_iterations=0)
    assert int(out.iterations) == 0 and int(out.status) == Status.MAX_ITERATIONS
    assert float(out.state) == 8.0
    out = _loop.iterate(jnp.float32(8.0), _halving(None, 1.0), max_iterations=100,
                        min_iterations=6)
    assert int(out.iterations) == 6
    assert _loop.status_name(out.status) == "converged"


def test_non_finite_stops_with_its_own_status():
    def blow(s):  # 10 -> 1e31 -> inf: the second update is the first non-finite state.
        return s * 1e30, jnp.asarray(False)
    out = _loop.iterate(jnp.float32(10.0), blow, max_iterations=50)
    assert int(out.status) == Status.NON_FINITE and int(out.iterations) == 2
    out = _loop.iterate(jnp.float32(jnp.nan), blow, max_iterations=50)
    assert int(out.status) == Status.NON_FINITE and int(out.iterations) == 0


def test_traced_budget_jit_and_vmap_agree_with_eager():
    def run(x0, budget):
        out = _loop.iterate(x0, _halving(None, 1.0), max_iterations=budget)
        return out.state, out.status, out.iterations

    x0 = jnp.asarray([8.0, 100.0, 0.75], jnp.float32)
    batched = jax.jit(jax.vmap(run, in_axes=(0, None)))(x0, jnp.int32(5))
    for i in range(3):
        s, st, it = run(x0[i], 5)
        assert float(batched[0][i]) == float(s)
        assert int(batched[1][i]) == int(st) and int(batched[2][i]) == int(it)
    # 8 converges in 4; 100 hits the budget of 5; 0.75 converges after 1 update.
    np.testing.assert_array_equal(batched[2], [4, 5, 1])
    np.testing.assert_array_equal(batched[1], [0, 1, 0])


def test_check_finite_names_the_input():
    with pytest.raises(ValueError, match="poses contains 1 NaN"):
        _loop.check_finite("poses", np.array([1.0, np.nan]))
    _loop.check_finite("poses", np.array([1.0, 2.0]))
