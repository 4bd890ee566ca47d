r"""Learns a hierarchical NRSfM pose dictionary from 2D poses alone.

Usage::

  python launch/learn_dictionary.py --input=poses_2d.npz --output=dictionary.npz \
      --sizes=125,10 --sparsity=0.03 --maxiter=300 --seed=0

The model, algorithm and ambiguities are documented in :mod:`jpose.solvers.nrsfm`.

Input (``--input``, ``.npz``, read without pickle): ``poses_2d`` of shape (N, P, 2),
orthographic (or weak-perspective) 2D joints, any units and centring, finite, the same
joint order for every sample.

Output (``--output``, ``.npz``, no pickled objects, written atomically: temp file then
rename):

* ``dictionary_0`` (3P, K_1), ``dictionary_1`` (K_1, K_2), ... (unit-free, column
  norm <= 1; ``dictionary_l`` for l >= 1 non-negative) and ``sizes`` (L,);
* ``codes`` (N, K_L) and ``poses_3d`` (N, P, 3) in the input's units (``poses_3d`` =
  reshape(D_1 ... D_L codes), canonical frame, centred on the joint centroid);
* ``rotations`` (N, 3, 3), canonical -> camera (``poses_2d ≈ (poses_3d @ R^T)[..., :2]``
  after centring);
* ``scale`` (), the RMS input coordinate the data were normalised by (pass it to
  ``nrsfm.reconstruct`` for new samples), ``objective_history`` (maxiter + 1,) (NaN after
  the last iteration), ``status`` and ``iterations``.

Refusals (one-line ``learn_dictionary.py: error: ...`` naming the file and field or the
flag, exit status 1, nothing written, an existing ``--output`` left untouched): an
unreadable or malformed ``.npz``, a missing ``poses_2d``, a wrong shape or dtype,
non-finite values, fewer samples than first-layer atoms (``N < K_1``: the atoms would not
be determined by the data), malformed ``--sizes`` / ``--sparsity``, and a non-finite
result (status non-finite).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
import numpy as np

# Runs as a script from a clone: make the repository importable without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from jpose import io  # noqa: E402
from jpose.solvers import _loop, nrsfm  # noqa: E402

PROG = "learn_dictionary.py"


def define_flags(flag_values=flags.FLAGS) -> None:
    """Defined on demand (not at import) so tests can import this module freely."""
    flags.DEFINE_string("input", None, "Input .npz with `poses_2d` (N, P, 2).", required=True,
                        flag_values=flag_values)
    flags.DEFINE_string("output", None, "Output .npz path.", required=True,
                        flag_values=flag_values)
    flags.DEFINE_list("sizes", ["125", "10"], "Atoms per layer, K_1,...,K_L.",
                      flag_values=flag_values)
    flags.DEFINE_list("sparsity", ["0.03"],
                      "lambda per layer (one value for all layers, or L values), "
                      "for data normalised to unit RMS coordinate.", flag_values=flag_values)
    flags.DEFINE_integer("maxiter", 300, "Outer iteration budget.", flag_values=flag_values)
    flags.DEFINE_float("tol", 1e-6, "Stop at this relative decrease of the objective.",
                       flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 0, "Mini-batch size (0: full batch).",
                         flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the initial atoms and mini-batches.",
                         flag_values=flag_values)


def load_poses(path: str) -> np.ndarray:
    """Reads and validates ``poses_2d`` (N, P, 2) from an ``.npz`` (no pickle).

    Raises FileNotFoundError or a one-line ValueError naming the file and the field.
    """
    arrays = io.load_npz(path, what="--input")
    if "poses_2d" not in arrays:
        raise ValueError(f"--input {path!r} has no `poses_2d` array (found {sorted(arrays)}).")
    poses = arrays["poses_2d"]
    if poses.dtype.kind not in "fiu":  # bool, complex, strings: not coordinates
        raise ValueError(f"`poses_2d` in {path!r} must be real numbers; got dtype {poses.dtype}.")
    if poses.ndim != 3 or poses.shape[-1] != 2 or poses.shape[0] < 2 or poses.shape[1] < 3:
        raise ValueError(f"`poses_2d` in {path!r} must have shape (N, P, 2) with N >= 2 and "
                         f"P >= 3; got {poses.shape}.")
    bad = ~np.isfinite(poses)
    if bad.any():
        raise ValueError(f"`poses_2d` in {path!r} holds {int(bad.sum())} NaN or infinite "
                         f"values (first in sample {int(np.argwhere(bad)[0][0])}); drop or "
                         "fill those samples first.")
    return poses.astype(np.float32)


def _parse_list(name: str, values, parse, ok, expected: str) -> tuple:
    try:
        parsed = tuple(parse(v) for v in values)
    except (TypeError, ValueError):
        parsed = None
    if not parsed or not all(ok(v) for v in parsed):
        raise ValueError(f"--{name}: expected {expected}; got {','.join(map(str, values))!r}.")
    return parsed


def make_config(*, sizes, sparsity, maxiter: int, tol: float, batch_size: int
                ) -> nrsfm.DictionaryLearningConfig:
    """The solver config from flag values (``batch_size`` 0 means full batch).

    ``sizes`` and ``sparsity`` are the flags' string lists (numbers are accepted too).
    Raises a ValueError naming the flag for malformed values.
    """
    sizes = _parse_list("sizes", sizes, int, lambda k: k >= 1,
                        "comma-separated positive integers K_1,...,K_L (e.g. 125,10)")
    sparsity = _parse_list("sparsity", sparsity, float, lambda v: np.isfinite(v) and v >= 0,
                           "comma-separated finite values >= 0 (one, or one per layer)")
    if len(sparsity) not in (1, len(sizes)):
        raise ValueError(f"--sparsity: expected 1 or {len(sizes)} values (one per layer of "
                         f"--sizes={','.join(map(str, sizes))}); got {len(sparsity)}.")
    if batch_size < 0:
        raise ValueError(f"--batch_size: expected >= 0 (0: full batch); got {batch_size}.")
    return nrsfm.DictionaryLearningConfig(
        sizes=sizes, sparsity=sparsity[0] if len(sparsity) == 1 else sparsity,
        maxiter=maxiter, tol=tol, batch_size=batch_size or None)


def check_samples(poses_2d: np.ndarray, config: nrsfm.DictionaryLearningConfig,
                  path: str) -> None:
    """Refuses fewer samples than first-layer atoms (``N < K_1``).

    Each atom of ``D_1`` is a 3P-vector fitted to the data; with fewer samples than
    atoms, the dictionary can memorise every sample and the extra atoms are arbitrary.
    """
    num, k1 = poses_2d.shape[0], config.sizes[0]
    if num < k1:
        raise ValueError(f"`poses_2d` in {path!r} has {num} samples, fewer than the "
                         f"{k1} atoms of the first layer (--sizes="
                         f"{','.join(map(str, config.sizes))}); give at least {k1} samples "
                         "or lower --sizes.")


def learn(poses_2d: np.ndarray, config: nrsfm.DictionaryLearningConfig, seed: int
          ) -> dict[str, np.ndarray]:
    """Runs :func:`nrsfm.learn_dictionary`; returns the output arrays by name."""
    result = nrsfm.learn_dictionary(poses_2d, config=config, rng=jax.random.key(seed))
    arrays = {f"dictionary_{i}": np.asarray(d) for i, d in enumerate(result.dictionaries)}
    arrays.update(
        sizes=np.asarray([d.shape[1] for d in result.dictionaries], np.int32),
        codes=np.asarray(result.codes), rotations=np.asarray(result.rotations),
        poses_3d=np.asarray(result.poses_3d), scale=np.asarray(result.scale),
        objective_history=np.asarray(result.objective_history),
        status=np.asarray(result.status), iterations=np.asarray(result.iterations))
    return arrays


def check_finite(arrays: dict[str, np.ndarray], output_path: str) -> None:
    """Refuses to write a non-finite result (``objective_history`` is NaN-padded by design)."""
    bad = [k for k, v in arrays.items()
           if k != "objective_history" and not np.isfinite(v).all()]
    if int(arrays["status"]) == _loop.Status.NON_FINITE or bad:
        raise ValueError(f"learning gave a non-finite result (status "
                         f"{_loop.status_name(arrays['status'])}; non-finite: "
                         f"{', '.join(bad) or 'none'}); nothing written to {output_path!r}.")


def save(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Atomic ``.npz`` write (:func:`jpose.io.save_npz_atomic`)."""
    io.save_npz_atomic(path, arrays)


def run(input_path: str, output_path: str, config: nrsfm.DictionaryLearningConfig,
        seed: int = 0) -> dict[str, np.ndarray]:
    """Load, check, learn, save; returns what was saved.

    Raises FileNotFoundError or ValueError (see the module docstring) before anything is
    written.
    """
    poses_2d = load_poses(input_path)
    check_samples(poses_2d, config, input_path)
    arrays = learn(poses_2d, config, seed)
    check_finite(arrays, output_path)
    save(output_path, arrays)
    return arrays


def main(argv, flag_values=flags.FLAGS) -> None:
    """``app.run`` entry point; ``flag_values`` lets tests pass their own parsed flags."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flag_values
    try:
        config = make_config(sizes=f.sizes, sparsity=f.sparsity, maxiter=f.maxiter,
                             tol=f.tol, batch_size=f.batch_size)
        arrays = run(f.input, f.output, config, f.seed)
    except (ValueError, OSError) as e:  # bad files, flags or output path: no traceback
        raise SystemExit(f"{PROG}: error: {e}") from None
    history = arrays["objective_history"]
    logging.info("%s after %d iterations; objective %.6g -> %.6g; wrote %s",
                 _loop.status_name(arrays["status"]), int(arrays["iterations"]), history[0],
                 history[int(arrays["iterations"])], f.output)


if __name__ == "__main__":
    define_flags()
    app.run(main)
