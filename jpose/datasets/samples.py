"""Real human motion that installs offline: the DeepMimic clips in the ``pybullet`` wheel.

The ``pybullet==3.2.7`` wheel (extra ``jpose[samples]``) ships the 15 reference motions of
DeepMimic (Peng et al., SIGGRAPH 2018), retargeted from motion capture, together with the
humanoid URDF they drive. This module reads both **as data only** (``json`` and
``xml.etree``); the pybullet physics engine is never imported or started. Only the tiny
pure-Python ``pybullet_data`` package is imported, to find the files.

Skeleton (``deepmimic_16`` layout, this exact order)::

    0 pelvis   1 right_hip   2 right_knee   3 right_ankle   4 left_hip   5 left_knee
    6 left_ankle   7 chest   8 neck   9 head   10 left_shoulder   11 left_elbow
    12 left_wrist   13 right_shoulder   14 right_elbow   15 right_wrist

Every joint is the origin of the URDF link of the same name (``pelvis`` is the ``root``
link), except ``head``: DeepMimic has no head joint, so ``head`` is the centre of the
head, i.e. the origin of the ``neck`` link's collision sphere, which the URDF puts at
``(0, 0.7, 0)`` (URDF units) in the neck frame, ``(0, 0.175, 0)`` m after scaling. The
URDF is authored at 4x scale and DeepMimic loads it with a global scaling of 0.25, so
every offset is multiplied by :data:`URDF_SCALE` to get metres.

Motion file (JSON ``{"Loop": "wrap"|"none", "Frames": [[44 numbers], ...]}``), per frame:
frame duration (s); root position (3, metres, world); root orientation quaternion
(w, x, y, z); then local joint rotations: chest (quat), neck (quat), right hip (quat),
right knee (1 angle, rad), right ankle (quat), right shoulder (quat), right elbow
(angle), left hip, left knee, left ankle, left shoulder, left elbow. Quaternions are
normalised on load (``backflip`` and ``roll`` contain non-unit ones). The revolute joints
(knees, elbows) turn about the ``<axis>`` the URDF gives (local z).

World frames. DeepMimic's world is **Y-up** (x forward for the character at rest, y up,
z to the character's right). jpose's world is **Z-up** like Human3.6M's (x, y
horizontal, z up). The conversion is the proper rotation of +90 degrees about x,
``(x, y, z)_zup = (x, -z, y)_yup`` (matrix :data:`YUP_TO_ZUP`, determinant +1, so
left and right are preserved): a character at rest faces +x with its right side
towards -y. The ground is the plane z = 0; the ankle joints stand about 5 cm above it
(the foot box extends 0.2 URDF units = 5 cm below the ankle).

All arrays produced here are NumPy (data preparation, not model code); positions are in
metres. Forward kinematics runs in float64 and clips are returned as float32.
"""

from __future__ import annotations

import functools
import json
import os
import xml.etree.ElementTree as ET
from typing import NamedTuple, Sequence

import numpy as np

__all__ = [
    "DEEPMIMIC_CLIPS",
    "DEEPMIMIC_JOINT_NAMES",
    "URDF_SCALE",
    "YUP_TO_ZUP",
    "SampleDataMissingError",
    "KinematicTree",
    "Motion",
    "DeepMimicClip",
    "data_path",
    "deepmimic_tree",
    "read_urdf_tree",
    "read_deepmimic_motion",
    "load_deepmimic_motion",
    "load_deepmimic_clip",
    "forward_kinematics",
    "motion_positions",
    "resample_motion",
    "quaternion_to_matrix",
    "axis_angle_to_quaternion",
]

DEEPMIMIC_CLIPS: tuple[str, ...] = (
    "backflip",
    "cartwheel",
    "crawl",
    "dance_a",
    "dance_b",
    "getup_facedown",
    "getup_faceup",
    "jump",
    "kick",
    "punch",
    "roll",
    "run",
    "spin",
    "spinkick",
    "walk",
)

# The fixed jpose order of the ``deepmimic_16`` layout (mirrors jpose.skeleton).
DEEPMIMIC_JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "chest",
    "neck",
    "head",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
)

# jpose joint name -> URDF joint name; "head" is synthesised from the neck link's sphere.
_URDF_JOINT = {name: name for name in DEEPMIMIC_JOINT_NAMES}
_URDF_JOINT["pelvis"] = "root"
_HEAD = "head"

# Layout of one 44-number frame: (jpose joint, kind) in file order after the root.
_FILE_ORDER: tuple[tuple[str, str], ...] = (
    ("chest", "quat"),
    ("neck", "quat"),
    ("right_hip", "quat"),
    ("right_knee", "angle"),
    ("right_ankle", "quat"),
    ("right_shoulder", "quat"),
    ("right_elbow", "angle"),
    ("left_hip", "quat"),
    ("left_knee", "angle"),
    ("left_ankle", "quat"),
    ("left_shoulder", "quat"),
    ("left_elbow", "angle"),
)
_FRAME_LENGTH = 44

URDF_SCALE = 0.25
"""DeepMimic loads the 4x-scale humanoid URDF with ``globalScaling=0.25``: URDF units
times this are metres."""

YUP_TO_ZUP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
YUP_TO_ZUP.flags.writeable = False
"""Rotation taking DeepMimic's Y-up world to jpose's Z-up world:
``p_zup = YUP_TO_ZUP @ p_yup``, i.e. ``(x, y, z)_zup = (x, -z, y)_yup``."""

_INSTALL_HINT = 'pip install "jpose[samples]"  (or: pip install pybullet==3.2.7)'


class SampleDataMissingError(ModuleNotFoundError):
    """The DeepMimic sample clips need the ``pybullet`` wheel's data files."""


class KinematicTree(NamedTuple):
    """Immutable kinematic tree in DeepMimic's local body frames (all tuples).

    Attributes:
      joint_names: ``J`` names, the ``deepmimic_16`` order.
      parents: ``J`` parent indices, ``-1`` for the root; parents precede children.
      offsets: ``J`` offsets ``(x, y, z)`` in **metres**, each joint's position in its
        parent's local frame (the root's is zero). Local frames are DeepMimic's body
        frames: at rest x forward, y up, z to the character's right.
      kinds: ``J`` joint kinds: ``"root"``, ``"spherical"``, ``"revolute"`` or ``"fixed"``.
      axes: ``J`` unit rotation axes (local frame) of the revolute joints; ``(0, 0, 0)``
        for the others.
    """

    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: tuple[tuple[float, float, float], ...]
    kinds: tuple[str, ...]
    axes: tuple[tuple[float, float, float], ...]


class Motion(NamedTuple):
    """Pose parameters of a clip: what forward kinematics turns into positions.

    Attributes:
      root_position: ``(F, 3)`` float64 root (pelvis) position, metres, DeepMimic
        **Y-up** world.
      rotations: ``(F, J, 4)`` float64 unit quaternions ``(w, x, y, z)``: for the root
        its orientation in the Y-up world, for the others the rotation of the joint's
        frame relative to its parent's (revolute angles already turned into
        quaternions about their axis; identity for fixed joints and ``head``).
      fps: frames per second (one frame per file frame).
      name: clip name.
      loop: whether the clip is meant to wrap around (file ``"Loop": "wrap"``).
    """

    root_position: np.ndarray
    rotations: np.ndarray
    fps: float
    name: str
    loop: bool


class DeepMimicClip(NamedTuple):
    """Joint positions of one clip.

    Attributes:
      positions: ``(F, J, 3)`` float32 joint positions in **metres**, jpose **Z-up**
        world (ground plane z = 0), joints in ``joint_names`` order.
      joint_names: the layout's joint names (``deepmimic_16``).
      fps: frames per second; frame ``f`` is at time ``f / fps``.
      name: clip (action) name.
      loop: whether the clip wraps around.
    """

    positions: np.ndarray
    joint_names: tuple[str, ...]
    fps: float
    name: str
    loop: bool


# --------------------------------------------------------------------------- files


def data_path() -> str:
    """Returns the root folder of the ``pybullet_data`` package (the wheel's data).

    Raises:
      SampleDataMissingError: ``pybullet_data`` is not installed (an ImportError that
        names the extra to install).
    """
    try:
        import pybullet_data  # Pure-Python path helper; not the physics engine.
    except ImportError as err:
        raise SampleDataMissingError(
            "The DeepMimic sample motions need the pybullet wheel's data files; "
            f"install them with: {_INSTALL_HINT}"
        ) from err
    return pybullet_data.getDataPath()


def _clip_path(name: str, root: str) -> str:
    return os.path.join(root, "data", "motions", f"humanoid3d_{name}.txt")


def _check_name(name: str) -> None:
    if name not in DEEPMIMIC_CLIPS:
        raise ValueError(
            f"name: unknown DeepMimic clip {name!r}; expected one of {', '.join(DEEPMIMIC_CLIPS)}"
        )


def _floats(text: str | None, *, path: str, what: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in (text or "").split())
    except ValueError as err:
        raise ValueError(f"{path}: cannot parse {what} {text!r}") from err
    if len(values) != 3:
        raise ValueError(f"{path}: {what} must have 3 numbers, got {text!r}")
    return values  # type: ignore[return-value]


def read_urdf_tree(path: str) -> KinematicTree:
    """Parses the DeepMimic humanoid URDF (data only) into a :class:`KinematicTree`.

    Joint offsets and the head centre are read from the file and multiplied by
    :data:`URDF_SCALE`; nothing about the geometry is hard-coded here.

    Args:
      path: path of ``humanoid/humanoid.urdf``.
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    # The wheel's humanoid.urdf ends with a stray NUL byte after </robot>, which the
    # XML parser rejects: strip trailing NULs and whitespace.
    try:
        root = ET.fromstring(raw.rstrip(b"\x00 \t\r\n"))
    except ET.ParseError as err:
        raise ValueError(f"{path}: not a well-formed URDF ({err})") from err
    joints = {j.get("name"): j for j in root.findall("joint")}
    links = {lk.get("name"): lk for lk in root.findall("link")}
    child_to_joint = {}
    for jname, j in joints.items():
        child = j.find("child")
        if child is None:
            raise ValueError(f"{path}: joint {jname!r} has no <child>")
        child_to_joint[child.get("link")] = jname

    names = DEEPMIMIC_JOINT_NAMES
    index = {n: i for i, n in enumerate(names)}
    urdf_to_ours = {v: k for k, v in _URDF_JOINT.items() if k != _HEAD}
    parents, offsets, kinds, axes = [], [], [], []
    for name in names:
        if name == _HEAD:
            # Centre of the head: the neck link's collision sphere origin.
            neck = links.get("neck")
            origin = None if neck is None else neck.find("collision/origin")
            if origin is None:
                raise ValueError(f"{path}: link 'neck' has no <collision><origin>")
            xyz = _floats(origin.get("xyz"), path=path, what="neck collision origin")
            parents.append(index["neck"])
            offsets.append(tuple(URDF_SCALE * v for v in xyz))
            kinds.append("fixed")
            axes.append((0.0, 0.0, 0.0))
            continue
        jname = _URDF_JOINT[name]
        if jname not in joints:
            raise ValueError(f"{path}: joint {jname!r} not found")
        j = joints[jname]
        kind = j.get("type")
        parent_link = j.find("parent").get("link")  # type: ignore[union-attr]
        origin = j.find("origin")
        xyz = _floats(None if origin is None else origin.get("xyz"), path=path, what=f"{jname} origin")
        rpy = _floats(None if origin is None else origin.get("rpy", "0 0 0"), path=path, what=f"{jname} rpy")
        if any(abs(v) > 0.0 for v in rpy):
            raise ValueError(f"{path}: joint {jname!r} has a non-zero rpy; not supported")
        if name == "pelvis":
            # "root" is fixed to the massless "base" link at zero offset: its origin is
            # the root position of the motion file.
            parents.append(-1)
            offsets.append((0.0, 0.0, 0.0))
            kinds.append("root")
            axes.append((0.0, 0.0, 0.0))
            continue
        parent_joint = child_to_joint.get(parent_link)
        if parent_joint not in urdf_to_ours:
            raise ValueError(f"{path}: parent link {parent_link!r} of {jname!r} is not a known joint")
        parent = index[urdf_to_ours[parent_joint]]
        if parent >= index[name]:
            raise ValueError(f"{path}: parent of {jname!r} must precede it in the layout")
        parents.append(parent)
        offsets.append(tuple(URDF_SCALE * v for v in xyz))
        if kind == "revolute":
            axis_el = j.find("axis")
            axis = np.asarray(_floats(None if axis_el is None else axis_el.get("xyz"), path=path, what=f"{jname} axis"))
            axis = axis / np.linalg.norm(axis)
            axes.append(tuple(float(v) for v in axis))
        elif kind in ("spherical", "fixed"):
            axes.append((0.0, 0.0, 0.0))
        else:
            raise ValueError(f"{path}: joint {jname!r} has unsupported type {kind!r}")
        kinds.append(kind)
    return KinematicTree(
        joint_names=names,
        parents=tuple(parents),
        offsets=tuple(offsets),  # type: ignore[arg-type]
        kinds=tuple(kinds),
        axes=tuple(axes),  # type: ignore[arg-type]
    )


@functools.lru_cache(maxsize=4)
def _cached_tree(root: str) -> KinematicTree:
    return read_urdf_tree(os.path.join(root, "humanoid", "humanoid.urdf"))


def deepmimic_tree() -> KinematicTree:
    """The humanoid's kinematic tree, read from the wheel's URDF (cached; immutable)."""
    return _cached_tree(data_path())


# ------------------------------------------------------------------- quaternions


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` of unit quaternions ``(..., 4)`` (w, x, y, z)."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = (
        (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
        (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
        (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)),
    )
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def axis_angle_to_quaternion(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Quaternions ``(..., 4)`` (w, x, y, z) for rotations by ``angle`` (rad, ``(...)``)
    about unit ``axis`` (``(3,)`` or ``(..., 3)``)."""
    angle = np.asarray(angle, dtype=np.float64)[..., None]
    axis = np.asarray(axis, dtype=np.float64)
    return np.concatenate([np.cos(angle / 2), np.sin(angle / 2) * axis], axis=-1)


def _normalise(q: np.ndarray, *, path: str, what: str) -> np.ndarray:
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < 1e-6):
        raise ValueError(f"{path}: zero-length quaternion for {what}")
    return q / norm


# ------------------------------------------------------------------- motion files


def read_deepmimic_motion(path: str, *, tree: KinematicTree | None = None, name: str | None = None) -> Motion:
    """Parses a DeepMimic motion file into pose parameters.

    Args:
      path: a ``humanoid3d_<name>.txt`` JSON motion file.
      tree: the kinematic tree (for the revolute axes); defaults to :func:`deepmimic_tree`.
      name: clip name to record; defaults to the file name without ``humanoid3d_``.

    Returns:
      A :class:`Motion` (Y-up world, metres, normalised quaternions). ``fps`` is
      ``1 / d`` with ``d`` the median of the positive frame durations: one output
      frame per file frame (the last frame's duration is 0 in most files, and one frame
      of ``roll`` lasts two periods; those irregularities are not resampled).

    Raises:
      ValueError: the file is not valid JSON, lacks ``"Frames"``, or a frame does not
        hold 44 finite numbers (the message names the file and field).
    """
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a JSON DeepMimic motion file ({err})") from err
    if not isinstance(data, dict) or "Frames" not in data:
        raise ValueError(f"{path}: field 'Frames' is missing")
    frames = data["Frames"]
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: field 'Frames' must be a non-empty list of frames")
    for i, fr in enumerate(frames):
        if not isinstance(fr, list) or len(fr) != _FRAME_LENGTH:
            got = len(fr) if isinstance(fr, list) else type(fr).__name__
            raise ValueError(f"{path}: field 'Frames'[{i}] must hold {_FRAME_LENGTH} numbers, got {got}")
    try:
        arr = np.asarray(frames, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: field 'Frames' must hold only numbers") from err
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: field 'Frames' holds non-finite numbers")
    loop_field = data.get("Loop", "none")
    if loop_field not in ("wrap", "none"):
        raise ValueError(f"{path}: field 'Loop' must be 'wrap' or 'none', got {loop_field!r}")
    durations = arr[:, 0]
    positive = durations[durations > 0]
    if positive.size == 0:
        raise ValueError(f"{path}: field 'Frames' has no positive frame duration")
    fps = float(1.0 / np.median(positive))

    tree = deepmimic_tree() if tree is None else tree
    index = {n: i for i, n in enumerate(tree.joint_names)}
    num_frames = arr.shape[0]
    rotations = np.zeros((num_frames, len(tree.joint_names), 4))
    rotations[..., 0] = 1.0  # identity for fixed joints
    rotations[:, 0] = _normalise(arr[:, 4:8], path=path, what="root")
    col = 8
    for joint, kind in _FILE_ORDER:
        j = index[joint]
        if kind == "quat":
            rotations[:, j] = _normalise(arr[:, col : col + 4], path=path, what=joint)
            col += 4
        else:
            if tree.kinds[j] != "revolute":
                raise ValueError(f"tree: joint {joint!r} must be revolute")
            rotations[:, j] = axis_angle_to_quaternion(np.asarray(tree.axes[j]), arr[:, col])
            col += 1
    if name is None:
        name = os.path.splitext(os.path.basename(path))[0].removeprefix("humanoid3d_")
    return Motion(
        root_position=arr[:, 1:4].copy(),
        rotations=rotations,
        fps=fps,
        name=name,
        loop=loop_field == "wrap",
    )


def load_deepmimic_motion(name: str) -> Motion:
    """Pose parameters of the DeepMimic clip ``name`` (one of :data:`DEEPMIMIC_CLIPS`)."""
    _check_name(name)
    root = data_path()
    path = _clip_path(name, root)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: DeepMimic clip {name!r} not found; reinstall with {_INSTALL_HINT}")
    return read_deepmimic_motion(path, tree=_cached_tree(root), name=name)


# -------------------------------------------------------------- forward kinematics


def forward_kinematics(
    root_position: np.ndarray,
    rotations: np.ndarray,
    *,
    offsets: np.ndarray,
    parents: Sequence[int],
) -> np.ndarray:
    """Joint positions from pose parameters (NumPy, vectorised over leading axes).

    A joint's frame is its parent's frame translated by ``offsets[j]`` (in the
    parent's frame) then rotated by ``rotations[..., j]``; its position is that
    frame's origin: ``p_j = p_parent + R_parent @ offsets[j]`` and
    ``R_j = R_parent @ rot(q_j)``.

    Args:
      root_position: ``(..., 3)`` root position (world).
      rotations: ``(..., J, 4)`` quaternions (w, x, y, z): root orientation in the
        world, then each joint's rotation relative to its parent.
      offsets: ``(J, 3)`` or ``(..., J, 3)`` offsets of each joint in its parent's frame
        (same length unit as ``root_position``; the root's row is ignored).
      parents: ``J`` parent indices (``-1`` for the root, index 0), parents first.

    Returns:
      ``(..., J, 3)`` float64 positions in the world frame of ``root_position``.
    """
    root_position = np.asarray(root_position, dtype=np.float64)
    rotations = np.asarray(rotations, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    num_joints = len(parents)
    if rotations.shape[-2:] != (num_joints, 4):
        raise ValueError(f"rotations: expected shape (..., {num_joints}, 4), got {rotations.shape}")
    if root_position.shape != rotations.shape[:-2] + (3,):
        raise ValueError(f"root_position: expected shape {rotations.shape[:-2] + (3,)}, got {root_position.shape}")
    if offsets.shape[-2:] != (num_joints, 3):
        raise ValueError(f"offsets: expected shape (..., {num_joints}, 3), got {offsets.shape}")
    if parents[0] != -1 or any(not 0 <= p < j for j, p in enumerate(parents) if j > 0):
        raise ValueError(f"parents: root must come first and parents precede children, got {parents}")
    local = quaternion_to_matrix(rotations)
    offsets = np.broadcast_to(offsets, rotations.shape[:-1] + (3,))
    world_rot = [local[..., 0, :, :]]
    positions = [root_position]
    for j in range(1, num_joints):
        p = parents[j]
        positions.append(positions[p] + np.einsum("...ab,...b->...a", world_rot[p], offsets[..., j, :]))
        world_rot.append(world_rot[p] @ local[..., j, :, :])
    return np.stack(positions, axis=-2)


def motion_positions(
    motion: Motion,
    *,
    tree: KinematicTree | None = None,
    offsets: np.ndarray | None = None,
    root_scale: float = 1.0,
) -> np.ndarray:
    """Z-up world joint positions ``(F, J, 3)`` float64 metres of a :class:`Motion`.

    Args:
      motion: pose parameters (Y-up world).
      tree: kinematic tree; defaults to :func:`deepmimic_tree`.
      offsets: ``(J, 3)`` metres, replaces ``tree.offsets`` (e.g. bone-scaled ones for a
        pseudo-subject: bone lengths then stay constant over frames).
      root_scale: multiplies the root trajectory (a shorter-legged subject moves its
        pelvis lower and covers less ground).
    """
    tree = deepmimic_tree() if tree is None else tree
    offsets = np.asarray(tree.offsets if offsets is None else offsets, dtype=np.float64)
    yup = forward_kinematics(
        root_scale * motion.root_position, motion.rotations, offsets=offsets, parents=tree.parents
    )
    return np.einsum("ab,...b->...a", YUP_TO_ZUP, yup)


def load_deepmimic_clip(name: str) -> DeepMimicClip:
    """Loads one DeepMimic clip as joint positions.

    Args:
      name: one of :data:`DEEPMIMIC_CLIPS`.

    Returns:
      A :class:`DeepMimicClip`: ``positions`` ``(F, 16, 3)`` float32 metres in the Z-up
      world, ``deepmimic_16`` joint order, ``fps`` from the file's frame duration
      (60 for most clips; 30 for walk, run, kick, punch; 24 for spin; 16 for backflip).

    Raises:
      ValueError: unknown ``name`` (the message lists the valid ones).
      SampleDataMissingError: ``pybullet_data`` is not installed.
    """
    motion = load_deepmimic_motion(name)
    positions = motion_positions(motion, tree=deepmimic_tree())
    return DeepMimicClip(
        positions=positions.astype(np.float32),
        joint_names=DEEPMIMIC_JOINT_NAMES,
        fps=motion.fps,
        name=name,
        loop=motion.loop,
    )


def _slerp(q0: np.ndarray, q1: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Spherical interpolation of unit quaternions ``(..., 4)``; ``frac`` ``(...)``."""
    dot = np.sum(q0 * q1, axis=-1)
    # q and -q are the same rotation: interpolate along the shorter arc.
    q1 = np.where((dot < 0)[..., None], -q1, q1)
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    small = sin_theta < 1e-6  # nearly equal: linear interpolation is exact enough
    safe = np.where(small, 1.0, sin_theta)
    w0 = np.where(small, 1.0 - frac, np.sin((1.0 - frac) * theta) / safe)
    w1 = np.where(small, frac, np.sin(frac * theta) / safe)
    q = w0[..., None] * q0 + w1[..., None] * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def resample_motion(motion: Motion, fps: float) -> Motion:
    """Resamples a motion to ``fps`` frames per second over the same time span.

    Output frame ``k`` is at time ``k / fps`` for ``k / fps <= (F - 1) / motion.fps``: the
    root position is interpolated linearly and each joint rotation by quaternion slerp,
    so forward kinematics of the result still has exactly rigid bones (interpolating
    positions would not).
    """
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps: expected a positive number, got {fps!r}")
    num_in = motion.root_position.shape[0]
    duration = (num_in - 1) / motion.fps
    num_out = int(np.floor(duration * fps + 1e-9)) + 1
    src = np.arange(num_out, dtype=np.float64) * (motion.fps / float(fps))
    lo = np.minimum(np.floor(src).astype(np.int64), num_in - 1)
    hi = np.minimum(lo + 1, num_in - 1)
    frac = src - lo
    root = (1.0 - frac)[:, None] * motion.root_position[lo] + frac[:, None] * motion.root_position[hi]
    frac_j = np.broadcast_to(frac[:, None], (num_out, motion.rotations.shape[1]))
    rotations = _slerp(motion.rotations[lo], motion.rotations[hi], frac_j)
    return motion._replace(root_position=root, rotations=rotations, fps=float(fps))
