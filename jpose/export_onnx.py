"""Export a trained lifter to ONNX (run it with onnxruntime, no JAX needed).

:func:`export_onnx` writes one ``.onnx`` file beside (or instead of) the ``jax.export``
directory of :mod:`jpose.export`::

    import json, onnxruntime as ort
    sess = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    meta = json.loads(sess.get_modelmeta().custom_metadata_map["jpose"])
    poses, = sess.run(["poses"], {"keypoints": screen.astype("float32")})  # (B, T, J, 3)

How: the graph is written directly from the Flax variables with the ``onnx`` helper API,
not traced from JAX. The lifters are plain layers (temporal convolutions / dense layers,
batch norm in eval mode, ReLU, residual adds, softplus), so each maps onto one standard
ONNX op and the graph is small and readable (Netron shows the layer names). ``jax2onnx``
was tried first (0.17.1, jax 0.10): it converts the MLP, and the temporal model for one
fixed sequence length, but tracing with a symbolic length fails (a slice error in the
edge-padding / residual arithmetic); it also pins ``orbax-checkpoint<0.11.37`` (jpose runs
0.12) and pulls in huggingface-hub, netron, equinox and dm-pix. The direct writer needs
only ``onnx``.

The graph (opset :data:`OPSET`, IR version :data:`IR_VERSION`, loadable by onnxruntime
>= 1.13):

* input ``keypoints``: ``(batch, time, J_in, C_in)`` (temporal) or ``(batch, J_in, C_in)``
  (MLP), float32 normalised screen coordinates. ``batch`` and ``time`` are dynamic
  (``dim_param``): one file serves every batch size and sequence length (time >= 1).
  Unlike :class:`jpose.exported_model.ExportedLifter` there is no input check and no
  flattening of extra leading axes: pass exactly that rank and finite values.
* outputs as the ``jax.export`` program's: ``poses`` ``(batch, [time,] J_out, 3)`` metres;
  the MLP's configured heads ``root`` ``(batch, 3)`` and ``scale`` ``(batch, 1)``.
* temporal model: the sequence form of :func:`jpose.nets.temporal.apply` (edge padding
  ``config.padding`` so ``T_out == T``, ``Pad`` mode ``edge``), dilated ``Conv`` layers in
  NCW layout, residual ``Slice`` with a negative end so it stays valid for any T.
* batch norm in eval mode is folded into one per-channel ``Mul`` and ``Add`` with the
  same formula as ``jpose.nets._layers.BatchNorm`` (``x * mul + (bias - mean * mul)``,
  ``mul = scale / sqrt(var + eps)``), computed in float32 at export. Dropout is absent.

Metadata: ``metadata_props`` hold the same information the ``jax.export`` metadata.json
records (kind, config, receptive field, layouts and joint names, units, shapes, versions,
user metadata) as one JSON string under the key ``"jpose"`` (:func:`read_metadata`), plus
a few flat string keys for viewers (``model_kind``, ``receptive_field``,
``input_layout``, ``output_layout``, ``input_units``, ``output_units``).

Atomicity: the model is serialised in memory, written to a temporary file beside
``path``, flushed and renamed into place; an existing file is refused unless
``overwrite=True``, and even then only a previous jpose ONNX export is replaced.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "jpose.export_onnx needs the 'onnx' package: pip install 'jpose[onnx]' "
        "(onnx and onnxruntime)"
    ) from e

import jpose
from jpose import export

__all__ = ["FORMAT", "FORMAT_VERSION", "IR_VERSION", "METADATA_KEY", "OPSET", "export_onnx",
           "read_metadata"]

#: Marker in the metadata's ``'format'``.
FORMAT = "jpose.onnx_lifter"
#: Version of the graph interface and metadata schema; bump on an incompatible change.
FORMAT_VERSION = 1
#: ONNX default-domain opset and IR version written (onnxruntime >= 1.13 runs them).
OPSET = 17
IR_VERSION = 8
#: ``metadata_props`` key of the JSON metadata.
METADATA_KEY = "jpose"
INPUT_NAME = "keypoints"
_BATCH, _TIME = "batch", "time"


# ----------------------------------------------------------------------------- graph


class _Graph:
    """Collects nodes and initializers; names are unique by construction."""

    def __init__(self):
        self.nodes: list = []
        self.initializers: list = []

    def const(self, name: str, value) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs, output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attrs))
        return output

    def batch_norm(self, x: str, name: str, params, stats, eps: float, channel_shape) -> str:
        """Eval-mode batch norm, as ``_layers.BatchNorm``: ``x * mul + (bias - mean * mul)``."""
        scale = np.asarray(params[name]["scale"], np.float32)
        bias = np.asarray(params[name]["bias"], np.float32)
        mean = np.asarray(stats[name]["mean"], np.float32)
        var = np.asarray(stats[name]["var"], np.float32)
        mul = scale * (np.float32(1.0) / np.sqrt(var + np.float32(eps)))
        shift = bias - mean * mul
        mul = self.const(f"{name}/mul", mul.reshape(channel_shape))
        y = self.op("Mul", [x, mul], f"{name}/scaled")
        return self.op("Add", [y, self.const(f"{name}/shift", shift.reshape(channel_shape))], name)


def _body_frame_features(g: _Graph, config) -> str:
    """``jpose.nets.temporal.body_frame_features`` of the input, as ONNX ops."""
    def axis3(name, start, end):
        return g.op("Slice", [INPUT_NAME, g.const(f"{name}/start", np.array([start], np.int64)),
                              g.const(f"{name}/end", np.array([end], np.int64)),
                              g.const(f"{name}/axis", np.array([3], np.int64))], name)

    uv = axis3("body/uv", 0, 2)
    picked = g.op("Gather", [uv, g.const("body/centre_joints",
                                         np.asarray(config.centre_joints, np.int64))],
                  "body/picked", axis=2)
    centre = g.op("ReduceMean", [picked], "body/centre", axes=[2], keepdims=1)
    rel = g.op("Sub", [uv, centre], "body/rel")
    mean_sq = g.op("ReduceMean", [g.op("Mul", [rel, rel], "body/sq")], "body/mean_sq",
                   axes=[2, 3], keepdims=1)  # mean over (J, 2) = half the mean |rel|^2
    spread = g.op("Add", [g.op("Sqrt", [g.op("Mul", [mean_sq, g.const(
        "body/two", np.array(2.0, np.float32))], "body/mean_norm_sq")], "body/rms"),
        g.const("body/eps", np.array(1e-6, np.float32))], "body/spread")
    parts = [g.op("Div", [rel, spread], "body/normalised")]
    if config.in_features > 2:
        parts.append(axis3("body/rest", 2, config.in_features))
    extra = g.op("Concat", [centre, g.op("Log", [spread], "body/log_spread")], "body/extra",
                 axis=3)
    parts.append(g.op("Add", [extra, g.const("body/joints", np.zeros(
        (1, 1, config.num_joints_in, 1), np.float32))], "body/extra_per_joint"))
    return g.op("Concat", parts, "body/features", axis=3)


def _temporal_graph(g: _Graph, variables, config) -> dict[str, str]:
    params, stats = variables["params"], variables["batch_stats"]
    cfg = config
    feat = cfg.num_joints_in * cfg.network_features
    source = _body_frame_features(g, cfg) if cfg.centre_joints else INPUT_NAME
    x = g.op("Reshape", [source, g.const("shape/in", np.array([0, 0, feat], np.int64))], "flat")
    x = g.op("Transpose", [x], "ncw", perm=[0, 2, 1])  # (N, F, T): ONNX Conv is channels-first
    left, right = cfg.padding
    if left or right:
        pads = np.array([0, 0, left, 0, 0, right], np.int64)
        x = g.op("Pad", [x, g.const("pads", pads)], "padded", mode="edge")
    channel = (cfg.channels, 1)

    def conv(h, name, dilation, bias=False):
        kernel = np.asarray(params[name]["kernel"], np.float32)  # (w, in, out) -> (out, in, w)
        inputs = [h, g.const(f"{name}/kernel", np.ascontiguousarray(kernel.transpose(2, 1, 0)))]
        if bias:
            inputs.append(g.const(f"{name}/bias", np.asarray(params[name]["bias"], np.float32)))
        return g.op("Conv", inputs, name, dilations=[dilation], kernel_shape=[kernel.shape[0]],
                    strides=[1], pads=[0, 0])

    h = conv(x, "expand_conv", cfg.dilations[0])
    h = g.op("Relu", [g.batch_norm(h, "expand_bn", params, stats, cfg.bn_eps, channel)], "expand")
    for i, (w, dilation) in enumerate(zip(cfg.filter_widths[1:], cfg.dilations[1:])):
        pad = (w - 1) * dilation // 2
        if pad:  # the frames aligned with the outputs: [pad, T - pad), causal [2 pad, T)
            start, end = (2 * pad, np.iinfo(np.int64).max) if cfg.causal else (pad, -pad)
            res = g.op("Slice", [h, g.const(f"block{i}/res_start", np.array([start], np.int64)),
                                 g.const(f"block{i}/res_end", np.array([end], np.int64)),
                                 g.const(f"block{i}/res_axis", np.array([2], np.int64))],
                       f"block{i}/residual")
        else:
            res = h
        y = conv(h, f"block{i}_conv", dilation)
        y = g.op("Relu", [g.batch_norm(y, f"block{i}_conv_bn", params, stats, cfg.bn_eps, channel)],
                 f"block{i}_conv_relu")
        y = conv(y, f"block{i}_pointwise", 1)
        y = g.op("Relu", [g.batch_norm(y, f"block{i}_pointwise_bn", params, stats, cfg.bn_eps,
                                       channel)], f"block{i}_pointwise_relu")
        h = g.op("Add", [res, y], f"block{i}")
    y = conv(h, "shrink_conv", 1, bias=True)
    y = g.op("Transpose", [y], "nwc", perm=[0, 2, 1])
    shape = np.array([0, 0, cfg.num_joints_out, 3], np.int64)
    return {"poses": g.op("Reshape", [y, g.const("shape/out", shape)], "poses")}


def _mlp_graph(g: _Graph, variables, config) -> dict[str, str]:
    params, stats = variables["params"], variables["batch_stats"]
    cfg = config
    feat = cfg.num_joints_in * cfg.in_features
    x = g.op("Reshape", [INPUT_NAME, g.const("shape/in", np.array([0, feat], np.int64))], "flat")

    def dense(h, name, output=None):
        kernel = g.const(f"{name}/kernel", np.asarray(params[name]["kernel"], np.float32))
        bias = g.const(f"{name}/bias", np.asarray(params[name]["bias"], np.float32))
        return g.op("Gemm", [h, kernel, bias], output or name)

    def layer(h, name_dense, name_bn):
        h = g.batch_norm(dense(h, name_dense), name_bn, params, stats, cfg.bn_eps, (cfg.hidden,))
        return g.op("Relu", [h], f"{name_bn}/relu")

    h = layer(x, "input_dense", "input_bn")
    for i in range(cfg.num_blocks):
        y = layer(h, f"block{i}_dense0", f"block{i}_bn0")
        y = layer(y, f"block{i}_dense1", f"block{i}_bn1")
        h = g.op("Add", [h, y], f"block{i}")
    pose = dense(h, "pose_head")
    shape = np.array([0, cfg.num_joints_out, 3], np.int64)
    outputs = {"poses": g.op("Reshape", [pose, g.const("shape/out", shape)], "poses")}
    if "root" in cfg.heads:
        outputs["root"] = dense(h, "root_head", "root")
    if "scale" in cfg.heads:
        outputs["scale"] = g.op("Softplus", [dense(h, "scale_head")], "scale")
    return outputs


def _output_shapes(kind: str, config) -> dict[str, list]:
    lead = [_BATCH, _TIME] if kind == "temporal" else [_BATCH]
    shapes = {"poses": lead + [config.num_joints_out, 3]}
    if kind == "mlp":
        shapes.update({h: lead + [3 if h == "root" else 1] for h in config.heads})
    return shapes


def _value_info(name: str, shape) -> Any:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


# ----------------------------------------------------------------------------- export


def export_onnx(
    variables: Mapping[str, Any],
    config,
    path,
    *,
    layout: str = "h36m_17",
    output_layout: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a temporal or MLP lifter as an ONNX file (see the module docstring).

    Args:
      variables: ``{'params', 'batch_stats'}`` matching ``config`` (as for
        :func:`jpose.export.export_lifter`); finite.
      config: a :class:`~jpose.nets.temporal.TemporalConfig` or
        :class:`~jpose.nets.mlp.MLPConfig`.
      path: the file to write; must end in ``.onnx``. Its directory is created if missing.
      layout: joint layout of the input, with ``config.num_joints_in`` joints.
      output_layout: layout of the output joints; default ``layout``, except for a
        one-joint output (trajectory model), whose only joint is ``layout``'s root.
      metadata: extra JSON-serialisable user information, stored under ``'user'``.
      overwrite: replace an existing jpose ONNX export at ``path``.

    Returns:
      The metadata dict stored under ``metadata_props['jpose']``.

    Raises:
      ValueError: bad config, layout, variables, metadata or path suffix.
      FileExistsError: ``path`` exists and ``overwrite`` is False, or exists and is not a
        jpose ONNX export (a directory, another file).
    """
    kind = export._model_kind(config)
    path = os.path.abspath(os.fspath(path))
    if not path.endswith(".onnx"):
        raise ValueError(f"path: expected a file name ending in '.onnx', got {path!r}")
    _check_target(path, overwrite=overwrite)
    in_layout, out_layout_name, out_names, output_kind, flat, user = export.checked_lifter(
        variables, config, kind, layout=layout, output_layout=output_layout, metadata=metadata)
    host = {"params": {}, "batch_stats": {}}
    for key, a in flat.items():  # 'params/<layer>/<leaf>' -> nested dicts of numpy arrays
        collection, layer, leaf = key.split("/")
        host[collection].setdefault(layer, {})[leaf] = a

    j, c = config.num_joints_in, config.in_features
    if kind == "temporal":
        input_shape, input_axes = [_BATCH, _TIME, j, c], ["batch", "time", "joint", "feature"]
        receptive_field = config.receptive_field
    else:
        input_shape, input_axes = [_BATCH, j, c], ["batch", "joint", "feature"]
        receptive_field = 1
    g = _Graph()
    outputs = (_temporal_graph if kind == "temporal" else _mlp_graph)(g, host, config)
    out_shapes = _output_shapes(kind, config)
    assert list(outputs) == list(out_shapes) and all(k == v for k, v in outputs.items())

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **export.describe_lifter(kind, output_kind, config, receptive_field=receptive_field,
                                 input_layout=in_layout, output_layout=out_layout_name,
                                 output_joint_names=out_names, outputs=outputs),
        "input_name": INPUT_NAME,
        "input_axes": input_axes,
        "input_shape": input_shape,
        "input_dtype": "float32",
        "outputs": {k: {"shape": shape, "dtype": "float32"} for k, shape in out_shapes.items()},
        "opset": OPSET,
        "onnx_version": onnx.__version__,
        "jpose_version": jpose.__version__,
        "user": user,
    }
    meta = json.loads(json.dumps(meta))  # returned exactly as stored (tuples -> lists)

    graph = helper.make_graph(
        g.nodes, f"jpose_{kind}_lifter",
        [_value_info(INPUT_NAME, input_shape)],
        [_value_info(name, shape) for name, shape in out_shapes.items()],
        initializer=g.initializers,
        doc_string=f"input: {meta['units']['input']}; poses: {meta['units']['output']}",
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="jpose", producer_version=jpose.__version__,
        doc_string=f"jpose {kind} lifter ({receptive_field}-frame receptive field)",
    )
    helper.set_model_props(model, {
        METADATA_KEY: json.dumps(meta),
        "model_kind": kind,
        "receptive_field": str(receptive_field),
        "input_layout": in_layout.name,
        "output_layout": str(out_layout_name),
        "input_units": meta["units"]["input"],
        "output_units": meta["units"]["output"],
    })
    # Shape inference over the whole graph: catches a wrong kernel layout or reshape here.
    onnx.checker.check_model(model, full_check=True)
    _write_atomically(path, model.SerializeToString(), overwrite=overwrite)
    return meta


def read_metadata(path) -> dict[str, Any]:
    """The metadata dict of a file written by :func:`export_onnx` (weights not loaded)."""
    path = os.fspath(path)
    model = onnx.load(path, load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ValueError(f"{path}: not a jpose ONNX export (no {METADATA_KEY!r} metadata)")
    meta = json.loads(props[METADATA_KEY])
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: expected format {FORMAT!r}, got {meta.get('format')!r}")
    return meta


def _is_replaceable(path: str) -> bool:
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    try:
        read_metadata(path)
    except Exception:  # noqa: BLE001 -- anything unreadable is not ours to replace
        return False
    return True


def _check_target(path: str, *, overwrite: bool) -> None:
    if not os.path.lexists(path):
        return
    if not overwrite:
        raise FileExistsError(f"path: {path!r} already exists; pass overwrite=True to replace "
                              "a previous ONNX export")
    if not _is_replaceable(path):
        raise FileExistsError(f"path: {path!r} exists and is not a jpose ONNX export; refusing "
                              "to replace it even with overwrite=True")


def _write_atomically(path: str, blob: bytes, *, overwrite: bool) -> None:
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.tmp-", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)  # mkstemp makes the file private (0600); an export is shared
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        _check_target(path, overwrite=overwrite)  # again: it may have appeared meanwhile
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise
