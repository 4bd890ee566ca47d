"""Inference throughput of the VideoPose3D temporal model (sequence form) on this machine.

Usage:
  python benchmarks/temporal_inference.py                 # 27/81/243 frames, both cases
  python benchmarks/temporal_inference.py --fields 27 --reps 3
  python benchmarks/temporal_inference.py --layers        # + one-layer formulation study

Cases: one 10,000-frame sequence (batch 1; VideoPose3D's evaluation setting) and 64
sequences x 1,000 frames; channels 1024, 17 joints in and out, float32, edge padding so
T_out == T. Each function is compiled once (AOT ``lower().compile()``), run once to warm
up, then timed ``--reps`` times with ``block_until_ready``; the table shows the best and
the median. ``GFLOP/s`` counts 2 x conv MACs per *output* frame analytically
(``temporal.flops_per_frame``); ``exec GFLOP/s`` also counts the work the inner layers do
on the padded border frames, i.e. what the machine actually executed.

``--layers`` times one dilated 1024 -> 1024 conv (width 3) three ways: XLA's convolution
(what jpose uses), shifted slices concatenated + one matmul, and a sum of three matmuls.

Timings on a shared machine are noisy: the load average is printed; compare best-of-N.
Reference point (task brief): the original PyTorch CPU implementation, one long sequence,
~12,000 frames/s at 27 frames and ~6,000 at 243 frames (~200 GFLOP/s).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jpose.nets import temporal


def executed_flops(cfg: temporal.TemporalConfig, batch: int, frames: int) -> int:
    """2 x MACs of all convs in the sequence form on a padded sequence of `frames`."""
    c = cfg.channels
    length = frames + cfg.receptive_field - 1  # after edge padding
    w0 = cfg.filter_widths[0]
    length -= w0 - 1
    total = 2 * cfg.num_joints_in * cfg.in_features * c * w0 * length
    dilation = w0
    for w in cfg.filter_widths[1:]:
        length -= (w - 1) * dilation
        total += 2 * (c * c * w + c * c) * length
        dilation *= w
    total += 2 * c * cfg.num_joints_out * 3 * length
    return batch * total


def time_fn(compiled, args, reps: int) -> list[float]:
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return times


def bench_model(fields, cases, reps):
    rows = []
    for rf in fields:
        cfg = temporal.variant(f"videopose_{rf}f")
        variables = temporal.init(jax.random.key(0), cfg)
        fn = jax.jit(lambda v, x, cfg=cfg: temporal.apply(v, x, config=cfg, train=False)[0])
        for batch, frames in cases:
            x = jnp.asarray(
                np.random.default_rng(0).normal(0, 0.5, (batch, frames, 17, 2)).astype(np.float32)
            )
            t0 = time.perf_counter()
            compiled = fn.lower(variables, x).compile()
            compile_s = time.perf_counter() - t0
            times = time_fn(compiled, (variables, x), reps)
            best, med = min(times), float(np.median(times))
            n = batch * frames
            rows.append(
                (
                    rf,
                    f"{batch}x{frames}",
                    compile_s,
                    best * 1e3,
                    med * 1e3,
                    n / best,
                    n * temporal.flops_per_frame(cfg) / best / 1e9,
                    executed_flops(cfg, batch, frames) / best / 1e9,
                )
            )
            print(f"  done {rf}f {batch}x{frames}", flush=True)
    print()
    print(
        "| field | batch x frames | compile s | best ms | median ms | frames/s | GFLOP/s | exec GFLOP/s |"
    )
    print(
        "|------:|---------------:|----------:|--------:|----------:|---------:|--------:|-------------:|"
    )
    for r in rows:
        print(
            f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.0f} | {r[4]:.0f} | {r[5]:,.0f} | {r[6]:.0f} | {r[7]:.0f} |"
        )


def bench_layers(reps, frames=10_000, channels=1024, width=3, dilation=9):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(1, frames, channels)).astype(np.float32))
    k = jnp.asarray(rng.normal(0, 0.03, (width, channels, channels)).astype(np.float32))
    t_out = frames - (width - 1) * dilation

    def conv(x, k):
        return lax.conv_general_dilated(
            x, k, (1,), "VALID", rhs_dilation=(dilation,), dimension_numbers=("NWC", "WIO", "NWC")
        )

    def slices_matmul(x, k):
        xs = jnp.concatenate(
            [lax.slice_in_dim(x, i * dilation, i * dilation + t_out, axis=1) for i in range(width)],
            axis=-1,
        )
        return xs @ k.reshape(width * channels, channels)

    def sum_of_matmuls(x, k):
        return sum(
            lax.slice_in_dim(x, i * dilation, i * dilation + t_out, axis=1) @ k[i]
            for i in range(width)
        )

    flops = 2 * t_out * width * channels * channels
    ref = None
    print()
    print(
        f"one dilated conv layer: T={frames}, {channels}->{channels}, width {width}, dilation {dilation}"
    )
    print("| formulation | best ms | GFLOP/s | max |diff| vs conv |")
    print("|---|---:|---:|---:|")
    for name, f in [
        ("lax.conv_general_dilated", conv),
        ("slices + one matmul", slices_matmul),
        ("sum of matmuls", sum_of_matmuls),
    ]:
        compiled = jax.jit(f).lower(x, k).compile()
        y = compiled(x, k)
        ref = y if ref is None else ref
        best = min(time_fn(compiled, (x, k), reps))
        print(
            f"| {name} | {best * 1e3:.0f} | {flops / best / 1e9:.0f} | {float(jnp.max(jnp.abs(y - ref))):.1e} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--fields", type=int, nargs="+", default=[27, 81, 243], choices=[27, 81, 243]
    )
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only-long", action="store_true", help="skip the 64 x 1000 case")
    parser.add_argument("--layers", action="store_true", help="also compare conv formulations")
    args = parser.parse_args()
    print(
        f"jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    print(f"load average before: {os.getloadavg()}")
    cases = [(1, 10_000)] + ([] if args.only_long else [(64, 1_000)])
    bench_model(args.fields, cases, args.reps)
    if args.layers:
        bench_layers(args.reps)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
