"""Multi-view pose datasets generated from real (DeepMimic) or synthetic motion.

:func:`make_multiview_dataset` turns motion into a dataset shaped like Human3.6M's: a few
pseudo-subjects performing a set of actions, filmed by calibrated cameras, with clean
and detector-like noisy 2D keypoints, and labelled / unlabelled / test splits.

Pipeline, per pseudo-subject ``S1..Sn``, action and camera:

1. **Motion.** ``source="deepmimic"``: the DeepMimic clips of the ``pybullet`` wheel
   (actions = clip names, :data:`~jpose.datasets.samples.DEEPMIMIC_CLIPS`; every subject
   performs the same clip). ``source="synthetic"``: procedural motions
   (:data:`~jpose.datasets.synthetic.SYNTHETIC_ACTIONS`), drawn afresh per subject.
   With ``fps`` given, motions are resampled (slerp of joint rotations).
2. **Pseudo-subjects by bone-length scaling.** Each subject has a global size factor
   (``U(0.95, 1.12)``: 1.54-1.81 m tall, the DeepMimic character being 1.62 m) times a
   per-bone factor ``1 + N(0, 0.04)`` (clipped to +-10%), shared by the left and right
   bones (symmetric). Forward kinematics is re-run with the scaled offsets, so bone
   lengths are constant over a subject's frames and differ between subjects; the root
   trajectory is scaled by the subject's leg-length ratio so the feet stay on the floor.
   The factors (per ``deepmimic_16`` joint, scaling the bone to its parent) are kept in
   ``MultiViewDataset.bone_scales``.
3. **Placement.** Each (subject, action) clip is centred horizontally (the midpoint of
   its pelvis trajectory's bounding box goes to the world origin) and turned by a random
   yaw about the vertical, so subjects face the cameras differently. The whole
   trajectory of a travelling clip (run, walk) then stays within ~2 m of the origin:
   the rig is fixed (like Human3.6M's) and far enough (5-6 m) to keep everything in view.
4. **Layout.** Positions are converted from ``deepmimic_16`` to ``layout`` with
   :func:`jpose.skeleton.convert` (default ``h36m_17``: ``spine`` = DeepMimic ``chest``,
   ``head`` = head-sphere centre, ``head_top`` extrapolated; see the skeleton module).
5. **Cameras.** ``num_cameras`` cameras from :func:`jpose.camera.virtual_cameras`, evenly
   spaced in azimuth (+- 10 degrees jitter), 5-6 m from the origin, 1.5-1.8 m high,
   looking at (0, 0, 1) m, focal ~1145 px, 1000 x 1000 images, principal point near the
   centre and small Human3.6M-like distortion. All subjects share the rig.
6. **Projection.** ``x_cam = R (x_world - c)`` and the Human3.6M distortion model
   (:func:`jpose.camera.world_to_camera`, :func:`jpose.camera.project_perspective`).
7. **Detector-like noise** (:func:`detect`). Per joint ``j`` and axis, the error has std
   ``noise_px * w_j`` with ``w_j`` from :func:`joint_noise_weights` (1.5 at wrists and
   ankles, 1.2 at elbows, knees and head top, 1 elsewhere): a fraction ``jitter_fraction``
   of its variance is temporally correlated (AR(1), time constant ``jitter_time`` s), the
   rest white. A fraction ``outlier_rate`` of (frame, joint) entries are gross outliers:
   left/right swaps (the mirror joint's detection) or, for unpaired joints and swaps
   that would land closer than ``outlier_min_px``, a displacement of 0.1-0.4 of the
   person's 2D bounding-box diagonal (at least ``outlier_min_px``) in a random direction.
   Confidences ``sigmoid(4 - 1.2 e / max(noise_px, 1) + N(0, 0.75))``, with ``e`` the
   pixel error, are high for good detections and low for outliers, except that a
   fraction ``confident_outlier_rate`` of outliers get a clean-looking confidence
   (detectors are sometimes confidently wrong); joints outside the image lose 3 logits.
8. **Splits** (:data:`DEFAULT_SPLITS`, in the spirit of the scarce-label Human3.6M
   protocol: S1 labelled, S5-S8 unlabelled, S9/S11 test): ``labelled`` = ``S1``,
   ``test`` = the last ``max(1, (num_subjects - 1) // 3)`` subjects, ``unlabelled`` = the
   others. ``held_out_cameras`` reserves cameras for the test split (which then uses
   only them, and the other splits never do); ``held_out_actions`` does the same for
   actions.

Units: metres (3D), pixels (2D). World: Z-up, ground z = 0. Camera frame: x right,
y down, z forward. Everything is NumPy float32 (the generator runs once, not in models).
Datasets save to and load from one ``.npz`` without pickle (:func:`save_multiview_dataset`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from jpose import camera as camera_lib
from jpose import skeleton as skeleton_lib
from jpose.datasets import samples, synthetic

__all__ = [
    "SOURCES",
    "SPLITS",
    "SequenceRecord",
    "MultiViewConfig",
    "MultiViewDataset",
    "make_multiview_dataset",
    "make_cameras",
    "subject_bone_scales",
    "bone_group",
    "joint_noise_weights",
    "detect",
    "stack_records",
    "save_multiview_dataset",
    "load_multiview_dataset",
]

SOURCES = ("deepmimic", "synthetic")
SPLITS = ("labelled", "unlabelled", "test")
_FORMAT = "jpose.multiview/1"

# Seed-stream tags: every random quantity draws from its own stream, keyed by what it
# belongs to, so results do not depend on generation order.
_TAG_CAMERAS, _TAG_SUBJECT, _TAG_MOTION, _TAG_PLACEMENT, _TAG_NOISE = 1, 2, 3, 4, 5

_ARRAY_FIELDS = (
    "positions_world",
    "positions_camera",
    "keypoints_clean",
    "keypoints",
    "confidence",
    "outlier",
    "visible",
)
# Per-joint fields in the record's keypoints_layout (the others are in the 3D layout).
_DETECTION_FIELDS = ("keypoints", "confidence", "outlier")


class SequenceRecord(NamedTuple):
    """One (subject, action, camera) sequence of ``F`` frames and ``J`` joints.

    Attributes:
      subject: pseudo-subject name, ``"S1"``...
      action: action (clip) name.
      camera_index: index into ``MultiViewDataset.cameras``.
      fps: frames per second.
      positions_world: ``(F, J, 3)`` float32 metres, Z-up world.
      positions_camera: ``(F, J, 3)`` float32 metres, camera frame ``R (x - c)``.
      keypoints_clean: ``(F, J, 2)`` float32 pixels, exact projection (with distortion).
      keypoints: ``(F, J, 2)`` float32 pixels, noisy "detections".
      confidence: ``(F, J)`` float32 in [0, 1], detector-like scores.
      outlier: ``(F, J)`` bool, entries replaced by a gross outlier.
      visible: ``(F, J)`` bool, clean keypoint inside the image and in front.
      camera: this sequence's camera (:class:`jpose.camera.CameraParams`, NumPy float32,
        no leading axis).
      keypoints_layout: jpose layout name (:func:`jpose.skeleton.get`) of ``keypoints``,
        ``confidence`` and ``outlier`` when the 2D detections are in a layout other than
        the 3D one, e.g. ``"coco_17"`` for VideoPose3D's Detectron file, so they have
        ``J_kp`` joints instead of ``J``; None: the 3D layout (as everywhere in the
        generated data). ``keypoints_clean`` and ``visible`` are always in the 3D layout
        (they are the projection of ``positions_camera``).
      valid: ``(F,)`` bool, the frames that count in evaluation (MPI-INF-3DHP test
        ``valid_frame``), or None (every frame counts).
      activity: ``(F,)`` int32 activity id per frame (MPI-INF-3DHP test: 1..7; the
        pose-sequence schema writes 0 where a dataset has none), or None.
    """

    subject: str
    action: str
    camera_index: int
    fps: float
    positions_world: np.ndarray
    positions_camera: np.ndarray
    keypoints_clean: np.ndarray
    keypoints: np.ndarray
    confidence: np.ndarray
    outlier: np.ndarray
    visible: np.ndarray
    camera: camera_lib.CameraParams
    keypoints_layout: str | None = None
    valid: np.ndarray | None = None
    activity: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.positions_world.shape[0])


@dataclasses.dataclass(frozen=True)
class MultiViewConfig:
    """Every knob of :func:`make_multiview_dataset` (documented there); JSON-serialisable."""

    source: str = "deepmimic"
    layout: str = "h36m_17"
    num_cameras: int = 4
    num_subjects: int = 5
    actions: tuple[str, ...] | None = None
    fps: float | None = None
    noise_px: float = 4.0
    jitter_fraction: float = 0.5
    jitter_time: float = 0.2
    outlier_rate: float = 0.05
    outlier_min_px: float = 30.0
    confident_outlier_rate: float = 0.1
    camera_distance: tuple[float, float] = (5.0, 6.0)
    camera_height: tuple[float, float] = (1.5, 1.8)
    focal_px: float = 1145.0
    image_size: tuple[int, int] = (1000, 1000)
    distortion: bool = True
    synthetic_frames: int = 100
    synthetic_fps: float = 50.0
    held_out_cameras: tuple[int, ...] = ()
    held_out_actions: tuple[str, ...] = ()
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MultiViewConfig:
        raw = json.loads(text)
        for key in ("actions", "camera_distance", "camera_height", "image_size", "held_out_cameras", "held_out_actions"):
            if raw.get(key) is not None:
                raw[key] = tuple(raw[key])
        return cls(**raw)


@dataclasses.dataclass(frozen=True, eq=False)
class MultiViewDataset:
    """A generated multi-view dataset: per-sequence records plus shared metadata.

    Attributes:
      sequences: all records, ordered by subject, action, camera.
      cameras: the rig, :class:`jpose.camera.CameraParams` of NumPy float32 arrays with
        leading axis ``(num_cameras,)``.
      layout: joint layout name (:func:`jpose.skeleton.get`).
      joint_names: the layout's joint names.
      subjects: subject names in order (``S1``...).
      actions: action names in order.
      splits: ``((split_name, subjects), ...)`` for ``labelled``, ``unlabelled``, ``test``.
      held_out_cameras: camera indices reserved for the test split (may be empty).
      held_out_actions: actions reserved for the test split (may be empty).
      bone_scales: ``(num_subjects, 16)`` float32 factors scaling each ``deepmimic_16``
        joint's bone to its parent (1 for the root).
      config: the generator settings.
    """

    sequences: tuple[SequenceRecord, ...]
    cameras: camera_lib.CameraParams
    layout: str
    joint_names: tuple[str, ...]
    subjects: tuple[str, ...]
    actions: tuple[str, ...]
    splits: tuple[tuple[str, tuple[str, ...]], ...]
    held_out_cameras: tuple[int, ...]
    held_out_actions: tuple[str, ...]
    bone_scales: np.ndarray
    config: MultiViewConfig

    @property
    def num_cameras(self) -> int:
        return int(self.cameras.rotation.shape[0])

    def split_subjects(self, name: str) -> tuple[str, ...]:
        """Subjects of split ``name`` (``labelled``, ``unlabelled`` or ``test``)."""
        for split, subjects in self.splits:
            if split == name:
                return subjects
        raise ValueError(f"name: unknown split {name!r}; expected one of {[s for s, _ in self.splits]}")

    def select(
        self,
        *,
        subjects: Iterable[str] | None = None,
        actions: Iterable[str] | None = None,
        cameras: Iterable[int] | None = None,
    ) -> tuple[SequenceRecord, ...]:
        """Records whose subject, action and camera are in the given sets (None: all)."""
        subj = None if subjects is None else set(subjects)
        act = None if actions is None else set(actions)
        cam = None if cameras is None else {int(c) for c in cameras}
        return tuple(
            r
            for r in self.sequences
            if (subj is None or r.subject in subj)
            and (act is None or r.action in act)
            and (cam is None or r.camera_index in cam)
        )

    def split(self, name: str) -> tuple[SequenceRecord, ...]:
        """Records of split ``name``, with held-out cameras/actions applied.

        ``test`` keeps only the held-out cameras and actions when there are any;
        ``labelled`` and ``unlabelled`` never contain them. Splits are disjoint.
        """
        subjects = self.split_subjects(name)
        all_cams = range(self.num_cameras)
        if name == "test":
            cams = self.held_out_cameras or tuple(all_cams)
            acts = self.held_out_actions or self.actions
        else:
            cams = tuple(c for c in all_cams if c not in self.held_out_cameras)
            acts = tuple(a for a in self.actions if a not in self.held_out_actions)
        return self.select(subjects=subjects, actions=acts, cameras=cams)

    def views(self, subject: str, action: str) -> tuple[SequenceRecord, ...]:
        """All cameras' records of one (subject, action), in camera order (frame-aligned)."""
        out = tuple(sorted(self.select(subjects=[subject], actions=[action]), key=lambda r: r.camera_index))
        if not out:
            raise ValueError(f"subject/action: no sequences for ({subject!r}, {action!r})")
        return out

    def stack(self, split: str | None = None, *, fields: Sequence[str] = _ARRAY_FIELDS) -> dict[str, np.ndarray]:
        """Frames of a split (or of the whole dataset) concatenated: see :func:`stack_records`."""
        records = self.sequences if split is None else self.split(split)
        return stack_records(records, fields=fields)

    def save(self, path: str) -> None:
        """Same as :func:`save_multiview_dataset`."""
        save_multiview_dataset(self, path)


# --------------------------------------------------------------------------- pieces


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def make_cameras(
    num_cameras: int,
    *,
    seed: int = 0,
    distance: tuple[float, float] = (5.0, 6.0),
    height: tuple[float, float] = (1.5, 1.8),
    focal_px: float = 1145.0,
    image_size: tuple[int, int] = (1000, 1000),
    distortion: bool = True,
) -> camera_lib.CameraParams:
    """A Human3.6M-like rig of ``num_cameras`` calibrated cameras (NumPy float32).

    Camera ``i`` stands at azimuth ``2 pi i / num_cameras + U(-10, 10)`` degrees (plus a
    random rig rotation), ``U(*distance)`` metres from the world's vertical axis and
    ``U(*height)`` metres above the ground, and looks at ``(0, 0, 1)`` m. Focal lengths
    ``focal_px + U(-5, 5)`` px per axis, principal point ``image_size / 2 + U(-10, 10)``
    px; with ``distortion`` Human3.6M-like coefficients ``k1 ~ U(-0.22, -0.18)``,
    ``k2 ~ U(0.20, 0.26)``, ``k3 ~ U(-0.004, 0)``, ``p1, p2 ~ U(-0.002, 0.002)``.
    Built with :func:`jpose.camera.virtual_cameras`.
    """
    if isinstance(num_cameras, bool) or int(num_cameras) != num_cameras or num_cameras < 1:
        raise ValueError(f"num_cameras: expected a positive integer, got {num_cameras!r}")
    rng = np.random.default_rng([int(seed), _TAG_CAMERAS])
    rig_yaw = rng.uniform(0.0, 2 * math.pi)
    size = np.asarray(image_size, np.float32)
    cams = []
    for i in range(int(num_cameras)):
        focal = focal_px + rng.uniform(-5.0, 5.0, size=2)
        principal = size / 2 + rng.uniform(-10.0, 10.0, size=2)
        if distortion:
            radial = (rng.uniform(-0.22, -0.18), rng.uniform(0.20, 0.26), rng.uniform(-0.004, 0.0))
            tangential = tuple(rng.uniform(-0.002, 0.002, size=2))
        else:
            radial, tangential = (0.0, 0.0, 0.0), (0.0, 0.0)
        cam = camera_lib.virtual_cameras(
            1,
            distance=_uniform(rng, distance),
            height=_uniform(rng, height),
            target=(0.0, 0.0, 1.0),
            focal=np.asarray(focal, np.float32),
            image_size=size,
            principal=np.asarray(principal, np.float32),
            radial=np.asarray(radial, np.float32),
            tangential=np.asarray(tangential, np.float32),
            azimuth_offset=float(rig_yaw + 2 * math.pi * i / num_cameras + rng.uniform(-1.0, 1.0) * math.radians(10)),
            dtype=np.float32,
        )
        cams.append(cam)
    return camera_lib.CameraParams(
        *(np.concatenate([np.asarray(getattr(c, f), np.float32) for c in cams], axis=0) for f in camera_lib.CameraParams._fields)
    )


def bone_group(name: str) -> str:
    """The bone group of a joint name: its name without a ``left_`` / ``right_`` prefix,
    so the two bones of a left/right pair share one scale factor."""
    return name.removeprefix("left_").removeprefix("right_")


def subject_bone_scales(num_subjects: int, *, seed: int = 0) -> np.ndarray:
    """Per-subject bone scale factors ``(num_subjects, 16)`` (``deepmimic_16`` order).

    Entry ``[s, j]`` scales the offset of joint ``j`` from its parent (the root's entry
    is 1). Factor = global ``U(0.95, 1.12)`` times per-bone ``1 + clip(N(0, 0.04), +-0.1)``,
    equal for the left and right bones of a pair.
    """
    names = samples.DEEPMIMIC_JOINT_NAMES
    groups = sorted({bone_group(n) for n in names[1:]})
    out = np.ones((num_subjects, len(names)), np.float64)
    for s in range(num_subjects):
        rng = np.random.default_rng([int(seed), _TAG_SUBJECT, s])
        size = rng.uniform(0.95, 1.12)
        per_group = dict(zip(groups, 1.0 + np.clip(rng.normal(0.0, 0.04, size=len(groups)), -0.1, 0.1)))
        for j, n in enumerate(names[1:], start=1):
            out[s, j] = size * per_group[bone_group(n)]
    return out.astype(np.float32)


def joint_noise_weights(joint_names: Sequence[str]) -> np.ndarray:
    """Relative 2D detection noise per joint ``(J,)``: detectors are worse at extremities.

    1.5 for wrists, ankles, hands, feet and toes; 1.2 for elbows, knees and the head top;
    1.0 elsewhere (torso, head centre).
    """
    weights = []
    for name in joint_names:
        if any(k in name for k in ("wrist", "ankle", "hand", "foot", "toe")):
            weights.append(1.5)
        elif any(k in name for k in ("elbow", "knee", "head_top")):
            weights.append(1.2)
        else:
            weights.append(1.0)
    return np.asarray(weights, np.float64)


def _ar1_noise(rng: np.random.Generator, shape: tuple[int, ...], rho: float) -> np.ndarray:
    """Unit-variance AR(1) noise along axis 0 with lag-one correlation ``rho``."""
    eps = rng.standard_normal(shape)
    out = np.empty(shape)
    out[0] = eps[0]
    innovation = math.sqrt(max(1.0 - rho * rho, 0.0))
    for t in range(1, shape[0]):
        out[t] = rho * out[t - 1] + innovation * eps[t]
    return out


def detect(
    keypoints_clean: np.ndarray,
    *,
    joint_names: Sequence[str],
    flip_permutation: Sequence[int],
    fps: float,
    rng: np.random.Generator,
    noise_px: float = 4.0,
    jitter_fraction: float = 0.5,
    jitter_time: float = 0.2,
    outlier_rate: float = 0.05,
    outlier_min_px: float = 30.0,
    confident_outlier_rate: float = 0.1,
    visible: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulates a 2D keypoint detector on clean keypoints ``(F, J, 2)`` pixels.

    Noise model, outliers and confidences are described in the module docstring (step 7).

    Args:
      keypoints_clean: ``(F, J, 2)`` exact keypoints, pixels.
      joint_names: the ``J`` joint names (they set the per-joint noise weights).
      flip_permutation: left/right mirror permutation of the joints (for swaps).
      fps: frame rate, for the correlation time of the jitter.
      rng: random generator (consumed).
      noise_px, jitter_fraction, jitter_time, outlier_rate, outlier_min_px,
        confident_outlier_rate: as in :func:`make_multiview_dataset`.
      visible: optional ``(F, J)`` bool; invisible joints get lower confidence.

    Returns:
      ``(keypoints (F, J, 2) float32 px, confidence (F, J) float32 in [0, 1],
      outlier (F, J) bool)``.
    """
    clean = np.asarray(keypoints_clean, np.float64)
    if clean.ndim != 3 or clean.shape[-1] != 2 or clean.shape[1] != len(joint_names):
        raise ValueError(f"keypoints_clean: expected shape (F, {len(joint_names)}, 2), got {clean.shape}")
    if noise_px < 0 or not 0.0 <= jitter_fraction <= 1.0 or jitter_time <= 0:
        raise ValueError("noise_px must be >= 0, jitter_fraction in [0, 1] and jitter_time > 0")
    if not 0.0 <= outlier_rate < 1.0 or not 0.0 <= confident_outlier_rate <= 1.0:
        raise ValueError("outlier_rate must be in [0, 1) and confident_outlier_rate in [0, 1]")
    num_frames, num_joints, _ = clean.shape
    sigma = noise_px * joint_noise_weights(joint_names)  # (J,)
    rho = math.exp(-1.0 / (jitter_time * fps))
    white = rng.standard_normal(clean.shape)
    jitter = _ar1_noise(rng, clean.shape, rho)
    unit = math.sqrt(1.0 - jitter_fraction) * white + math.sqrt(jitter_fraction) * jitter
    noisy = clean + sigma[None, :, None] * unit

    # Gross outliers: left/right swaps, else random displacements.
    outlier = rng.random((num_frames, num_joints)) < outlier_rate
    perm = np.asarray(flip_permutation)
    swapped = noisy[:, perm]
    swap_dist = np.linalg.norm(swapped - clean, axis=-1)
    can_swap = (perm != np.arange(num_joints))[None, :] & (swap_dist >= outlier_min_px)
    use_swap = can_swap & (rng.random((num_frames, num_joints)) < 0.5)
    bbox = clean.max(axis=1) - clean.min(axis=1)  # (F, 2)
    diag = np.linalg.norm(bbox, axis=-1)[:, None]  # (F, 1)
    magnitude = np.maximum(rng.uniform(0.1, 0.4, (num_frames, num_joints)) * diag, outlier_min_px)
    angle = rng.uniform(0.0, 2 * math.pi, (num_frames, num_joints))
    displaced = clean + magnitude[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    gross = np.where(use_swap[..., None], swapped, displaced)
    keypoints = np.where(outlier[..., None], gross, noisy)

    # Confidence: logistic in the pixel error, with miscalibration.
    error = np.linalg.norm(keypoints - clean, axis=-1)
    logit = 4.0 - 1.2 * error / max(noise_px, 1.0) + rng.normal(0.0, 0.75, error.shape)
    clean_like = 4.0 - 1.2 * np.abs(rng.normal(0.0, 1.25, error.shape)) + rng.normal(0.0, 0.75, error.shape)
    confident = outlier & (rng.random(error.shape) < confident_outlier_rate)
    logit = np.where(confident, clean_like, logit)
    if visible is not None:
        logit = np.where(visible, logit, logit - 3.0)
    confidence = 0.5 * (1.0 + np.tanh(0.5 * logit))  # the logistic, without overflow
    return keypoints.astype(np.float32), confidence.astype(np.float32), outlier


def stack_records(
    records: Sequence[SequenceRecord], *, fields: Sequence[str] = _ARRAY_FIELDS
) -> dict[str, np.ndarray]:
    """Concatenates records along frames.

    Returns a dict with each requested array field ``(N, ...)`` (``N`` = total frames),
    plus ``sequence`` (N,) int32 (index into ``records``), ``frame`` (N,) int32 (frame
    within its sequence), ``camera_index`` (N,) int32, ``subject`` and ``action`` (N,)
    unicode, ``fps`` (N,) float32. The records stacked for ``keypoints``,
    ``confidence`` or ``outlier`` must share one ``keypoints_layout``.
    """
    if not records:
        raise ValueError("records: expected at least one record")
    for f in fields:
        if f not in _ARRAY_FIELDS:
            raise ValueError(f"fields: unknown field {f!r}; expected some of {_ARRAY_FIELDS}")
    kp_layouts = {r.keypoints_layout for r in records}
    if len(kp_layouts) > 1 and set(fields) & set(_DETECTION_FIELDS):
        raise ValueError(
            f"records: keypoints_layout differs between records ({sorted(map(str, kp_layouts))}); "
            f"their {sorted(set(fields) & set(_DETECTION_FIELDS))} cannot be stacked")
    out = {f: np.concatenate([getattr(r, f) for r in records], axis=0) for f in fields}
    lengths = [r.num_frames for r in records]
    out["sequence"] = np.repeat(np.arange(len(records), dtype=np.int32), lengths)
    out["frame"] = np.concatenate([np.arange(n, dtype=np.int32) for n in lengths])
    out["camera_index"] = np.repeat(np.asarray([r.camera_index for r in records], np.int32), lengths)
    out["subject"] = np.repeat(np.asarray([r.subject for r in records]), lengths)
    out["action"] = np.repeat(np.asarray([r.action for r in records]), lengths)
    out["fps"] = np.repeat(np.asarray([r.fps for r in records], np.float32), lengths)
    return out


# ------------------------------------------------------------------------ generator


def _default_splits(subjects: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    num_test = max(1, (len(subjects) - 1) // 3)
    return (
        ("labelled", subjects[:1]),
        ("unlabelled", subjects[1 : len(subjects) - num_test]),
        ("test", subjects[len(subjects) - num_test :]),
    )


def _check_config(cfg: MultiViewConfig) -> tuple[str, ...]:
    if cfg.source not in SOURCES:
        raise ValueError(f"source: expected one of {SOURCES}, got {cfg.source!r}")
    skeleton_lib.get(cfg.layout)  # raises ValueError naming the known layouts
    if cfg.num_subjects < 3:
        raise ValueError(f"num_subjects: need >= 3 (labelled, unlabelled, test), got {cfg.num_subjects}")
    if cfg.num_cameras < 1:
        raise ValueError(f"num_cameras: expected >= 1, got {cfg.num_cameras}")
    valid = samples.DEEPMIMIC_CLIPS if cfg.source == "deepmimic" else synthetic.SYNTHETIC_ACTIONS
    actions = valid if cfg.actions is None else tuple(cfg.actions)
    unknown = [a for a in actions if a not in valid]
    if unknown or not actions or len(set(actions)) != len(actions):
        raise ValueError(f"actions: expected distinct names from {valid}, got {cfg.actions}")
    if cfg.fps is not None and not cfg.fps > 0:
        raise ValueError(f"fps: expected None or a positive number, got {cfg.fps}")
    if cfg.noise_px < 0:
        raise ValueError(f"noise_px: expected >= 0, got {cfg.noise_px}")
    if not 0.0 <= cfg.outlier_rate < 1.0:
        raise ValueError(f"outlier_rate: expected in [0, 1), got {cfg.outlier_rate}")
    bad_cams = [c for c in cfg.held_out_cameras if not 0 <= c < cfg.num_cameras]
    if bad_cams or len(cfg.held_out_cameras) >= cfg.num_cameras and cfg.held_out_cameras:
        raise ValueError(
            f"held_out_cameras: expected indices in [0, {cfg.num_cameras}) leaving at least one "
            f"camera for training, got {cfg.held_out_cameras}"
        )
    bad_actions = [a for a in cfg.held_out_actions if a not in actions]
    if bad_actions or len(cfg.held_out_actions) >= len(actions) and cfg.held_out_actions:
        raise ValueError(
            f"held_out_actions: expected a proper subset of {actions}, got {cfg.held_out_actions}"
        )
    return actions


def _motions(cfg: MultiViewConfig, actions: tuple[str, ...], subject: int):
    """(action, Motion, tree) for one subject."""
    out = []
    for a_idx, action in enumerate(actions):
        if cfg.source == "deepmimic":
            motion = samples.load_deepmimic_motion(action)
            tree = samples.deepmimic_tree()
        else:
            fps = cfg.synthetic_fps
            motion = synthetic.synthetic_motion(
                action,
                num_frames=cfg.synthetic_frames,
                fps=fps,
                seed=np.random.default_rng([cfg.seed, _TAG_MOTION, subject, a_idx]),
            )
            tree = synthetic.DEEPMIMIC_TREE
        if cfg.fps is not None and abs(cfg.fps - motion.fps) > 1e-9:
            motion = samples.resample_motion(motion, cfg.fps)
        out.append((action, motion, tree))
    return out


def _leg_ratio(scales: np.ndarray, tree: samples.KinematicTree) -> float:
    names = tree.joint_names
    lengths = np.linalg.norm(np.asarray(tree.offsets), axis=-1)
    legs = [names.index(n) for n in ("right_knee", "right_ankle")]
    return float(np.sum(lengths[legs] * scales[legs]) / np.sum(lengths[legs]))


def make_multiview_dataset(
    source: str = "deepmimic",
    *,
    layout: str = "h36m_17",
    num_cameras: int = 4,
    num_subjects: int = 5,
    actions: Sequence[str] | None = None,
    fps: float | None = None,
    noise_px: float = 4.0,
    jitter_fraction: float = 0.5,
    jitter_time: float = 0.2,
    outlier_rate: float = 0.05,
    outlier_min_px: float = 30.0,
    confident_outlier_rate: float = 0.1,
    camera_distance: tuple[float, float] = (5.0, 6.0),
    camera_height: tuple[float, float] = (1.5, 1.8),
    focal_px: float = 1145.0,
    image_size: tuple[int, int] = (1000, 1000),
    distortion: bool = True,
    synthetic_frames: int = 100,
    synthetic_fps: float = 50.0,
    splits: Sequence[tuple[str, Sequence[str]]] | None = None,
    held_out_cameras: Sequence[int] = (),
    held_out_actions: Sequence[str] = (),
    seed: int = 0,
) -> MultiViewDataset:
    """Generates a multi-view dataset (see the module docstring for the full model).

    Args:
      source: ``"deepmimic"`` (real motion; needs ``jpose[samples]``) or ``"synthetic"``.
      layout: output joint layout (:func:`jpose.skeleton.get` name).
      num_cameras: cameras in the rig.
      num_subjects: pseudo-subjects ``S1..Sn`` (>= 3).
      actions: subset of the source's actions (default all).
      fps: resample every motion to this rate; None keeps each clip's own rate
        (DeepMimic: 60, 30, 24 or 16; synthetic: ``synthetic_fps``).
      noise_px: 2D noise std (pixels, per axis) for a weight-1 joint.
      jitter_fraction: share of the noise variance that is temporally correlated.
      jitter_time: correlation time of that part, seconds.
      outlier_rate: fraction of (frame, joint) detections that are gross outliers.
      outlier_min_px: smallest outlier displacement, pixels.
      confident_outlier_rate: fraction of outliers given a clean-looking confidence.
      camera_distance, camera_height: ``(low, high)`` metres of the uniform draws.
      focal_px: nominal focal length, pixels.
      image_size: ``(width, height)`` pixels.
      distortion: Human3.6M-like lens distortion (else none).
      synthetic_frames, synthetic_fps: length and rate of synthetic motions.
      splits: ``((name, subjects), ...)`` for ``labelled``, ``unlabelled``, ``test``
        (default: S1 | middle | last ``max(1, (n - 1) // 3)``; 4 subjects give S1 | S2, S3 | S4, 7 give H36M-like S1 | S2-S5 | S6, S7).
      held_out_cameras: camera indices used only by the test split.
      held_out_actions: actions used only by the test split.
      seed: seeds everything; equal arguments give identical datasets.
    """
    cfg = MultiViewConfig(
        source=source,
        layout=layout,
        num_cameras=int(num_cameras),
        num_subjects=int(num_subjects),
        actions=None if actions is None else tuple(actions),
        fps=None if fps is None else float(fps),
        noise_px=float(noise_px),
        jitter_fraction=float(jitter_fraction),
        jitter_time=float(jitter_time),
        outlier_rate=float(outlier_rate),
        outlier_min_px=float(outlier_min_px),
        confident_outlier_rate=float(confident_outlier_rate),
        camera_distance=tuple(float(v) for v in camera_distance),  # type: ignore[arg-type]
        camera_height=tuple(float(v) for v in camera_height),  # type: ignore[arg-type]
        focal_px=float(focal_px),
        image_size=tuple(int(v) for v in image_size),  # type: ignore[arg-type]
        distortion=bool(distortion),
        synthetic_frames=int(synthetic_frames),
        synthetic_fps=float(synthetic_fps),
        held_out_cameras=tuple(int(c) for c in held_out_cameras),
        held_out_actions=tuple(held_out_actions),
        seed=int(seed),
    )
    action_names = _check_config(cfg)
    subjects = tuple(f"S{i + 1}" for i in range(cfg.num_subjects))
    split_table = _default_splits(subjects) if splits is None else tuple((n, tuple(s)) for n, s in splits)
    names_given = [n for n, _ in split_table]
    listed = [s for _, ss in split_table for s in ss]
    if sorted(names_given) != sorted(SPLITS) or len(listed) != len(set(listed)) or set(listed) - set(subjects):
        raise ValueError(
            f"splits: expected disjoint subject lists from {subjects} for {SPLITS}, got {split_table}"
        )

    layout_skel = skeleton_lib.get(cfg.layout)
    cams = make_cameras(
        cfg.num_cameras,
        seed=cfg.seed,
        distance=cfg.camera_distance,
        height=cfg.camera_height,
        focal_px=cfg.focal_px,
        image_size=cfg.image_size,
        distortion=cfg.distortion,
    )
    bone_scales = subject_bone_scales(cfg.num_subjects, seed=cfg.seed)

    # 3D motion per (subject, action), placed in the rig's world.
    clips = []  # (subject, action, fps, positions (F, J, 3) float32)
    for s_idx, subject in enumerate(subjects):
        for action, motion, tree in _motions(cfg, action_names, s_idx):
            scales = bone_scales[s_idx].astype(np.float64)
            offsets = np.asarray(tree.offsets) * scales[:, None]
            pos = samples.motion_positions(
                motion, tree=tree, offsets=offsets, root_scale=_leg_ratio(scales, tree)
            )
            a_idx = action_names.index(action)
            rng = np.random.default_rng([cfg.seed, _TAG_PLACEMENT, s_idx, a_idx])
            root_xy = pos[:, 0, :2]
            centre = 0.5 * (root_xy.min(axis=0) + root_xy.max(axis=0))
            yaw = rng.uniform(-math.pi, math.pi)
            c, s = math.cos(yaw), math.sin(yaw)
            turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
            shifted = pos - np.array([centre[0], centre[1], 0.0])[None, None, :]
            placed = np.einsum("ab,fjb->fja", turn, shifted)
            converted = skeleton_lib.convert(placed, "deepmimic_16", layout_skel)
            clips.append((subject, action, motion.fps, converted.astype(np.float32)))

    # Project every frame through every camera in one batched call: (C, N, J, 3).
    world = np.concatenate([c[3] for c in clips], axis=0)
    points = np.broadcast_to(world[None], (cfg.num_cameras,) + world.shape)
    cam_j = camera_lib.CameraParams(*(np.asarray(f, np.float32) for f in cams))
    in_cam = np.asarray(camera_lib.world_to_camera(points, cam_j.rotation, cam_j.centre))
    pixels = np.asarray(
        camera_lib.project_perspective(in_cam, cam_j.focal, cam_j.principal, cam_j.radial, cam_j.tangential)
    )
    size = np.asarray(cfg.image_size, np.float32)

    records = []
    start = 0
    for subject, action, clip_fps, pos in clips:
        n = pos.shape[0]
        s_idx, a_idx = subjects.index(subject), action_names.index(action)
        for cam in range(cfg.num_cameras):
            kp = pixels[cam, start : start + n]
            xyz = in_cam[cam, start : start + n]
            visible = (xyz[..., 2] > 0.1) & np.all((kp >= 0) & (kp <= size[None, None]), axis=-1)
            rng = np.random.default_rng([cfg.seed, _TAG_NOISE, s_idx, a_idx, cam])
            noisy, conf, outl = detect(
                kp,
                joint_names=layout_skel.joint_names,
                flip_permutation=layout_skel.flip_permutation,
                fps=clip_fps,
                rng=rng,
                noise_px=cfg.noise_px,
                jitter_fraction=cfg.jitter_fraction,
                jitter_time=cfg.jitter_time,
                outlier_rate=cfg.outlier_rate,
                outlier_min_px=cfg.outlier_min_px,
                confident_outlier_rate=cfg.confident_outlier_rate,
                visible=visible,
            )
            records.append(
                SequenceRecord(
                    subject=subject,
                    action=action,
                    camera_index=cam,
                    fps=float(clip_fps),
                    positions_world=pos,
                    positions_camera=xyz.astype(np.float32),
                    keypoints_clean=kp.astype(np.float32),
                    keypoints=noisy,
                    confidence=conf,
                    outlier=outl,
                    visible=visible,
                    camera=camera_lib.CameraParams(*(f[cam] for f in cams)),
                )
            )
        start += n

    return MultiViewDataset(
        sequences=tuple(records),
        cameras=cams,
        layout=cfg.layout,
        joint_names=layout_skel.joint_names,
        subjects=subjects,
        actions=action_names,
        splits=split_table,
        held_out_cameras=cfg.held_out_cameras,
        held_out_actions=cfg.held_out_actions,
        bone_scales=bone_scales,
        config=cfg,
    )


# ----------------------------------------------------------------------------- npz


def save_multiview_dataset(dataset: MultiViewDataset, path: str) -> None:
    """Writes ``dataset`` to one ``.npz`` (no pickled objects; strings as unicode arrays).

    Layout: the record arrays concatenated along frames (``positions_world`` ... ``visible``)
    with ``seq_subject``, ``seq_action``, ``seq_camera``, ``seq_fps``, ``seq_length``
    per record; ``camera_<field>`` (C, ...); ``joint_names``, ``subjects``, ``actions``;
    ``split_names`` and ``split_of_subject`` (the split of each subject);
    ``held_out_cameras``, ``held_out_actions``; ``bone_scales``; ``layout``,
    ``config`` (JSON) and ``format`` as 0-d unicode arrays.
    """
    recs = dataset.sequences
    for i, r in enumerate(recs):
        # The file format has no slots for them: refuse rather than drop them silently.
        extra = [f for f in ("keypoints_layout", "valid", "activity") if getattr(r, f) is not None]
        if extra:
            raise ValueError(f"dataset.sequences[{i}]: fields {extra} are set; the multiview "
                             f"file format stores only generated data, which has none")
    arrays: dict[str, np.ndarray] = {
        f: np.concatenate([getattr(r, f) for r in recs], axis=0) for f in _ARRAY_FIELDS
    }
    arrays.update(
        seq_subject=np.asarray([r.subject for r in recs], dtype=np.str_),
        seq_action=np.asarray([r.action for r in recs], dtype=np.str_),
        seq_camera=np.asarray([r.camera_index for r in recs], np.int64),
        seq_fps=np.asarray([r.fps for r in recs], np.float64),
        seq_length=np.asarray([r.num_frames for r in recs], np.int64),
        joint_names=np.asarray(dataset.joint_names, dtype=np.str_),
        subjects=np.asarray(dataset.subjects, dtype=np.str_),
        actions=np.asarray(dataset.actions, dtype=np.str_),
        split_names=np.asarray([n for n, _ in dataset.splits], dtype=np.str_),
        split_of_subject=np.asarray(
            [next((n for n, ss in dataset.splits if s in ss), "") for s in dataset.subjects], dtype=np.str_
        ),
        held_out_cameras=np.asarray(dataset.held_out_cameras, np.int64),
        held_out_actions=np.asarray(dataset.held_out_actions, dtype=np.str_).reshape(-1),
        bone_scales=np.asarray(dataset.bone_scales),
        layout=np.asarray(dataset.layout, dtype=np.str_),
        config=np.asarray(dataset.config.to_json(), dtype=np.str_),
        format=np.asarray(_FORMAT, dtype=np.str_),
    )
    for f in camera_lib.CameraParams._fields:
        arrays[f"camera_{f}"] = np.asarray(getattr(dataset.cameras, f))
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def load_multiview_dataset(path: str) -> MultiViewDataset:
    """Reads a dataset written by :func:`save_multiview_dataset` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    if str(data.get("format", "")) != _FORMAT:
        raise ValueError(f"{path}: not a {_FORMAT} file (format field {data.get('format')!r})")
    cams = camera_lib.CameraParams(*(data[f"camera_{f}"] for f in camera_lib.CameraParams._fields))
    subjects = tuple(str(s) for s in data["subjects"])
    split_names = tuple(str(s) for s in data["split_names"])
    of_subject = [str(s) for s in data["split_of_subject"]]
    splits = tuple((n, tuple(s for s, o in zip(subjects, of_subject) if o == n)) for n in split_names)
    records = []
    start = 0
    for i, n in enumerate(data["seq_length"].tolist()):
        cam = int(data["seq_camera"][i])
        fields = {f: data[f][start : start + n] for f in _ARRAY_FIELDS}
        records.append(
            SequenceRecord(
                subject=str(data["seq_subject"][i]),
                action=str(data["seq_action"][i]),
                camera_index=cam,
                fps=float(data["seq_fps"][i]),
                camera=camera_lib.CameraParams(*(f[cam] for f in cams)),
                **fields,
            )
        )
        start += n
    return MultiViewDataset(
        sequences=tuple(records),
        cameras=cams,
        layout=str(data["layout"]),
        joint_names=tuple(str(s) for s in data["joint_names"]),
        subjects=subjects,
        actions=tuple(str(s) for s in data["actions"]),
        splits=splits,
        held_out_cameras=tuple(int(c) for c in data["held_out_cameras"]),
        held_out_actions=tuple(str(a) for a in data["held_out_actions"]),
        bone_scales=data["bone_scales"],
        config=MultiViewConfig.from_json(str(data["config"])),
    )
