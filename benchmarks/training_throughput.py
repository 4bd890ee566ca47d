"""Training throughput of the VideoPose3D temporal model (strided single-frame form).

Usage:
  python benchmarks/training_throughput.py                      # 27/81/243 frames, batch 1024
  python benchmarks/training_throughput.py --fields 27 --steps 5 --reps 5
  python benchmarks/training_throughput.py --with_pipeline      # + the real data pipeline
  python benchmarks/training_throughput.py --breakdown          # where the step time goes
  python benchmarks/training_throughput.py --hugepages          # glibc THP for big buffers

One *clip* is one receptive-field window -> one output frame (VideoPose3D's
``TemporalModelOptimized1f`` training form). The step is the real one:
``jpose.training.step.make_train_step`` + ``jit_train_step`` (state donated, batch sharded
on a ``data`` mesh over all local devices, state replicated), AMSGrad
(``optim.make_optimizer``, ``amsgrad_epoch_decay``), supervised MPJPE loss, dropout 0.25
on, batch norm in train mode with the momentum schedule; variants ``videopose_{rf}f``
(1024 channels, 17 joints in and out), float32.

Data: random windows ``(B, rf, 17, 2)`` and targets already on the device (the loader has
its own benchmark, ``benchmarks/loader_throughput.py``). ``--with_pipeline`` also times
the loop as ``jpose.training.loop`` runs it: ``temporal_windows`` over synthetic
sequences, ``training_batches(..., flip_augment='h36m_17').batch(k)`` on the host and
``parallel.global_batch`` each step (JAX's async dispatch lets the host build batch k+1
while step k runs, as in the real loop), and the host side alone ("host only").

Each field is compiled once (AOT ``lower().compile()``); ``--warmup`` untimed steps, then
``--reps`` repetitions of ``--steps`` consecutive steps, each ended by
``block_until_ready``. The table shows the best repetition (the CPU is shared: best-of-N
is the number that measures the code, the median says how noisy the machine was). It also
shows this process's CPU time per step: ``cores busy`` = CPU / wall (2 on an idle 2-core
machine), and ``clips/CPU-s``, a throughput that other jobs' load hardly moves (a
conservative stand-in for an idle machine's clips/s).

FLOP columns: ``model GFLOP/s`` = 3 x ``temporal.flops_per_frame`` per clip (training ~
forward + 2 x forward for the backward pass), as the task defines it. That function counts
the *sequence* form's cost per output frame; the strided form computes every layer on
``rf / prod(widths so far)`` frames per clip: 2.1x (27f), 4.5x (81f), 10.4x (243f) more.
``exec GFLOP/s`` counts what the strided step executes (3 x
:func:`strided_flops_per_clip`): the number to compare with the machine's peak.

``--breakdown`` times parts alone: the step with dropout 0, forward, forward + backward,
the AMSGrad update, the model's convolutions alone (forward + backward), and the dropout
masks drawn two ways (``jax.random.bernoulli``: one 32-bit threefry draw per element,
which JAX lowers on CPU as a rolled 5-iteration loop over the whole array; and
:func:`bytes_bernoulli`: 8 bits per element).

Reference (task brief): the original PyTorch implementation on this CPU at batch 1024:
~490 clips/s (27f), ~210 (81f), ~80 (243f).

Measured (2-core AMD EPYC (Zen 5, AVX-512) VM, jax 0.10.2, best of 3 x 4 steps, load ~2
i.e. this job alone, ``--hugepages --with_pipeline``):

  field  ms/step  clips/s  exec GFLOP/s  vs PyTorch  cores busy  pipeline clips/s
     27      465    2,204           235        4.50        1.90             2,179
     81    1,521      673           232        3.21        1.82               638
    243    5,228      196           207        2.45        1.83               204

Without ``--hugepages``: 564 / 1,673 / 4,914 ms (98k / 286k / 864k page faults per step:
XLA:CPU allocates its multi-GB temporaries afresh every step and glibc maps them in
4 KiB pages; with THP ~1-4k faults; it helps at 27f (-18%), not at 243f). Under other
jobs' load (load average 5 on 2 cores) the same runs gave 0.9-2.5x PyTorch with ``cores
busy`` 0.6-1.0; ``clips/CPU-s`` stayed at ~1,160 / ~360 / ~108. The host pipeline costs 1
/ 2 / 9 ms per batch: the loader is not a bottleneck. ``--breakdown`` at 27f (best ms of a
490 ms step; load ~1.5): convolutions alone 321 (~340 GFLOP/s), dropout masks 77 (23 with
8-bit draws; the step with dropout 0: 427), AMSGrad 11, the rest (batch norm, ReLU,
residuals, loss, layout copies) ~80.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import resource
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ml_collections

from jpose.nets import network, temporal
from jpose.objectives import supervised as objectives
from jpose.recipes import supervised
from jpose.training import optim, parallel
from jpose.training import step as step_lib
from jpose.training import streams as streams_lib

PYTORCH_CLIPS_PER_S = {27: 490.0, 81: 210.0, 243: 80.0}
NUM_JOINTS = 17


def strided_flops_per_clip(cfg: temporal.TemporalConfig) -> int:
    """2 x conv MACs of one forward pass of the strided form on one window (one clip)."""
    c, fw = cfg.channels, cfg.filter_widths
    frames = cfg.receptive_field // fw[0]  # output frames of the expand conv
    macs = frames * cfg.num_joints_in * cfg.in_features * c * fw[0]
    for w in fw[1:]:
        frames //= w
        macs += frames * (c * c * w + c * c)
    macs += c * cfg.num_joints_out * 3
    return 2 * macs


def random_batch(rf: int, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A host batch with the keys and dtypes a stream produces (``streams.DEVICE_KEYS``)."""
    rng = np.random.default_rng(seed)
    return {
        "inputs": rng.uniform(-1, 1, (batch, rf, NUM_JOINTS, 2)).astype(np.float32),
        "poses_3d": rng.normal(0, 0.3, (batch, 1, NUM_JOINTS, 3)).astype(np.float32),
        "trajectory": rng.normal(0, 1, (batch, 1, 3)).astype(np.float32),
        "weight": np.ones(batch, np.float32),
    }


class Timing(NamedTuple):
    """Per step, best repetition (by wall time); ``median_s`` over repetitions."""

    wall_s: float
    median_s: float
    cpu_s: float  # user + system CPU time of this process: cpu_s / wall_s = cores kept busy
    sys_s: float  # of which in the kernel (mostly page faults on fresh buffers)
    faults: float  # minor page faults


def time_loop(run_steps, steps: int, reps: int) -> Timing:
    """Times ``reps`` repetitions of ``run_steps(steps)`` (which must block at its end)."""
    samples = []
    for _ in range(reps):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        run_steps(steps)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        sys_s = r1.ru_stime - r0.ru_stime
        cpu = r1.ru_utime - r0.ru_utime + sys_s
        samples.append((wall / steps, cpu / steps, sys_s / steps,
                        (r1.ru_minflt - r0.ru_minflt) / steps))
    best = min(samples)
    return Timing(best[0], float(np.median([x[0] for x in samples])), *best[1:])


def time_call(compiled, args, reps: int) -> Timing:
    """``time_loop`` for a compiled function without donation, one call per repetition."""
    jax.block_until_ready(compiled(*args))  # warm-up
    return time_loop(lambda n: [jax.block_until_ready(compiled(*args)) for _ in range(n)],
                     1, reps)


def make_parts(rf: int, *, steps_per_epoch: int = 1000, overrides=None):
    """``(model, tx, train_step)``: the loop's supervised recipe for ``videopose_{rf}f``.

    The step takes ``{"labelled": batch}``, as the loop's streams give it."""
    hp = ml_collections.ConfigDict({
        "model": {"kind": "temporal", "variant": f"videopose_{rf}f",
                  "overrides": dict(overrides or {})},
        "recipe": {"name": "supervised", "stream": "labelled", "trajectory": False}})
    nets = supervised.networks(hp, {"num_joints_in": NUM_JOINTS, "num_joints_out": NUM_JOINTS,
                                    "in_features": 2})
    tx, lr = optim.make_optimizer(
        {"name": "amsgrad_epoch_decay", "learning_rate": 1e-3, "lr_decay": 0.95},
        steps_per_epoch)
    bn = optim.bn_momentum_schedule(0.1, 0.001, 80, steps_per_epoch)
    train_step = step_lib.make_train_step(supervised.RECIPE, nets, hp, tx,
                                          learning_rate=lr, bn_momentum=bn)
    init_fn = functools.partial(step_lib.init_state, supervised.RECIPE, nets, hp, tx)
    return nets["pose"], tx, train_step, init_fn


def build_step(rf: int, batch_size: int, mesh, *, overrides=None):
    """``(model, compiled_step, state, compile_s)``: the jitted, donated, sharded step."""
    model, tx, train_step, init_fn = make_parts(rf, overrides=overrides)
    rng = jax.random.key(0)
    abstract = jax.eval_shape(init_fn, rng)
    state = jax.jit(init_fn, out_shardings=step_lib.state_shardings(abstract, mesh))(rng)
    jitted = step_lib.jit_train_step(train_step, abstract, mesh)
    example = parallel.global_batch({"labelled": random_batch(rf, batch_size)}, mesh)
    t0 = time.perf_counter()
    compiled = jitted.lower(state, example, rng).compile()
    return model, compiled, state, time.perf_counter() - t0


def synthetic_batches(rf: int, cfg: temporal.TemporalConfig, args):
    """The real host pipeline over ``--pipeline_frames`` synthetic frames (2,500-frame takes)."""
    from jpose.datasets import pipelines as pl  # only needed here

    rng = np.random.default_rng(0)
    n_seq = max(1, args.pipeline_frames // 2500)
    inputs = [rng.uniform(-1, 1, (2500, NUM_JOINTS, 2)).astype(np.float32) for _ in range(n_seq)]
    poses = [rng.normal(0, 0.3, (2500, NUM_JOINTS, 3)).astype(np.float32) for _ in range(n_seq)]
    traj = [rng.normal(0, 1, (2500, 3)).astype(np.float32) for _ in range(n_seq)]
    seqs = pl.sequences_from_arrays(inputs, poses, traj, layout="h36m_17")
    windows = pl.temporal_windows(seqs, receptive_field=rf, padding=cfg.padding)
    return pl.training_batches(windows, global_batch_size=args.batch, seed=0,
                               flip_augment="h36m_17")


def bench_field(rf, args, mesh, *, overrides=None):
    """``(config, compile_s, {mode: Timing}, final loss)`` for one receptive field."""
    model, compiled, state, compile_s = build_step(rf, args.batch, mesh, overrides=overrides)
    rng = jax.random.key(1)
    batch = parallel.global_batch({"labelled": random_batch(rf, args.batch)}, mesh)
    box = {"state": state}  # the step donates its state: always carry the newest one

    def run_memory(n):
        s = box["state"]
        for _ in range(n):
            s, metrics = compiled(s, batch, rng)
        jax.block_until_ready((s, metrics))
        box["state"] = s

    run_memory(args.warmup)
    timings = {"memory": time_loop(run_memory, args.steps, args.reps)}

    if args.with_pipeline:
        tb = synthetic_batches(rf, model.config, args)
        counter = {"k": 0}

        def run_pipeline(n):
            # As jpose.training.loop: host batch k, global array, step (dispatched async, so
            # batch k + 1 is gathered while step k runs).
            s = box["state"]
            for _ in range(n):
                local = tb.batch(counter["k"])
                counter["k"] += 1
                gb = parallel.global_batch(
                    {"labelled": {k: local[k] for k in streams_lib.DEVICE_KEYS if k in local}}, mesh)
                s, metrics = compiled(s, gb, rng)
            jax.block_until_ready((s, metrics))
            box["state"] = s

        run_pipeline(args.warmup)
        timings["pipeline"] = time_loop(run_pipeline, args.steps, args.reps)

        def run_host(n):  # the host side alone, no device work in flight
            for i in range(n):
                local = tb.batch(counter["k"] + i)
                gb = parallel.global_batch(
                    {"labelled": {k: local[k] for k in streams_lib.DEVICE_KEYS if k in local}}, mesh)
            jax.block_until_ready(gb)

        timings["pipeline host only"] = time_loop(run_host, args.steps, args.reps)

    # A broken step would time garbage: check that the run stayed finite.
    box["state"], metrics = compiled(box["state"], batch, rng)
    loss = float(jax.device_get(metrics["loss"]))
    if not np.isfinite(loss):
        raise FloatingPointError(f"{rf}f: non-finite loss {loss}")
    return model.config, compile_s, timings, loss


# ----------------------------------------------------------------------------- breakdown


def bytes_bernoulli(key, p: float, shape) -> jax.Array:
    """Bernoulli(p) mask from 8 random bits per element (4 elements per 32-bit draw).

    Exact when ``256 p`` is an integer (p = 0.75: keep if byte < 192); threefry then runs
    on a quarter of the elements that ``jax.random.bernoulli`` draws for.
    """
    n = math.prod(shape)
    words = jax.random.bits(key, (-(-n // 4),), jnp.uint32)
    octets = jax.lax.bitcast_convert_type(words, jnp.uint8).reshape(-1)[:n].reshape(shape)
    return octets < jnp.uint8(round(256 * p))


def dropout_shapes(cfg: temporal.TemporalConfig, batch: int) -> list[tuple[int, ...]]:
    """Shapes of the activations the strided form drops out (one per BN/ReLU)."""
    frames = cfg.receptive_field // cfg.filter_widths[0]
    shapes = [(batch, frames, cfg.channels)]
    for w in cfg.filter_widths[1:]:
        frames //= w
        shapes += [(batch, frames, cfg.channels)] * 2
    return shapes


def breakdown(rf: int, args, mesh) -> list[tuple[str, Timing]]:
    """Where one training step's time goes: ablations and parts, each timed alone."""
    rows = []
    cfg0, _, t, _ = bench_field(rf, args, mesh)
    rows.append(("train step (as above)", t["memory"]))
    _, _, t, _ = bench_field(rf, args, mesh, overrides={"dropout": 0.0})
    rows.append(("train step, dropout 0", t["memory"]))

    model, tx, _, _ = make_parts(rf)
    variables = model.init(jax.random.key(0))
    params, stats = variables["params"], variables["batch_stats"]
    batch = parallel.global_batch(random_batch(rf, args.batch), mesh)
    rng = jax.random.key(1)

    def loss_fn(params, stats, batch, rng):
        out, _ = model.apply({"params": params, "batch_stats": stats}, batch["inputs"],
                             train=True, rng=rng, bn_momentum=0.1)
        per_joint = objectives.mpjpe_loss(out["pose"], batch["poses_3d"])
        total, count = supervised.masked_mean(per_joint, batch["weight"])
        return total / count

    args_fb = (params, stats, batch, rng)
    rows.append(("forward (train mode)", time_call(
        jax.jit(loss_fn).lower(*args_fb).compile(), args_fb, args.reps)))
    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    rows.append(("forward + backward", time_call(
        grad_fn.lower(*args_fb).compile(), args_fb, args.reps)))

    grads = grad_fn(*args_fb)[1]
    opt_state = tx.init(params)

    def update(grads, opt_state, params):
        with jax.numpy_dtype_promotion("standard"):  # as in step.py
            updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    args_u = (grads, opt_state, params)
    rows.append(("AMSGrad update", time_call(
        jax.jit(update).lower(*args_u).compile(), args_u, args.reps)))

    def convs(params, windows):
        # The model's convolutions alone (same kernels, same lax call), no BN/ReLU/dropout.
        def conv(h, kernel):
            return jax.lax.conv_general_dilated(h, kernel, (kernel.shape[0],), "VALID",
                                                dimension_numbers=("NWC", "WIO", "NWC"))

        h = conv(windows.reshape(windows.shape[:2] + (-1,)), params["expand_conv"]["kernel"])
        for i in range(len(cfg0.filter_widths) - 1):
            h = conv(conv(h, params[f"block{i}_conv"]["kernel"]),
                     params[f"block{i}_pointwise"]["kernel"])
        return jnp.mean(jnp.square(conv(h, params["shrink_conv"]["kernel"])))

    args_c = (params, batch["inputs"])
    rows.append(("convs only, forward + backward", time_call(
        jax.jit(jax.grad(convs)).lower(*args_c).compile(), args_c, args.reps)))

    shapes = dropout_shapes(cfg0, args.batch)
    n = sum(math.prod(s) for s in shapes) / 1e6
    for name, draw in (("jax.random.bernoulli", jax.random.bernoulli),
                       ("8 bits per element", bytes_bernoulli)):
        def masks(key, draw=draw):
            keys = jax.random.split(key, len(shapes))
            return [draw(k, 1.0 - cfg0.dropout, s) for k, s in zip(keys, shapes)]

        rows.append((f"dropout masks ({n:.0f}M), {name}", time_call(
            jax.jit(masks).lower(rng).compile(), (rng,), args.reps)))
    return rows


# ----------------------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fields", type=int, nargs="+", default=[27, 81, 243],
                        choices=[27, 81, 243])
    parser.add_argument("--batch", type=int, default=1024, help="global batch (clips/step)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repetition")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--reps", type=int, default=3, help="repetitions; the best is shown")
    parser.add_argument("--with_pipeline", action="store_true",
                        help="also time the loop with the real host data pipeline")
    parser.add_argument("--pipeline_frames", type=int, default=250_000,
                        help="synthetic training frames for --with_pipeline")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the parts of a step (ablations) per field")
    parser.add_argument("--hugepages", action="store_true",
                        help="re-run this script with GLIBC_TUNABLES=glibc.malloc.hugetlb=1")
    args = parser.parse_args()
    if args.hugepages and "hugetlb" not in os.environ.get("GLIBC_TUNABLES", ""):
        # glibc reads its tunables at process start: re-execute with them set.
        tunables = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"),
                                          "glibc.malloc.hugetlb=1"]))
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  {**os.environ, "GLIBC_TUNABLES": tunables})

    mesh = parallel.make_mesh(jax.local_devices())
    parallel.check_batch_size(args.batch, mesh)
    print(f"jax {jax.__version__}, {len(jax.local_devices())} x {jax.devices()[0].platform} "
          f"device(s), {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}  "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}")
    print(f"global batch {args.batch}, {args.warmup} warm-up steps, best of {args.reps} x "
          f"{args.steps} steps; load average before: {os.getloadavg()}")
    rows, parts = [], {}
    for rf in args.fields:
        cfg, compile_s, timings, loss = bench_field(rf, args, mesh)
        for mode, t in timings.items():
            cps = args.batch / t.wall_s
            rows.append((rf, mode, compile_s, t, cps,
                         cps * 3 * temporal.flops_per_frame(cfg) / 1e9,
                         cps * 3 * strided_flops_per_clip(cfg) / 1e9,
                         cps / PYTORCH_CLIPS_PER_S[rf]))
        print(f"  done {rf}f (compile {compile_s:.1f} s, loss {loss:.3f}), "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
        if args.breakdown:
            parts[rf] = breakdown(rf, args, mesh)
    print()
    print("| field | data | compile s | best ms/step | median ms/step | clips/s "
          "| model GFLOP/s | exec GFLOP/s | vs PyTorch | CPU ms/step (sys) | cores busy "
          "| clips/CPU-s | page faults/step |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rf, mode, compile_s, t, cps, mflops, xflops, ratio in rows:
        flops = (f"{mflops:.1f} | {xflops:.1f} | {ratio:.2f}" if "host" not in mode
                 else "- | - | -")  # windows/s of the loader alone: no model work
        print(f"| {rf} | {mode} | {compile_s:.1f} | {t.wall_s * 1e3:.0f} | "
              f"{t.median_s * 1e3:.0f} | {cps:,.0f} | {flops} | "
              f"{t.cpu_s * 1e3:.0f} ({t.sys_s * 1e3:.0f}) | "
              f"{t.cpu_s / t.wall_s:.2f} | {args.batch / t.cpu_s:,.0f} | {t.faults:,.0f} |")
    for rf, prts in parts.items():
        print(f"\nbreakdown {rf}f (each part compiled and timed alone; best of {args.reps})")
        print("| part | best ms | CPU ms (sys) | cores busy | page faults |")
        print("|---|---:|---:|---:|---:|")
        for name, t in prts:
            print(f"| {name} | {t.wall_s * 1e3:.0f} | {t.cpu_s * 1e3:.0f} ({t.sys_s * 1e3:.0f}) "
                  f"| {t.cpu_s / t.wall_s:.2f} | {t.faults:,.0f} |")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
