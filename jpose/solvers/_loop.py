"""The one iteration driver every jpose solver runs (STYLE habits 8-10).

A solver is a frozen config (static under ``jit``), a NamedTuple state, an ``init`` and an
``update``. :func:`iterate` runs ``update`` in a single ``lax.while_loop`` until it
reports convergence, the iterates stop being finite, or the iteration budget is spent,
and returns the final state with a :class:`Status` code and the iteration count. It
works under ``jit`` and ``vmap`` (each batch element keeps its own status and count: a
vmapped ``while_loop`` runs until all elements stop, and stopped elements are frozen),
with ``max_iterations`` static or traced, including 0.

Why ``while_loop``: solvers stop early on convergence, which ``scan`` cannot. The price
is that reverse-mode differentiation through the loop is unavailable; solvers that need
gradients document their choice (implicit differentiation at the solution).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Status", "LoopOutput", "iterate", "status_name", "all_finite", "check_finite",
           "is_concrete", "float_dtype"]


class Status(enum.IntEnum):
    """Outcome of a solver run (stored as int32 in results)."""

    RUNNING = -1  # internal: still iterating
    CONVERGED = 0
    MAX_ITERATIONS = 1
    NON_FINITE = 2


def status_name(code) -> str:
    """Host-side name of a status code (``"converged"``, ``"max_iterations"``, ...)."""
    return Status(int(code)).name.lower()


class LoopOutput(NamedTuple):
    state: Any  # the solver's final state
    status: jax.Array  # int32 Status code
    iterations: jax.Array  # int32 number of updates applied


def all_finite(tree) -> jax.Array:
    """True when every floating leaf of ``tree`` is finite (a scalar bool)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def is_concrete(x) -> bool:
    """True when ``x`` has values here (not a tracer under ``jit``/``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


def float_dtype(*arrays):
    """The widest floating dtype among ``arrays`` (the default float if none is floating).

    By hand because strict dtype promotion refuses float32 + float64.
    """
    floats = [jnp.asarray(a).dtype for a in arrays
              if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)]
    if not floats:
        return jnp.asarray(0.0).dtype
    return max(floats, key=lambda d: jnp.dtype(d).itemsize)


def check_finite(name: str, value) -> None:
    """Raises ``ValueError`` naming ``name`` if a concrete input holds NaN or inf.

    Traced inputs cannot be checked here; solvers then report ``NON_FINITE``.
    """
    if not is_concrete(value):
        return
    array = np.asarray(value)
    if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite values; the solver needs "
                         "finite inputs (mask missing entries instead).")


def iterate(state, update: Callable[[Any], tuple[Any, jax.Array]], *,
            max_iterations, min_iterations: int = 0) -> LoopOutput:
    """Runs ``state, converged = update(state)`` in one ``lax.while_loop``.

    Args:
      state: the initial solver state (a pytree; its structure, shapes and dtypes must be
        preserved by ``update``).
      update: one iteration; returns the new state and a scalar bool "converged".
      max_iterations: iteration budget (int or traced int32); 0 returns ``state`` with
        status ``MAX_ITERATIONS``.
      min_iterations: convergence is not accepted before this many updates.
    Returns:
      :class:`LoopOutput`. A non-finite state stops the loop with ``NON_FINITE``; the
      returned state is then the first non-finite one (so callers can see where).
    """
    max_iterations = jnp.asarray(max_iterations, jnp.int32)
    running = jnp.int32(Status.RUNNING)
    initial_status = jnp.where(max_iterations <= 0, jnp.int32(Status.MAX_ITERATIONS), running)
    initial_status = jnp.where(all_finite(state), initial_status, jnp.int32(Status.NON_FINITE))

    def cond(carry):
        _, status, _ = carry
        return status == running

    def body(carry):
        current, _, count = carry
        new, converged = update(current)
        count = count + 1
        status = jnp.where(count >= max_iterations, jnp.int32(Status.MAX_ITERATIONS), running)
        status = jnp.where(jnp.logical_and(converged, count >= min_iterations),
                           jnp.int32(Status.CONVERGED), status)
        status = jnp.where(all_finite(new), status, jnp.int32(Status.NON_FINITE))
        return new, status, count

    final, status, count = jax.lax.while_loop(
        cond, body, (state, initial_status, jnp.zeros((), jnp.int32)))
    return LoopOutput(final, status, count)
