"""Training data for a lifter that holds up on anyone's video: "in the wild" sequences.

The sample rig of :mod:`jpose.datasets.multiview` films every subject with the same
Human3.6M-like cameras; a model trained on it learns those cameras (focal length,
distance, height) and that 2D. A user's phone or webcam has another focal length, the
person is nearer or farther, higher or lower in the frame, the detector is another and
it loses joints. :func:`make_wild_dataset` draws all of that at random, per sequence:

1. **Motion.** The 15 DeepMimic clips (real motion capture, :mod:`.samples`), each
   played at a random speed (``U(*speed)``) and resampled (slerp) to a frame rate drawn
   from ``fps_choices`` (typical video rates), so the model sees each motion at many
   tempi and rates.
2. **New poses.** Smooth random offsets are composed onto the joint rotations: every
   ``knot_time`` seconds a random rotation vector ``N(0, spherical_sd)`` rad per axis at
   the spherical joints (chest, neck, hips, ankles, shoulders), interpolated linearly
   between knots; a random angle ``N(0, revolute_sd)`` at the knees and elbows, clipped to
   the angle range those joints take anywhere in the clips (no hyper-extension). Forward
   kinematics keeps the bones rigid, so the poses are new but anatomically valid.
3. **Bodies.** Per subject a global size ``U(*body_size)`` times the DeepMimic character
   (1.62 m tall) and per-bone factors ``1 + clip(N(0, bone_sd), +-2.5 bone_sd)``, equal
   left and right: height and proportions (leg/torso/arm ratios) vary.
4. **Face points.** COCO's nose, eyes and ears are placed rigidly in the head's frame
   (:data:`FACE_OFFSETS`, adult anthropometry, scaled with the body), so the 2D comes in
   the ``coco_17`` layout every detector writes (OpenPose, MediaPipe, AlphaPose and
   COCO models all contain it); the 3D targets are in ``layout`` (default ``h36m_17``).
5. **Cameras, one per sequence** (``views`` per subject and clip): image size from
   ``image_sizes`` (landscape, portrait, square); focal length log-uniform in
   ``focal_range`` times ``max(width, height)`` (35 mm-equivalent ~15-85 mm); the
   distance set so the body's standing height fills ``U(*person_fraction)`` of the image
   height; any azimuth, an elevation ``U(*elevation_deg)`` seen from the body (positive:
   looking down; the camera's height kept within ``camera_height`` m); the camera aimed
   so the body's centre lands within ``off_centre`` of the room that keeps it in frame;
   roll ``N(0, roll_sd_deg)`` degrees (clipped at 3 sd). Principal point at the image centre
   plus ``N(0, 1 %)`` of the width; no lens distortion (``launch/lift.py`` removes a
   calibrated camera's).
6. **Detector.** :func:`jpose.datasets.multiview.detect` with per-sequence noise
   (``noise_fraction``: std as a fraction of the body's pixel height), temporally
   correlated jitter, outliers (left/right swaps, displacements) and miscalibrated
   confidences; plus **occlusions**: episodes (``occlusion_rate`` per second, lasting
   ``U(*occlusion_time)`` s) in which a joint -- with its limb neighbour half of the time
   -- is lost (confidence ``U(0, 0.25)``, position garbage).
7. **Filling, exactly as at inference.** Entries with confidence below
   ``min_confidence`` are filled linearly in time (:func:`jpose.detections.fill_linear`,
   what ``launch/lift.py`` does by default) and get confidence 0, so a model that takes
   the confidence as input sees the same 2D and scores as it will on a user's file.

Splits: subjects ``S1 .. S<num_subjects>`` train (``labelled``), ``test_subjects`` more
(their own bodies and cameras) test; ``held_out_actions`` clips appear only in the test
split (a generalisation check on unseen motion).

Units: metres (3D, Z-up world, ground z = 0), pixels (2D). Camera frame x right, y down,
z forward, ``x_cam = R (x_world - c)``. Returns a
:class:`~jpose.datasets.multiview.MultiViewDataset` whose records each carry their own
camera (``camera_index`` = the record's position; ``cameras`` stacks them all).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Sequence

import jax
import numpy as np
from scipy.spatial.transform import Rotation

from jpose import camera as camera_lib
from jpose import skeleton as skeleton_lib
from jpose.datasets import multiview, samples

__all__ = ["WildConfig", "FACE_OFFSETS", "INPUT_LAYOUT", "make_wild_dataset",
           "wild_camera", "perturb_motion", "add_occlusions"]

#: The 2D layout of the generated detections.
INPUT_LAYOUT = "coco_17"

#: COCO face points in the DeepMimic head frame (x forward, y up, z right), metres from
#: the head-sphere centre, for the 1.62 m character: the nose tip ~10 cm ahead, eyes 6.4 cm
#: apart slightly above it, ears 15 cm apart at the head's side.
FACE_OFFSETS = {
    "nose": (0.100, -0.010, 0.0),
    "left_eye": (0.075, 0.030, -0.032),
    "right_eye": (0.075, 0.030, 0.032),
    "left_ear": (-0.005, 0.0, -0.075),
    "right_ear": (-0.005, 0.0, 0.075),
}

_STANDING_HEIGHT = 1.62  # metres, the DeepMimic character (samples module docstring)
_TAG_SUBJECT, _TAG_MOTION, _TAG_CAMERA, _TAG_NOISE, _TAG_OCCLUSION = 11, 12, 13, 14, 15


@dataclasses.dataclass(frozen=True)
class WildConfig:
    """Every knob of :func:`make_wild_dataset` (module docstring); JSON-serialisable."""

    layout: str = "h36m_17"
    num_subjects: int = 24
    test_subjects: int = 3
    views: int = 4
    actions: tuple[str, ...] | None = None
    held_out_actions: tuple[str, ...] = ()
    fps_choices: tuple[float, ...] = (25.0, 30.0, 50.0, 60.0)
    speed: tuple[float, float] = (0.8, 1.25)
    knot_time: float = 0.5
    spherical_sd: float = 0.15
    revolute_sd: float = 0.2
    body_size: tuple[float, float] = (0.88, 1.14)
    bone_sd: float = 0.06
    image_sizes: tuple[tuple[int, int], ...] = ((1920, 1080), (1280, 720), (1080, 1920),
                                                (720, 1280), (1000, 1000), (640, 480))
    focal_range: tuple[float, float] = (0.45, 2.4)
    person_fraction: tuple[float, float] = (0.3, 0.85)
    elevation_deg: tuple[float, float] = (-15.0, 35.0)
    camera_height: tuple[float, float] = (0.2, 3.0)
    off_centre: float = 0.6
    roll_sd_deg: float = 3.0
    noise_fraction: tuple[float, float] = (0.003, 0.02)
    outlier_rate: tuple[float, float] = (0.0, 0.05)
    occlusion_rate: float = 0.6
    occlusion_time: tuple[float, float] = (0.1, 1.0)
    min_confidence: float = 0.3
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


# ----------------------------------------------------------------------------- poses


@functools.lru_cache(maxsize=1)
def _revolute_ranges() -> dict[int, tuple[float, float]]:
    """Angle range (rad) of each revolute joint over every DeepMimic clip."""
    tree = samples.deepmimic_tree()
    ranges: dict[int, tuple[float, float]] = {}
    for clip in samples.DEEPMIMIC_CLIPS:
        motion = samples.load_deepmimic_motion(clip)
        for j, kind in enumerate(tree.kinds):
            if kind == "revolute":
                angle = _revolute_angle(motion.rotations[:, j], tree.axes[j])
                lo, hi = ranges.get(j, (np.inf, -np.inf))
                ranges[j] = (min(lo, float(angle.min())), max(hi, float(angle.max())))
    return ranges


def _revolute_angle(q: np.ndarray, axis) -> np.ndarray:
    return 2.0 * np.arctan2(q[..., 1:] @ np.asarray(axis, np.float64), q[..., 0])


def _smooth_noise(rng: np.random.Generator, num_frames: int, fps: float, knot_time: float,
                  sd: float, shape: tuple[int, ...]) -> np.ndarray:
    """``(F, *shape)`` noise, ``N(0, sd)`` at knots every ``knot_time`` s, linear between."""
    t = np.arange(num_frames) / fps
    knots = np.arange(0.0, t[-1] + knot_time + 1e-9, knot_time)
    values = rng.normal(0.0, sd, (len(knots),) + shape).reshape(len(knots), -1)
    out = np.stack([np.interp(t, knots, values[:, i]) for i in range(values.shape[1])], -1)
    return out.reshape((num_frames,) + shape)


def perturb_motion(motion: samples.Motion, tree: samples.KinematicTree,
                   rng: np.random.Generator, *, spherical_sd: float, revolute_sd: float,
                   knot_time: float) -> samples.Motion:
    """``motion`` with smooth random offsets composed onto its joint rotations (module
    docstring, step 2); the root's orientation and position are untouched."""
    rot = motion.rotations.copy()
    n = rot.shape[0]
    ranges = _revolute_ranges() if revolute_sd > 0 else {}
    for j, kind in enumerate(tree.kinds):
        if kind == "spherical" and spherical_sd > 0:
            delta = _smooth_noise(rng, n, motion.fps, knot_time, spherical_sd, (3,))
            q = Rotation.from_quat(rot[:, j][:, [1, 2, 3, 0]]) * Rotation.from_rotvec(delta)
            rot[:, j] = q.as_quat()[:, [3, 0, 1, 2]]
        elif kind == "revolute" and revolute_sd > 0:
            lo, hi = ranges[j]
            angle = _revolute_angle(rot[:, j], tree.axes[j])
            angle = np.clip(angle + _smooth_noise(rng, n, motion.fps, knot_time,
                                                  revolute_sd, ()), lo, hi)
            rot[:, j] = samples.axis_angle_to_quaternion(tree.axes[j], angle)
    return motion._replace(rotations=rot)


def _head_rotations(motion: samples.Motion, tree: samples.KinematicTree) -> np.ndarray:
    """World (Y-up) rotation of the head's frame ``(F, 3, 3)``: the chain root .. head."""
    names = tree.joint_names
    chain, j = [], names.index("head")
    while j >= 0:
        chain.append(j)
        j = tree.parents[j]
    total = Rotation.identity(motion.rotations.shape[0])
    for j in reversed(chain):
        total = total * Rotation.from_quat(motion.rotations[:, j][:, [1, 2, 3, 0]])
    return total.as_matrix()


def body_positions(motion: samples.Motion, tree: samples.KinematicTree,
                   scales: np.ndarray, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """``(3D in layout (F, J, 3), 3D in coco_17 (F, 17, 3))``, Z-up world metres, for a
    body with per-bone ``scales`` (``deepmimic_16`` order)."""
    offsets = np.asarray(tree.offsets) * scales[:, None]
    legs = [tree.joint_names.index(n) for n in ("right_knee", "right_ankle")]
    lengths = np.linalg.norm(np.asarray(tree.offsets), axis=-1)
    leg_ratio = float(np.sum(lengths[legs] * scales[legs]) / np.sum(lengths[legs]))
    pos16 = samples.motion_positions(motion, tree=tree, offsets=offsets, root_scale=leg_ratio)
    head_size = float(scales[tree.joint_names.index("head")])
    rot = np.einsum("ab,fbc->fac", samples.YUP_TO_ZUP, _head_rotations(motion, tree))
    head = pos16[:, tree.joint_names.index("head")]
    coco = skeleton_lib.get(INPUT_LAYOUT)
    body = np.empty(pos16.shape[:1] + (coco.num_joints, 3))
    for k, name in enumerate(coco.joint_names):
        if name in FACE_OFFSETS:
            body[:, k] = head + rot @ (head_size * np.asarray(FACE_OFFSETS[name]))
        else:  # limbs: the same joint centres as the 3D targets
            body[:, k] = pos16[:, tree.joint_names.index(name)]
    target = skeleton_lib.convert(pos16, "deepmimic_16", layout)
    return np.asarray(target, np.float64), np.asarray(body, np.float64)


def _bone_scales(rng: np.random.Generator, cfg: WildConfig) -> np.ndarray:
    names = samples.DEEPMIMIC_JOINT_NAMES
    groups = sorted({multiview.bone_group(n) for n in names[1:]})
    size = rng.uniform(*cfg.body_size)
    per = 1.0 + np.clip(rng.normal(0.0, cfg.bone_sd, len(groups)), -2.5 * cfg.bone_sd,
                        2.5 * cfg.bone_sd)
    per_group = dict(zip(groups, per))
    out = np.ones(len(names))
    for j, n in enumerate(names[1:], start=1):
        out[j] = size * per_group[multiview.bone_group(n)]
    return out


# ----------------------------------------------------------------------------- cameras


def wild_camera(rng: np.random.Generator, cfg: WildConfig, *, body_centre: np.ndarray,
                body_height: float) -> camera_lib.CameraParams:
    """One random camera (module docstring, step 5) filming a body of standing height
    ``body_height`` m whose centre is at ``body_centre`` (world, metres)."""
    w, h = cfg.image_sizes[rng.integers(len(cfg.image_sizes))]
    log_lo, log_hi = np.log(cfg.focal_range)
    focal = float(np.exp(rng.uniform(log_lo, log_hi)) * max(w, h))
    fraction = rng.uniform(*cfg.person_fraction)
    distance = float(np.clip(focal * body_height / (fraction * h), 1.2, 30.0))
    # Elevation of the camera seen from the body's centre (positive: looking down), kept
    # to where the camera's height stays within camera_height.
    elevation = math.radians(rng.uniform(*cfg.elevation_deg))
    height = float(np.clip(body_centre[2] + distance * math.sin(elevation),
                           *cfg.camera_height))
    azimuth = rng.uniform(0.0, 2 * math.pi)
    dz = height - float(body_centre[2])
    horizontal = math.sqrt(max(distance ** 2 - dz ** 2, 0.25))
    eye = body_centre + np.array([horizontal * math.cos(azimuth),
                                  horizontal * math.sin(azimuth), dz])
    rotation = np.asarray(camera_lib.look_at(eye, body_centre), np.float64)
    # Aim off-centre: the body's centre lands at a random point that keeps it in frame.
    half = 0.5 * fraction
    a = rng.uniform(-1.0, 1.0) * cfg.off_centre * max(0.5 - half * 0.6, 0.0) * w / focal
    b = rng.uniform(-1.0, 1.0) * cfg.off_centre * max(0.5 - half, 0.0) * h / focal
    ray = np.array([a, b, 1.0]) / math.sqrt(a * a + b * b + 1.0)
    axis = np.cross([0.0, 0.0, 1.0], ray)
    angle = math.asin(min(np.linalg.norm(axis), 1.0))
    aim = (Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()
           if angle > 1e-9 else np.eye(3))
    roll = math.radians(float(np.clip(rng.normal(0.0, cfg.roll_sd_deg),
                                      -3 * cfg.roll_sd_deg, 3 * cfg.roll_sd_deg)))
    roll_m = Rotation.from_rotvec([0.0, 0.0, roll]).as_matrix()
    rotation = roll_m @ aim @ rotation
    principal = np.array([w, h], np.float64) / 2 + rng.normal(0.0, 0.01 * w, 2)
    f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731
    return camera_lib.CameraParams(
        rotation=f32(rotation), centre=f32(eye), focal=f32([focal, focal]),
        principal=f32(principal), radial=f32(np.zeros(3)), tangential=f32(np.zeros(2)),
        image_size=f32([w, h]))


# ----------------------------------------------------------------------------- detector


def add_occlusions(keypoints: np.ndarray, confidence: np.ndarray, *, fps: float,
                   rng: np.random.Generator, rate: float, duration: tuple[float, float],
                   layout: skeleton_lib.Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """Occlusion episodes (module docstring, step 6): ``(keypoints, confidence)`` copies
    with lost joints' confidences in ``[0, 0.25)`` and their positions scrambled."""
    kp, conf = keypoints.copy(), confidence.copy()
    num_frames, num_joints = conf.shape
    episodes = rng.poisson(rate * num_frames / fps)
    span = float(np.ptp(keypoints.reshape(-1, 2), axis=0).max()) if num_frames else 1.0
    for _ in range(int(episodes)):
        j = int(rng.integers(num_joints))
        joints = [j]
        parent = layout.parents[j]
        if parent >= 0 and rng.random() < 0.5:
            joints.append(int(parent))
        start = int(rng.integers(num_frames))
        stop = min(num_frames, start + max(1, int(rng.uniform(*duration) * fps)))
        for jj in joints:
            conf[start:stop, jj] = rng.uniform(0.0, 0.25, stop - start)
            kp[start:stop, jj] += rng.normal(0.0, 0.3 * span, (stop - start, 2))
    return kp, conf


# ----------------------------------------------------------------------------- dataset


def _check(cfg: WildConfig) -> tuple[str, ...]:
    actions = tuple(cfg.actions) if cfg.actions is not None else samples.DEEPMIMIC_CLIPS
    unknown = sorted(set(actions) - set(samples.DEEPMIMIC_CLIPS))
    if unknown:
        raise ValueError(f"actions: unknown clips {unknown}; expected DeepMimic clip names "
                         f"{samples.DEEPMIMIC_CLIPS}")
    if set(cfg.held_out_actions) - set(actions):
        raise ValueError(f"held_out_actions: {sorted(set(cfg.held_out_actions) - set(actions))}"
                         f" are not among actions {actions}")
    if cfg.num_subjects < 1 or cfg.test_subjects < 1 or cfg.views < 1:
        raise ValueError(f"num_subjects, test_subjects and views must be >= 1; got "
                         f"{cfg.num_subjects}, {cfg.test_subjects}, {cfg.views}")
    return actions


def make_wild_dataset(cfg: WildConfig | None = None, **overrides) -> multiview.MultiViewDataset:
    """In-the-wild training and test sequences (module docstring); deterministic in
    ``cfg.seed``. Keyword ``overrides`` replace fields of ``cfg`` (default
    :class:`WildConfig`)."""
    from jpose import detections  # the inference-time filling, reused here

    cfg = dataclasses.replace(cfg or WildConfig(), **overrides)
    actions = _check(cfg)
    tree = samples.deepmimic_tree()
    target_layout = skeleton_lib.get(cfg.layout)
    coco = skeleton_lib.get(INPUT_LAYOUT)
    train = [f"S{i + 1}" for i in range(cfg.num_subjects)]
    test = [f"S{cfg.num_subjects + i + 1}" for i in range(cfg.test_subjects)]
    records, cams, all_scales = [], [], []
    clips = {a: samples.load_deepmimic_motion(a) for a in actions}
    for s_idx, subject in enumerate(train + test):
        rng_s = np.random.default_rng([cfg.seed, _TAG_SUBJECT, s_idx])
        scales = _bone_scales(rng_s, cfg)
        all_scales.append(scales)
        body_height = _STANDING_HEIGHT * float(np.mean(scales[1:]))
        for a_idx, action in enumerate(actions):
            if subject in train and action in cfg.held_out_actions:
                continue
            rng_m = np.random.default_rng([cfg.seed, _TAG_MOTION, s_idx, a_idx])
            fps = float(rng_m.choice(cfg.fps_choices))
            speed = rng_m.uniform(*cfg.speed)
            motion = samples.resample_motion(clips[action], fps / speed)._replace(fps=fps)
            motion = perturb_motion(motion, tree, rng_m, spherical_sd=cfg.spherical_sd,
                                    revolute_sd=cfg.revolute_sd, knot_time=cfg.knot_time)
            target, body = body_positions(motion, tree, scales, cfg.layout)
            yaw = rng_m.uniform(-math.pi, math.pi)
            turn = Rotation.from_rotvec([0.0, 0.0, yaw]).as_matrix()
            centre_xy = 0.5 * (target[:, 0, :2].min(0) + target[:, 0, :2].max(0))
            shift = np.array([centre_xy[0], centre_xy[1], 0.0])
            target = (target - shift) @ turn.T
            body = (body - shift) @ turn.T
            body_centre = np.array([0.0, 0.0, float(np.median(target[:, 0, 2]))])
            for v in range(cfg.views):
                rng_c = np.random.default_rng([cfg.seed, _TAG_CAMERA, s_idx, a_idx, v])
                cam = wild_camera(rng_c, cfg, body_centre=body_centre,
                                  body_height=body_height)
                records.append(_record(cfg, subject, action, len(cams), fps, target, body,
                                       cam, target_layout, coco, (s_idx, a_idx, v),
                                       detections))
                cams.append(cam)
    cameras = camera_lib.CameraParams(*(np.stack([getattr(c, f) for c in cams])
                                        for f in camera_lib.CameraParams._fields))
    return multiview.MultiViewDataset(
        sequences=tuple(records), cameras=cameras, layout=cfg.layout,
        joint_names=target_layout.joint_names, subjects=tuple(train + test), actions=actions,
        splits=(("labelled", tuple(train)), ("unlabelled", ()), ("test", tuple(test))),
        held_out_cameras=(), held_out_actions=tuple(cfg.held_out_actions),
        bone_scales=np.asarray(all_scales, np.float32),
        config=multiview.MultiViewConfig(layout=cfg.layout, seed=cfg.seed))


def _record(cfg, subject, action, index, fps, target, body, cam, target_layout, coco, key,
            detections) -> multiview.SequenceRecord:
    s_idx, a_idx, v = key
    size = np.asarray(cam.image_size, np.float64)

    # The generator works in float64 (its records are stored as float32): x64 keeps
    # jpose.camera in float64 too, since dividing by the depth of joints near the camera
    # plane would amplify float32 rounding.
    c64 = camera_lib.CameraParams(*(np.asarray(f, np.float64) for f in cam))

    def project(world):
        with jax.enable_x64(True):
            xyz = np.asarray(camera_lib.world_to_camera(world, c64.rotation, c64.centre))
            # A close camera can have joints behind it: their depth is clamped (far off
            # the image, not mirrored into it); they are never visible (z > 0.1 below).
            ahead = np.concatenate([xyz[..., :2], np.maximum(xyz[..., 2:], 1e-3)], axis=-1)
            uv = camera_lib.project_perspective(ahead, c64.focal, c64.principal, c64.radial,
                                                c64.tangential)
            return xyz, np.asarray(uv)

    xyz, clean = project(target)
    body_xyz, body_clean = project(body)
    in_image = lambda p, z: (z > 0.1) & np.all((p >= 0) & (p <= size), axis=-1)  # noqa: E731
    visible = in_image(clean, xyz[..., 2])
    rng = np.random.default_rng([cfg.seed, _TAG_NOISE, s_idx, a_idx, v])
    pixel_height = float(np.median(np.ptp(body_clean[..., 1], axis=1)))
    noise = rng.uniform(*cfg.noise_fraction) * max(pixel_height, 1.0)
    kp, conf, outlier = multiview.detect(
        body_clean, joint_names=coco.joint_names, flip_permutation=coco.flip_permutation,
        fps=fps, rng=rng, noise_px=noise, jitter_fraction=rng.uniform(0.3, 0.9),
        jitter_time=rng.uniform(0.1, 0.4), outlier_rate=rng.uniform(*cfg.outlier_rate),
        outlier_min_px=max(0.05 * pixel_height, 2.0), confident_outlier_rate=0.1,
        visible=in_image(body_clean, body_xyz[..., 2]))
    kp, conf = add_occlusions(kp.astype(np.float64), conf, fps=fps,
                              rng=np.random.default_rng([cfg.seed, _TAG_OCCLUSION, s_idx,
                                                         a_idx, v]),
                              rate=cfg.occlusion_rate, duration=cfg.occlusion_time,
                              layout=coco)
    filled = detections.fill_linear(kp, conf, threshold=cfg.min_confidence, layout=coco)
    conf = np.where(filled.filled, 0.0, conf)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return multiview.SequenceRecord(
        subject=subject, action=action, camera_index=index, fps=fps,
        positions_world=f32(target), positions_camera=f32(xyz), keypoints_clean=f32(clean),
        keypoints=f32(filled.keypoints), confidence=f32(conf), outlier=np.asarray(outlier),
        visible=visible, camera=cam, keypoints_layout=INPUT_LAYOUT)
