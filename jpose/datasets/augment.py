"""Clip-consistent data augmentation of pose-sequence examples (pure NumPy).

Every random function takes ``(example, rng)`` (``rng`` a ``numpy.random.Generator``)
and draws **once per example**: a clip's frames all get the same flip, angle and scale,
so the motion stays a motion (per-frame draws would add jitter no camera produces).
Deterministic counterparts take the parameters explicitly. Inputs are never modified;
outputs are new dicts with new arrays (entries that are not transformed are shared).

Examples are pose-sequence dicts (:mod:`jpose.datasets.records`): ``keypoints_2d``
(F, J, 2) pixels, ``positions_camera`` (F, J, 3) and ``positions_world`` (F, J, 3)
metres, their ``*_full`` twins, the sample-data keys ``keypoints_2d_detected``,
``confidence``, ``outlier``, ``visible``, the ``camera`` dict, and optionally ``image``
(..., H, W, C) decoded pixels. Missing keys are skipped. Pixel convention: x right, y
down, the top-left pixel's centre at (0, 0) (``image_crops.py``).

Horizontal flip (:func:`flip_example`)
  ``u -> (W - 1) - u`` (mirrors the pixel grid exactly, so a flipped ``image`` and its
  flipped keypoints agree; VideoPose3D's screen-coordinate flip in
  :mod:`jpose.datasets.pipelines` mirrors about ``W / 2`` instead, half a pixel away),
  left/right joints swapped with the layout's
  :attr:`~jpose.skeleton.Skeleton.flip_permutation`, camera-frame x negated, and the
  world mirrored about the camera's y-z plane, ``X -> c + R^T diag(-1, 1, 1) R (X - c)``
  (camera ``R``, ``c`` unchanged, so ``R (X' - c)`` is the flipped camera-frame pose).
  The camera becomes ``cx -> (W - 1) - cx`` and ``p2 -> -p2``; with these the Human3.6M
  projection (:func:`jpose.camera.project_perspective`, distortion included) of the
  flipped 3D equals the flipped 2D exactly.

In-plane rotation and scale (:func:`rotate_scale_example`)
  2D: ``u -> c + s R(a) (u - c)`` about a centre ``c`` (:func:`rotation_centre`: the
  clip's mean root keypoint, the centre of its 2D bounding box, or the principal
  point), ``R(a) = [[cos a, -sin a], [sin a, cos a]]`` in pixel axes (y down: positive
  ``a`` turns clockwise on screen). 3D camera frame: rotated by ``a`` about the optical
  axis (z), ``x_cam -> R_z(a) x_cam``; world unchanged. Camera: rotation ``R_z(a) R``,
  focal ``s f``, principal ``c + s R(a) (p - c)``, the Human3.6M tangential pair
  rotated as the vector ``(p2, p1)``, radial unchanged. With ``fx == fy`` the new camera
  projects the rotated 3D exactly onto the rotated 2D, distortion included, for any
  centre; with ``fx != fy`` (Human3.6M: 0.1 %) it is exact only for ``a = 0``. A flip or
  a rotation of one view of a multi-view tuple keeps that view self-consistent; only the
  rotation keeps the views consistent with each other (it does not move the world).

Random erasing (:func:`random_erasing`), Zhong et al., "Random Erasing Data
Augmentation", AAAI 2020: per image, with probability ``probability``, one rectangle of
area ``U(area_range) * H * W`` and aspect ratio (height / width) log-uniform in
``aspect_range`` at a uniform position is filled with the dataset's mean pixel
(``mean_pixel``, as in Yang Li's thesis §2.4; compute it with :func:`mean_pixel_of`) or,
when none is given, with one random colour (Zhong et al.'s random-value variant). Unlike
the paper, which redraws until the rectangle fits, sides are clipped to the image (one
draw, vectorised).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from jpose import skeleton as skeleton_lib
from jpose.datasets.records import FULL_LAYOUTS

__all__ = [
    "ClipAugmentation",
    "flip_example",
    "rotate_scale_example",
    "rotation_centre",
    "draw_clip_augmentation",
    "apply_clip_augmentation",
    "augment_clip",
    "erase_rectangles",
    "mean_pixel_of",
    "random_erasing",
]

_KEYPOINT_KEYS = ("keypoints_2d", "keypoints_2d_detected")
_JOINT_VALUE_KEYS = ("confidence", "outlier", "visible")  # per joint, no coordinates
_CAMERA_3D_KEYS = ("positions_camera",)
_WORLD_KEYS = ("positions_world",)


def _full(keys: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{k}_full" for k in keys if k != "keypoints_2d_detected")


class ClipAugmentation(NamedTuple):
    """One clip's draw: ``flip`` (bool), ``angle`` (radians), ``scale``, ``centre``
    ((2,) float64 pixels, the rotation centre after the flip)."""

    flip: bool
    angle: float
    scale: float
    centre: np.ndarray


def _camera(example: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    cam = example.get("camera")
    if not isinstance(cam, Mapping):
        raise ValueError(f"example['camera']: {what} needs the camera dict, got {type(cam).__name__}")
    return cam


def _permutation(layout, num_joints: int, what: str) -> np.ndarray:
    try:
        skel = skeleton_lib.get(layout)
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{what}: {e}") from None
    if skel.num_joints != num_joints:
        raise ValueError(f"{what}: layout {skel.name!r} has {skel.num_joints} joints, the arrays {num_joints}")
    return np.asarray(skel.flip_permutation, np.int64)


def _joint_count(example: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for k in keys:
        if k in example:
            x = np.asarray(example[k])
            if x.ndim < 2:
                raise ValueError(f"example[{k!r}]: expected (F, J, ...) per-joint values, got shape {x.shape}")
            return int(x.shape[1])
    return None


def flip_example(example: Mapping[str, Any], *, layout, full_layout=None) -> dict[str, Any]:
    """Horizontal flip with left/right swap (module docstring), deterministic.

    Args:
      example: a pose-sequence example; needs ``camera`` (its ``image_size`` gives ``W``;
        its ``rotation``/``centre`` mirror the world).
      layout: joint layout of the standard features (a :mod:`jpose.skeleton` name).
      full_layout: layout of the ``*_full`` features; default from their joint count
        (32: ``h36m_32``, 28: ``mpi_inf_3dhp_28``) or ``layout`` when they have as many
        joints as the standard ones (sample data).
    """
    cam = _camera(example, "a flip")
    out = dict(example)
    width = float(np.asarray(cam["image_size"], np.float64)[0])
    std_keys = _KEYPOINT_KEYS + _JOINT_VALUE_KEYS + _CAMERA_3D_KEYS + _WORLD_KEYS
    full_keys = _full(_KEYPOINT_KEYS) + _full(_CAMERA_3D_KEYS) + _full(_WORLD_KEYS)
    perms = {}
    n_std = _joint_count(example, std_keys)
    if n_std is not None:
        perms["std"] = _permutation(layout, n_std, "layout")
    n_full = _joint_count(example, full_keys)
    if n_full is not None:
        if full_layout is None:
            if n_full in FULL_LAYOUTS:
                full_layout = FULL_LAYOUTS[n_full][0]
            elif n_full == n_std:
                full_layout = layout
            else:
                raise ValueError(f"full_layout: needed for the {n_full}-joint *_full features")
        perms["full"] = _permutation(full_layout, n_full, "full_layout")
    rotation = np.asarray(cam["rotation"], np.float64)
    centre = np.asarray(cam["centre"], np.float64)
    mirror = rotation.T @ np.diag([-1.0, 1.0, 1.0]) @ rotation

    def permute(key: str, perm: np.ndarray) -> np.ndarray:
        x = np.asarray(example[key])
        if x.ndim < 2 or x.shape[1] != perm.shape[0]:
            raise ValueError(f"example[{key!r}]: expected (F, {perm.shape[0]}, ...), got shape {x.shape}")
        return np.take(x, perm, axis=1)

    for group, keys in (("std", std_keys), ("full", full_keys)):
        for key in keys:
            if key not in example:
                continue
            x = permute(key, perms[group])
            base = key[:-5] if key.endswith("_full") else key
            if base in _KEYPOINT_KEYS:
                x = x.copy()
                x[..., 0] = (width - 1.0) - x[..., 0]
            elif base in _CAMERA_3D_KEYS:
                x = x.copy()
                x[..., 0] = -x[..., 0]
            elif base in _WORLD_KEYS:
                xd = x.astype(np.float64) - centre
                x = (xd @ mirror.T + centre).astype(x.dtype)
            out[key] = x
    new_cam = dict(cam)
    principal = np.array(cam["principal"], copy=True)
    principal[0] = (width - 1.0) - principal[0]
    tangential = np.array(cam["tangential"], copy=True)
    tangential[1] = -tangential[1]  # H36M order (p1, p2): p2 multiplies x.
    new_cam.update(principal=principal, tangential=tangential)
    out["camera"] = new_cam
    if "image" in example:
        image = np.asarray(example["image"])
        if image.ndim < 3 or image.shape[-2] != int(round(width)):
            raise ValueError(
                f"example['image']: expected (..., H, W, C) decoded pixels with W = image width "
                f"{width:g}, got shape {image.shape}"
            )
        out["image"] = np.ascontiguousarray(image[..., ::-1, :])
    return out


def _rot2(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def rotation_centre(example: Mapping[str, Any], centre="root", *, layout=None) -> np.ndarray:
    """(2,) float64 pixels: ``"root"`` (mean over frames of the root joint's
    ``keypoints_2d``; needs ``layout``), ``"box"`` (centre of the bounding box of all
    ``keypoints_2d``), ``"principal"`` (the camera's principal point) or an explicit
    (2,) array."""
    if isinstance(centre, str):
        if centre == "principal":
            return np.asarray(_camera(example, "centre='principal'")["principal"], np.float64).copy()
        if "keypoints_2d" not in example:
            raise ValueError(f"example: centre={centre!r} needs 'keypoints_2d'")
        kp = np.asarray(example["keypoints_2d"], np.float64).reshape(-1, np.shape(example["keypoints_2d"])[-2], 2)
        if centre == "root":
            if layout is None:
                raise ValueError("layout: centre='root' needs the joint layout (for the root joint)")
            skel = skeleton_lib.get(layout)
            if skel.num_joints != kp.shape[1]:
                raise ValueError(f"layout: {skel.name!r} has {skel.num_joints} joints, keypoints_2d {kp.shape[1]}")
            return kp[:, skel.root].mean(axis=0)
        if centre == "box":
            flat = kp.reshape(-1, 2)
            return 0.5 * (flat.min(axis=0) + flat.max(axis=0))
        raise ValueError(f"centre: expected 'root', 'box', 'principal' or a (2,) array, got {centre!r}")
    c = np.asarray(centre, np.float64)
    if c.shape != (2,) or not np.all(np.isfinite(c)):
        raise ValueError(f"centre: expected a finite (2,) array of pixels, got {centre!r}")
    return c


def rotate_scale_example(example: Mapping[str, Any], *, angle: float, scale: float = 1.0,
                         centre, layout=None) -> dict[str, Any]:
    """In-plane rotation by ``angle`` (radians) and scaling by ``scale`` about ``centre``
    (:func:`rotation_centre`: (2,) pixels or a rule; ``layout`` for ``"root"``),
    deterministic (module docstring). ``visible`` is not recomputed. Images are not
    resampled here: an ``image`` entry raises ``ValueError`` unless ``angle == 0`` and
    ``scale == 1``."""
    angle, scale = float(angle), float(scale)
    if not math.isfinite(angle):
        raise ValueError(f"angle: expected a finite number of radians, got {angle!r}")
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"scale: expected a positive number, got {scale!r}")
    c = rotation_centre(example, centre, layout=layout)
    if "image" in example and (angle != 0.0 or scale != 1.0):
        raise ValueError("example['image']: rotate_scale_example does not resample images; "
                         "drop the image or warp it separately")
    rot = _rot2(angle)
    a = scale * rot
    rz = np.eye(3)
    rz[:2, :2] = rot
    out = dict(example)
    for key in _KEYPOINT_KEYS + _full(_KEYPOINT_KEYS):
        if key in example:
            x = np.asarray(example[key])
            out[key] = ((x.astype(np.float64) - c) @ a.T + c).astype(x.dtype)
    for key in _CAMERA_3D_KEYS + _full(_CAMERA_3D_KEYS):
        if key in example:
            x = np.asarray(example[key])
            out[key] = (x.astype(np.float64) @ rz.T).astype(x.dtype)
    cam = example.get("camera")
    if isinstance(cam, Mapping):
        dtype = np.asarray(cam["focal"]).dtype
        tang = np.asarray(cam["tangential"], np.float64)
        q = rot @ tang[::-1]  # (p2, p1) rotates as a vector.
        new_cam = dict(cam)
        new_cam.update(
            rotation=(rz @ np.asarray(cam["rotation"], np.float64)).astype(dtype),
            focal=(scale * np.asarray(cam["focal"], np.float64)).astype(dtype),
            principal=(c + a @ (np.asarray(cam["principal"], np.float64) - c)).astype(dtype),
            tangential=q[::-1].astype(dtype),
        )
        out["camera"] = new_cam
    return out


def draw_clip_augmentation(rng: np.random.Generator, *, flip_probability: float = 0.5,
                           max_rotation_deg: float = 0.0,
                           scale_range: tuple[float, float] = (1.0, 1.0)) -> tuple[bool, float, float]:
    """One clip's ``(flip, angle_radians, scale)``: ``flip ~ Bernoulli(flip_probability)``,
    ``angle ~ U(-max, max)`` degrees, ``scale ~ U(*scale_range)``. Always three draws
    from ``rng`` in this order, whatever the settings."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    if not 0.0 <= flip_probability <= 1.0:
        raise ValueError(f"flip_probability: expected a number in [0, 1], got {flip_probability!r}")
    if not 0.0 <= max_rotation_deg <= 180.0:
        raise ValueError(f"max_rotation_deg: expected a number in [0, 180], got {max_rotation_deg!r}")
    lo, hi = (float(v) for v in scale_range)
    if not 0.0 < lo <= hi or not math.isfinite(hi):
        raise ValueError(f"scale_range: expected (low, high) with 0 < low <= high, got {scale_range!r}")
    u = rng.random(3)
    flip = bool(u[0] < flip_probability)
    angle = math.radians(max_rotation_deg) * (2.0 * float(u[1]) - 1.0)
    scale = lo + (hi - lo) * float(u[2])
    return flip, angle, scale


def apply_clip_augmentation(example: Mapping[str, Any], *, flip: bool, angle: float, scale: float,
                            layout, full_layout=None, centre="root") -> tuple[dict[str, Any], ClipAugmentation]:
    """Flip (if ``flip``) then rotate/scale about :func:`rotation_centre` (computed on the
    flipped clip); returns the example and the applied :class:`ClipAugmentation`."""
    out = flip_example(example, layout=layout, full_layout=full_layout) if flip else dict(example)
    c = rotation_centre(out, centre, layout=layout)
    if angle != 0.0 or scale != 1.0:
        out = rotate_scale_example(out, angle=angle, scale=scale, centre=c)
    return out, ClipAugmentation(bool(flip), float(angle), float(scale), c)


def augment_clip(example: Mapping[str, Any], rng: np.random.Generator, *, layout, full_layout=None,
                 flip_probability: float = 0.5, max_rotation_deg: float = 0.0,
                 scale_range: tuple[float, float] = (1.0, 1.0),
                 centre="root") -> tuple[dict[str, Any], ClipAugmentation]:
    """One random draw (:func:`draw_clip_augmentation`) applied to every frame of
    ``example`` (:func:`apply_clip_augmentation`)."""
    flip, angle, scale = draw_clip_augmentation(
        rng, flip_probability=flip_probability, max_rotation_deg=max_rotation_deg,
        scale_range=scale_range)
    return apply_clip_augmentation(example, flip=flip, angle=angle, scale=scale, layout=layout,
                                   full_layout=full_layout, centre=centre)


def erase_rectangles(images: np.ndarray, boxes: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """A copy of ``images`` (..., H, W, C) with rectangle ``boxes[...] = (top, left,
    height, width)`` (int) of each image set to ``colours[...]`` (C,); height 0: unchanged."""
    images = np.asarray(images)
    if images.ndim < 3:
        raise ValueError(f"images: expected (..., H, W, C), got shape {images.shape}")
    lead = images.shape[:-3]
    boxes = np.asarray(boxes)
    colours = np.asarray(colours)
    if boxes.shape != lead + (4,) or not np.issubdtype(boxes.dtype, np.integer):
        raise ValueError(f"boxes: expected integer shape {lead + (4,)}, got {boxes.dtype} {boxes.shape}")
    if colours.shape != lead + (images.shape[-1],):
        raise ValueError(f"colours: expected shape {lead + (images.shape[-1],)}, got {colours.shape}")
    out = images.copy()
    flat = out.reshape((-1,) + images.shape[-3:])
    for n, (box, colour) in enumerate(zip(boxes.reshape(-1, 4), colours.reshape(-1, images.shape[-1]))):
        top, left, h, w = (int(v) for v in box)
        if h > 0 and w > 0:
            flat[n, top : top + h, left : left + w, :] = colour.astype(images.dtype)
    return flat.reshape(images.shape)


def mean_pixel_of(images: np.ndarray) -> np.ndarray:
    """The mean pixel of a set of images ``(..., H, W, C)``: (C,) float64, the mean over
    every pixel of every image, per channel, in the images' value units (0-255 for uint8).

    Pass it as ``random_erasing(..., mean_pixel=...)``. Accumulates in float64 (for uint8
    the per-channel sums are exact up to 2**53 / 255 pixels).
    """
    images = np.asarray(images)
    if images.ndim < 3:
        raise ValueError(f"images: expected (..., H, W, C), got shape {images.shape}")
    if images.size == 0:
        raise ValueError(f"images: no pixels to average (shape {images.shape})")
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"images: expected integer or float pixels, got dtype {images.dtype}")
    return images.reshape(-1, images.shape[-1]).mean(axis=0, dtype=np.float64)


def _fill_colour(mean_pixel, images: np.ndarray) -> np.ndarray:
    """``mean_pixel`` as a (C,) array of the images' dtype (integers: rounded, in range)."""
    channels = images.shape[-1]
    fill = np.asarray(mean_pixel)
    if fill.shape != (channels,) or not np.issubdtype(fill.dtype, np.number):
        raise ValueError(f"mean_pixel: expected ({channels},) per-channel values, got {fill!r}")
    fill = fill.astype(np.float64)
    if not np.all(np.isfinite(fill)):
        raise ValueError(f"mean_pixel: expected finite values, got {mean_pixel!r}")
    if np.issubdtype(images.dtype, np.integer):
        info = np.iinfo(images.dtype)
        # A float mean (e.g. 123.7) would be truncated by a plain cast; round to the nearest
        # representable pixel instead.
        fill = np.clip(np.rint(fill), info.min, info.max)
    return fill.astype(images.dtype)


def random_erasing(images: np.ndarray, rng: np.random.Generator, *, probability: float = 0.5,
                   area_range: tuple[float, float] = (0.02, 0.4),
                   aspect_range: tuple[float, float] = (0.3, 1 / 0.3),
                   mean_pixel: np.ndarray | None = None,
                   value_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random erasing of each image of ``images`` (..., H, W, C) (module docstring).

    Args:
      images: decoded pixels; uint8 or float.
      rng: the random stream. Always the same draws, whatever the fill: per image one
        erase decision, area, aspect, top and left, then C colour values, so a given
        ``rng`` state gives the same boxes with ``mean_pixel`` as without.
      probability: chance that an image is erased.
      area_range: rectangle area as a fraction of ``H * W`` (paper: 0.02-0.4).
      aspect_range: height / width, log-uniform (paper: 0.3-1/0.3).
      mean_pixel: (C,) per-channel fill, in the images' units: the dataset's mean pixel
        (:func:`mean_pixel_of` on the training images; thesis §2.4). Every erased
        rectangle is set to it (integer images: rounded to the nearest, halves to even).
        Give it for the thesis setting; ``None`` falls back to a random colour per image.
      value_range: range of the random colour per channel (only without ``mean_pixel``);
        default ``[0, 255]`` integers for integer images, ``[0, 1]`` for floats.

    Returns:
      ``(erased images, boxes)``; ``boxes`` (..., 4) int32 ``(top, left, height, width)``,
      all zero where an image was left unchanged.
    """
    images = np.asarray(images)
    if images.ndim < 3:
        raise ValueError(f"images: expected (..., H, W, C), got shape {images.shape}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability: expected a number in [0, 1], got {probability!r}")
    a_lo, a_hi = (float(v) for v in area_range)
    if not 0.0 < a_lo <= a_hi <= 1.0:
        raise ValueError(f"area_range: expected 0 < low <= high <= 1, got {area_range!r}")
    r_lo, r_hi = (float(v) for v in aspect_range)
    if not 0.0 < r_lo <= r_hi or not math.isfinite(r_hi):
        raise ValueError(f"aspect_range: expected 0 < low <= high, got {aspect_range!r}")
    fill = None if mean_pixel is None else _fill_colour(mean_pixel, images)
    integer = np.issubdtype(images.dtype, np.integer)
    if value_range is None:
        value_range = (0, 255) if integer else (0.0, 1.0)
    v_lo, v_hi = value_range
    lead, (height, width, channels) = images.shape[:-3], images.shape[-3:]
    n = int(np.prod(lead, dtype=np.int64))
    erase = rng.random(n) < probability
    area = rng.uniform(a_lo, a_hi, n) * height * width
    aspect = np.exp(rng.uniform(math.log(r_lo), math.log(r_hi), n))
    h = np.clip(np.rint(np.sqrt(area * aspect)), 1, height).astype(np.int64)
    w = np.clip(np.rint(np.sqrt(area / aspect)), 1, width).astype(np.int64)
    top = np.floor(rng.random(n) * (height - h + 1)).astype(np.int64)
    left = np.floor(rng.random(n) * (width - w + 1)).astype(np.int64)
    # The colours are drawn even with a mean-pixel fill so that the stream advances the
    # same way in both settings (reproducible boxes; a caller's next draw is unaffected).
    if integer:
        colours = rng.integers(int(v_lo), int(v_hi), size=(n, channels), endpoint=True)
    else:
        colours = rng.uniform(float(v_lo), float(v_hi), size=(n, channels))
    if fill is not None:
        colours = np.broadcast_to(fill, (n, channels))
    boxes = np.stack([top, left, h, w], axis=-1) * erase[:, None]
    boxes = boxes.astype(np.int32).reshape(lead + (4,))
    colours = colours.reshape(lead + (channels,))
    return erase_rectangles(images, boxes, colours), boxes
