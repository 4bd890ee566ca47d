"""Throughput of NRSfM dictionary learning (jpose.solvers.nrsfm) on this machine.

Usage:
  python benchmarks/nrsfm.py                          # N = 10,000, sizes 125,10
  python benchmarks/nrsfm.py --n 2000 --sizes 125,40,10 --batch-size 500

Data: the 15 DeepMimic sample clips (``h36m_17``, root-centred, metres) cycled to ``--n``
samples, each seen from its own uniformly random orthographic view (so every sample is
a distinct 2D pose). float32.

Measured: ``learn_dictionary`` with the default config except ``sizes`` /
``batch_size`` is compiled once (the iteration budget is a traced argument), then run
with budgets ``1`` and ``1 + --iterations``; the difference over ``--iterations`` is the
time per outer iteration (it includes the per-sample camera multi-start every
``reseed_every`` = 10 iterations, so ``--iterations`` should be a multiple of 10). The
figure reported is **samples per second per iteration**: N / (seconds per iteration);
with mini-batches, an iteration touches one batch (codes, cameras) plus one full
forward pass per dictionary step (the acceptance check), so it is reported per batch.

Reference (2-core x86 container shared with other jobs, load ~4, jax 0.10.2 CPU,
N = 10,000, P = 17, float32): sizes (125, 10): ~390 ms per iteration, **~25,000 samples
per second per iteration** (compile ~9 s); sizes (125, 40, 10): ~470 ms, ~21,000/s;
``--batch-size 1000``: ~7,000 samples/s per iteration (each dictionary step still
checks the full objective). Per iteration at (125, 10): codes ~45%, dictionaries ~30%,
cameras ~10%, the camera multi-start (every 10th iteration) ~15%.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jpose import skeleton  # noqa: E402
from jpose.datasets import samples  # noqa: E402
from jpose.solvers import nrsfm  # noqa: E402


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform rotations from normalised Gaussian quaternions (w, x, y, z)."""
    q = rng.normal(size=(n, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def mocap_views(n: int, seed: int = 0) -> np.ndarray:
    poses = []
    for name in samples.DEEPMIMIC_CLIPS:
        x = skeleton.convert(samples.load_deepmimic_clip(name).positions, "deepmimic_16",
                             "h36m_17")
        poses.append(x - x[:, :1])
    poses = np.concatenate(poses)
    poses = poses[np.arange(n) % len(poses)]
    rotations = random_rotations(n, np.random.default_rng(seed))
    return np.einsum("npc,nac->npa", poses, rotations)[..., :2].astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--sizes", default="125,10")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=0)
    args = parser.parse_args()

    sizes = tuple(int(k) for k in args.sizes.split(","))
    config = nrsfm.DictionaryLearningConfig(sizes=sizes, batch_size=args.batch_size or None,
                                            maxiter=1 + args.iterations, tol=0.0)
    poses_2d = jnp.asarray(mocap_views(args.n))
    print(f"jax {jax.__version__} on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; N={args.n}, "
          f"P={poses_2d.shape[1]}, sizes={sizes}, batch_size={config.batch_size}")

    def run(budget):
        t0 = time.perf_counter()
        result = nrsfm.learn_dictionary(poses_2d, config=config, rng=0,
                                        max_iterations=jnp.int32(budget))
        jax.block_until_ready(result)
        return time.perf_counter() - t0, result

    first, _ = run(1)  # compile + init + 1 iteration
    short, _ = run(1)
    long, result = run(1 + args.iterations)
    per_iteration = (long - short) / args.iterations
    batch = config.batch_size or args.n
    print(f"compile + first call: {first:.1f} s; init + 1 iteration: {short:.2f} s")
    print(f"{per_iteration * 1000:.1f} ms per iteration ({args.iterations} iterations, "
          f"{int(result.iterations)} done, objective {float(result.objective):.4g})")
    print(f"{batch / per_iteration:,.0f} samples per second per iteration"
          + ("" if batch == args.n else f" (batch of {batch} of {args.n})"))


if __name__ == "__main__":
    main()
