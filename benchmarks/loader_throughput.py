"""Training-window throughput of jpose.datasets.pipelines on this machine (host only).

Usage:
  python benchmarks/loader_throughput.py                       # 1.5M frames, rf 243, batch 1024
  python benchmarks/loader_throughput.py --frames 300000 --steps 20

Data: ``--frames`` frames of random float32 data (default 1.5M, about Human3.6M's
training set: 5 subjects x 4 cameras), 17 joints, 2 input features, split into
sequences of ``--seq-len`` frames (default 2,500, a Human3.6M take), as
:class:`~jpose.datasets.pipelines.Sequences`. Peak resident memory is about 1.8 GiB at
the default size (inputs and 3D poses held in the sequences and again concatenated,
the edge-padded inputs plus their mirrored copy for flips): comfortable on any training
host; use ``--frames`` to shrink.

Measured, each after ``--warmup`` untimed steps (the first touches each epoch's
permutation and faults in the memory):

* ``batch(k)`` in a loop, without and with flip augmentation: the single-threaded cost
  the training loop pays when it calls the pipeline directly (gather of 1024 windows of
  243 x 17 x 2 float32 = 34 MB, flips, bookkeeping);
* ``grain_iterator(num_threads=T)``: grain's thread prefetch over ``batch(k)``.

Prints windows/s and MB/s of input windows. Timings on a shared machine are noisy: the
load average is printed.

Reference (2-core x86 container, load ~3.5, numpy 2.4, grain 0.2.18): ~190,000
windows/s (5.4 ms per 1024 x 243-frame batch), with or without flips; grain's thread
prefetch adds nothing on 2 busy cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np

from jpose.datasets import pipelines as pl


def make_sequences(frames: int, seq_len: int, joints: int, seed: int = 0) -> pl.Sequences:
    rng = np.random.default_rng(seed)
    lengths = [seq_len] * (frames // seq_len) + ([frames % seq_len] if frames % seq_len else [])
    inputs = [rng.uniform(-1, 1, size=(n, joints, 2)).astype(np.float32) for n in lengths]
    poses = [rng.normal(0, 0.3, size=(n, joints, 3)).astype(np.float32) for n in lengths]
    traj = [rng.normal(0, 1, size=(n, 3)).astype(np.float32) for n in lengths]
    return pl.sequences_from_arrays(inputs, poses, traj, layout="h36m_17")


def time_steps(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for k in range(steps):
        fn(k)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=1_500_000)
    p.add_argument("--seq-len", type=int, default=2_500)
    p.add_argument("--joints", type=int, default=17)
    p.add_argument("--rf", type=int, default=243)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    args = p.parse_args()

    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load avg {os.getloadavg()[0]:.2f}, numpy {np.__version__}")
    t0 = time.perf_counter()
    seqs = make_sequences(args.frames, args.seq_len, args.joints)
    t1 = time.perf_counter()
    windows = pl.temporal_windows(seqs, receptive_field=args.rf)
    t2 = time.perf_counter()
    print(f"{args.frames} frames in {len(seqs)} sequences; Sequences (incl. finite check) "
          f"{t1 - t0:.2f} s, temporal_windows {t2 - t1:.2f} s, padded inputs "
          f"{windows.padded_inputs.nbytes / 2**20:.0f} MiB")
    mb = args.batch * args.rf * args.joints * 2 * 4 / 1e6

    def report(name: str, seconds: float, steps: int) -> None:
        wps = steps * args.batch / seconds
        print(f"  {name:<34} {seconds / steps * 1e3:8.2f} ms/batch  {wps:10,.0f} windows/s  "
              f"{wps * mb / args.batch:8,.0f} MB/s")

    print(f"batch {args.batch}, receptive field {args.rf}, {args.steps} timed steps:")
    for flip in (None, "h36m_17"):
        tb = pl.training_batches(windows, global_batch_size=args.batch, seed=0, flip_augment=flip)
        time_steps(tb.batch, args.warmup)
        dt = time_steps(lambda k: tb.batch(args.warmup + k), args.steps)
        report(f"batch(k), flip={flip}", dt, args.steps)
    tb = pl.training_batches(windows, global_batch_size=args.batch, seed=0, flip_augment="h36m_17")
    for threads in args.threads:
        it = tb.grain_iterator(0, num_threads=threads, prefetch_buffer_size=max(2, 2 * threads))
        for _ in range(args.warmup):
            next(it)
        t = time.perf_counter()
        for _ in range(args.steps):
            next(it)
        report(f"grain_iterator(num_threads={threads})", time.perf_counter() - t, args.steps)
        it.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory {peak:.2f} GiB")


if __name__ == "__main__":
    main()
