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
"""

from __future__ import annotations

import os
import sys
import zipfile

from absl import app, flags, logging
import numpy as np

# Runs as a script from a clone: make the repository importable without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from jpose import io  # noqa: E402
from jpose.solvers import _loop, nrsfm  # noqa: E402

_INPUT = flags.DEFINE_string("input", None, "Input .npz with `poses_2d` (N, P, 2).")
_OUTPUT = flags.DEFINE_string("output", None, "Output .npz path.")
_SIZES = flags.DEFINE_list("sizes", ["125", "10"], "Atoms per layer, K_1,...,K_L.")
_SPARSITY = flags.DEFINE_list("sparsity", ["0.03"],
                              "lambda per layer (one value for all layers, or L values), "
                              "for data normalised to unit RMS coordinate.")
_MAXITER = flags.DEFINE_integer("maxiter", 300, "Outer iteration budget.")
_TOL = flags.DEFINE_float("tol", 1e-6, "Stop at this relative decrease of the objective.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Mini-batch size (0: full batch).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the initial atoms and mini-batches.")
flags.mark_flags_as_required(["input", "output"])


def load_poses(path: str) -> np.ndarray:
    """Reads and validates ``poses_2d`` (N, P, 2) from an ``.npz`` (no pickle)."""
    if not os.path.exists(path):
        raise ValueError(f"--input {path!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "poses_2d" not in data.files:
                raise ValueError(f"--input {path!r} has no `poses_2d` array (found "
                                 f"{sorted(data.files)}).")
            poses = np.asarray(data["poses_2d"])
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"--input {path!r} is not a readable .npz file: {error}") from None
    if poses.ndim != 3 or poses.shape[-1] != 2 or poses.shape[0] < 2 or poses.shape[1] < 3:
        raise ValueError(f"`poses_2d` in {path!r} must have shape (N, P, 2) with N >= 2 and "
                         f"P >= 3; got {poses.shape}.")
    if not np.issubdtype(poses.dtype, np.number):
        raise ValueError(f"`poses_2d` in {path!r} must be numeric; got {poses.dtype}.")
    if not np.isfinite(poses).all():
        raise ValueError(f"`poses_2d` in {path!r} holds {int((~np.isfinite(poses)).sum())} "
                         "NaN or infinite values; drop or fill those samples first.")
    return poses.astype(np.float32)


def make_config(*, sizes, sparsity, maxiter: int, tol: float, batch_size: int
                ) -> nrsfm.DictionaryLearningConfig:
    """The solver config from flag values (``batch_size`` 0 means full batch)."""
    sparsity = tuple(float(s) for s in sparsity)
    return nrsfm.DictionaryLearningConfig(
        sizes=tuple(int(k) for k in sizes),
        sparsity=sparsity[0] if len(sparsity) == 1 else sparsity,
        maxiter=maxiter, tol=tol, batch_size=batch_size or None)


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


def save(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Atomic ``.npz`` write (:func:`jpose.io.save_npz_atomic`)."""
    io.save_npz_atomic(path, arrays)


def run(input_path: str, output_path: str, config: nrsfm.DictionaryLearningConfig,
        seed: int = 0) -> dict[str, np.ndarray]:
    """Load, learn, save; returns what was saved."""
    arrays = learn(load_poses(input_path), config, seed)
    save(output_path, arrays)
    return arrays


def main(argv):
    del argv
    config = make_config(sizes=_SIZES.value, sparsity=_SPARSITY.value,
                         maxiter=_MAXITER.value, tol=_TOL.value, batch_size=_BATCH.value)
    arrays = run(_INPUT.value, _OUTPUT.value, config, _SEED.value)
    history = arrays["objective_history"]
    logging.info("%s after %d iterations; objective %.6g -> %.6g; wrote %s",
                 _loop.status_name(arrays["status"]), int(arrays["iterations"]), history[0],
                 history[int(arrays["iterations"])], _OUTPUT.value)


if __name__ == "__main__":
    app.run(main)
