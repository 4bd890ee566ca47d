r"""Trains any recipe: ``--config`` (an ml_collections config file) and ``--workdir``.

Examples::

  python launch/train.py --config=launch/configs/sample_videopose.py --workdir=workdir/sample
  python launch/train.py --config=launch/configs/videopose_27f.py:tiny --workdir=/tmp/t \
      --config.global_batch_size=16          # dotted overrides of any config field

A workdir that holds a checkpoint of the same config is resumed exactly; one written
under another config is refused (and left untouched). Ctrl-C stops cleanly; rerunning
the command resumes. Multi-host: start one process per host with
``--coordinator_address=host:port --num_processes=N --process_id=i`` (or let JAX
auto-detect SLURM / Open MPI / Kubernetes / Cloud TPU).
"""

from absl import app, flags, logging
from ml_collections import config_flags

import _common  # noqa: F401  (sys.path set-up)

from jpose.training import loop, parallel  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "Multi-host: coordinator host:port.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: process count.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                    _PROCESS_ID.value)
    import jax
    logging.info("JAX %s, process %d/%d, devices: %s", jax.__version__, jax.process_index(),
                 jax.process_count(), jax.devices())
    with _common.one_line_errors("train.py"):
        result = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    if jax.process_index() == 0:
        acc = result["accumulator"]
        print(acc.table(title="test") if hasattr(acc, "summary_mm") else acc.table())


if __name__ == "__main__":
    _common.run_app(main, "train.py")
