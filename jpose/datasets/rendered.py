"""Rendered image sequences with exact labels: the DeepMimic humanoid, offline, on CPU.

:func:`render_sequences` drives the humanoid of the ``pybullet==3.2.7`` wheel (extra
``jpose[samples]``, the wheel the DeepMimic motions already come from) with the sample
clips and renders it with pybullet's CPU software renderer (TinyRenderer, no OpenGL and
no GPU) from every camera of a fixed multi-view rig, at about 3-7 ms of renderer time
and 6-12 ms in all per 256x256 frame on one shared core
(``benchmarks/render_throughput.py``). Body colours, lighting and backgrounds (photos
that ship in installed packages, composited with the segmentation mask) are randomised;
the labels are exact, because the renderer's camera **is** the jpose camera.

Pipeline, per pseudo-subject ``S1..Sn``, clip and camera:

1. **Motion.** The clip's pose parameters (:func:`jpose.datasets.samples.load_deepmimic_motion`),
   optionally resampled to ``fps`` (slerp), then every ``frame_stride``-th frame, at most
   ``max_frames`` of them. ``frame_indices`` are the kept frames' indices at the
   (resampled) clip rate; ``record.fps = clip fps / frame_stride``.
2. **Subject size.** One uniform factor ``U(*subject_scale)`` per subject scales the
   whole character (pybullet ``globalScaling = 0.25 * factor``; the forward kinematics
   offsets and the root trajectory by the same factor). Proportions stay the DeepMimic
   character's (a URDF cannot be bone-scaled at load time), unlike the per-bone scaled
   pseudo-subjects of :mod:`jpose.datasets.multiview`.
3. **Placement** (as in :mod:`jpose.datasets.multiview`): the pelvis trajectory's
   bounding-box centre (over the kept frames) goes to the world origin and the clip
   turns by a random yaw about the vertical.
4. **Cameras.** :func:`jpose.datasets.multiview.make_cameras` without distortion
   (TinyRenderer is a pinhole renderer): Human3.6M-like, 5-6 m away, focal
   ``1.145 * width`` px by default (Human3.6M's field of view), principal point near the
   centre. Every sequence of one render shares the rig.
5. **Rendering.** Base pose and joint angles are set from the same pose parameters that
   the labels come from; the view matrix is ``diag(1, -1, -1) [R | -R c]`` (jpose's y down,
   z forward to OpenGL's y up, z backward) and the projection matrix is built from
   ``focal``, ``principal`` and ``image_size`` (:func:`pybullet_matrices`), including
   TinyRenderer's raster convention (pixel centres at integer window coordinates, rows
   flipped, i.e. one row of offset that the matrix compensates), so a jpose pixel
   ``(u, v)`` is image column ``u``, row ``v``. The tests check this against the
   rendered segmentation, independently of the label code.
6. **Appearance** (``appearance_seed``, independent of the geometry ``seed``): an outfit
   per subject (skin, shirt, trousers, shoes; long or short sleeves), one light per
   (subject, clip) shared by its cameras (world direction, colour, ambient / diffuse /
   specular coefficients, optional self-shadows), one background per (subject, clip,
   camera): a random crop (scale, position, mirror) of one of ``backgrounds`` with a
   brightness/tint jitter, static over the sequence like a fixed camera's.
7. **Labels** (:class:`~jpose.datasets.multiview.SequenceRecord`, layout ``layout``,
   default ``h36m_17`` via :func:`jpose.skeleton.convert` from ``deepmimic_16``):
   ``positions_world (T, J, 3)`` metres, Z-up world; ``positions_camera`` metres,
   ``x_cam = R (x_world - c)`` (x right, y down, z forward); ``keypoints_clean`` =
   ``keypoints`` pixels of the rendered image (x right, y down, centre of the top-left
   pixel at (0, 0)), the exact projection; ``visible`` from the segmentation: the joint
   projects inside the image onto a pixel of one of the body parts that meet at it (its
   own link, its parent's or a child's), so a joint hidden behind another body part is
   not visible (a joint in a small gap between parts, whose pixel shows the background,
   is visible when one of its parts is within :data:`GAP_TOLERANCE_M`); synthesised
   joints (``head_top``) are visible when all their source joints are;
   ``confidence = visible`` as float32 (1 / 0); ``outlier`` all False. Unlike
   :mod:`jpose.datasets.multiview`, ``visible`` means "not occluded", not just "in the
   image".

Joint orders. 3D and the record's 2D: ``layout`` (default ``h36m_17``: pelvis, right_hip,
right_knee, right_ankle, left_hip, left_knee, left_ankle, spine, neck, head, head_top,
left_shoulder, left_elbow, left_wrist, right_shoulder, right_elbow, right_wrist; ``spine``
= DeepMimic ``chest``, ``head`` = head-sphere centre, ``head_top`` extrapolated). Other 2D
layouts through :func:`keypoints_2d` (``mpii_16``, ``penn_action_13``, ...), converted
from the record's layout.

Three uses:

* **videos** (temporal 2D models): ``seq.images (T, H, W, 3)`` with
  ``seq.record.keypoints_clean (T, J, 2)`` for every ``seq`` in ``dataset.sequences``; or
  on disk with :func:`write_penn_action` and the Penn Action builder (below).
* **synchronised views** (metric learning): :func:`synchronised_views` (all cameras of a
  (subject, clip), frame-aligned), or :func:`records` into
  :func:`jpose.datasets.multiview_tuples.multiview_tuples` for the labels.
* **single frames** (volumetric hourglass): :func:`single_frames`, optionally as square
  person crops with crop-adjusted intrinsics.

On disk (:func:`write_penn_action` / :func:`read_penn_action`): the **Penn Action**
release layout (``shared/DATASET_FORMATS.md`` section 5), so that
``tfds_build.build("penn_action", manual_dir=root, ...)`` and
:mod:`jpose.datasets.penn_action.raw` read it unchanged: ``frames/NNNN/%06d.jpg`` (JPEG,
lossy: decoded pixels differ slightly from ``images``) and ``labels/NNNN.mat`` (MATLAB
v5) with Penn's fields (``x``, ``y`` 1-based MATLAB pixels in ``penn_action_13``,
``visibility`` = the record's visibility, ``bbox`` = the segmentation mask's extent
(outer pixel edges, + 1), ``dimensions = [H W T]``, ``nframes``, ``train`` = 1 / -1 by
subject, ``action`` = clip name, ``pose`` = coarse view ``front`` / ``back`` / ``left``
/ ``right``: the side of the person the camera sees in the first frame). The 3D labels
and the camera travel in the same ``.mat`` as extra ``jpose_*`` variables, which the Penn
reader ignores (:data:`PENN_EXTRA_FIELDS`); part segmentations go to
``segmentation/NNNN/%06d.png`` (0 background, ``link + 1``), a folder it ignores too.

Everything is NumPy (data generation, not model code); images uint8 RGB.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import os
import sys
from typing import Any, NamedTuple

import numpy as np

from jpose import camera as camera_lib
from jpose import skeleton as skeleton_lib
from jpose.datasets import multiview as multiview_lib
from jpose.datasets import samples

__all__ = [
    "BACKGROUNDS",
    "DEFAULT_BACKGROUNDS",
    "GAP_TOLERANCE_M",
    "LINK_NAMES",
    "TINY",
    "PENN_EXTRA_FIELDS",
    "RenderConfig",
    "RenderedSequence",
    "RenderedDataset",
    "render_sequences",
    "pybullet_matrices",
    "background_image",
    "keypoints_2d",
    "records",
    "synchronised_views",
    "single_frames",
    "write_penn_action",
    "read_penn_action",
]

# Seed-stream tags (one stream per random quantity, keyed by what it belongs to).
_TAG_SIZE, _TAG_PLACEMENT = 11, 12
_TAG_OUTFIT, _TAG_LIGHT, _TAG_BACKGROUND = 21, 22, 23

#: Background photos by name: ``(package, path inside it)``. ``pybullet_data`` ships with
#: the sample-data wheel; ``matplotlib`` is a jpose dependency; ``skimage`` images need
#: scikit-image (not a dependency; used only when named).
BACKGROUNDS: dict[str, tuple[str, str]] = {
    "grass": ("pybullet_data", "roboschool/models_outdoor/stadium/stadium_grass.jpg"),
    "wood": ("pybullet_data", "table/table.png"),
    "metal": ("pybullet_data", "tray/tray.jpg"),
    "domino": ("pybullet_data", "domino/domino.jpg"),
    "checker": ("pybullet_data", "checker_grid.jpg"),
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),
    "brick": ("skimage", "brick"),
    "gravel": ("skimage", "gravel"),
    "coffee": ("skimage", "coffee"),
    "rocket": ("skimage", "rocket"),
    "chelsea": ("skimage", "chelsea"),
}
#: The default: the photos that every install with the sample data has. Not
#: ``grace_hopper``: it is a portrait, and an unlabelled person in the background would
#: teach a 2D model to ignore people.
DEFAULT_BACKGROUNDS: tuple[str, ...] = ("grass", "wood", "metal")

#: pybullet link index -> URDF link name of the humanoid (the segmentation's part ids).
LINK_NAMES: tuple[str, ...] = (
    "root", "chest", "neck", "right_hip", "right_knee", "right_ankle", "right_shoulder",
    "right_elbow", "right_wrist", "left_hip", "left_knee", "left_ankle", "left_shoulder",
    "left_elbow", "left_wrist",
)

#: The values ``tiny=True`` gives (CI: renders in well under a second).
TINY: dict[str, Any] = dict(image_size=(64, 64), num_cameras=2, clips=("walk",),
                            num_subjects=2, max_frames=4)

_NEAR, _FAR = 0.05, 50.0
_LIGHT_DISTANCE = 10.0
_PENN_FORMAT = "jpose.rendered.penn_action/1"
_PENN_LAYOUT = "penn_action_13"
#: Extra variables of the written ``labels/NNNN.mat`` (the Penn reader ignores them).
PENN_EXTRA_FIELDS = (
    "jpose_format", "jpose_config", "jpose_layout", "jpose_subject", "jpose_clip",
    "jpose_camera_index", "jpose_fps", "jpose_frame_indices", "jpose_positions_world",
    "jpose_positions_camera", "jpose_keypoints", "jpose_visible",
) + tuple(f"jpose_camera_{f}" for f in camera_lib.CameraParams._fields)


# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """Every knob of :func:`render_sequences`; frozen and JSON-serialisable.

    Attributes:
      image_size: ``(width, height)`` pixels (an int means square); default 256.
      num_cameras: cameras of the rig (all rendered).
      clips: DeepMimic clip names (:data:`~jpose.datasets.samples.DEEPMIMIC_CLIPS`).
      num_subjects: pseudo-subjects ``S1..Sn`` (size and outfit each).
      frame_stride: keep every ``frame_stride``-th frame of a clip.
      max_frames: at most this many frames per sequence (None: all kept ones).
      fps: resample every clip to this rate before striding (None: the clip's own).
      layout: jpose layout of the labels (converted from ``deepmimic_16``).
      camera_distance, camera_height: ``(low, high)`` metres (see ``make_cameras``).
      focal_px: nominal focal length in pixels; None: ``1.145 * width``.
      subject_scale: ``(low, high)`` of the uniform size factor per subject.
      backgrounds: names from :data:`BACKGROUNDS`.
      shadows: TinyRenderer self-shadows (about 3x slower).
      num_test_subjects: the last subjects form the ``test`` split (``train = -1`` in the
        Penn Action files); None: ``max(1, (n - 1) // 3)`` when ``n >= 2``, else 0.
      seed: geometry (cameras, sizes, placements). Changing it changes the labels.
      appearance_seed: colours, lights and backgrounds only; labels do not depend on it.
      tiny: replaces ``image_size``, ``num_cameras``, ``clips``, ``num_subjects`` and
        ``max_frames`` by :data:`TINY` (those fields must then keep their defaults).
    """

    image_size: tuple[int, int] = (256, 256)
    num_cameras: int = 4
    clips: tuple[str, ...] = samples.DEEPMIMIC_CLIPS
    num_subjects: int = 2
    frame_stride: int = 2
    max_frames: int | None = None
    fps: float | None = None
    layout: str = "h36m_17"
    camera_distance: tuple[float, float] = (5.0, 6.0)
    camera_height: tuple[float, float] = (1.5, 1.8)
    focal_px: float | None = None
    subject_scale: tuple[float, float] = (0.95, 1.12)
    backgrounds: tuple[str, ...] = DEFAULT_BACKGROUNDS
    shadows: bool = True
    num_test_subjects: int | None = None
    seed: int = 0
    appearance_seed: int = 0
    tiny: bool = False

    def __post_init__(self):
        size = self.image_size
        if isinstance(size, (int, np.integer)):
            size = (int(size), int(size))
        object.__setattr__(self, "image_size", tuple(int(v) for v in size))
        for name in ("clips", "backgrounds", "camera_distance", "camera_height", "subject_scale"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.tiny:
            changed = [k for k in TINY if getattr(self, k) != _DEFAULTS[k]]
            if changed:
                raise ValueError(f"tiny: sets {sorted(TINY)}; do not also set {changed}")

    def effective(self) -> RenderConfig:
        """This config with ``tiny`` applied: the :data:`TINY` values and ``tiny=False``."""
        return dataclasses.replace(self, tiny=False, **TINY) if self.tiny else self

    @property
    def focal(self) -> float:
        return float(self.focal_px) if self.focal_px is not None else 1.145 * self.image_size[0]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RenderConfig:
        raw = json.loads(text)
        for key in ("image_size", "clips", "backgrounds", "camera_distance", "camera_height", "subject_scale"):
            raw[key] = tuple(raw[key])
        return cls(**raw)


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RenderConfig)}


def _check_config(cfg: RenderConfig) -> None:
    w, h = cfg.image_size
    if w < 8 or h < 8:
        raise ValueError(f"image_size: expected at least 8 x 8 pixels, got {cfg.image_size}")
    if cfg.num_cameras < 1 or cfg.num_subjects < 1:
        raise ValueError(f"num_cameras, num_subjects: expected >= 1, got {cfg.num_cameras}, {cfg.num_subjects}")
    unknown = [c for c in cfg.clips if c not in samples.DEEPMIMIC_CLIPS]
    if unknown or not cfg.clips or len(set(cfg.clips)) != len(cfg.clips):
        raise ValueError(f"clips: expected distinct names from {samples.DEEPMIMIC_CLIPS}, got {cfg.clips}")
    if cfg.frame_stride < 1 or (cfg.max_frames is not None and cfg.max_frames < 1):
        raise ValueError(f"frame_stride, max_frames: expected >= 1, got {cfg.frame_stride}, {cfg.max_frames}")
    if cfg.fps is not None and not cfg.fps > 0:
        raise ValueError(f"fps: expected None or > 0, got {cfg.fps}")
    skeleton_lib.conversion_matrix("deepmimic_16", cfg.layout)  # raises on unknown layouts
    bad = [b for b in cfg.backgrounds if b not in BACKGROUNDS]
    if bad or not cfg.backgrounds:
        raise ValueError(f"backgrounds: expected names from {sorted(BACKGROUNDS)}, got {cfg.backgrounds}")
    lo, hi = cfg.subject_scale
    if not 0 < lo <= hi:
        raise ValueError(f"subject_scale: expected 0 < low <= high, got {cfg.subject_scale}")
    if cfg.num_test_subjects is not None and not 0 <= cfg.num_test_subjects < cfg.num_subjects:
        raise ValueError(f"num_test_subjects: expected in [0, num_subjects), got {cfg.num_test_subjects}")
    if len(cfg.clips) * cfg.num_subjects * cfg.num_cameras > 9999:
        raise ValueError("too many sequences for Penn Action's 4-digit numbering (> 9999)")


# ---------------------------------------------------------------------------- results


class RenderedSequence(NamedTuple):
    """One (subject, clip, camera) sequence of ``T`` rendered frames and its labels.

    Attributes:
      record: the labels, a :class:`~jpose.datasets.multiview.SequenceRecord` (module
        docstring, step 7): ``subject``, ``action`` (= clip), ``camera_index``, ``fps``,
        ``positions_world``, ``positions_camera``, ``keypoints_clean`` = ``keypoints``
        (pixels of ``images``), ``confidence``, ``outlier``, ``visible``, ``camera``.
      images: ``(T, H, W, 3)`` uint8 RGB.
      segmentation: ``(T, H, W)`` int8 body part per pixel: the pybullet link index
        (:data:`LINK_NAMES`), ``-1`` for the background.
      frame_indices: ``(T,)`` int32 frames of the clip (at its possibly resampled rate).
    """

    record: multiview_lib.SequenceRecord
    images: np.ndarray
    segmentation: np.ndarray
    frame_indices: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """``(T, H, W)`` bool person mask."""
        return self.segmentation >= 0

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class RenderedDataset:
    """The output of :func:`render_sequences`.

    Attributes:
      sequences: ordered by subject, clip, camera.
      cameras: the rig, :class:`jpose.camera.CameraParams` of float32 with leading ``(C,)``.
      layout, joint_names: the labels' joint layout.
      subjects, clips: names in order.
      subject_scales: ``(num_subjects,)`` float32 size factors.
      splits: ``(("train", subjects), ("test", subjects))``.
      config: the (effective) settings.
    """

    sequences: tuple[RenderedSequence, ...]
    cameras: camera_lib.CameraParams
    layout: str
    joint_names: tuple[str, ...]
    subjects: tuple[str, ...]
    clips: tuple[str, ...]
    subject_scales: np.ndarray
    splits: tuple[tuple[str, tuple[str, ...]], ...]
    config: RenderConfig

    @property
    def num_cameras(self) -> int:
        return int(self.cameras.rotation.shape[0])

    def split_subjects(self, name: str) -> tuple[str, ...]:
        for split, subjects in self.splits:
            if split == name:
                return subjects
        raise ValueError(f"name: unknown split {name!r}; expected one of {[s for s, _ in self.splits]}")

    def select(self, *, subjects=None, clips=None, cameras=None) -> tuple[RenderedSequence, ...]:
        """Sequences whose subject, clip and camera are in the given sets (None: all)."""
        subj = None if subjects is None else set(subjects)
        clp = None if clips is None else set(clips)
        cam = None if cameras is None else {int(c) for c in cameras}
        return tuple(
            s for s in self.sequences
            if (subj is None or s.record.subject in subj) and (clp is None or s.record.action in clp)
            and (cam is None or s.record.camera_index in cam))

    def views(self, subject: str, clip: str) -> tuple[RenderedSequence, ...]:
        """All cameras' sequences of one (subject, clip), in camera order (frame-aligned)."""
        out = tuple(sorted(self.select(subjects=[subject], clips=[clip]), key=lambda s: s.record.camera_index))
        if not out:
            raise ValueError(f"subject/clip: no sequences for ({subject!r}, {clip!r})")
        return out


# ---------------------------------------------------------------------------- cameras


def pybullet_matrices(cam: camera_lib.CameraParams) -> tuple[list[float], list[float]]:
    """pybullet ``(viewMatrix, projectionMatrix)`` (column-major 16-lists) of one camera.

    View: ``diag(1, -1, -1) @ [R | -R c]``: jpose's camera frame (x right, y down,
    z forward) to OpenGL's (x right, y up, z backward). Projection: a point with camera
    coordinates ``(x, y, z)`` must land on image column ``u = fx x / z + cx`` and row
    ``v = fy y / z + cy``. TinyRenderer samples pixel column ``i`` at window coordinate
    ``x_win = i`` (not ``i + 0.5``), so ``x_ndc = 2 u / W - 1``; it stores window row
    ``y_win`` as image row ``H - 1 - y_win``, so ``y_ndc = 1 - 2 (v + 1) / H`` (the
    ``+ 1`` is the one-row offset of that flip). Hence ``P[0, 0] = 2 fx / W``,
    ``P[0, 2] = 1 - 2 cx / W``, ``P[1, 1] = 2 fy / H``, ``P[1, 2] = 2 (cy + 1) / H - 1``,
    with the usual OpenGL depth rows (near 0.05 m, far 50 m). Distortion is ignored
    (the renderer is a pinhole): use cameras without it.
    """
    rot = np.asarray(cam.rotation, np.float64)
    centre = np.asarray(cam.centre, np.float64)
    fx, fy = (float(v) for v in np.asarray(cam.focal, np.float64))
    cx, cy = (float(v) for v in np.asarray(cam.principal, np.float64))
    width, height = (float(v) for v in np.asarray(cam.image_size, np.float64))
    flip = np.diag([1.0, -1.0, -1.0])
    view = np.eye(4)
    view[:3, :3] = flip @ rot
    view[:3, 3] = -(flip @ rot) @ centre
    proj = np.zeros((4, 4))
    proj[0, 0] = 2 * fx / width
    proj[0, 2] = 1 - 2 * cx / width
    proj[1, 1] = 2 * fy / height
    proj[1, 2] = 2 * (cy + 1.0) / height - 1
    proj[2, 2] = -(_FAR + _NEAR) / (_FAR - _NEAR)
    proj[2, 3] = -2 * _FAR * _NEAR / (_FAR - _NEAR)
    proj[3, 2] = -1.0
    return view.T.reshape(-1).tolist(), proj.T.reshape(-1).tolist()


def _camera(cams: camera_lib.CameraParams, i: int) -> camera_lib.CameraParams:
    return camera_lib.CameraParams(*(np.asarray(f[i], np.float32) for f in cams))


# ------------------------------------------------------------------------ appearance


def _load_photo(name: str) -> np.ndarray:
    from PIL import Image

    package, rel = BACKGROUNDS[name]
    if package == "skimage":
        try:
            data = importlib.import_module("skimage.data")
        except ImportError as err:
            raise ValueError(f"backgrounds: {name!r} needs scikit-image (pip install scikit-image)") from err
        image = np.asarray(getattr(data, rel)())
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        return np.ascontiguousarray(image[..., :3].astype(np.uint8))
    if package == "pybullet_data":
        path = os.path.join(samples.data_path(), rel)
    else:
        import matplotlib

        path = os.path.join(matplotlib.get_data_path(), "sample_data", rel)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def background_image(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random view of ``photo`` as a ``(H, W, 3)`` uint8 background, ``size = (W, H)``.

    A crop of the target's aspect ratio covering ``U(0.35, 1)`` of the largest such crop,
    at a uniform position, mirrored with probability 1/2, resized (bilinear), times a
    brightness ``U(0.7, 1.2)`` and a per-channel tint ``U(0.9, 1.1)``.
    """
    from PIL import Image

    width, height = size
    ph, pw = photo.shape[:2]
    aspect = width / height
    full_w = min(pw, ph * aspect)
    crop_w = full_w * rng.uniform(0.35, 1.0)
    crop_h = crop_w / aspect
    x0 = rng.uniform(0.0, pw - crop_w)
    y0 = rng.uniform(0.0, ph - crop_h)
    mirror = rng.random() < 0.5
    gain = rng.uniform(0.7, 1.2) * rng.uniform(0.9, 1.1, size=3)
    out = Image.fromarray(photo).resize(
        (width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + crop_w, y0 + crop_h))
    out = np.asarray(out, np.float64)
    if mirror:
        out = out[:, ::-1]
    return np.clip(np.rint(out * gain), 0, 255).astype(np.uint8)


_SKIN = np.array([(0.98, 0.84, 0.71), (0.94, 0.76, 0.60), (0.82, 0.62, 0.47),
                  (0.64, 0.45, 0.31), (0.45, 0.30, 0.20), (0.30, 0.20, 0.13)])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.asarray(colorsys.hsv_to_rgb(h, s, v))


def _outfit(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """RGB (0..1) per link: skin, shirt, trousers, shoes; long or short sleeves."""
    skin = np.clip(_SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.92, 1.08, 3), 0, 1)
    shirt = _hsv(rng.random(), rng.uniform(0.1, 0.9), rng.uniform(0.35, 1.0))
    trousers = _hsv(rng.random(), rng.uniform(0.1, 0.8), rng.uniform(0.25, 0.85))
    shoes = _hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.1, 0.6))
    sleeves = shirt if rng.random() < 0.5 else skin
    colours = {"root": trousers, "chest": shirt, "neck": skin}
    for side in ("left", "right"):
        colours.update({f"{side}_hip": trousers, f"{side}_knee": trousers, f"{side}_ankle": shoes,
                        f"{side}_shoulder": shirt, f"{side}_elbow": sleeves, f"{side}_wrist": skin})
    return colours


def _light(rng: np.random.Generator, shadows: bool) -> dict[str, Any]:
    """getCameraImage lighting: world direction towards the light, colour, coefficients."""
    azimuth = rng.uniform(0.0, 2 * math.pi)
    elevation = math.radians(rng.uniform(20.0, 75.0))
    direction = [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                 math.sin(elevation)]
    return dict(
        lightDirection=direction,
        lightColor=list(np.clip(rng.uniform(0.85, 1.0, 3), 0, 1)),
        lightDistance=_LIGHT_DISTANCE,
        lightAmbientCoeff=float(rng.uniform(0.4, 0.7)),
        lightDiffuseCoeff=float(rng.uniform(0.3, 0.7)),
        lightSpecularCoeff=float(rng.uniform(0.0, 0.3)),
        shadow=int(shadows),
    )


# --------------------------------------------------------------------------- geometry


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw])


def _xyzw(q: np.ndarray) -> list[float]:
    return [float(q[1]), float(q[2]), float(q[3]), float(q[0])]


# +90 degrees about x: the quaternion of samples.YUP_TO_ZUP.
_Q_YUP_TO_ZUP = np.array([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])


class _Clip(NamedTuple):
    motion: samples.Motion  # strided frames
    frame_indices: np.ndarray
    base_position: np.ndarray  # (T, 3) world
    base_orientation: np.ndarray  # (T, 4) wxyz world
    positions16: np.ndarray  # (T, 16, 3) float64 world, deepmimic_16


def _clip(cfg: RenderConfig, name: str, subject: int, scale: float) -> _Clip:
    motion = samples.load_deepmimic_motion(name)
    if cfg.fps is not None and abs(cfg.fps - motion.fps) > 1e-9:
        motion = samples.resample_motion(motion, cfg.fps)
    frames = np.arange(0, motion.root_position.shape[0], cfg.frame_stride)
    if cfg.max_frames is not None:
        frames = frames[: cfg.max_frames]
    motion = motion._replace(root_position=motion.root_position[frames] * scale,
                             rotations=motion.rotations[frames], fps=motion.fps / cfg.frame_stride)
    tree = samples.deepmimic_tree()
    offsets = np.asarray(tree.offsets) * scale
    pos = samples.motion_positions(motion, tree=tree, offsets=offsets)  # Z-up, unplaced
    # Placement as in jpose.datasets.multiview (over the kept frames): centre, then yaw.
    rng = np.random.default_rng([cfg.seed, _TAG_PLACEMENT, subject, samples.DEEPMIMIC_CLIPS.index(name)])
    root_xy = pos[:, 0, :2]
    centre = np.array([*(0.5 * (root_xy.min(0) + root_xy.max(0))), 0.0])
    yaw = rng.uniform(-math.pi, math.pi)
    c, s = math.cos(yaw), math.sin(yaw)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    placed = np.einsum("ab,fjb->fja", turn, pos - centre)
    base_position = np.einsum("ab,fb->fa", turn, motion.root_position @ samples.YUP_TO_ZUP.T - centre)
    q_world = _qmul(np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]), _Q_YUP_TO_ZUP)
    base_orientation = np.stack([_qmul(q_world, q) for q in motion.rotations[:, 0]])
    return _Clip(motion, frames.astype(np.int32), base_position, base_orientation, placed)


def _owner_links(tree: samples.KinematicTree) -> np.ndarray:
    """``(16, 15)`` bool: the links whose pixels may show each deepmimic_16 joint (its own
    link, its parent's and its children's; the head: the neck link, the head sphere)."""
    link_of = {n: LINK_NAMES.index("root" if n == "pelvis" else n) for n in tree.joint_names if n != "head"}
    link_of["head"] = LINK_NAMES.index("neck")
    owners = []
    for j, name in enumerate(tree.joint_names):
        links = {link_of[name]}
        if name != "head":
            parent = tree.parents[j]
            if parent >= 0:
                links.add(link_of[tree.joint_names[parent]])
            links |= {link_of[tree.joint_names[k]] for k, p in enumerate(tree.parents)
                      if p == j and tree.joint_names[k] != "head"}
        owners.append(links)
    table = np.zeros((len(owners), len(LINK_NAMES)), bool)
    for j, links in enumerate(owners):
        table[j, sorted(links)] = True
    return table


#: Joints may sit in the small gaps between the humanoid's spheres and capsules (neck,
#: shoulders, hips: up to ~2 cm): a joint whose pixel shows the background counts as
#: visible when one of its links has a pixel within this distance (metres, projected).
GAP_TOLERANCE_M = 0.04


def _visibility(pixels: np.ndarray, depth: np.ndarray, segmentation: np.ndarray,
                owners: np.ndarray, *, focal: float) -> np.ndarray:
    """``(T, 16)`` per-joint visibility from the part segmentation.

    A joint is visible when it is in front of the camera, its nearest pixel (jpose pixel
    ``(u, v)`` is column ``u``, row ``v``) is inside the image, and that pixel shows one
    of the joint's own links (:func:`_owner_links`); a pixel of another body part means
    occluded. Where the pixel shows the background (the joint is in a gap between body
    parts, so nothing covers it), it is visible when one of its links has a pixel within
    :data:`GAP_TOLERANCE_M` (projected at the joint's depth, at least 1.5 px).
    """
    t, h, w = segmentation.shape
    with np.errstate(invalid="ignore"):
        col = np.rint(pixels[..., 0])
        row = np.rint(pixels[..., 1])
        inside = (depth > _NEAR) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    col = np.clip(np.nan_to_num(col), 0, w - 1).astype(np.int64)
    row = np.clip(np.nan_to_num(row), 0, h - 1).astype(np.int64)
    part = segmentation[np.arange(t)[:, None], row, col].astype(np.int64)  # (T, 16)
    joint = np.broadcast_to(np.arange(owners.shape[0]), part.shape)
    visible = inside & (part >= 0) & owners[joint, np.maximum(part, 0)]
    for f, j in zip(*np.nonzero(inside & (part < 0))):
        radius = max(1.5, GAP_TOLERANCE_M * focal / float(depth[f, j]))
        r = int(math.ceil(radius))
        r0, r1 = max(row[f, j] - r, 0), min(row[f, j] + r + 1, h)
        c0, c1 = max(col[f, j] - r, 0), min(col[f, j] + r + 1, w)
        window = segmentation[f, r0:r1, c0:c1].astype(np.int64)
        rr, cc = np.mgrid[r0:r1, c0:c1]
        near = (rr - pixels[f, j, 1]) ** 2 + (cc - pixels[f, j, 0]) ** 2 <= radius * radius
        visible[f, j] = bool(np.any(near & (window >= 0) & owners[j, np.maximum(window, 0)]))
    return visible


def _project(world: np.ndarray, cams: camera_lib.CameraParams) -> tuple[np.ndarray, np.ndarray]:
    """``(positions_camera (C, T, J, 3), pixels (C, T, J, 2))`` float64 of world points
    ``(T, J, 3)``: :func:`jpose.camera.world_to_camera` and
    :func:`jpose.camera.project_perspective` without distortion, in NumPy."""
    rot = np.asarray(cams.rotation, np.float64)
    centre = np.asarray(cams.centre, np.float64)
    in_cam = np.einsum("cab,ctjb->ctja", rot, world[None] - centre[:, None, None, :])
    focal = np.asarray(cams.focal, np.float64)[:, None, None, :]
    principal = np.asarray(cams.principal, np.float64)[:, None, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        pixels = focal * in_cam[..., :2] / in_cam[..., 2:] + principal
    return in_cam, pixels


# -------------------------------------------------------------------------- rendering


@contextlib.contextmanager
def _quiet_stdout():
    """Silences the C library's URDF warnings (printed on fd 1) while loading."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _import_pybullet():
    try:
        import pybullet
    except ImportError as err:
        raise samples.SampleDataMissingError(
            "rendering needs the pybullet wheel: pip install \"jpose[samples]\" (pybullet==3.2.7)") from err
    return pybullet


def _default_splits(subjects: tuple[str, ...], num_test: int | None):
    if num_test is None:
        num_test = max(1, (len(subjects) - 1) // 3) if len(subjects) >= 2 else 0
    return (("train", subjects[: len(subjects) - num_test]), ("test", subjects[len(subjects) - num_test:]))


def render_sequences(cfg: RenderConfig = RenderConfig()) -> RenderedDataset:
    """Renders every (subject, clip, camera) sequence of ``cfg`` (module docstring).

    Equal configs give identical pixels and labels; ``appearance_seed`` changes pixels
    only. Runs pybullet in ``DIRECT`` mode (its own client, disconnected at the end).

    Raises:
      ValueError: a bad setting (named).
      SampleDataMissingError: pybullet is not installed.
    """
    cfg = cfg.effective()
    _check_config(cfg)
    p = _import_pybullet()
    width, height = cfg.image_size
    cams = multiview_lib.make_cameras(
        cfg.num_cameras, seed=cfg.seed, distance=cfg.camera_distance, height=cfg.camera_height,
        focal_px=cfg.focal, image_size=(width, height), distortion=False)
    matrices = [pybullet_matrices(_camera(cams, c)) for c in range(cfg.num_cameras)]
    subjects = tuple(f"S{i + 1}" for i in range(cfg.num_subjects))
    scales = np.array([np.random.default_rng([cfg.seed, _TAG_SIZE, s]).uniform(*cfg.subject_scale)
                       for s in range(cfg.num_subjects)])
    layout = skeleton_lib.get(cfg.layout)
    tree = samples.deepmimic_tree()
    owners = _owner_links(tree)
    photos = {name: _load_photo(name) for name in cfg.backgrounds}
    urdf = os.path.join(samples.data_path(), "humanoid", "humanoid.urdf")

    client = p.connect(p.DIRECT)
    out = []
    try:
        for s_idx, subject in enumerate(subjects):
            with _quiet_stdout():
                body = p.loadURDF(urdf, globalScaling=0.25 * float(scales[s_idx]), useFixedBase=True,
                                  flags=p.URDF_MAINTAIN_LINK_ORDER, physicsClientId=client)
            joints = {p.getJointInfo(body, k, physicsClientId=client)[12].decode(): k
                      for k in range(p.getNumJoints(body, physicsClientId=client))}
            if tuple(sorted(joints, key=joints.get)) != LINK_NAMES:
                raise ValueError(f"{urdf}: unexpected links {sorted(joints, key=joints.get)}")
            outfit = _outfit(np.random.default_rng([cfg.appearance_seed, _TAG_OUTFIT, s_idx]))
            for link, rgb in outfit.items():
                p.changeVisualShape(body, joints[link], rgbaColor=[*map(float, rgb), 1.0],
                                    physicsClientId=client)
            for clip_name in cfg.clips:
                c_idx = samples.DEEPMIMIC_CLIPS.index(clip_name)
                clip = _clip(cfg, clip_name, s_idx, float(scales[s_idx]))
                light = _light(np.random.default_rng([cfg.appearance_seed, _TAG_LIGHT, s_idx, c_idx]), cfg.shadows)
                t = clip.frame_indices.shape[0]
                images = np.empty((cfg.num_cameras, t, height, width, 3), np.uint8)
                segmentation = np.empty((cfg.num_cameras, t, height, width), np.int8)
                backgrounds = []
                for cam in range(cfg.num_cameras):
                    rng = np.random.default_rng([cfg.appearance_seed, _TAG_BACKGROUND, s_idx, c_idx, cam])
                    photo = photos[cfg.backgrounds[int(rng.integers(len(cfg.backgrounds)))]]
                    backgrounds.append(background_image(photo, (width, height), rng))
                for f in range(t):
                    _set_pose(p, client, body, joints, tree, clip, f)
                    for cam, (view, proj) in enumerate(matrices):
                        _, _, rgba, _, seg = p.getCameraImage(
                            width, height, view, proj, renderer=p.ER_TINY_RENDERER,
                            flags=p.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX,
                            physicsClientId=client, **light)
                        rgba = np.asarray(rgba, np.uint8).reshape(height, width, 4)
                        seg = np.asarray(seg, np.int32).reshape(height, width)
                        # objectUid + ((link + 1) << 24); the background is -1 (-> -2 here).
                        part = np.maximum((seg >> 24) - 1, -1)
                        segmentation[cam, f] = part
                        images[cam, f] = backgrounds[cam]
                        np.copyto(images[cam, f], rgba[..., :3], where=(part >= 0)[..., None])
                # Labels: jpose's pinhole model (x_cam = R (x - c), u = f x / z + c) in float64
                # NumPy, all cameras at once (C, T, J, .); stored as float32.
                in_cam16, px16 = _project(clip.positions16, cams)
                world64 = skeleton_lib.convert(clip.positions16, "deepmimic_16", layout)
                in_cam, pixels = _project(world64, cams)
                world = world64.astype(np.float32)
                in_cam, pixels = in_cam.astype(np.float32), pixels.astype(np.float32)
                for cam in range(cfg.num_cameras):
                    vis16 = _visibility(px16[cam], in_cam16[cam, ..., 2], segmentation[cam], owners,
                                        focal=float(np.mean(cams.focal[cam])))
                    visible = np.asarray(skeleton_lib.convert_visibility(vis16, "deepmimic_16", layout))
                    record = multiview_lib.SequenceRecord(
                        subject=subject, action=clip_name, camera_index=cam, fps=float(clip.motion.fps),
                        positions_world=world, positions_camera=in_cam[cam], keypoints_clean=pixels[cam],
                        keypoints=pixels[cam], confidence=visible.astype(np.float32),
                        outlier=np.zeros(visible.shape, bool), visible=visible, camera=_camera(cams, cam))
                    out.append(RenderedSequence(record, images[cam], segmentation[cam], clip.frame_indices))
            p.removeBody(body, physicsClientId=client)
    finally:
        p.disconnect(physicsClientId=client)
    return RenderedDataset(
        sequences=tuple(out), cameras=cams, layout=layout.name, joint_names=layout.joint_names,
        subjects=subjects, clips=tuple(cfg.clips), subject_scales=scales.astype(np.float32),
        splits=_default_splits(subjects, cfg.num_test_subjects), config=cfg)


def _set_pose(p, client: int, body: int, joints: dict[str, int], tree: samples.KinematicTree,
              clip: _Clip, f: int) -> None:
    p.resetBasePositionAndOrientation(body, clip.base_position[f].tolist(), _xyzw(clip.base_orientation[f]),
                                      physicsClientId=client)
    rotations = clip.motion.rotations[f]
    for j, name in enumerate(tree.joint_names):
        kind = tree.kinds[j]
        if kind == "spherical":
            p.resetJointStateMultiDof(body, joints[name], targetValue=_xyzw(rotations[j]), physicsClientId=client)
        elif kind == "revolute":
            q = rotations[j]
            angle = 2.0 * math.atan2(float(np.dot(q[1:], tree.axes[j])), float(q[0]))
            p.resetJointState(body, joints[name], angle, physicsClientId=client)


# ------------------------------------------------------------------------------ uses


def keypoints_2d(record: multiview_lib.SequenceRecord, layout: str, *, source: str = "h36m_17"):
    """``(keypoints (T, J', 2) float32 px, visible (T, J') bool)`` in another 2D layout.

    Converted from the record's layout ``source`` (the dataset's ``layout``) with
    :func:`jpose.skeleton.convert` / ``convert_visibility``; e.g. ``"mpii_16"``,
    ``"penn_action_13"``, ``"lsp_14"``.
    """
    kp = skeleton_lib.convert(np.asarray(record.keypoints_clean, np.float32), source, layout)
    vis = skeleton_lib.convert_visibility(np.asarray(record.visible, bool), source, layout)
    return np.asarray(kp, np.float32), np.asarray(vis, bool)


def records(dataset: RenderedDataset, split: str | None = None) -> tuple[multiview_lib.SequenceRecord, ...]:
    """The label records (for ``pipelines.sequences_from_records``, ``multiview_tuples``...)."""
    seqs = dataset.sequences if split is None else dataset.select(subjects=dataset.split_subjects(split))
    return tuple(s.record for s in seqs)


def synchronised_views(dataset: RenderedDataset, subject: str, clip: str) -> dict[str, Any]:
    """All cameras of one (subject, clip), frame-aligned (``V`` views, ``T`` frames).

    Returns ``images (V, T, H, W, 3)`` uint8, ``mask (V, T, H, W)`` bool,
    ``keypoints_2d (V, T, J, 2)`` px, ``visible (V, T, J)`` bool, ``positions_camera
    (V, T, J, 3)`` and ``positions_world (T, J, 3)`` metres, ``camera`` (a
    :class:`jpose.camera.CameraParams` with leading ``(V,)``), ``camera_index (V,)`` int32,
    ``frame_indices (T,)``.
    """
    views = dataset.views(subject, clip)
    return {
        "images": np.stack([v.images for v in views]),
        "mask": np.stack([v.mask for v in views]),
        "keypoints_2d": np.stack([v.record.keypoints_clean for v in views]),
        "visible": np.stack([v.record.visible for v in views]),
        "positions_camera": np.stack([v.record.positions_camera for v in views]),
        "positions_world": views[0].record.positions_world,
        "camera": camera_lib.CameraParams(*(np.stack([getattr(v.record.camera, f) for v in views])
                                            for f in camera_lib.CameraParams._fields)),
        "camera_index": np.asarray([v.record.camera_index for v in views], np.int32),
        "frame_indices": views[0].frame_indices,
    }


def single_frames(dataset: RenderedDataset, split: str | None = None, *, crop_size: int | None = None,
                  crop_scale: float = 1.25) -> dict[str, np.ndarray]:
    """Every frame of every sequence as one sample (``N`` frames in all).

    With ``crop_size``, each frame becomes the ``crop_size``-square crop
    (:func:`jpose.datasets.image_crops.crop_and_resize`, black outside the image) of the
    square box ``crop_scale`` times the person mask's extent (the joints' box where the
    mask is empty), and the camera becomes the crop's: ``focal * s`` and
    ``(principal - (x0, y0)) * s`` with ``s = crop_size / box side``, image size
    ``(crop_size, crop_size)``; the keypoints are in crop pixels, so projecting
    ``positions_camera`` with the returned camera gives them.

    Returns ``images (N, H, W, 3)`` uint8, ``keypoints_2d (N, J, 2)`` px, ``visible (N, J)``,
    ``positions_camera``, ``positions_world (N, J, 3)`` metres, ``camera_<field>`` (N, ...)
    float32 (flat keys like :mod:`jpose.datasets.multiview_tuples`), ``box (N, 4)`` (the
    crop box in original pixels; the whole image without cropping), ``sequence``,
    ``frame`` (index within the sequence), ``camera_index`` int32 and ``subject``,
    ``action`` (N,) str.
    """
    from jpose.datasets import image_crops, video_clips

    seqs = dataset.sequences if split is None else dataset.select(subjects=dataset.split_subjects(split))
    if not seqs:
        raise ValueError(f"split: no sequences in {split!r}")
    parts: dict[str, list] = {k: [] for k in (
        "images", "keypoints_2d", "visible", "positions_camera", "positions_world", "box",
        "sequence", "frame", "camera_index", "subject", "action",
        *(f"camera_{f}" for f in camera_lib.CameraParams._fields))}
    for i, seq in enumerate(seqs):
        r = seq.record
        t = seq.num_frames
        cam = {f: np.broadcast_to(np.asarray(getattr(r.camera, f), np.float32),
                                  (t,) + np.shape(getattr(r.camera, f))).copy()
               for f in camera_lib.CameraParams._fields}
        kp = np.asarray(r.keypoints_clean, np.float64)
        if crop_size is None:
            w, h = (float(v) for v in r.camera.image_size)
            box = np.tile([-0.5, -0.5, w - 0.5, h - 0.5], (t, 1))
            images = seq.images
        else:
            mask_box, nonempty = video_clips.mask_boxes(seq.mask, axis=0)
            joint_box = image_crops.box_from_keypoints(kp)
            box = image_crops.square_box(np.where(nonempty[:, None], mask_box, joint_box), scale=crop_scale)
            images = np.stack([image_crops.crop_and_resize(seq.images[f], box[f], crop_size) for f in range(t)])
            s = crop_size / (box[:, 2] - box[:, 0])
            kp = image_crops.to_crop(kp, box, crop_size)
            cam["focal"] = (cam["focal"] * s[:, None]).astype(np.float32)
            cam["principal"] = ((cam["principal"] - box[:, :2]) * s[:, None]).astype(np.float32)
            cam["image_size"] = np.full((t, 2), crop_size, np.float32)
        parts["images"].append(images)
        parts["keypoints_2d"].append(kp.astype(np.float32))
        parts["visible"].append(r.visible)
        parts["positions_camera"].append(r.positions_camera)
        parts["positions_world"].append(r.positions_world)
        parts["box"].append(np.asarray(box, np.float32))
        parts["sequence"].append(np.full(t, i, np.int32))
        parts["frame"].append(np.arange(t, dtype=np.int32))
        parts["camera_index"].append(np.full(t, r.camera_index, np.int32))
        parts["subject"].append(np.full(t, r.subject))
        parts["action"].append(np.full(t, r.action))
        for f in camera_lib.CameraParams._fields:
            parts[f"camera_{f}"].append(cam[f])
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


# ------------------------------------------------------------------ Penn Action files


def _view_name(record: multiview_lib.SequenceRecord, layout: str) -> str:
    """Which side of the person camera sees in frame 0: front, back, left or right."""
    names = skeleton_lib.get(layout).joint_names
    pos = np.asarray(record.positions_world[0], np.float64)
    left, right = pos[names.index("left_hip")], pos[names.index("right_hip")]
    forward = np.cross(left - right, [0.0, 0.0, 1.0])
    to_cam = np.asarray(record.camera.centre, np.float64) - 0.5 * (left + right)
    forward[2] = to_cam[2] = 0.0
    cos = float(np.dot(forward, to_cam) / (np.linalg.norm(forward) * np.linalg.norm(to_cam) + 1e-12))
    if cos > math.sqrt(0.5):
        return "front"
    if cos < -math.sqrt(0.5):
        return "back"
    return "left" if float(np.dot(left - right, to_cam)) > 0 else "right"


def write_penn_action(dataset: RenderedDataset, root: str | os.PathLike, *, quality: int = 95,
                      segmentation: bool = True) -> dict[str, tuple[str, str, int]]:
    """Writes ``dataset`` as a Penn Action release under ``root`` (module docstring).

    Sequence ``NNNN`` (1-based, 4 digits) is ``dataset.sequences[NNNN - 1]``; ``train`` is
    -1 for the test split's subjects. Both splits must be non-empty (TFDS writes no empty
    split). Build it with
    ``tfds_build.build("penn_action", manual_dir=root, data_dir=...)`` (2D, the
    ``penn_action_13`` layout, boxes, visibility, splits) or read everything back,
    3D and cameras included, with :func:`read_penn_action`. A ``jpose_rendered.json`` at
    the root lists the config and the sequence table.

    Args:
      dataset: the output of :func:`render_sequences`.
      root: the release folder (created; existing files of the same names are replaced).
      quality: JPEG quality of the frames.
      segmentation: also write ``segmentation/NNNN/%06d.png`` (uint8, 0 background,
        pybullet link index + 1).

    Returns:
      ``{sequence id: (subject, clip, camera_index)}``.
    """
    import scipy.io
    from PIL import Image

    from jpose.datasets import video_clips

    root = os.fspath(root)
    if len(dataset.sequences) > 9999:
        raise ValueError("dataset: more than 9999 sequences do not fit Penn Action's numbering")
    test = set(dataset.split_subjects("test"))
    if not test or not set(dataset.split_subjects("train")):
        # TFDS refuses to write an empty split, so the builder would fail after reading.
        raise ValueError(f"dataset: the Penn Action builder needs train and test sequences, got "
                         f"splits {dataset.splits}; render at least 2 subjects with "
                         f"num_test_subjects >= 1 (or None)")
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    table: dict[str, tuple[str, str, int]] = {}
    for i, seq in enumerate(dataset.sequences, start=1):
        sid = f"{i:04d}"
        r = seq.record
        t, h, w = seq.images.shape[:3]
        frame_dir = os.path.join(root, "frames", sid)
        os.makedirs(frame_dir, exist_ok=True)
        for f in range(t):
            Image.fromarray(seq.images[f]).save(os.path.join(frame_dir, f"{f + 1:06d}.jpg"),
                                                format="JPEG", quality=quality)
        if segmentation:
            seg_dir = os.path.join(root, "segmentation", sid)
            os.makedirs(seg_dir, exist_ok=True)
            for f in range(t):
                Image.fromarray((seq.segmentation[f].astype(np.int16) + 1).astype(np.uint8)).save(
                    os.path.join(seg_dir, f"{f + 1:06d}.png"))
        kp, vis = keypoints_2d(r, _PENN_LAYOUT, source=dataset.layout)
        mask_box, nonempty = video_clips.mask_boxes(seq.mask, axis=0)
        box = np.where(nonempty[:, None], mask_box, video_clips.joint_boxes(kp, vis))
        fields = {
            # Penn Action's own fields, MATLAB pixels (top-left pixel centre at (1, 1)).
            "x": kp[..., 0].astype(np.float64) + 1.0,
            "y": kp[..., 1].astype(np.float64) + 1.0,
            "visibility": vis,
            "bbox": box + 1.0,
            "dimensions": np.array([[h, w, t]], np.float64),
            "nframes": np.array([[float(t)]]),
            "train": np.array([[-1.0 if r.subject in test else 1.0]]),
            "action": r.action,
            "pose": _view_name(r, dataset.layout),
            # jpose extras (ignored by the Penn Action reader).
            "jpose_format": _PENN_FORMAT,
            "jpose_config": dataset.config.to_json(),
            "jpose_layout": dataset.layout,
            "jpose_subject": r.subject,
            "jpose_clip": r.action,
            "jpose_camera_index": np.array([[float(r.camera_index)]]),
            "jpose_fps": np.array([[float(r.fps)]]),
            "jpose_frame_indices": np.asarray(seq.frame_indices, np.int32).reshape(1, -1),
            "jpose_positions_world": np.asarray(r.positions_world, np.float32),
            "jpose_positions_camera": np.asarray(r.positions_camera, np.float32),
            "jpose_keypoints": np.asarray(r.keypoints_clean, np.float32),
            "jpose_visible": np.asarray(r.visible, bool),
        }
        for name in camera_lib.CameraParams._fields:
            fields[f"jpose_camera_{name}"] = np.asarray(getattr(r.camera, name), np.float32)
        scipy.io.savemat(os.path.join(root, "labels", f"{sid}.mat"), fields)
        table[sid] = (r.subject, r.action, int(r.camera_index))
    with open(os.path.join(root, "jpose_rendered.json"), "w", encoding="utf-8") as fh:
        json.dump({"format": _PENN_FORMAT, "config": json.loads(dataset.config.to_json()),
                   "layout": dataset.layout, "splits": dict(dataset.splits),
                   "sequences": {k: list(v) for k, v in table.items()}}, fh, indent=1, sort_keys=True)
    return table


def _mat_str(value) -> str:
    return str(np.asarray(value).reshape(-1)[0])


def read_penn_action(root: str | os.PathLike) -> RenderedDataset:
    """Reads a release written by :func:`write_penn_action` back into a dataset.

    Frames and Penn's fields go through :func:`jpose.datasets.penn_action.raw.read_sequence`
    (the builder's reader, with its checks); the records come from the ``jpose_*``
    extras, bit for bit. ``images`` are the decoded JPEGs (not the rendered pixels:
    JPEG is lossy); ``segmentation`` from the PNGs (all ``-1`` if absent).
    """
    import io

    import scipy.io
    from PIL import Image

    from jpose.datasets.penn_action import raw as penn_raw

    root = os.fspath(root)
    seqs, cams, config, layout = [], {}, None, None
    for sid in penn_raw.index_release(root):
        label_path = os.path.join(root, penn_raw.label_path(sid))
        mat = scipy.io.loadmat(label_path)
        missing = [k for k in PENN_EXTRA_FIELDS if k not in mat]
        if missing or _mat_str(mat["jpose_format"]) != _PENN_FORMAT:
            raise ValueError(f"{label_path}: not written by jpose.datasets.rendered (missing {missing})")
        penn = penn_raw.read_sequence(root, sid)
        images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in penn["frames"]])
        t, h, w = images.shape[:3]
        seg = np.full((t, h, w), -1, np.int8)
        for f in range(t):
            path = os.path.join(root, "segmentation", sid, f"{f + 1:06d}.png")
            if os.path.exists(path):
                with Image.open(path) as im:
                    seg[f] = (np.asarray(im).astype(np.int16) - 1).astype(np.int8)
        camera = camera_lib.CameraParams(*(
            np.asarray(mat[f"jpose_camera_{f}"], np.float32).reshape(camera_lib.CAMERA_FIELD_SHAPES[f])
            for f in camera_lib.CameraParams._fields))
        cam_index = int(np.asarray(mat["jpose_camera_index"]).reshape(-1)[0])
        cams[cam_index] = camera
        config = RenderConfig.from_json(_mat_str(mat["jpose_config"]))
        layout = _mat_str(mat["jpose_layout"])
        visible = np.asarray(mat["jpose_visible"]).astype(bool)
        kp = np.asarray(mat["jpose_keypoints"], np.float32)
        record = multiview_lib.SequenceRecord(
            subject=_mat_str(mat["jpose_subject"]), action=_mat_str(mat["jpose_clip"]),
            camera_index=cam_index, fps=float(np.asarray(mat["jpose_fps"]).reshape(-1)[0]),
            positions_world=np.asarray(mat["jpose_positions_world"], np.float32),
            positions_camera=np.asarray(mat["jpose_positions_camera"], np.float32),
            keypoints_clean=kp, keypoints=kp, confidence=visible.astype(np.float32),
            outlier=np.zeros(visible.shape, bool), visible=visible, camera=camera)
        seqs.append(RenderedSequence(record, images, seg,
                                     np.asarray(mat["jpose_frame_indices"], np.int32).reshape(-1)))
    if not seqs:
        raise ValueError(f"{root}: no sequences")
    order = sorted(cams)
    rig = camera_lib.CameraParams(*(np.stack([getattr(cams[c], f) for c in order])
                                    for f in camera_lib.CameraParams._fields))
    subjects = tuple(dict.fromkeys(s.record.subject for s in seqs))
    skel = skeleton_lib.get(layout)
    with open(os.path.join(root, "jpose_rendered.json"), encoding="utf-8") as fh:
        splits = json.load(fh).get("splits", {})
    split_table = tuple((name, tuple(splits.get(name, ()))) for name in ("train", "test"))
    scales = np.array([np.random.default_rng([config.seed, _TAG_SIZE, s]).uniform(*config.subject_scale)
                       for s in range(len(subjects))], np.float32)
    return RenderedDataset(
        sequences=tuple(seqs), cameras=rig, layout=skel.name, joint_names=skel.joint_names,
        subjects=subjects, clips=tuple(dict.fromkeys(s.record.action for s in seqs)),
        subject_scales=scales, splits=split_table, config=config)
