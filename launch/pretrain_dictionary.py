r"""Stage 1 of the CFN (thesis ch. 4): its hierarchical dictionary from a config's 2D alone.

Usage::

  python launch/pretrain_dictionary.py --config=launch/configs/factorization/sample.py \
      --output=W/dictionary.npz [--method=nrsfm|deep_nrsfm]

Reads the training split's 2D inputs of ``--config`` (no 3D), normalised as the CFN's
input (:func:`jpose.nets.factorization.normalise_keypoints`), takes at most
``recipe.pretrain.max_samples`` evenly spaced frames, and learns the dictionary of sizes
``model.overrides.dictionary_sizes``:

* ``nrsfm`` (default; ``recipe.dictionary_init``): :func:`jpose.solvers.nrsfm.learn_dictionary`
  (``recipe.pretrain.nrsfm_maxiter``, ``sparsity``);
* ``deep_nrsfm``: :func:`jpose.nets.factorization.deep_nrsfm_pretrain`, the Deep-NRSfM
  encoder-decoder with shared (transposed) weights, ReLU codes, Adam
  (``recipe.pretrain.epochs`` (40 in the thesis), ``batch_size``, ``learning_rate``).

Writes (atomically) ``dictionary_0``, ``dictionary_1``, ... (the format of
``launch/learn_dictionary.py``), ``sizes`` and the method's ``objective_history`` /
``loss_history``; pass the file to training as ``--config.recipe.dictionary_path``.
"""

from __future__ import annotations

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

import _common  # noqa: F401  (sys.path set-up)

import jax  # noqa: E402

from jpose import io  # noqa: E402
from jpose.nets import factorization as cfn  # noqa: E402
from jpose.nets import network  # noqa: E402
from jpose.solvers import nrsfm  # noqa: E402
from jpose.training import streams  # noqa: E402

def define_flags() -> None:
    """Defined on demand (not at import) so tests can import this beside other scripts."""
    config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                    lock_config=True)
    flags.DEFINE_string("output", None, "Output .npz path.")
    flags.DEFINE_enum("method", None, ["nrsfm", "deep_nrsfm"],
                      "Default: the config's recipe.dictionary_init.")
    flags.mark_flags_as_required(["config", "output"])


def training_2d(config) -> tuple[np.ndarray, tuple[int, ...]]:
    """``((N, J, 2) normalised 2D, dictionary sizes)`` of the config's training split (evenly subsampled to
    ``recipe.pretrain.max_samples``)."""
    data = streams.load_data(config)
    seqs = data.splits["train"]
    poses = np.concatenate([np.asarray(s.inputs)[..., :2] for s in seqs], axis=0)
    limit = int(config.recipe.pretrain.get("max_samples", 0) or 0)
    if 0 < limit < len(poses):
        poses = poses[np.linspace(0, len(poses) - 1, limit).astype(np.int64)]
    net = network.build(network.with_data_shapes(
        dict(config.model), num_joints_in=data.meta["num_joints_in"],
        num_joints_out=data.meta["num_joints_out"], in_features=data.meta["in_features"]))
    w, _ = cfn.normalise_keypoints(poses, root_index=net.config.root_index)
    return np.asarray(w, np.float32), net.config.dictionary_sizes


def pretrain(config, method: str | None = None) -> dict[str, np.ndarray]:
    """The dictionary arrays (module doc) for ``config``."""
    method = method or str(config.recipe.get("dictionary_init", "nrsfm"))
    p = config.recipe.pretrain
    w, sizes = training_2d(config)
    if method == "nrsfm":
        result = nrsfm.learn_dictionary(
            w, config=nrsfm.DictionaryLearningConfig(
                sizes=sizes, sparsity=float(p.sparsity), maxiter=int(p.nrsfm_maxiter)),
            rng=jax.random.key(int(p.seed)))
        dicts, history = result.dictionaries, np.asarray(result.objective_history)
        extra = {"objective_history": history}
    elif method == "deep_nrsfm":
        result = cfn.deep_nrsfm_pretrain(
            w, sizes=sizes, epochs=int(p.epochs), batch_size=int(p.batch_size),
            learning_rate=float(p.learning_rate), rng=int(p.seed))
        dicts = result.dictionaries
        extra = {"loss_history": result.loss_history}
    else:
        raise ValueError(f"recipe.dictionary_init: {method!r}; expected 'nrsfm' or "
                         "'deep_nrsfm'")
    arrays = {f"dictionary_{i}": np.asarray(d, np.float32) for i, d in enumerate(dicts)}
    arrays["sizes"] = np.asarray(sizes, np.int32)
    arrays.update(extra)
    bad = [k for k, v in arrays.items()
           if k.startswith("dictionary_") and not np.isfinite(v).all()]
    if bad:
        raise ValueError(f"{method} gave a non-finite dictionary ({', '.join(bad)})")
    return arrays


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    with _common.one_line_errors("pretrain_dictionary.py"):
        arrays = pretrain(flags.FLAGS.config, flags.FLAGS.method)
        io.save_npz_atomic(flags.FLAGS.output, arrays)
    history = arrays.get("objective_history", arrays.get("loss_history"))
    history = history[np.isfinite(history)]
    logging.info("dictionary %s; objective %.6g -> %.6g; wrote %s",
                 [arrays[f"dictionary_{i}"].shape for i in range(len(arrays["sizes"]))],
                 history[0], history[-1], flags.FLAGS.output)


if __name__ == "__main__":
    define_flags()
    _common.run_app(main, "pretrain_dictionary.py")
