"""PyTorch state dicts <-> jpose (Flax) variable trees, without importing torch.

A state dict here is any mapping ``name -> array`` (numpy, or anything ``np.asarray``
takes), e.g. ``{k: v.numpy() for k, v in torchvision.models.resnet50(weights=...)
.state_dict().items()}`` made where torch is installed and saved with ``np.savez``.

Layouts: PyTorch conv weights are ``OIHW`` (out, in, kH, kW), Flax kernels ``HWIO``;
linear weights ``(out, in)`` vs ``(in, out)``. Batch norm ``weight``/``bias``/
``running_mean``/``running_var`` become ``params/{scale, bias}`` and ``batch_stats/{mean,
var}``; ``num_batches_tracked`` is dropped (jpose's momentum is a call argument).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jpose.nets import resnet

__all__ = ["conv_kernel_from_torch", "conv_kernel_to_torch", "resnet_from_torchvision",
           "resnet_to_torchvision", "torchvision_resnet_layers"]


def conv_kernel_from_torch(weight) -> np.ndarray:
    """``OIHW`` -> ``HWIO`` (float32)."""
    return np.ascontiguousarray(np.asarray(weight, np.float32).transpose(2, 3, 1, 0))


def conv_kernel_to_torch(kernel) -> np.ndarray:
    """``HWIO`` -> ``OIHW`` (float32)."""
    return np.ascontiguousarray(np.asarray(kernel, np.float32).transpose(3, 2, 0, 1))


def torchvision_resnet_layers(config: resnet.ResNetConfig) -> list[tuple[str, str, tuple]]:
    """``(torch prefix, kind, flax path)`` of every conv and batch norm, kind "conv"/"bn".

    E.g. ``("layer2.0.downsample.0", "conv", ("layer2_0", "downsample_conv"))``.
    """
    out = [("conv1", "conv", ("conv1",)), ("bn1", "bn", ("bn1",))]
    convs = 3 if config.bottleneck else 2
    template = jax.eval_shape(lambda: resnet.init(jax.random.key(0), config))["params"]
    for s in range(config.num_stages):
        for b in range(config.blocks[s]):
            block = f"layer{s + 1}_{b}"
            for c in range(1, convs + 1):
                out.append((f"layer{s + 1}.{b}.conv{c}", "conv", (block, f"conv{c}")))
                out.append((f"layer{s + 1}.{b}.bn{c}", "bn", (block, f"bn{c}")))
            if "downsample_conv" in template[block]:
                out.append((f"layer{s + 1}.{b}.downsample.0", "conv",
                            (block, "downsample_conv")))
                out.append((f"layer{s + 1}.{b}.downsample.1", "bn", (block, "downsample_bn")))
    return out


def _set(tree: dict, path: tuple, value) -> None:
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _get(tree, path: tuple):
    for k in path:
        tree = tree[k]
    return tree


def resnet_from_torchvision(state_dict: Mapping[str, Any], *,
                            config: resnet.ResNetConfig) -> dict[str, Any]:
    """``{'params', 'batch_stats'}`` of :mod:`jpose.nets.resnet` from a torchvision ResNet
    state dict.

    A ``module.`` prefix (DataParallel) is stripped; ``fc.*`` (the classifier, which the
    backbone does not have), ``num_batches_tracked`` and the layers of stages beyond
    ``config.num_stages`` are ignored; any other unknown key, a missing key or a wrong
    shape raises ``ValueError`` naming it. With ``config.bn_affine=False`` the state dict
    must have no batch-norm ``weight``/``bias`` (torch ``affine=False``). Converted
    weights reproduce torchvision's features with ``imagenet_normalise=True`` on images in
    [0, 1] (torchvision's transforms normalise outside the model).

    To use it as the backbone of :mod:`jpose.nets.pose2d`, put the result under
    ``variables[...]["backbone"]`` (:func:`jpose.nets.pose2d.with_backbone`).
    """
    sd = {}
    for k, v in state_dict.items():
        k = k.removeprefix("module.")
        if k.endswith("num_batches_tracked") or k.startswith("fc."):
            continue
        stage = k.split(".", 1)[0]
        if stage.startswith("layer") and int(stage[5:]) > config.num_stages:
            continue
        sd[k] = np.asarray(v, np.float32)
    expected = jax.eval_shape(lambda: resnet.init(jax.random.key(0), config))
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    used: set[str] = set()

    def take(key, shape):
        if key not in sd:
            raise ValueError(f"state_dict: missing key {key!r} for {config}")
        if sd[key].shape != tuple(shape):
            raise ValueError(f"state_dict: {key!r} has shape {sd[key].shape}, expected "
                             f"{tuple(shape)}")
        used.add(key)
        return sd[key]

    for prefix, kind, path in torchvision_resnet_layers(config):
        if kind == "conv":
            h, w, i, o = _get(expected["params"], path)["kernel"].shape
            _set(params, path, {"kernel": conv_kernel_from_torch(
                take(f"{prefix}.weight", (o, i, h, w)))})
        else:
            c = _get(expected["batch_stats"], path)["mean"].shape
            if config.bn_affine:
                _set(params, path, {"scale": take(f"{prefix}.weight", c),
                                    "bias": take(f"{prefix}.bias", c)})
            _set(stats, path, {"mean": take(f"{prefix}.running_mean", c),
                               "var": take(f"{prefix}.running_var", c)})
    unused = sorted(set(sd) - used)
    if unused:
        raise ValueError(f"state_dict: unexpected keys {unused} for {config}")
    return {"params": params, "batch_stats": stats}


def resnet_to_torchvision(variables: Mapping[str, Any], *,
                          config: resnet.ResNetConfig) -> dict[str, np.ndarray]:
    """The inverse of :func:`resnet_from_torchvision` (no ``fc``, no
    ``num_batches_tracked``): torchvision names -> float32 numpy arrays."""
    out: dict[str, np.ndarray] = {}
    for prefix, kind, path in torchvision_resnet_layers(config):
        if kind == "conv":
            out[f"{prefix}.weight"] = conv_kernel_to_torch(
                _get(variables["params"], path)["kernel"])
            continue
        if config.bn_affine:
            p = _get(variables["params"], path)
            out[f"{prefix}.weight"] = np.asarray(p["scale"], np.float32)
            out[f"{prefix}.bias"] = np.asarray(p["bias"], np.float32)
        s = _get(variables["batch_stats"], path)
        out[f"{prefix}.running_mean"] = np.asarray(s["mean"], np.float32)
        out[f"{prefix}.running_var"] = np.asarray(s["var"], np.float32)
    return out
