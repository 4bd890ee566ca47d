"""Checkpoints with exact resume (orbax ``CheckpointManager``).

A checkpoint holds the train state (params, batch-norm statistics, optimiser state,
step) and a JSON record of the run: the config fields that determine the training
trajectory and the data position. The data pipeline is random access by step
(``jpose.datasets.pipelines``), and per-step randomness is folded from the step, so the
step *is* the data-order and RNG state: a run killed at any point and restarted from its
last checkpoint continues exactly as if never stopped.

Saves are atomic: orbax writes to a temporary directory and renames it on commit, so a
kill mid-save leaves the previous checkpoints intact. Restoring into an abstract state
with shardings (STYLE habit 2 and 15) places the arrays directly on the mesh.

Compatibility: a workdir whose checkpoint was written under a different model, optimiser,
data or seed raises :class:`IncompatibleCheckpointError` naming the differing fields, and
nothing in the workdir is changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

__all__ = ["IncompatibleCheckpointError", "Checkpointer", "fingerprint"]

# Config sections that change the training trajectory: resuming under other values would
# silently mix two runs. (Logging, evaluation and step-count fields may change.)
_TRAJECTORY_KEYS = ("model", "optimizer", "data", "loss", "seed", "global_batch_size",
                    "num_epochs")


class IncompatibleCheckpointError(ValueError):
    """The workdir holds a checkpoint of a run with another config."""


def fingerprint(config: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able part of ``config`` that must match for a resume."""
    plain = json.loads(json.dumps(
        {k: _to_plain(config[k]) for k in _TRAJECTORY_KEYS if k in config}))
    return plain


def _to_plain(value):
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _diff(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: checkpoint {a!r} vs config {b!r}"]


class Checkpointer:
    """Thin wrapper over ``ocp.CheckpointManager`` for the train state and run record."""

    def __init__(self, directory: str, *, save_every: int, keep: int,
                 config: Mapping[str, Any]):
        self.directory = os.path.abspath(directory)
        self._fingerprint = fingerprint(config)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                save_interval_steps=max(1, int(save_every)), max_to_keep=int(keep),
                create=True, cleanup_tmp_directories=True),
            item_names=("state", "record"),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def check_compatible(self) -> None:
        """Raises :class:`IncompatibleCheckpointError` if the latest record differs."""
        step = self.latest_step()
        if step is None:
            return
        record = self._manager.restore(step, args=ocp.args.Composite(
            record=ocp.args.JsonRestore()))["record"]
        diffs = _diff(record.get("fingerprint", {}), self._fingerprint)
        if diffs:
            raise IncompatibleCheckpointError(
                f"The checkpoint at step {step} in {self.directory} was written by a run "
                f"with another config, so it cannot be resumed (it was left untouched). "
                f"Differences: {'; '.join(diffs)}. Use another --workdir, or restore the "
                f"original config.")

    def restore(self, abstract_state) -> tuple[Any, dict] | None:
        """The latest ``(state, record)`` restored into ``abstract_state``'s shardings,
        or None when the directory holds no checkpoint."""
        step = self.latest_step()
        if step is None:
            return None
        self.check_compatible()
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                record=ocp.args.JsonRestore()))
        except (ValueError, KeyError, TypeError) as e:
            raise IncompatibleCheckpointError(
                f"The checkpoint at step {step} in {self.directory} does not match this "
                f"model's state structure ({e}); it was left untouched.") from e
        logging.info("Restored checkpoint at step %d from %s.", step, self.directory)
        return restored["state"], restored["record"]

    def save(self, step: int, state, *, force: bool = False, extra: Mapping | None = None
             ) -> bool:
        """Saves (asynchronously) when ``step`` is on the interval or ``force``."""
        record = {"fingerprint": self._fingerprint, "step": int(step), **(extra or {})}
        return self._manager.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)),
            force=force)

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def abstract_with_shardings(state) -> Any:
    """``ShapeDtypeStruct`` leaves carrying each array's sharding (a restore target)."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
