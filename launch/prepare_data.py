r"""Builds one dataset from its raw release into a TFDS array_record dataset.

Usage::

  python launch/prepare_data.py --dataset=h36m --manual_dir=/data/h36m_raw \
      --data_dir=/data/tfds [--config=poses] [--restart] [--num_shards=N]
  python launch/prepare_data.py --dataset=h36m --config=images --frame_step=2 \
      --crop_size=224 ...     # a derived config: images_crop_size224_frame_step2

Datasets and configs (the layout each expects under ``--manual_dir`` is in its module
docstring and ``MANUAL_DOWNLOAD_INSTRUCTIONS``):

* ``h36m`` (:mod:`jpose.datasets.h36m`): ``poses`` (raw CDF release + ``metadata.xml``),
  ``videopose3d_<source>`` (VideoPose3D's ``.npz`` files; they hold pickles, so
  ``--allow_pickle`` is required and refused otherwise), ``images`` (cropped frames);
* ``mpi_inf_3dhp``: ``poses``, ``images``;
* ``sub_jhmdb``, ``penn_action``: one config each;
* ``lsp``: ``lsp`` (with Ronchi et al.'s relative depth when the JSON is present),
  ``lspet``.

Output: ``<data_dir>/<dataset>/<config>/<version>/`` with sharded ``.array_record``
files; read it with ``jpose.datasets.tfds_build.load``. TFDS shows a progress bar per
split. A build writes into a temporary directory renamed on success, so an interrupted
build never looks complete; running the command again restarts it cleanly (``--restart``
also rebuilds a complete dataset).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

# Runs as a script from a clone: make the repository importable without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jpose.datasets import tfds_build  # noqa: E402

_DATASET = flags.DEFINE_enum("dataset", None, sorted(tfds_build.BUILDERS), "Dataset to build.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Directory holding the raw release.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory to write into.")
_CONFIG = flags.DEFINE_string("config", None, "Builder config (default: the builder's first).")
_RESTART = flags.DEFINE_bool("restart", False, "Rebuild even if a complete build exists.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", None, "Force this many shards per split.")
_FRAME_STEP = flags.DEFINE_integer(
    "frame_step", None, "images configs: keep every k-th video frame (h36m default 5 = 10 fps, "
    "mpi_inf_3dhp 10); builds a derived config named e.g. images_frame_step2.")
_CROP_SIZE = flags.DEFINE_integer(
    "crop_size", None, "images configs: side of the square person crops in pixels (default 256).")
_ALLOW_PICKLE = flags.DEFINE_bool(
    "allow_pickle", False,
    "h36m videopose3d_* configs only: VideoPose3D's .npz files store pickled dicts, and "
    "unpickling runs code named by the file; set this only for files you trust.")


def run(dataset: str, manual_dir: str, data_dir: str, *, config: str | None = None,
        restart: bool = False, num_shards: int | None = None, allow_pickle: bool = False,
        frame_step: int | None = None, crop_size: int | None = None,
        progress: bool = True) -> dict[str, int]:
    """Builds ``dataset`` and returns ``{split: number of examples}``."""
    fields = {k: v for k, v in (("frame_step", frame_step), ("crop_size", crop_size))
              if v is not None}
    if fields:
        if config is None:
            raise ValueError("--frame_step/--crop_size need --config (an images config)")
        config = tfds_build.derived_config(dataset, config, **fields)
    kwargs = {}
    if allow_pickle:
        if dataset != "h36m":
            raise ValueError(f"--allow_pickle applies to h36m's videopose3d_* configs only, "
                             f"not to {dataset!r}")
        kwargs["allow_pickle"] = True
    builder = tfds_build.build(dataset, manual_dir=manual_dir, data_dir=data_dir, config=config,
                               restart=restart, progress=progress, num_shards=num_shards,
                               **kwargs)
    counts = {name: int(info.num_examples) for name, info in builder.info.splits.items()}
    logging.info("%s (%s) at %s: %s", dataset, builder.builder_config.name
                 if builder.builder_config else "default", os.fspath(builder.data_path), counts)
    return counts


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    counts = run(_DATASET.value, _MANUAL_DIR.value, _DATA_DIR.value, config=_CONFIG.value,
                 restart=_RESTART.value, num_shards=_NUM_SHARDS.value,
                 allow_pickle=_ALLOW_PICKLE.value, frame_step=_FRAME_STEP.value,
                 crop_size=_CROP_SIZE.value)
    for split, n in counts.items():
        print(f"{split}: {n} examples")


if __name__ == "__main__":
    flags.mark_flags_as_required(["dataset", "manual_dir", "data_dir"])
    app.run(main)
