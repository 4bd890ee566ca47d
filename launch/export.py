r"""Exports the latest checkpoint of a workdir for inference without the training code.

  python launch/export.py --workdir=workdir/sample --output=workdir/sample/export \
      [--predictor=pose] [--onnx]

The run's config is read from its checkpoint. Writes ``model.jaxexport`` (``jax.export``
with symbolic batch and time), ``variables.npz`` and ``metadata.json`` of the network
behind the recipe predictor ``--predictor`` (``pose``; ``trajectory`` for a recipe with
a trajectory network); ``--onnx`` adds ``model.onnx`` (``jpose.export_onnx``, for
onnxruntime; ``pip install 'jpose[onnx]'``). Load it with the standalone
``jpose/exported_model.py`` (jax and numpy only), or run ``launch/lift.py`` on a keypoint
file: ``--model=<pose export> --trajectory_model=<trajectory export>`` gives absolute
camera-frame poses. Only process 0 writes.
"""

import os

from absl import flags

import _common  # noqa: F401

from jpose import export  # noqa: E402
from jpose.training import loop  # noqa: E402

def define_flags() -> None:
    """Defined on demand (not at import) so tests can import this module with others."""
    flags.DEFINE_string("workdir", None, "Workdir holding checkpoints.")
    flags.DEFINE_string("output", None, "Export directory to create.")
    flags.DEFINE_string("predictor", "pose", "Recipe predictor to export.")
    flags.DEFINE_boolean("overwrite", False, "Replace a previous export.")
    flags.DEFINE_boolean("onnx", False, "Also write <output>/model.onnx (onnxruntime).")
    flags.mark_flags_as_required(["workdir", "output"])


ONNX_FILE = "model.onnx"


def run(workdir: str, output: str, *, predictor: str = "pose", overwrite: bool = False,
        onnx: bool = False) -> dict:
    import jax

    if onnx:  # fail on a missing optional dependency before writing anything
        from jpose import export_onnx
    restored = loop.restore_for_inference(workdir)
    net, variables = loop.predictor_variables(restored, predictor)
    if jax.process_index() != 0:
        return {}
    meta = restored.meta
    kind = restored.run.predictors[predictor].output
    if kind not in ("pose", "trajectory"):
        raise ValueError(f"--predictor: {predictor!r} combines networks ({kind}); export the "
                         "'pose' and 'trajectory' predictors and pass both to "
                         "launch/lift.py (--model, --trajectory_model)")
    variables = jax.device_get(variables)
    layouts = dict(layout=meta["input_layout"],
                   output_layout=meta["layout"] if kind == "pose" else None)
    metadata = {"config": restored.config.to_dict(), "predictor": predictor,
                # The training cameras' focal length in screen units (2 f / width):
                # launch/lift.py maps any camera's 2D to it.
                "screen_focal": meta.get("screen_focal")}
    result = export.export_lifter(variables, net.config, output, **layouts,
                                  overwrite=overwrite, metadata=metadata)
    if onnx:
        export_onnx.export_onnx(variables, net.config, os.path.join(output, ONNX_FILE),
                                **layouts, metadata=metadata)
    return result


def main(argv):
    del argv
    with _common.one_line_errors("export.py"):
        f = flags.FLAGS
        meta = run(f.workdir, f.output, predictor=f.predictor, overwrite=f.overwrite,
                   onnx=f.onnx)
    if meta:
        print(f"Exported the {meta['model_kind']} model ({meta['receptive_field']}-frame "
              f"receptive field, {meta['input_layout']} joints) to {flags.FLAGS.output}.")


if __name__ == "__main__":
    define_flags()
    _common.run_app(main, "export.py")
