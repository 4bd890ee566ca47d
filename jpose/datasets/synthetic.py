"""Fast, purely synthetic human motion on the DeepMimic skeleton (no wheel needed).

For unit tests and examples that must not depend on the ``pybullet`` wheel. Motions are
procedural (sinusoidal gaits and gestures) on the same kinematic tree as
:mod:`jpose.datasets.samples`, with the DeepMimic humanoid's bone offsets copied into
:data:`DEEPMIMIC_TREE` (a test checks them against the URDF). Output uses the same
``deepmimic_16`` layout, metres, and Z-up world (ground z = 0) as the real clips, and the
same :class:`~jpose.datasets.samples.Motion` / ``DeepMimicClip`` types, so code written
for one source runs on the other.

Every sequence draws its style (speed, cadence, amplitudes, phase, heading, posture
biases) from a NumPy ``Generator`` seeded per call: the same ``(action, seed)`` gives the
same motion bit for bit. Generating 100 frames takes about a millisecond.

Actions (:data:`SYNTHETIC_ACTIONS`):

* ``walk``: straight walk along a random heading, arms swinging against the legs.
* ``turn``: the same gait on a circular arc (constant yaw rate, random sign).
* ``squat``: repeated squats with the torso leaning forward and arms raised.
* ``arm_swing``: standing, both arms swinging forward/back with a torso twist.
* ``jumping_jack``: standing jumping-jack arm and leg abduction (feet stay grounded).
* ``wave``: standing, one random arm raised and waving from the elbow.

Joint angle conventions (DeepMimic local frames: at rest x forward, y up, z to the
character's right): flexion of a hip or shoulder (limb forward) is a positive rotation
about local z, knee flexion a negative one, elbow flexion a positive one; abduction is a
rotation about local x, negative for the right limbs and positive for the left.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jpose.datasets.samples import (
    DEEPMIMIC_JOINT_NAMES,
    URDF_SCALE,
    DeepMimicClip,
    KinematicTree,
    Motion,
    axis_angle_to_quaternion,
    motion_positions,
)

__all__ = [
    "SYNTHETIC_ACTIONS",
    "DEEPMIMIC_TREE",
    "ANKLE_HEIGHT",
    "synthetic_motion",
    "synthetic_clip",
]

SYNTHETIC_ACTIONS: tuple[str, ...] = ("walk", "turn", "squat", "arm_swing", "jumping_jack", "wave")

# Joint origins of pybullet_data/humanoid/humanoid.urdf (URDF units, 4x scale), copied
# verbatim; "head" is the neck link's collision-sphere origin. Multiply by URDF_SCALE.
_URDF_OFFSETS_4X: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 0.0),  # pelvis (URDF "root")
    (0.0, 0.0, 0.339548),  # right_hip
    (0.0, -1.686184, 0.0),  # right_knee
    (0.0, -1.639480, 0.0),  # right_ankle
    (0.0, 0.0, -0.339548),  # left_hip
    (0.0, -1.686184, 0.0),  # left_knee
    (0.0, -1.639480, 0.0),  # left_ankle
    (0.0, 0.944604, 0.0),  # chest
    (0.0, 0.895576, 0.0),  # neck
    (0.0, 0.7, 0.0),  # head (centre of the head sphere)
    (-0.096200, 0.974000, -0.732440),  # left_shoulder
    (0.0, -1.099152, 0.0),  # left_elbow
    (0.0, -1.035788, 0.0),  # left_wrist
    (-0.096200, 0.974000, 0.732440),  # right_shoulder
    (0.0, -1.099152, 0.0),  # right_elbow
    (0.0, -1.035788, 0.0),  # right_wrist
)

_Z = (0.0, 0.0, 1.0)
_O = (0.0, 0.0, 0.0)

DEEPMIMIC_TREE = KinematicTree(
    joint_names=DEEPMIMIC_JOINT_NAMES,
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 7, 10, 11, 7, 13, 14),
    offsets=tuple(tuple(URDF_SCALE * v for v in row) for row in _URDF_OFFSETS_4X),  # type: ignore[arg-type]
    kinds=(
        "root", "spherical", "revolute", "spherical", "spherical", "revolute", "spherical",
        "spherical", "spherical", "fixed", "spherical", "revolute", "fixed", "spherical",
        "revolute", "fixed",
    ),
    axes=(_O, _O, _Z, _O, _O, _Z, _O, _O, _O, _O, _O, _Z, _O, _O, _Z, _O),
)
"""The DeepMimic humanoid's kinematic tree, hard-coded (metres; equals the URDF's)."""

ANKLE_HEIGHT = 0.05
"""Height (m) of the ankle joint above the ground when the foot is flat: the URDF foot
box extends 0.2 units (x 0.25) below the ankle. Synthetic motions keep the lowest ankle
at this height in every frame."""

_INDEX = {n: i for i, n in enumerate(DEEPMIMIC_JOINT_NAMES)}


class _Angles(NamedTuple):
    """Per-frame joint angles (radians), each ``(F,)``; zero means the rest pose."""

    heading: np.ndarray  # yaw of the whole body about the vertical, Z-up convention
    forward: np.ndarray  # root travel along the heading (m)
    root_pitch: np.ndarray  # whole-body lean about the root's z (negative = forward)
    chest_bend: np.ndarray  # chest flexion about z (negative = forward)
    chest_twist: np.ndarray  # chest yaw about y
    hip_flex: tuple[np.ndarray, np.ndarray]  # (right, left)
    hip_abd: tuple[np.ndarray, np.ndarray]  # outward, >= 0 (sign applied per side)
    knee: tuple[np.ndarray, np.ndarray]  # flexion, >= 0
    ankle: tuple[np.ndarray, np.ndarray]  # dorsiflexion about z
    shoulder_flex: tuple[np.ndarray, np.ndarray]
    shoulder_abd: tuple[np.ndarray, np.ndarray]  # outward, >= 0
    elbow: tuple[np.ndarray, np.ndarray]  # flexion, >= 0
    neck_nod: np.ndarray


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of quaternions ``(..., 4)`` (w, x, y, z)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def _q(axis: str, angle: np.ndarray) -> np.ndarray:
    vec = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}[axis]
    return axis_angle_to_quaternion(np.asarray(vec), angle)


def _angles(action: str, t: np.ndarray, rng: np.random.Generator) -> _Angles:
    zero = np.zeros_like(t)
    a = rng.uniform(0.8, 1.2)  # amplitude scale
    phase = rng.uniform(0.0, 2 * np.pi)
    heading0 = rng.uniform(-np.pi, np.pi)
    lean = rng.normal(0.0, 0.04)  # posture biases
    elbow_rest = rng.uniform(0.1, 0.35)
    arm_out = rng.uniform(0.05, 0.15)
    pair = lambda r, l: (r, l)  # noqa: E731  (readability: right, left)
    heading = heading0 + zero
    forward = zero
    root_pitch = zero + lean
    chest_bend = zero - 0.05
    chest_twist = zero
    neck_nod = zero + rng.normal(0.0, 0.05)
    hip_abd = pair(zero + 0.02, zero + 0.02)
    ankle = pair(zero, zero)
    shoulder_abd = pair(zero + arm_out, zero + arm_out)
    elbow = pair(zero + elbow_rest, zero + elbow_rest)

    if action in ("walk", "turn"):
        cadence = rng.uniform(0.8, 1.05)  # strides per second
        speed = rng.uniform(1.0, 1.5) * cadence  # m/s, ~1.2-1.5 m stride
        w = 2 * np.pi * cadence * t + phase
        flex = 0.45 * a * np.sin(w)
        hip_flex = pair(flex, -flex)
        # Knee flexes in swing (when the hip swings forward) and slightly at heel strike.
        knee = pair(
            0.15 + 0.55 * a * np.clip(np.sin(w + 0.6 * np.pi), 0.0, None),
            0.15 + 0.55 * a * np.clip(np.sin(w + 1.6 * np.pi), 0.0, None),
        )
        ankle = pair(-0.15 * np.sin(w + 0.3), 0.15 * np.sin(w + 0.3))
        swing = 0.35 * a * np.sin(w)
        shoulder_flex = pair(-swing, swing)
        elbow = pair(elbow_rest + 0.2 * np.clip(-np.sin(w), 0, None), elbow_rest + 0.2 * np.clip(np.sin(w), 0, None))
        chest_twist = 0.1 * a * np.sin(w)
        forward = speed * t
        if action == "turn":
            yaw_rate = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0)  # rad/s
            heading = heading0 + yaw_rate * t
    elif action == "squat":
        rate = rng.uniform(0.4, 0.7)  # squats per second
        depth = rng.uniform(0.6, 1.0)
        s = depth * 0.5 * (1 - np.cos(2 * np.pi * rate * t + phase))
        hip_flex = pair(1.7 * s, 1.7 * s)
        knee = pair(2.0 * s, 2.0 * s)
        ankle = pair(0.8 * s, 0.8 * s)
        root_pitch = lean - 0.5 * s
        chest_bend = -0.05 - 0.1 * s
        raise_ = 1.3 * s * a
        shoulder_flex = pair(raise_, raise_)
    elif action == "arm_swing":
        rate = rng.uniform(0.6, 1.2)
        w = 2 * np.pi * rate * t + phase
        swing = 0.9 * a * np.sin(w)
        shoulder_flex = pair(swing, -swing)
        chest_twist = 0.25 * a * np.sin(w)
        hip_flex = pair(zero, zero)
        knee = pair(zero + 0.05, zero + 0.05)
    elif action == "jumping_jack":
        rate = rng.uniform(0.8, 1.4)
        s = 0.5 * (1 - np.cos(2 * np.pi * rate * t + phase))
        shoulder_abd = pair(arm_out + 2.4 * a * s, arm_out + 2.4 * a * s)
        shoulder_flex = pair(zero, zero)
        hip_abd = pair(0.02 + 0.3 * s, 0.02 + 0.3 * s)
        hip_flex = pair(zero, zero)
        knee = pair(0.05 + 0.2 * s, 0.05 + 0.2 * s)
    elif action == "wave":
        rate = rng.uniform(1.0, 2.0)
        w = 2 * np.pi * rate * t + phase
        side = int(rng.integers(2))  # 0: right arm waves, 1: left
        up = np.stack([zero + 2.4, zero + arm_out])
        shoulder_abd = (up[side], up[1 - side])
        shoulder_flex = pair(zero + 0.2, zero + 0.2)
        bend = np.stack([0.9 + 0.5 * a * np.sin(w), zero + elbow_rest])
        elbow = (bend[side], bend[1 - side])
        chest_twist = 0.05 * np.sin(w)
        hip_flex = pair(zero, zero)
        knee = pair(zero + 0.05, zero + 0.05)
    else:
        raise ValueError(f"action: unknown synthetic action {action!r}; expected one of {', '.join(SYNTHETIC_ACTIONS)}")
    return _Angles(
        heading=heading,
        forward=forward,
        root_pitch=root_pitch,
        chest_bend=chest_bend,
        chest_twist=chest_twist,
        hip_flex=hip_flex,
        hip_abd=hip_abd,
        knee=knee,
        ankle=ankle,
        shoulder_flex=shoulder_flex,
        shoulder_abd=shoulder_abd,
        elbow=elbow,
        neck_nod=neck_nod,
    )


def synthetic_motion(
    action: str,
    *,
    num_frames: int = 100,
    fps: float = 50.0,
    seed: int | np.random.Generator = 0,
) -> Motion:
    """Procedural pose parameters for one synthetic sequence.

    Args:
      action: one of :data:`SYNTHETIC_ACTIONS`.
      num_frames: number of frames ``F`` (>= 1).
      fps: frame rate (> 0); frame ``f`` is at time ``f / fps`` s.
      seed: an int (combined with the action, so actions differ for one seed) or a
        ``numpy.random.Generator`` (consumed).

    Returns:
      A :class:`~jpose.datasets.samples.Motion` in DeepMimic's Y-up world (metres),
      grounded: the lowest ankle is :data:`ANKLE_HEIGHT` above y = 0 in every frame.
    """
    if action not in SYNTHETIC_ACTIONS:
        raise ValueError(f"action: unknown synthetic action {action!r}; expected one of {', '.join(SYNTHETIC_ACTIONS)}")
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames: expected a positive integer, got {num_frames!r}")
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps: expected a positive number, got {fps!r}")
    if isinstance(seed, np.random.Generator):
        rng = seed
    else:
        rng = np.random.default_rng([int(seed), SYNTHETIC_ACTIONS.index(action)])
    t = np.arange(int(num_frames), dtype=np.float64) / float(fps)
    ang = _angles(action, t, rng)

    num_joints = len(DEEPMIMIC_JOINT_NAMES)
    rot = np.zeros((t.shape[0], num_joints, 4))
    rot[..., 0] = 1.0
    # Heading h is a yaw about the Y-up world's y axis; the body then faces
    # (cos h, 0, -sin h)_yup = (cos h, sin h, 0)_zup, i.e. h is the Z-up yaw angle.
    rot[:, _INDEX["pelvis"]] = _qmul(_q("y", ang.heading), _q("z", ang.root_pitch))
    rot[:, _INDEX["chest"]] = _qmul(_q("y", ang.chest_twist), _q("z", ang.chest_bend))
    rot[:, _INDEX["neck"]] = _q("z", ang.neck_nod)
    for side, sign, k in (("right", -1.0, 0), ("left", 1.0, 1)):
        rot[:, _INDEX[f"{side}_hip"]] = _qmul(_q("z", ang.hip_flex[k]), _q("x", sign * ang.hip_abd[k]))
        rot[:, _INDEX[f"{side}_knee"]] = _q("z", -ang.knee[k])
        rot[:, _INDEX[f"{side}_ankle"]] = _q("z", ang.ankle[k])
        rot[:, _INDEX[f"{side}_shoulder"]] = _qmul(
            _q("z", ang.shoulder_flex[k]), _q("x", sign * ang.shoulder_abd[k])
        )
        rot[:, _INDEX[f"{side}_elbow"]] = _q("z", ang.elbow[k])

    travel = np.stack([np.cos(ang.heading), -np.sin(ang.heading)], axis=-1)  # (F, 2) x, z
    # Integrate the velocity so turning paths are arcs (forward is the arc length).
    step = np.diff(ang.forward, prepend=ang.forward[:1])
    xz = np.cumsum(step[:, None] * travel, axis=0)
    root = np.stack([xz[:, 0], np.zeros_like(t), xz[:, 1]], axis=-1)
    # Ground the body: lift the root so the lowest ankle sits ANKLE_HEIGHT above y = 0.
    probe = Motion(root_position=root, rotations=rot, fps=float(fps), name=action, loop=False)
    zup = motion_positions(probe, tree=DEEPMIMIC_TREE)
    ankles = zup[:, [_INDEX["right_ankle"], _INDEX["left_ankle"]], 2]
    root[:, 1] = ANKLE_HEIGHT - ankles.min(axis=-1)
    return Motion(root_position=root, rotations=rot, fps=float(fps), name=action, loop=False)


def synthetic_clip(
    action: str,
    *,
    num_frames: int = 100,
    fps: float = 50.0,
    seed: int | np.random.Generator = 0,
) -> DeepMimicClip:
    """Joint positions of one synthetic sequence.

    Returns:
      A ``DeepMimicClip``: ``positions`` ``(F, 16, 3)`` float32 metres, Z-up world,
      ``deepmimic_16`` order; ``name`` is ``action``; ``loop`` False.
    """
    motion = synthetic_motion(action, num_frames=num_frames, fps=fps, seed=seed)
    positions = motion_positions(motion, tree=DEEPMIMIC_TREE)
    return DeepMimicClip(
        positions=positions.astype(np.float32),
        joint_names=DEEPMIMIC_JOINT_NAMES,
        fps=float(fps),
        name=action,
        loop=False,
    )
