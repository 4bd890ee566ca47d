"""Run an exported jpose lifter with nothing but ``json``, ``numpy`` and ``jax``.

This file is **standalone on purpose**: it imports no jpose, flax or optax, so it can be
copied next to an export directory and used on a machine that has only JAX installed::

    from exported_model import ExportedLifter, pixels_to_screen
    model = ExportedLifter.load("exports/videopose_243f")
    screen = pixels_to_screen(keypoints_px, width=1920, height=1080)  # (T, J, 2)
    poses = model(screen)                                            # (T, J_out, 3) metres

An export (written by ``jpose.export.export_lifter``) is a directory of three files:

* ``model.jaxexport`` -- ``jax.export.Exported.serialize()`` bytes of the inference function
  ``f(variables, keypoints)`` (eval mode: running batch-norm statistics, no dropout) with a
  symbolic batch size and, for temporal models, a symbolic sequence length. The weights are
  an *argument*, not constants baked into the program.
* ``variables.npz`` -- the weights, one array per leaf of the variables pytree, keyed by
  the '/'-joined path (``params/expand_conv/kernel``). Loaded with ``allow_pickle=False``.
* ``metadata.json`` -- model kind and config, receptive field, joint layouts and names,
  units, the variables' paths/shapes/dtypes (to rebuild the pytree argument), platforms,
  the JAX version that exported it, and :data:`FORMAT_VERSION`.

Units (also in ``metadata['units']``): the input is normalised screen coordinates
``x = u / w * 2 - 1, y = v / w * 2 - h / w`` (:func:`pixels_to_screen`), joints in
``metadata['input_joint_names']`` order; the pose output is in metres, camera frame
(x right, y down, z forward), root-relative.

JAX versions: ``jax.export`` guarantees that a newer JAX can run what an older one exported
for at least six months of releases; a program exported by a *newer* JAX than the one
loading it may be refused (a clear error is raised either way).
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MODEL_FILE",
    "VARIABLES_FILE",
    "METADATA_FILE",
    "ExportedLifter",
    "pixels_to_screen",
]

#: Marker in ``metadata.json['format']``.
FORMAT = "jpose.exported_lifter"
#: Version of the directory layout and metadata schema this loader reads. Kept equal to
#: ``jpose.export.FORMAT_VERSION`` (tested); bump both on an incompatible change.
FORMAT_VERSION = 1
MODEL_FILE = "model.jaxexport"
VARIABLES_FILE = "variables.npz"
METADATA_FILE = "metadata.json"


def pixels_to_screen(uv, width, height) -> np.ndarray:
    """Pixels -> normalised screen coordinates: ``x = u / w * 2 - 1``, ``y = v / w * 2 - h / w``.

    A deliberate duplicate of ``jpose.camera.pixels_to_screen`` (VideoPose3D's
    ``normalize_screen_coordinates``) so that this file stays standalone; a test checks that
    the two agree. x spans [-1, 1] over the image width; y is scaled by the same factor, so
    the aspect ratio is kept (y down, spanning [-h/w, h/w]).

    Args:
      uv: (..., 2) pixel coordinates (u right, v down).
      width, height: image size in pixels; scalars or arrays broadcastable against
        ``uv[..., 0]``.

    Returns:
      (..., 2) float64 array.
    """
    uv = np.asarray(uv, dtype=np.float64)
    if uv.ndim < 1 or uv.shape[-1] != 2:
        raise ValueError(f"uv: expected shape (..., 2) pixels, got {uv.shape}")
    w = np.asarray(width, dtype=np.float64)
    h = np.asarray(height, dtype=np.float64)
    if np.any(w <= 0) or np.any(h <= 0):
        raise ValueError(f"width, height: expected positive image size, got {width}, {height}")
    x = uv[..., 0] / w * 2.0 - 1.0
    y = uv[..., 1] / w * 2.0 - h / w
    return np.stack(np.broadcast_arrays(x, y), axis=-1)


def _unflatten(leaves: dict[str, np.ndarray]) -> dict:
    """Nested dicts from '/'-joined paths (the pytree of the exported variables argument)."""
    tree: dict = {}
    for path, value in leaves.items():
        node = tree
        *parents, last = path.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return tree


class ExportedLifter:
    """A deserialised lifter and its weights; call it on normalised screen coordinates.

    Attributes:
      metadata: the parsed ``metadata.json``.
      kind: ``'temporal'`` (sequence model) or ``'mlp'`` (single-frame model).
      joint_names: output joint names, in output order.
      input_joint_names: joint names the input must follow, in order.
      receptive_field: input frames one output frame depends on (1 for the MLP).
      platforms: platforms the program was lowered for (e.g. ``('cpu', 'cuda')``).
    """

    def __init__(self, exported, variables: dict, metadata: dict):
        self.metadata = metadata
        self.kind = metadata["model_kind"]
        self.joint_names = tuple(metadata["output_joint_names"])
        self.input_joint_names = tuple(metadata["input_joint_names"])
        self.receptive_field = int(metadata["receptive_field"])
        self.platforms = tuple(exported.platforms)
        self._exported = exported
        self._num_joints_in = len(self.input_joint_names)
        self._in_features = int(metadata["config"]["in_features"])
        # (batch, T, J, C) for temporal models, (batch, J, C) for the MLP.
        self._core_rank = 3 if self.kind == "temporal" else 2
        # Weights go to the device once; the program is compiled once per input shape.
        self._variables = jax.device_put(variables)
        self._call = jax.jit(exported.call)

    # ------------------------------------------------------------------------- loading

    @classmethod
    def load(cls, directory) -> "ExportedLifter":
        """Load an export directory written by ``jpose.export.export_lifter``.

        Raises:
          FileNotFoundError: a file is missing (the message lists the expected paths).
          ValueError: unknown format or format version, or variables that do not match
            the metadata.
        """
        directory = os.fspath(directory)
        paths = {
            name: os.path.join(directory, name)
            for name in (MODEL_FILE, VARIABLES_FILE, METADATA_FILE)
        }
        missing = [p for p in paths.values() if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(
                f"directory: {directory!r} is not a complete jpose export; missing "
                f"{missing}. Expected files: {sorted(paths.values())}"
            )
        with open(paths[METADATA_FILE], encoding="utf-8") as f:
            try:
                metadata = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{paths[METADATA_FILE]}: not valid JSON ({e})") from None
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise ValueError(
                f"{paths[METADATA_FILE]}: expected 'format': {FORMAT!r}, got "
                f"{metadata.get('format') if isinstance(metadata, dict) else type(metadata)!r}"
            )
        version = metadata.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{paths[METADATA_FILE]}: format_version {version!r} is not supported by this "
                f"loader (reads format_version {FORMAT_VERSION}); use the exported_model.py "
                f"of the jpose version that wrote it (jax {metadata.get('jax_version')})"
            )

        variables = _load_variables(paths[VARIABLES_FILE], metadata["variables"])
        with open(paths[MODEL_FILE], "rb") as f:
            blob = f.read()
        try:
            exported = jax.export.deserialize(bytearray(blob))
        except Exception as e:  # noqa: BLE001 -- re-raised with the versions involved
            raise ValueError(
                f"{paths[MODEL_FILE]}: cannot deserialise (exported with jax "
                f"{metadata.get('jax_version')}, running jax {jax.__version__}): {e}"
            ) from e
        return cls(exported, variables, metadata)

    # ------------------------------------------------------------------------- running

    def _expected(self) -> str:
        j, c = self._num_joints_in, self._in_features
        if self.kind == "temporal":
            return f"(batch, T, J={j}, C={c}) or (T, {j}, {c})"
        return f"(batch, J={j}, C={c}) or ({j}, {c}), any leading axes"

    def predict(self, keypoints_screen) -> dict[str, np.ndarray]:
        """All outputs of the model as numpy arrays (``'poses'``, plus MLP heads).

        Args:
          keypoints_screen: normalised screen coordinates; temporal models take
            (..., T, J_in, C_in) (leading axes optional, flattened into the symbolic batch
            axis), the MLP (..., J_in, C_in). Cast to float32; must be finite.

        Returns:
          ``{'poses': (..., [T,] J_out, 3) metres, ...}`` with the input's leading axes.
        """
        x = np.asarray(keypoints_screen)
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise ValueError(f"keypoints_screen: expected a real numeric array, got dtype {x.dtype}")
        x = x.astype(np.float32, copy=False)
        core = self._core_rank
        if x.ndim < core or x.shape[-2:] != (self._num_joints_in, self._in_features):
            raise ValueError(
                f"keypoints_screen: expected shape {self._expected()} normalised screen "
                f"coordinates (joints {self.input_joint_names[:3]}...), got {x.shape}"
            )
        if self.kind == "temporal" and x.shape[-3] == 0:
            raise ValueError(f"keypoints_screen: the sequence has no frames (shape {x.shape})")
        finite = np.isfinite(x)
        if not finite.all():
            first = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise ValueError(
                f"keypoints_screen: {int(x.size - finite.sum())} non-finite value(s), first at "
                f"index {first}; fill or drop missing keypoints before lifting"
            )
        lead = x.shape[: x.ndim - core]
        batch = int(np.prod(lead, dtype=np.int64))
        if batch == 0:  # symbolic dims are >= 1: answer an empty batch without running
            t = x.shape[-3] if core == 3 else None
            return {
                name: np.zeros(
                    lead + tuple(t if d == "t" else d for d in spec["shape"][1:]), spec["dtype"]
                )
                for name, spec in self.metadata["outputs"].items()
            }
        outputs = self._call(self._variables, x.reshape((batch,) + x.shape[x.ndim - core:]))
        return {k: np.asarray(v).reshape(lead + v.shape[1:]) for k, v in outputs.items()}

    def __call__(self, keypoints_screen) -> np.ndarray:
        """3D poses (..., [T,] J_out, 3), metres, camera frame, root-relative (numpy)."""
        return self.predict(keypoints_screen)["poses"]

    def __repr__(self) -> str:
        cfg = self.metadata.get("config", {})
        return (
            f"ExportedLifter(kind={self.kind!r}, receptive_field={self.receptive_field}, "
            f"joints_in={self._num_joints_in}, joints_out={len(self.joint_names)}, "
            f"platforms={self.platforms}, config={cfg})"
        )


def _load_variables(path: str, spec: list) -> dict:
    """Read ``variables.npz`` (no pickle) and check it against the metadata's leaf list."""
    with np.load(path, allow_pickle=False) as data:
        stored = {k: data[k] for k in data.files}
    expected = {leaf["path"] for leaf in spec}
    if set(stored) != expected:
        raise ValueError(
            f"{path}: arrays do not match metadata.json['variables']: missing "
            f"{sorted(expected - set(stored))}, unexpected {sorted(set(stored) - expected)}"
        )
    for leaf in spec:
        a = stored[leaf["path"]]
        if list(a.shape) != list(leaf["shape"]) or str(a.dtype) != leaf["dtype"]:
            raise ValueError(
                f"{path}: {leaf['path']!r} is {a.dtype}{list(a.shape)}, metadata says "
                f"{leaf['dtype']}{leaf['shape']}"
            )
    return _unflatten(stored)
