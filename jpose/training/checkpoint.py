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

The record also stores the whole config, so evaluation and export need only the workdir.

Compatibility: a workdir whose checkpoint was written under another config (anything but
:data:`ALLOWED_CHANGES`) or from other input files (compared by sha256) raises
:class:`IncompatibleCheckpointError` naming the differing fields, and nothing in the
workdir is changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

__all__ = ["IncompatibleCheckpointError", "Checkpointer", "CheckpointReader", "fingerprint",
           "plain_config", "ALLOWED_CHANGES", "file_sha256"]

#: Config fields that may change between a run and its resume: they do not change the
#: training trajectory (logging, evaluation and checkpoint cadence, run length, export).
#: Everything else -- model, recipe, optimiser, schedules, data, streams, seed, batch
#: sizes, ``bn_momentum`` -- must match, or the resume is refused.
ALLOWED_CHANGES = ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                   "num_steps", "eval", "evals", "export", "max_loss", "boost",
                   "data.max_eval_sequences")


class IncompatibleCheckpointError(ValueError):
    """The workdir holds a checkpoint of a run with another config."""


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def plain_config(config) -> dict[str, Any]:
    """The config as JSON-able plain dicts and lists."""
    return json.loads(json.dumps(_to_plain(config)))


def fingerprint(config, *, resolved: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What must match for a resume: the whole config minus :data:`ALLOWED_CHANGES`,
    with every field that names an existing file replaced by the file's sha256 (so a
    changed file is caught and a moved one is not), and ``resolved`` (dotted field ->
    digest, e.g. the ``init_from`` run's checkpoint) substituted."""
    plain = plain_config(config)
    for dotted in ALLOWED_CHANGES:
        *parents, leaf = dotted.split(".")
        node = plain
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)

    def files(node):
        if isinstance(node, dict):
            return {k: files(v) for k, v in node.items()}
        if isinstance(node, list):
            return [files(v) for v in node]
        if isinstance(node, str) and node and os.path.isfile(node):
            return {"sha256": file_sha256(node)}
        return node

    plain = files(plain)
    _substitute(plain, resolved or {})
    return plain


def _substitute(fp: dict, resolved: Mapping[str, str]) -> None:
    """In place: the dotted fields of ``resolved`` become ``{"sha256": digest}``."""
    for dotted, digest in resolved.items():
        *parents, leaf = dotted.split(".")
        node = fp
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = {"sha256": digest}


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
                 config: Mapping[str, Any], resolved: Mapping[str, str] | None = None):
        self.directory = os.path.abspath(directory)
        self._fingerprint = fingerprint(config, resolved=resolved)
        self._config = plain_config(config)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                save_interval_steps=max(1, int(save_every)), max_to_keep=int(keep),
                create=True, cleanup_tmp_directories=True),
            item_names=("state", "record"),
        )

    def resolve(self, resolved: Mapping[str, str]) -> None:
        """Substitutes digests (e.g. the ``init_from`` run's) into the fingerprint."""
        _substitute(self._fingerprint, resolved)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def record(self, step: int | None = None) -> dict | None:
        """The JSON record (fingerprint, config, step) of checkpoint ``step`` (latest)."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        return self._manager.restore(step, args=ocp.args.Composite(
            record=ocp.args.JsonRestore()))["record"]

    def check_compatible(self) -> None:
        """Raises :class:`IncompatibleCheckpointError` if the latest record differs."""
        step = self.latest_step()
        if step is None:
            return
        record = self.record(step)
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
        record = {"fingerprint": self._fingerprint, "config": self._config, "step": int(step),
                  **(extra or {})}
        return self._manager.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)),
            force=force)

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


class CheckpointReader:
    """Read-only access to another run's checkpoints (evaluation, export, ``init_from``).

    Unlike :class:`Checkpointer` it creates nothing and never cleans up temporary
    directories, so it can read a run that is still training. Its PyTree handler can
    restore a *subtree* of the saved state (:meth:`subtrees`). A context manager.
    """

    def __init__(self, directory: str, *, what: str):
        self.directory = os.path.abspath(directory)
        if not os.path.isdir(self.directory):
            raise FileNotFoundError(f"{what}: no checkpoints directory ({directory}); "
                                    "train there first")
        self._manager = ocp.CheckpointManager(self.directory, item_handlers={
            "state": ocp.PyTreeCheckpointHandler(), "record": ocp.JsonCheckpointHandler()})
        self.step = self._manager.latest_step()
        if self.step is None:
            self._manager.close()
            raise FileNotFoundError(f"{what}: {directory} holds no checkpoint")

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc) -> None:
        self._manager.close()

    def record(self) -> dict:
        """The latest checkpoint's JSON record (fingerprint, config, step, meta)."""
        return self._manager.restore(self.step, args=ocp.args.Composite(
            record=ocp.args.JsonRestore()))["record"]

    def state(self, abstract_state) -> Any:
        """The latest state restored into ``abstract_state``'s shapes and shardings."""
        return self._manager.restore(self.step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(item=abstract_state, restore_args=_restore_args(
                abstract_state))))["state"]

    def metadata(self) -> Any:
        """The saved state's tree of array metadata (``.shape``, ``.dtype``)."""
        meta = self._manager.item_metadata(self.step)["state"]
        return getattr(meta, "tree", meta)

    def subtrees(self, target) -> Any:
        """The saved arrays of ``target``'s subtree (``ShapeDtypeStruct`` leaves with
        shardings), the rest of the state left unread."""
        return self._manager.restore(self.step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(item=target, restore_args=_restore_args(target),
                                         partial_restore=True)))["state"]


def _restore_args(target):
    return jax.tree.map(lambda t: ocp.ArrayRestoreArgs(sharding=t.sharding), target)


def abstract_with_shardings(state) -> Any:
    """``ShapeDtypeStruct`` leaves carrying each array's sharding (a restore target)."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
