"""``train_and_evaluate(config, workdir)``: the training loop every launch script runs.

Order of work (STYLE habits 1-3, 15):

1. one mesh over all devices (``data`` axis); the global batch size must divide evenly;
2. data (``jpose.training.data``): random access by step, this process's slice only;
3. shapes first: ``jax.eval_shape`` of the init, shardings from the abstract state, then
   either restore the workdir's checkpoint into it or initialise directly sharded;
4. the loop: ``state, metrics = train_step(state, global_batch(step), rng)`` with the
   state donated; metrics stay on device until a log point (no per-step host sync), where
   they are checked for non-finite values *before* anything is saved;
5. checkpoints every ``checkpoint_every`` steps and at the end; evaluation every
   ``eval_every`` steps and at the end; logs, curves and progress bar on process 0.

Returns the final evaluation summary (millimetres).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from jpose.training import checkpoint as ckpt_lib
from jpose.training import data as data_lib
from jpose.training import evaluate as eval_lib
from jpose.training import logs, optim, parallel, step as step_lib
from jpose.training.models import make_lifter

__all__ = ["NonFiniteLossError", "train_and_evaluate", "restore_for_inference"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def _loss_fn(cfg: Mapping[str, Any]):
    name = cfg["loss"]["name"] if "loss" in cfg else "supervised"
    if name == "supervised":
        return step_lib.supervised_loss
    raise ValueError(f"loss.name: unknown loss {name!r}; expected 'supervised'.")


def _flush(pending, log, num_steps) -> dict[str, float]:
    """Fetches pending step metrics, checks them, returns their means."""
    fetched = jax.device_get([m for _, m in pending])
    for (step, _), values in zip(pending, fetched):
        bad = [k for k, v in values.items() if not np.isfinite(v)]
        if bad:
            raise NonFiniteLossError(
                f"Training stopped: {', '.join(bad)} became non-finite at step {step} "
                f"(of {num_steps}); no checkpoint was written after it. Lower the "
                f"learning rate or enable optimizer.clip_norm.")
    means = {k: float(np.mean([v[k] for v in fetched])) for k in fetched[0]}
    if log is not None:
        log.write("train", pending[-1][0] + 1, means)
    return means


def _build(config, mesh, data=None):
    if data is None:
        data = data_lib.build(config, process_index=jax.process_index(),
                              process_count=jax.process_count())
    model = make_lifter(data_lib.model_config(config, data))
    tx, lr = optim.make_optimizer(config.optimizer, data.steps_per_epoch)
    num_epochs = int(config.num_epochs)
    bn = optim.bn_momentum_schedule(config.bn_momentum.initial, config.bn_momentum.final,
                                    num_epochs, data.steps_per_epoch)
    return data, model, tx, lr, bn


def restore_for_inference(config, workdir: str):
    """``(model, variables, data)`` from the latest checkpoint of ``workdir``."""
    mesh = parallel.make_mesh()
    data, model, tx, _, _ = _build(config, mesh)
    rng = jax.random.key(int(config.seed))
    abstract = jax.eval_shape(functools.partial(step_lib.init_state, model, tx), rng)
    shardings = step_lib.state_shardings(abstract, mesh)
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
    checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1,
                                         keep=1, config=config)
    restored = checkpointer.restore(target)
    checkpointer.close()
    if restored is None:
        raise FileNotFoundError(f"No checkpoint in {os.path.join(workdir, 'checkpoints')}.")
    state = restored[0]
    return model, {"params": state["params"], "batch_stats": state["batch_stats"]}, data


def train_and_evaluate(config, workdir: str, *, progress: bool = True,
                       data: data_lib.TrainData | None = None) -> dict:
    """Trains (resuming from ``workdir`` if it holds a checkpoint), then evaluates.

    ``data`` may be prebuilt with :func:`jpose.training.data.build` (same config, this
    process's slice). Returns ``{"step", "protocols_mm", "per_action_mm"}`` (as written
    to ``eval.json``) plus, for in-process callers, ``"accumulator"`` (the
    :class:`~jpose.evaluation.ProtocolAccumulator`), ``"variables"`` (host copies of the
    final params and batch statistics), ``"model"`` and ``"data"``.
    """
    mesh = parallel.make_mesh()
    parallel.check_batch_size(int(config.global_batch_size), mesh)
    chief = jax.process_index() == 0
    if chief:
        os.makedirs(workdir, exist_ok=True)
    data, model, tx, lr, bn = _build(config, mesh, data)
    num_steps = int(config.num_epochs) * data.steps_per_epoch
    if int(config.get("num_steps", 0) or 0) > 0:
        num_steps = int(config.num_steps)
    logging.info("Model %s %s; %d steps (%d per epoch), global batch %d on %d devices.",
                 model.kind, model.config, num_steps, data.steps_per_epoch,
                 config.global_batch_size, mesh.devices.size)

    rng = jax.random.key(int(config.seed))
    init_rng, step_rng = jax.random.split(rng)
    init_fn = functools.partial(step_lib.init_state, model, tx)
    abstract = jax.eval_shape(init_fn, init_rng)
    shardings = step_lib.state_shardings(abstract, mesh)

    checkpointer = ckpt_lib.Checkpointer(
        os.path.join(workdir, "checkpoints"), save_every=int(config.checkpoint_every),
        keep=int(config.keep_checkpoints), config=config)
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
    restored = checkpointer.restore(target)
    if restored is not None:
        state = restored[0]
    else:
        state = jax.jit(init_fn, out_shardings=shardings)(init_rng)
    start = int(jax.device_get(state["step"]))
    log = logs.MetricsLog(workdir, resume_step=start if restored else None) if chief else None

    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(model, tx, _loss_fn(config), learning_rate=lr,
                                 bn_momentum=bn), abstract, mesh)
    flip = (data.layout, data.layout) if config.eval.flip else None
    predict_fn = eval_lib.make_predict_fn(model, flip_layouts=flip)

    def run_eval(step):
        variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
        acc = eval_lib.evaluate(model, variables, data.eval_sequences,
                                predict_fn=predict_fn, bucket=int(config.eval.bucket))
        summary = acc.summary_mm()
        values = {f"{k}_mm": v["action_wise"] for k, v in summary.items()}
        if log is not None:
            log.write("eval", step, values)
            logs.plot_curves(log.path, os.path.join(workdir, "curves.png"))
        return acc, values

    bar = None
    if chief and progress:
        from tqdm import tqdm
        bar = tqdm(total=num_steps, initial=start, desc="train", unit="step",
                   dynamic_ncols=True, mininterval=1.0)
    pending: list = []
    log_every = max(1, int(config.log_every))
    eval_every = int(config.eval_every)
    t0 = time.time()
    for step in range(start, num_steps):
        local = data.train.batch(step)
        batch = parallel.global_batch({k: local[k] for k in data_lib.BATCH_KEYS}, mesh)
        state, step_metrics = train_step(state, batch, step_rng)
        pending.append((step, step_metrics))
        done = step + 1
        due_ckpt = done % int(config.checkpoint_every) == 0 or done == num_steps
        if done % log_every == 0 or due_ckpt or done == num_steps:
            means = _flush(pending, log, num_steps)
            pending = []
            if bar is not None:
                bar.set_postfix(loss=f"{means['loss']:.4f}", refresh=False)
        if bar is not None:
            bar.update(1)
        if due_ckpt:
            checkpointer.save(done, state, force=done == num_steps)
        if eval_every > 0 and done % eval_every == 0 and done != num_steps:
            run_eval(done)
    if bar is not None:
        bar.close()
    checkpointer.close()
    logging.info("Trained %d steps in %.1f s.", num_steps - start, time.time() - t0)
    acc, values = run_eval(num_steps)
    result = {"step": num_steps, "protocols_mm": acc.summary_mm(),
              "per_action_mm": {k: acc.per_action_mm(k) for k, _ in
                                (("mpjpe", 0), ("p_mpjpe", 0))}}
    if chief:
        with open(os.path.join(workdir, "eval.json.tmp"), "w") as f:
            json.dump(result, f, indent=2)
        os.replace(os.path.join(workdir, "eval.json.tmp"), os.path.join(workdir, "eval.json"))
    result.update(accumulator=acc, model=model, data=data, variables=jax.device_get(
        {"params": state["params"], "batch_stats": state["batch_stats"]}))
    return result

