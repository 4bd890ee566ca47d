r"""Exports the latest checkpoint of a workdir for inference without the training code.

  python launch/export.py --config=launch/configs/sample_videopose.py \
      --workdir=workdir/sample --output=workdir/sample/export

Writes ``model.jaxexport`` (``jax.export`` with symbolic batch and time), ``variables.npz``
and ``metadata.json``; load it with the standalone ``jpose/exported_model.py`` (jax and
numpy only), or run ``launch/lift.py`` on a keypoint file. Only process 0 writes.
"""

from absl import app, flags
from ml_collections import config_flags

import _common  # noqa: F401

from jpose import export  # noqa: E402
from jpose.training import loop  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir holding checkpoints.")
_OUTPUT = flags.DEFINE_string("output", None, "Export directory to create.")
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Replace a previous export.")
flags.mark_flags_as_required(["config", "workdir", "output"])


def run(config, workdir: str, output: str, *, overwrite: bool = False) -> dict:
    import jax
    model, variables, data = loop.restore_for_inference(config, workdir)
    if jax.process_index() != 0:
        return {}
    variables = jax.device_get(variables)
    return export.export_lifter(variables, model.config, output, layout=data.layout,
                                overwrite=overwrite,
                                metadata={"config": config.to_dict()})


def main(argv):
    del argv
    meta = run(_CONFIG.value, _WORKDIR.value, _OUTPUT.value, overwrite=_OVERWRITE.value)
    if meta:
        print(f"Exported the {meta['model_kind']} model ({meta['receptive_field']}-frame "
              f"receptive field, {meta['input_layout']} joints) to {_OUTPUT.value}.")


if __name__ == "__main__":
    app.run(main)
