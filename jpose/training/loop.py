"""``train_and_evaluate(config, workdir)``: the one training loop every recipe runs on.

Order of work (STYLE habits 1-3, 15):

1. one mesh over all devices (``data`` axis); every stream's global batch must divide;
2. the recipe (``config.recipe.name``, :mod:`jpose.recipes`): its networks, built for the
   data's shapes, and its named predictors;
3. data (:mod:`jpose.training.streams`): named streams, random access by step, this
   process's slice only; the primary stream defines the epoch;
4. shapes first: ``jax.eval_shape`` of the init, shardings from the abstract state, then
   either restore the workdir's checkpoint into it or initialise directly sharded, and
   with ``config.init_from`` copy named networks from another run (a *stage*: fresh
   optimiser, step 0);
5. the loop: ``state, metrics = train_step(state, global_batch(step), rng)`` with the
   state donated; metrics stay on device until a log point (no per-step host sync),
   where they are checked -- non-finite, or a loss above ``config.max_loss`` (a run that
   diverges) -- *before* anything is saved;
6. checkpoints every ``checkpoint_every`` steps and at the end; the evaluators
   (``config.evals``) every ``eval_every`` steps and at the end; logs, curves and a
   progress bar on process 0.

The config and the data's shapes are stored with every checkpoint (and in
``<workdir>/config.json``), so :func:`restore_for_inference` needs only the workdir.
Returns the final evaluation summary (millimetres).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
from absl import logging

from jpose import evaluators, io, recipes
from jpose.recipes.base import network_variables
from jpose.training import checkpoint as ckpt_lib
from jpose.training import logs, optim, parallel, step as step_lib, streams as streams_lib

__all__ = ["NonFiniteLossError", "Run", "build_run", "train_and_evaluate",
           "restore_for_inference", "load_workdir_config", "make_evaluators", "with_data"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite, or grew past ``config.max_loss``."""


class Run(NamedTuple):
    """Everything a run is built from (no state)."""

    config: Any
    recipe: recipes.Recipe
    data: streams_lib.DataSets
    nets: dict
    predictors: dict
    streams: streams_lib.Streams | None
    tx: Any
    learning_rate: Any
    bn_momentum: Any


def _check_streams(config, recipe) -> None:
    missing = [s for s in recipe.streams if s not in dict(config.streams)]
    if missing:
        raise ValueError(f"streams: recipe {recipe.name!r} reads the streams "
                         f"{list(recipe.streams)} but the config does not define {missing}")


def build_run(config, *, data: streams_lib.DataSets | None = None, with_streams: bool = True,
              meta: Mapping[str, Any] | None = None) -> Run:
    """Recipe, networks, predictors, streams and optimiser of ``config``.

    ``meta`` (the data's shapes, as stored with a checkpoint) lets inference build the
    networks without loading any data (``data=None, with_streams=False``).
    """
    recipe = recipes.get(config.recipe.name)
    if data is None and (with_streams or meta is None):
        data = streams_lib.load_data(config)
    nets = recipe.networks(config, dict(meta) if meta is not None else data.meta)
    predictors = recipe.predictors(nets)
    streams = None
    steps_per_epoch = 1
    if with_streams:
        _check_streams(config, recipe)
        streams = streams_lib.make_streams(config, data, nets,
                                           process_index=jax.process_index(),
                                           process_count=jax.process_count())
        steps_per_epoch = streams.steps_per_epoch
    tx, lr = optim.make_optimizer(config.optimizer, steps_per_epoch)
    bn = optim.bn_momentum_schedule(config.bn_momentum.initial, config.bn_momentum.final,
                                    int(config.num_epochs), steps_per_epoch)
    return Run(config, recipe, data, nets, predictors, streams, tx, lr, bn)


def with_data(config, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A copy of ``config`` with ``config.data`` updated by ``overrides``."""
    c = ml_collections.ConfigDict(config.to_dict())
    c.data.update(dict(overrides))
    return c


def _eval_data(config, run: Run, name: str, overrides) -> streams_lib.EvalData:
    """The run's evaluation set, or another dataset's (``evals.<name>.data``)."""
    if not overrides:
        return streams_lib.EvalData(run.data.eval_sequences, run.data.eval_frames,
                                    run.data.layout, run.data.input_layout)
    other = streams_lib.load_eval_data(with_data(config, overrides))
    mine = (run.data.input_layout, run.data.layout)
    if (other.input_layout, other.layout) != mine:
        raise ValueError(f"evals.{name}.data: its joint layouts (2D {other.input_layout!r}, "
                         f"3D {other.layout!r}) differ from the training data's (2D "
                         f"{mine[0]!r}, 3D {mine[1]!r}); set data.layout in the overrides")
    return other


def make_evaluators(config, run: Run) -> dict:
    """``{name: evaluator}`` from ``config.evals = {name: {type, predictor, data}}``.

    ``data`` (optional) are ``config.data`` overrides naming another dataset whose
    evaluation set this evaluator runs on (cross-dataset protocols: train on Human3.6M,
    test on MPI-INF-3DHP); its joint layouts must be the run's.
    """
    out = {}
    for name, spec in dict(config.evals).items():
        spec = dict(spec)
        kind = spec.get("type", "h36m_protocols")
        if kind not in evaluators.TYPES:
            raise ValueError(f"evals.{name}.type: unknown evaluator {kind!r}; expected one of "
                             f"{sorted(evaluators.TYPES)}")
        predictor = spec.get("predictor", "pose")
        if predictor not in run.predictors:
            raise ValueError(f"evals.{name}.predictor: {predictor!r} is not one of the "
                             f"recipe's predictors {sorted(run.predictors)}")
        data = _eval_data(config, run, name, spec.get("data"))
        out[name] = evaluators.TYPES[kind](
            run.predictors[predictor], data.sequences, layouts=(data.input_layout, data.layout),
            flip=bool(spec.get("flip", config.eval.flip)),
            bucket=int(spec.get("bucket", config.eval.bucket)), frames=data.frames)
    if not out:
        raise ValueError("evals: the config defines no evaluator")
    return out


def _flush(pending, log, num_steps, max_loss: float = math.inf) -> dict[str, float]:
    """Fetches pending step metrics, checks them, returns their means."""
    fetched = jax.device_get([m for _, m in pending])
    for (step, _), values in zip(pending, fetched):
        bad = [k for k, v in values.items() if not np.isfinite(v)]
        if bad:
            raise NonFiniteLossError(
                f"Training stopped: {', '.join(bad)} became non-finite at step {step} "
                f"(of {num_steps}); no checkpoint was written after it. Lower the "
                f"learning rate or enable optimizer.clip_norm.")
        if float(values["loss"]) > max_loss:
            raise NonFiniteLossError(
                f"Training stopped: the loss diverged to {float(values['loss']):.3g} at step "
                f"{step} (of {num_steps}), above max_loss={max_loss:g}; no checkpoint was "
                f"written after it. Lower the learning rate or enable optimizer.clip_norm.")
    means = {k: float(np.mean([v[k] for v in fetched])) for k in fetched[0]}
    if log is not None:
        log.write("train", pending[-1][0] + 1, means)
    return means


def _abstract_state(run: Run, rng):
    init_fn = functools.partial(step_lib.init_state, run.recipe, run.nets, run.config, run.tx)
    return init_fn, jax.eval_shape(init_fn, rng)


def _restore_target(abstract, mesh):
    shardings = step_lib.state_shardings(abstract, mesh)
    return shardings, jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def _checkpoints(workdir: str) -> str:
    return os.path.join(workdir, "checkpoints")


def load_workdir_config(workdir: str) -> tuple[ml_collections.ConfigDict, dict]:
    """``(config, meta)`` of the run in ``workdir``, from its latest checkpoint record."""
    with ckpt_lib.CheckpointReader(_checkpoints(workdir), what=f"--workdir={workdir}") as r:
        record = r.record()
    if "config" not in record or "meta" not in record:
        raise ValueError(f"--workdir={workdir}: the checkpoint at step {r.step} has no stored "
                         "config (written by an older jpose); retrain it")
    config = ml_collections.ConfigDict(record["config"])
    config.lock()
    return config, record["meta"]


def _init_from(config, state, mesh) -> tuple[dict, dict[str, str]]:
    """Copies ``config.init_from.networks`` of the run in ``config.init_from.workdir``
    into ``state`` (params and batch-norm statistics; the optimiser stays fresh).

    Returns the new state and ``{"init_from.workdir": digest}``: the source checkpoint's
    identity for the fingerprint (its record, which holds its fingerprint and step)."""
    spec = config.get("init_from", None)
    workdir = (spec or {}).get("workdir", "") if spec is not None else ""
    if not workdir:
        return state, {}
    names = tuple((spec.get("networks", ()) or ())) or tuple(state["params"])
    with ckpt_lib.CheckpointReader(_checkpoints(workdir), what="init_from.workdir") as reader:
        tree = reader.metadata()
        wanted = {}
        for group in ("params", "batch_stats"):
            for name in names:
                if name not in tree[group]:
                    raise ValueError(f"init_from.networks: {workdir} has no network {name!r} "
                                     f"(it has {sorted(tree[group])})")
            wanted[group] = {n: tree[group][n] for n in names}
        sharding = parallel.replicated(mesh)
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                              wanted, is_leaf=lambda m: hasattr(m, "shape"))
        restored = {"state": reader.subtrees(target), "record": reader.record()}
        step = reader.step
    new = dict(state)
    for group in ("params", "batch_stats"):
        merged = dict(state[group])
        for name in names:
            if name not in merged:
                raise ValueError(f"init_from.networks: this recipe has no network {name!r}")
            got, have = restored["state"][group][name], merged[name]
            if jax.tree.structure(got) != jax.tree.structure(have) or any(
                    a.shape != b.shape for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(have))):
                raise ValueError(f"init_from: network {name!r} of {workdir} has another "
                                 "architecture than this run's")
            merged[name] = got
        new[group] = merged
    digest = json.dumps(restored["record"].get("fingerprint", {}), sort_keys=True)
    logging.info("Initialised %s from %s (step %d).", ", ".join(names), workdir, step)
    return new, {"init_from.workdir": hashlib.sha256(f"{digest}/{step}".encode()).hexdigest()}


def train_and_evaluate(config, workdir: str, *, progress: bool = True,
                       data: streams_lib.DataSets | None = None) -> dict:
    """Trains (resuming from ``workdir`` if it holds a checkpoint), then evaluates.

    ``data`` may be prebuilt with :func:`jpose.training.streams.load_data` (same
    config). Returns ``{"step", "protocols_mm", "per_action_mm", "evals"}`` (as written
    to ``eval.json``) plus, for in-process callers, ``"accumulator"`` (the first
    evaluator's accumulator), ``"variables"`` (host copies of the final params and
    batch statistics, networks by name), ``"run"`` (:class:`Run`) and ``"data"``.
    """
    mesh = parallel.make_mesh()
    chief = jax.process_index() == 0
    if chief:
        os.makedirs(workdir, exist_ok=True)
    run = build_run(config, data=data)
    for s in run.streams.streams.values():
        parallel.check_batch_size(int(s.batches.global_batch_size), mesh)
    steps_per_epoch = run.streams.steps_per_epoch
    num_steps = int(config.num_epochs) * steps_per_epoch
    if int(config.get("num_steps", 0) or 0) > 0:
        num_steps = int(config.num_steps)
    logging.info("Recipe %s, networks %s; %d steps (%d per epoch of stream %r) on %d devices.",
                 run.recipe.name, {k: (n.kind, n.config) for k, n in run.nets.items()},
                 num_steps, steps_per_epoch, run.streams.primary, mesh.devices.size)

    rng = jax.random.key(int(config.seed))
    init_rng, step_rng = jax.random.split(rng)
    init_fn, abstract = _abstract_state(run, init_rng)
    shardings, target = _restore_target(abstract, mesh)

    state = None
    # One manager per directory: a second one would race the first over cleaning up a
    # checkpoint left half-written by a killed run.
    checkpointer = ckpt_lib.Checkpointer(
        _checkpoints(workdir), save_every=int(config.checkpoint_every),
        keep=int(config.keep_checkpoints), config=config)
    if checkpointer.latest_step() is None or config.get("init_from", {}).get("workdir", ""):
        state = jax.jit(init_fn, out_shardings=shardings)(init_rng)
        state, resolved = _init_from(config, state, mesh)
        checkpointer.resolve(resolved)
    restored = checkpointer.restore(target)
    if restored is not None:
        state = restored[0]
    start = int(jax.device_get(state["step"]))
    if chief:
        io.save_json_atomic(os.path.join(workdir, "config.json"), ckpt_lib.plain_config(config))
    log = logs.MetricsLog(workdir, resume_step=start if restored else None) if chief else None

    boundaries = recipes.phase_boundaries(run.recipe, config)
    compiled_steps: dict[int, Any] = {}

    def train_step_for(step: int):
        """The jitted step of ``step``'s phase (one compile per phase, on first use)."""
        phase = recipes.phase_of(boundaries, step // steps_per_epoch)
        if phase not in compiled_steps:
            compiled_steps[phase] = step_lib.jit_train_step(
                step_lib.make_train_step(
                    run.recipe, run.nets, config, run.tx, learning_rate=run.learning_rate,
                    bn_momentum=run.bn_momentum, steps_per_epoch=steps_per_epoch,
                    phase=phase),
                abstract, mesh)
        return compiled_steps[phase]

    evals = make_evaluators(config, run)
    max_loss = float(config.get("max_loss", math.inf) or math.inf)

    def run_evals(step):
        variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
        results = {name: ev.run(variables) for name, ev in evals.items()}
        values = {f"{name}/{k}" if len(evals) > 1 else k: v
                  for name, (_, vals) in results.items() for k, v in vals.items()}
        if log is not None:
            log.write("eval", step, values)
            logs.plot_curves(log.path, os.path.join(workdir, "curves.png"))
        return results

    bar = None
    if chief and progress:
        from tqdm import tqdm
        bar = tqdm(total=num_steps, initial=start, desc="train", unit="step",
                   dynamic_ncols=True, mininterval=1.0)
    pending: list = []
    log_every = max(1, int(config.log_every))
    eval_every = int(config.eval_every)
    extra = {"meta": run.data.meta, "num_steps": num_steps}
    t0 = time.time()
    step = start
    try:
        for step in range(start, num_steps):
            batch = parallel.global_batch(run.streams.batch(step), mesh)
            state, step_metrics = train_step_for(step)(state, batch, step_rng)
            pending.append((step, step_metrics))
            done = step + 1
            due_ckpt = done % int(config.checkpoint_every) == 0 or done == num_steps
            if done % log_every == 0 or due_ckpt or done == num_steps:
                means = _flush(pending, log, num_steps, max_loss)
                pending = []
                if bar is not None:
                    bar.set_postfix(loss=f"{means['loss']:.4f}", refresh=False)
            if bar is not None:
                bar.update(1)
            if due_ckpt:
                checkpointer.save(done, state, force=done == num_steps, extra=extra)
            if eval_every > 0 and done % eval_every == 0 and done != num_steps:
                run_evals(done)
    except KeyboardInterrupt:
        last = checkpointer.latest_step()
        checkpointer.close()
        raise KeyboardInterrupt(
            f"interrupted at step {step} of {num_steps}; the last checkpoint is step "
            f"{last} in {_checkpoints(workdir)}: rerun the same command to resume") from None
    finally:
        if bar is not None:
            bar.close()
    checkpointer.close()
    logging.info("Trained %d steps in %.1f s.", num_steps - start, time.time() - t0)
    results = run_evals(num_steps)
    acc = next(iter(results.values()))[0]
    result = {"step": num_steps, "evals": {name: vals for name, (_, vals) in results.items()}}
    protocol_accs = [a for a, _ in results.values() if hasattr(a, "summary_mm")]
    if protocol_accs:  # the Human3.6M protocol table of the first such evaluator
        result.update(protocols_mm=protocol_accs[0].summary_mm(),
                      per_action_mm={k: protocol_accs[0].per_action_mm(k)
                                     for k in ("mpjpe", "p_mpjpe")})
    if chief:
        io.save_json_atomic(os.path.join(workdir, "eval.json"), result)
    result.update(accumulator=acc, run=run, data=run.data, variables=jax.device_get(
        {"params": state["params"], "batch_stats": state["batch_stats"]}))
    return result


class Restored(NamedTuple):
    config: Any
    run: Run
    variables: dict  # {"params": {net: ...}, "batch_stats": {net: ...}}
    meta: dict


def restore_for_inference(workdir: str, *, with_data: bool = False) -> Restored:
    """The run in ``workdir`` at its latest checkpoint: config, recipe, networks,
    predictors and variables, from the workdir alone. ``with_data`` also loads the
    evaluation set (``run.data``)."""
    config, meta = load_workdir_config(workdir)
    mesh = parallel.make_mesh()
    run = build_run(config, with_streams=False, meta=meta,
                    data=streams_lib.load_data(config) if with_data else None)
    init_fn, abstract = _abstract_state(run, jax.random.key(int(config.seed)))
    _, target = _restore_target(abstract, mesh)
    with ckpt_lib.CheckpointReader(_checkpoints(workdir), what=f"--workdir={workdir}") as r:
        restored = r.state(target)
    variables = {"params": restored["params"], "batch_stats": restored["batch_stats"]}
    return Restored(config, run, variables, meta)


def predictor_variables(restored: Restored, predictor: str) -> tuple[Any, dict]:
    """``(network, its variables)`` of a single-network predictor (for export)."""
    if predictor not in restored.run.predictors:
        raise ValueError(f"predictor: {predictor!r} is not one of the recipe's predictors "
                         f"{sorted(restored.run.predictors)}")
    name = restored.run.predictors[predictor].network
    return restored.run.nets[name], network_variables(restored.variables, name)
