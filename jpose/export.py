"""Export a trained lifter for inference without the training code.

:func:`export_lifter` writes a directory that :mod:`jpose.exported_model` -- a standalone
file that imports only ``json``, ``numpy`` and ``jax`` -- loads and runs::

    directory/
      model.jaxexport   jax.export.Exported.serialize() of f(variables, keypoints)
      variables.npz     the weights, one array per pytree leaf, '/'-joined keys, no pickle
      metadata.json     kind, config, receptive field, layouts, units, pytree, versions

Design (scenic's ``export_utils`` principle): the exported program is a function of
``(variables, keypoints)``; the weights are an *argument*, stored beside it, not constants
baked into the StableHLO. The batch size is symbolic (``b``) and, for the temporal model,
so is the sequence length (``t``): one export serves every batch size and sequence length
without re-exporting (each new shape is only compiled, by the loader's ``jax.jit``).
The function runs in eval mode: running batch-norm statistics and no dropout.

Platforms: by default the program is lowered for ``("cpu", "cuda")`` at once
(``jax.export`` multi-platform lowering), so a model exported on a CPU-only machine also
runs on an NVIDIA GPU. Lowering for CUDA needs no GPU: the lifters use only plain StableHLO
ops (convolutions, dots, elementwise), no platform-specific custom calls. Verified here:
lowering for both platforms and running on CPU; running the CUDA branch on a GPU was not
possible on the development machine. Pass ``platforms=("cpu",)`` (or ``("tpu",)``, ...)
to choose; ``None`` lowers for the default backend only.

Atomicity: everything is written into a temporary directory beside ``directory`` and
renamed into place, so a failure at any point leaves no directory behind (or, with
``overwrite=True``, the previous export untouched). An existing path is refused unless
``overwrite=True``, and even then only an empty directory or a previous jpose export is
replaced (never an arbitrary directory).

Serialisation needs the ``flatbuffers`` package (an optional dependency of JAX).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jpose
from jpose import exported_model, skeleton
from jpose.nets import network

__all__ = [
    "FORMAT_VERSION",
    "DEFAULT_PLATFORMS",
    "INPUT_UNITS",
    "POSE_UNITS",
    "TRAJECTORY_UNITS",
    "export_lifter",
    "flatten_variables",
]

#: Schema version of the export directory (the standalone loader checks it).
FORMAT_VERSION = exported_model.FORMAT_VERSION
DEFAULT_PLATFORMS: tuple[str, ...] = ("cpu", "cuda")

INPUT_UNITS = (
    "normalised screen coordinates x = u / w * 2 - 1, y = v / w * 2 - h / w "
    "(u, v pixels; w, h image width and height in pixels)"
)
POSE_UNITS = (
    "metres, camera frame x right y down z forward, root-relative (trained against poses "
    "whose root joint is zero; the root slot is learned, not forced, to be zero)"
)
TRAJECTORY_UNITS = (
    "metres, camera frame x right y down z forward, absolute position of the root joint"
)
_HEAD_UNITS = {
    "root": "metres, camera frame x right y down z forward, root joint position",
    "scale": "dimensionless positive scale factor",
}


# ----------------------------------------------------------------------------- helpers


def flatten_variables(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Nested mappings -> ``{'params/expand_conv/kernel': np.ndarray, ...}`` (host arrays).

    Keys are joined with '/'; a key that itself contains '/' is refused (it could not be
    rebuilt). Order follows sorted keys (the order JAX flattens dicts in).
    """
    out: dict[str, np.ndarray] = {}

    def visit(node, prefix):
        if isinstance(node, Mapping):
            if not node:
                raise ValueError(f"variables: empty mapping at {prefix or '<root>'!r}")
            for key in sorted(node):
                if not isinstance(key, str) or "/" in key or not key:
                    raise ValueError(
                        f"variables: keys must be non-empty strings without '/', got {key!r} "
                        f"under {prefix or '<root>'!r}"
                    )
                visit(node[key], f"{prefix}/{key}" if prefix else key)
            return
        a = np.asarray(jax.device_get(node))
        if a.dtype.kind not in "fiub":
            raise ValueError(
                f"variables: leaf {prefix!r} has dtype {a.dtype}; only standard numpy "
                "float/int/bool dtypes can be stored without pickle"
            )
        out[prefix] = a

    visit(variables, "")
    return out


def _model_kind(config) -> str:
    try:
        return network.kind_of(config)
    except ValueError:
        raise ValueError(
            f"config: expected a jpose.nets.temporal.TemporalConfig or jpose.nets.mlp.MLPConfig, "
            f"got {type(config).__name__}"
        ) from None


def _check_variables(flat: dict[str, np.ndarray], kind: str, config) -> None:
    """Same paths, shapes and dtypes as a fresh ``init`` of ``config`` (shapes only)."""
    net = network.Network(kind, config)
    expected = flatten_variables(
        jax.tree.map(
            lambda s: np.zeros(s.shape, s.dtype),
            jax.eval_shape(lambda: net.init(jax.random.key(0))),
        )
    )
    if set(flat) != set(expected):
        raise ValueError(
            f"variables: do not match config {config}: missing {sorted(set(expected) - set(flat))}, "
            f"unexpected {sorted(set(flat) - set(expected))}"
        )
    for path, ref in expected.items():
        a = flat[path]
        if a.shape != ref.shape or a.dtype != ref.dtype:
            raise ValueError(
                f"variables: {path!r} is {a.dtype}{a.shape}, config {config} needs "
                f"{ref.dtype}{ref.shape}"
            )
        if not np.isfinite(a).all():
            raise ValueError(f"variables: {path!r} has non-finite values")


def _inference_fn(kind: str, config):
    """``f(variables, keypoints) -> {'poses', ...}`` in eval mode (no dropout rng needed)."""
    net = network.Network(kind, config)

    def lifter_inference(variables, keypoints):
        if kind == "temporal":  # the sequence form (edge-padded), not the training form
            return {"poses": net.predict(variables, keypoints)}
        outputs, _ = net.apply(variables, keypoints, train=False)
        return {"poses" if k == "pose" else k: v for k, v in outputs.items()}

    return lifter_inference


def _dims(shape) -> list:
    """JSON-able shape: symbolic dimensions as their names ('b', 't')."""
    return [d if isinstance(d, int) else str(d) for d in shape]


def _output_names(config, layout: skeleton.Skeleton, output_layout):
    """(output layout name or None, output joint names, output kind)."""
    j_out = config.num_joints_out
    if output_layout is None:
        if j_out == 1 and layout.num_joints != 1:
            # The trajectory model (VideoPose3D's model_traj): one "joint", the root position.
            return None, (layout.joint_names[layout.root],), "trajectory"
        output_layout = layout
    out = skeleton.get(output_layout)
    if out.num_joints != j_out:
        raise ValueError(
            f"output_layout: {out.name!r} has {out.num_joints} joints but config."
            f"num_joints_out = {j_out}"
        )
    return out.name, out.joint_names, "pose"


# ----------------------------------------------------------------------------- export


def checked_lifter(variables, config, kind: str, *, layout: str, output_layout: str | None,
                   metadata: Mapping[str, Any] | None):
    """The checks every export format runs on its inputs; returns ``(input layout,
    output layout name, output joint names, output kind, flat variables, user
    metadata)``. ``ValueError`` naming the argument at fault."""
    in_layout = skeleton.get(layout)
    if in_layout.num_joints != config.num_joints_in:
        raise ValueError(
            f"layout: {in_layout.name!r} has {in_layout.num_joints} joints but "
            f"config.num_joints_in = {config.num_joints_in}"
        )
    out_layout_name, out_names, output_kind = _output_names(config, in_layout, output_layout)
    if not isinstance(variables, Mapping):
        raise ValueError(f"variables: expected a mapping, got {type(variables).__name__}")
    flat = flatten_variables(variables)
    _check_variables(flat, kind, config)
    user = {} if metadata is None else dict(metadata)
    try:
        json.dumps(user)
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata: must be JSON-serialisable ({e})") from None
    return in_layout, out_layout_name, out_names, output_kind, flat, user


def describe_lifter(kind: str, output_kind: str, config, *, receptive_field: int,
                    input_layout: skeleton.Skeleton, output_layout: str | None,
                    output_joint_names, outputs) -> dict[str, Any]:
    """The metadata every export format records about a lifter (jax.export and ONNX):
    kinds, config, receptive field, joint layouts and names, units of the ``outputs``."""
    units = {"input": INPUT_UNITS,
             "output": TRAJECTORY_UNITS if output_kind == "trajectory" else POSE_UNITS}
    units.update({k: v for k, v in _HEAD_UNITS.items() if k in outputs})
    return {"model_kind": kind, "output_kind": output_kind,
            "config": dataclasses.asdict(config), "receptive_field": receptive_field,
            "input_layout": input_layout.name,
            "input_joint_names": list(input_layout.joint_names),
            "output_layout": output_layout, "output_joint_names": list(output_joint_names),
            "units": units}


def export_lifter(
    variables: Mapping[str, Any],
    config,
    directory,
    *,
    layout: str = "h36m_17",
    output_layout: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    platforms: Sequence[str] | None = DEFAULT_PLATFORMS,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export a temporal or MLP lifter for inference (see the module docstring).

    Args:
      variables: ``{'params', 'batch_stats'}`` of the model (as from ``init`` / training);
        must match ``config`` in structure, shapes and dtypes, and be finite.
      config: a :class:`~jpose.nets.temporal.TemporalConfig` (exported with input
        ``(b, t, J_in, C_in)``, both ``b`` and ``t`` symbolic, padded so T_out == T) or a
        :class:`~jpose.nets.mlp.MLPConfig` (input ``(b, J_in, C_in)``).
      directory: where to write the export; must not exist unless ``overwrite``.
      layout: joint layout of the input (a name known to :func:`jpose.skeleton.get`) with
        ``config.num_joints_in`` joints.
      output_layout: layout of the output joints; default ``layout``, except for a
        one-joint output (trajectory model), whose only joint is ``layout``'s root.
      metadata: extra JSON-serialisable user information, stored under ``'user'``.
      platforms: platforms to lower for (default ``('cpu', 'cuda')``); ``None`` = the
        default backend only.
      overwrite: replace an existing export (or an empty directory) at ``directory``.

    Returns:
      The metadata dict written to ``metadata.json``.

    Raises:
      ValueError: bad config, layout, variables or metadata.
      FileExistsError: ``directory`` exists and ``overwrite`` is False, or exists and is
        not an export that may be replaced.
    """
    kind = _model_kind(config)
    directory = os.path.abspath(os.fspath(directory))
    _check_target(directory, overwrite=overwrite)
    in_layout, out_layout_name, out_names, output_kind, flat, user = checked_lifter(
        variables, config, kind, layout=layout, output_layout=output_layout, metadata=metadata)
    if platforms is not None:
        platforms = tuple(platforms)
        if not platforms or not all(isinstance(p, str) for p in platforms):
            raise ValueError(f"platforms: expected a non-empty sequence of names, got {platforms!r}")

    # Trace and lower before touching the file system: most failures happen here.
    host_variables = exported_model._unflatten(flat)  # plain nested dicts (not FrozenDict)
    variables_spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), host_variables)
    j, c = config.num_joints_in, config.in_features
    if kind == "temporal":
        b, t = jax.export.symbolic_shape("b, t")
        keypoints_spec = jax.ShapeDtypeStruct((b, t, j, c), jnp.float32)
        input_axes = ["batch", "time", "joint", "feature"]
        receptive_field = config.receptive_field
    else:
        (b,) = jax.export.symbolic_shape("b")
        keypoints_spec = jax.ShapeDtypeStruct((b, j, c), jnp.float32)
        input_axes = ["batch", "joint", "feature"]
        receptive_field = 1
    fn = _inference_fn(kind, config)
    exported = jax.export.export(jax.jit(fn), platforms=platforms)(variables_spec, keypoints_spec)

    out_avals = jax.tree.unflatten(exported.out_tree, exported.out_avals)
    meta = {
        "format": exported_model.FORMAT,
        "format_version": FORMAT_VERSION,
        **describe_lifter(kind, output_kind, config, receptive_field=receptive_field,
                          input_layout=in_layout, output_layout=out_layout_name,
                          output_joint_names=out_names, outputs=out_avals),
        "input_axes": input_axes,
        "input_shape": _dims(keypoints_spec.shape),
        "input_dtype": "float32",
        "outputs": {
            name: {"shape": _dims(aval.shape), "dtype": str(aval.dtype)}
            for name, aval in out_avals.items()
        },
        "variables": [
            {"path": path, "shape": list(a.shape), "dtype": str(a.dtype)} for path, a in flat.items()
        ],
        "platforms": list(exported.platforms),
        "calling_convention_version": exported.calling_convention_version,
        "jax_version": jax.__version__,
        "jpose_version": jpose.__version__,
        "files": {
            "model": exported_model.MODEL_FILE,
            "variables": exported_model.VARIABLES_FILE,
            "metadata": exported_model.METADATA_FILE,
        },
        "user": user,
    }

    def write(tmp):
        with open(os.path.join(tmp, exported_model.VARIABLES_FILE), "wb") as f:
            np.savez(f, **flat)
            _sync(f)
        with open(os.path.join(tmp, exported_model.MODEL_FILE), "wb") as f:
            f.write(exported.serialize())
            _sync(f)
        # Metadata last: a directory with a valid metadata.json is a complete export.
        with open(os.path.join(tmp, exported_model.METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
            _sync(f)

    _write_atomically(directory, write, overwrite=overwrite)
    return meta


def _sync(f) -> None:
    f.flush()
    os.fsync(f.fileno())


def _is_replaceable(directory: str) -> bool:
    """An empty directory, or one holding a jpose export (its metadata names our format)."""
    if not os.path.isdir(directory) or os.path.islink(directory):
        return False
    entries = os.listdir(directory)
    if not entries:
        return True
    # model.onnx: the ONNX twin launch/export.py --onnx writes beside the jax export
    # (replaced with the directory: its weights would be stale).
    allowed = {exported_model.MODEL_FILE, exported_model.VARIABLES_FILE,
               exported_model.METADATA_FILE, "model.onnx"}
    if not set(entries) <= allowed:
        return False
    try:
        with open(os.path.join(directory, exported_model.METADATA_FILE), encoding="utf-8") as f:
            return json.load(f).get("format") == exported_model.FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_target(directory: str, *, overwrite: bool) -> None:
    if not os.path.lexists(directory):
        return
    if not overwrite:
        raise FileExistsError(
            f"directory: {directory!r} already exists; pass overwrite=True to replace an "
            "existing export"
        )
    if not _is_replaceable(directory):
        raise FileExistsError(
            f"directory: {directory!r} exists and is not a jpose export or an empty "
            "directory; refusing to replace it even with overwrite=True"
        )


def _write_atomically(directory: str, write, *, overwrite: bool) -> None:
    """Run ``write(tmp_dir)`` then move ``tmp_dir`` to ``directory`` (see module doc)."""
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    name = os.path.basename(directory)
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    # mkdtemp makes the directory private (0700); an export is shared like any directory.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    old = None
    try:
        write(tmp)
        _check_target(directory, overwrite=overwrite)  # again: it may have appeared meanwhile
        if os.path.lexists(directory):
            # A non-empty directory cannot be replaced by one rename: move the old export
            # aside first and restore it if the second rename fails.
            old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
            os.rename(directory, os.path.join(old, name))
        try:
            os.rename(tmp, directory)
        except BaseException:
            if old is not None:
                os.rename(os.path.join(old, name), directory)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.lexists(os.path.join(old, name)):
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
