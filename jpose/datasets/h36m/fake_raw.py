"""A fake Human3.6M raw release, written in the real on-disk formats (tests, benchmarks).

:func:`write_fake_release` writes, under ``root`` (``shared/DATASET_FORMATS.md`` 1-2)::

    metadata.xml                                            <w0> with 300 numbers
    S<n>/MyPoseFeatures/D3_Positions/<seq>.cdf              zVariable 'Pose', 1 record [N, 96], mm
    S<n>/MyPoseFeatures/D3_Positions_mono/<seq>.<cam>.cdf   1 record [N', 96], mm, camera frame
    S<n>/MyPoseFeatures/D2_Positions/<seq>.<cam>.cdf        1 record [N', 64], pixels
    S<n>/Videos/<seq>.<cam>.mp4                             small MPEG-4 videos, 50 fps
    data_3d_h36m.npz, data_2d_h36m_<source>.npz             VideoPose3D files (pickled dicts)

with the release's irregularities: space-containing names, S1's ``TakingPhoto`` /
``WalkingDog`` names and S11's irregular ones (``Phoning 2`` is sub-action 2,
``SittingDown`` sub-action 1), an ``_ALL 1`` sequence (to be skipped), per-camera files
with more frames (+2, camera 1) or fewer (-3, camera 3 of the first sequence) than the
world file, missing mono and D2 files (camera 2 of the last sequence: both; camera 0 of
the second sequence: D2 only), and videos with 3 extra frames except camera 2 of the
first sequence (8 frames short).

**Small images.** Videos are ``image_size`` (default 64 x 48) pixels instead of
1000 x 1002. So that the person is where the cameras put it, the intrinsics written to
``<w0>`` are a real Human3.6M camera's scaled to the small image: focal lengths and
``cx`` times ``width / 1000``, ``cy`` times ``height / 1002`` (distortion coefficients
are unitless and kept). :mod:`jpose.datasets.h36m_cameras` still reports the real
1000 x 1002 / 1000 x 1000 image sizes (``<w0>`` holds none); the images config records
the decoded video size instead.

Geometry: cameras ring the origin 5 m away, 1.5 m high, looking at (0, 0, 0.9) m; the
``<w0>`` angles ``(a, b, c)`` satisfy ``R = Rx(a) Ry(b) Rz(c)`` (world to camera) and the
ground truth is computed independently of :mod:`jpose.camera`: scipy's
``Rotation.from_euler('XYZ', (a, b, c))`` and a float64 NumPy port of the official
``ProjectPointRadial`` formula. Each video frame is dark grey (16) with one bright
Gaussian dot (sigma 1 px) at the projection of :data:`DOT_JOINT` (``h36m_32`` left
knee), so crops can be checked against their keypoints.

The returned ground truth is in the builders' conventions (metres, pixels, ``h36m_32``
joint order, float64); see :func:`write_fake_release`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jpose.datasets import video_frames
from jpose.datasets.h36m import raw

__all__ = ["DOT_JOINT", "DEFAULT_SEQUENCES", "write_fake_release", "write_pose_cdf",
           "write_metadata_xml", "project_radial", "rotation_from_angles"]

#: ``h36m_32`` joint drawn as a dot in the videos (left knee; 17-joint index 5).
DOT_JOINT = 7
BACKGROUND = 16
# Indices of the 17 standard joints among the 32 stored (DATASET_FORMATS 1.4).
_SUBSET_17 = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]

#: Default sequences per subject (names as in the release; ``_ALL 1`` is to be skipped).
DEFAULT_SEQUENCES: Mapping[str, tuple[str, ...]] = {
    "S1": ("Directions 1", "TakingPhoto", "WalkingDog 1", "_ALL 1"),
    "S11": ("Phoning 2", "SittingDown", "Photo"),
}

# A real camera's intrinsics (camera 54138969, DATASET_FORMATS 1.5): fx, fy, cx, cy,
# k1, k2, k3, p1, p2; the other cameras are perturbed copies.
_INTRINSICS = np.array([1145.049, 1143.781, 512.542, 515.451, -0.20710, 0.24778, -0.00308,
                        -0.0014245, -0.0009757])
_REAL_SIZES = ((1000, 1002), (1000, 1000), (1000, 1000), (1000, 1002))

# A standing person, h36m_32 order, metres, body frame (x to the subject's left, y
# forward, z up). Duplicated joints sit close together, as in the real data.
_TEMPLATE = np.array([
    [0.0, 0.0, 0.95], [-0.13, 0.0, 0.94], [-0.14, 0.02, 0.5], [-0.15, 0.0, 0.08],
    [-0.15, 0.12, 0.02], [-0.15, 0.18, 0.02],
    [0.13, 0.0, 0.94], [0.14, 0.02, 0.5], [0.15, 0.0, 0.08], [0.15, 0.12, 0.02],
    [0.15, 0.18, 0.02],
    [0.0, 0.0, 1.0], [0.0, 0.0, 1.2], [0.0, 0.0, 1.45], [0.0, 0.05, 1.55], [0.0, 0.0, 1.75],
    [0.03, 0.0, 1.42], [0.18, 0.0, 1.42], [0.22, 0.0, 1.15], [0.24, 0.05, 0.9],
    [0.24, 0.08, 0.86], [0.24, 0.1, 0.83], [0.25, 0.05, 0.83], [0.25, 0.05, 0.8],
    [-0.03, 0.0, 1.42], [-0.18, 0.0, 1.42], [-0.22, 0.0, 1.15], [-0.24, 0.05, 0.9],
    [-0.24, 0.08, 0.86], [-0.24, 0.1, 0.83], [-0.25, 0.05, 0.83], [-0.25, 0.05, 0.8],
])


def rotation_from_angles(angles) -> np.ndarray:
    """``Rx(a) Ry(b) Rz(c)`` (float64) via scipy: intrinsic x-y-z Euler angles."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("XYZ", np.asarray(angles, np.float64)).as_matrix()


def _angles_from_rotation(r: np.ndarray) -> np.ndarray:
    """``(a, b, c)`` with ``Rx(a) Ry(b) Rz(c) = r`` (``|b| < pi/2``)."""
    return np.array([np.arctan2(-r[1, 2], r[2, 2]), np.arcsin(np.clip(r[0, 2], -1, 1)),
                     np.arctan2(-r[0, 1], r[0, 0])])


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(forward, right), forward])  # x right, y down, z fwd


def project_radial(points_cam, focal, principal, radial, tangential) -> np.ndarray:
    """Official ``ProjectPointRadial`` in NumPy float64: camera points -> pixels."""
    p = np.asarray(points_cam, np.float64)
    xx = p[..., :2] / p[..., 2:3]
    x, y = xx[..., 0], xx[..., 1]
    r2 = x * x + y * y
    k1, k2, k3 = radial
    p1, p2 = tangential
    radial_term = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    tan_term = p1 * y + p2 * x
    xxx = xx * (radial_term + tan_term)[..., None] + np.stack([p2 * r2, p1 * r2], -1)
    return np.asarray(focal) * xxx + np.asarray(principal)


def write_pose_cdf(path: str | os.PathLike, values: np.ndarray, *, double: bool = False) -> None:
    """Writes ``values`` ``(N, 32, C)`` as a CDF zVariable ``Pose``: 1 record of ``[N, 32 C]``."""
    from cdflib.cdfwrite import CDF

    path = os.fspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.remove(path)  # cdflib refuses to overwrite.
    flat = np.asarray(values).reshape(1, len(values), -1)
    dtype = np.float64 if double else np.float32
    cdf = CDF(path)
    try:
        cdf.write_var({"Variable": "Pose", "Data_Type": CDF.CDF_DOUBLE if double else CDF.CDF_FLOAT,
                       "Num_Elements": 1, "Rec_Vary": True, "Dim_Sizes": list(flat.shape[1:]),
                       "Compress": 0}, var_data=flat.astype(dtype))
    finally:
        cdf.close()


def write_metadata_xml(path: str | os.PathLike, w0: np.ndarray) -> None:
    """A ``metadata.xml`` with a few of the real elements and ``<w0>`` = ``w0`` (300,)."""
    text = " ".join(f"{v:.17g}" for v in np.asarray(w0, np.float64))
    with open(path, "w") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<opt>\n'
                "  <train_subjects>[1 7 8 9 11]</train_subjects>\n"
                "  <val_subjects>[5 6]</val_subjects>\n"
                f"  <w0>[{text}]</w0>\n</opt>\n")


def _make_w0(rng: np.random.Generator, image_size: tuple[int, int]) -> np.ndarray:
    width, height = image_size
    w0 = np.zeros(300)
    for c in range(4):
        intr = _INTRINSICS.copy()
        if c:
            intr += rng.normal(size=9) * [3, 3, 4, 4, 0.005, 0.005, 0.0005, 0.0003, 0.0003]
        real_w, real_h = _REAL_SIZES[c]
        intr[[0, 1, 2]] *= width / real_w
        intr[3] *= height / real_h
        w0[264 + 9 * c:264 + 9 * (c + 1)] = intr
        for s in range(1, 12):
            azimuth = np.pi / 4 + c * np.pi / 2 + rng.uniform(-0.1, 0.1)
            eye_z = 1.5 + rng.uniform(-0.1, 0.1)
            eye = np.array([5.0 * np.cos(azimuth), 5.0 * np.sin(azimuth), eye_z])
            angles = _angles_from_rotation(_look_at(eye, np.array([0.0, 0.0, 0.9])))
            w0[6 * (c * 11 + s - 1):6 * (c * 11 + s)] = np.concatenate([angles, eye * 1000.0])
    return w0


def _cameras(w0: np.ndarray) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    out = {}
    for c in range(4):
        intr = w0[264 + 9 * c:264 + 9 * (c + 1)]
        for s in range(1, 12):
            ext = w0[6 * (c * 11 + s - 1):6 * (c * 11 + s)]
            out[(f"S{s}", c)] = {
                "rotation": rotation_from_angles(ext[:3]), "centre": ext[3:] / 1000.0,
                "focal": intr[0:2], "principal": intr[2:4], "radial": intr[4:7],
                "tangential": intr[7:9], "image_size": np.asarray(_REAL_SIZES[c], np.float64)}
    return out


def _motion(rng: np.random.Generator, num: int) -> np.ndarray:
    """``(num, 32, 3)`` world positions, metres: the template turning and swaying."""
    t = np.arange(num) / raw.FPS
    yaw = rng.uniform(0, 2 * np.pi) + rng.uniform(-1, 1) * t
    cos, sin = np.cos(yaw), np.sin(yaw)
    rz = np.zeros((num, 3, 3))
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = cos, -sin, sin, cos, 1
    wiggle = 0.02 * np.sin(2 * np.pi * rng.uniform(0.5, 2, (1, 32, 3)) * t[:, None, None]
                           + rng.uniform(0, 2 * np.pi, (1, 32, 3)))
    body = _TEMPLATE[None] + wiggle
    # Fast sideways sway (~3 cm per frame) so that a video frame paired with the wrong
    # pose frame shows up in the crops.
    shift = np.stack([0.3 * np.sin(5 * t + rng.uniform(0, 6)),
                      0.3 * np.cos(5 * t + rng.uniform(0, 6)), np.zeros_like(t)], -1)
    shift = shift + rng.uniform(-0.2, 0.2, (1, 3))
    return np.einsum("nij,nkj->nki", rz, body) + shift[:, None, :]


def _to_camera(world: np.ndarray, cam: Mapping[str, np.ndarray]) -> np.ndarray:
    return (world - cam["centre"]) @ cam["rotation"].T


def _frame(image_size: tuple[int, int], point: np.ndarray | None) -> np.ndarray:
    width, height = image_size
    image = np.full((height, width), float(BACKGROUND))
    if point is not None:
        ys, xs = np.mgrid[0:height, 0:width]
        d2 = (xs - point[0]) ** 2 + (ys - point[1]) ** 2
        image += (255 - BACKGROUND) * np.exp(-d2 / 2.0)
    gray = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def _coco_from_32(kp: np.ndarray) -> np.ndarray:
    """COCO-17 detections made from the 32-joint projection (eyes/ears offset from the head)."""
    head = kp[:, 14]
    off = np.array([1.5, -1.0])
    return np.stack([
        head, head + off, head - off * [1, -1], head + 2 * off, head - 2 * off * [1, -1],
        kp[:, 17], kp[:, 25], kp[:, 18], kp[:, 26], kp[:, 19], kp[:, 27],
        kp[:, 6], kp[:, 1], kp[:, 7], kp[:, 2], kp[:, 8], kp[:, 3]], axis=1)


def _mpii_from_32(kp: np.ndarray) -> np.ndarray:
    """MPII-16 (stacked-hourglass order) detections made from the 32-joint projection."""
    return np.stack([
        kp[:, 3], kp[:, 2], kp[:, 1], kp[:, 6], kp[:, 7], kp[:, 8], kp[:, 0], kp[:, 13],
        (kp[:, 13] + kp[:, 14]) / 2, kp[:, 15], kp[:, 27], kp[:, 26], kp[:, 25], kp[:, 17],
        kp[:, 18], kp[:, 19]], axis=1)


_H36M_SYMMETRY = [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]
_VP3D_METADATA = {
    "gt": {"num_joints": 17, "keypoints_symmetry": _H36M_SYMMETRY},
    "cpn_ft_h36m_dbb": {"layout_name": "h36m", "num_joints": 17,
                        "keypoints_symmetry": _H36M_SYMMETRY},
    "detectron_pt_coco": {"layout_name": "coco", "num_joints": 17, "keypoints_symmetry":
                          [[1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]]},
    "sh_ft_h36m": {"num_joints": 16,
                   "keypoints_symmetry": [[3, 4, 5, 13, 14, 15], [0, 1, 2, 10, 11, 12]]},
}


def _videopose3d_name(subject: str, name: str) -> str:
    if subject == "S1":
        for raw_name, vp3d in (("TakingPhoto", "Photo"), ("WalkingDog", "WalkDog")):
            if name.startswith(raw_name):
                return vp3d + name[len(raw_name):]
    return name


def write_fake_release(root: str | os.PathLike, *, subjects: Sequence[str] = ("S1", "S11"),
                       sequences: Mapping[str, Sequence[str]] | None = None,
                       num_frames: int = 30, image_size: tuple[int, int] = (64, 48),
                       mono: bool = True, d2: bool = True, videos: bool = True,
                       videopose3d: bool = True, seed: int = 0) -> dict[str, Any]:
    """Writes a fake Human3.6M release under ``root``; returns the ground truth.

    Args:
      root: the manual directory to fill (created).
      subjects: subject names (``S1``..``S11``).
      sequences: per subject, file base names (default :data:`DEFAULT_SEQUENCES`, else
        the subject's first two table names). Sequence ``k`` has ``num_frames + 2 k``
        world frames.
      num_frames: world frames of the first sequence (>= 12).
      image_size: ``(width, height)`` of the videos, even numbers.
      mono, d2, videos, videopose3d: write those files at all.
      seed: random seed.

    Returns:
      A dict (values float64, metres / pixels / ``h36m_32``: what the builders should
      output, before float32 rounding) with

      * ``"w0"`` (300,), ``"image_size"`` (width, height) of the videos;
      * ``"cameras"``: ``{(subject, c): {CameraParams field: array}}`` (``image_size``
        the real 1000 x 1002 / 1000 x 1000 sizes);
      * ``"skipped"``: ``"S1/_ALL 1"``-style names of the ``_ALL`` sequences written;
      * ``"examples"``: ``{(subject, sequence, c): {"action", "subaction", "num_frames"
        F, "positions_world" (F, 32, 3), "positions_camera" (F, 32, 3), "keypoints_2d"
        (F, 32, 2), "keypoints_source", "positions_camera_source", "video_frames"}}``
        for the ``poses`` / ``images`` configs (F after truncation to the shortest file);
      * ``"sequences"``: ``{(subject, sequence): {"action", "subaction",
        "positions_world" (N, 32, 3), "positions_camera" [4 x (N, 32, 3)],
        "keypoints_2d" [4 x (N, 32, 2)]}}`` over the full world length N;
      * ``"videopose3d"``: ``{"names": {(subject, raw name): VideoPose3D name},
        "positions_2d": {source: {(subject, VideoPose3D name): [4 arrays]}},
        "missing_2d": {source: {(subject, VideoPose3D name), ...}}}``.
    """
    root = os.fspath(root)
    if num_frames < 12:
        raise ValueError(f"num_frames: expected >= 12, got {num_frames}")
    width, height = image_size
    if width % 2 or height % 2:
        raise ValueError(f"image_size: expected even (width, height), got {image_size}")
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    w0 = _make_w0(rng, image_size)
    write_metadata_xml(os.path.join(root, "metadata.xml"), w0)
    cameras = _cameras(w0)

    truth: dict[str, Any] = {"w0": w0, "image_size": tuple(image_size), "cameras": cameras,
                             "skipped": [], "examples": {}, "sequences": {}}
    vp3d_3d: dict[str, dict[str, np.ndarray]] = {}
    vp3d_2d: dict[str, dict[str, dict[str, list]]] = {s: {} for s in _VP3D_METADATA}
    vp3d_names, missing_2d = {}, {s: set() for s in _VP3D_METADATA}
    for subject in subjects:
        if sequences is not None and subject in sequences:
            names = tuple(sequences[subject])
        elif subject in DEFAULT_SEQUENCES:
            names = DEFAULT_SEQUENCES[subject]
        else:
            names = tuple(raw.SEQUENCE_NAMES[subject])[:2]
        real = [n for n in names if not raw.is_all_sequence(n)]
        for k, name in enumerate(names):
            num = num_frames + 2 * k
            world = _motion(rng, num)
            write_pose_cdf(os.path.join(root, raw.d3_path(subject, name)), world * 1000.0,
                           double=True)
            if raw.is_all_sequence(name):
                truth["skipped"].append(f"{subject}/{name}")
                continue
            action, subaction = raw.sequence_info(subject, name)
            vp3d_name = _videopose3d_name(subject, name)
            vp3d_names[(subject, name)] = vp3d_name
            vp3d_3d.setdefault(subject, {})[vp3d_name] = world.astype(np.float32)
            k_real = real.index(name)
            last = k_real == len(real) - 1
            per_source = {s: [] for s in _VP3D_METADATA}
            full = truth["sequences"][(subject, name)] = {
                "action": action, "subaction": subaction, "positions_world": world,
                "positions_camera": [], "keypoints_2d": []}
            for c, cam_id in enumerate(raw.CAMERA_IDS):
                cam = cameras[(subject, c)]
                xyz = _to_camera(world, cam)
                uv = project_radial(xyz, cam["focal"], cam["principal"], cam["radial"],
                                    cam["tangential"])
                full["positions_camera"].append(xyz)
                full["keypoints_2d"].append(uv)
                # Per-camera file lengths (see the module docstring).
                n_cam = num + 2 if c == 1 else (num - 3 if (c == 3 and k_real == 0) else num)
                # More frames than the world file: extrapolate the motion for the extras.
                world_cam = (_motion(np.random.default_rng([seed, k, c]), n_cam)
                             if n_cam > num else None)
                if world_cam is not None:
                    world_cam[:num] = world
                xyz_file = _to_camera(world_cam, cam) if world_cam is not None else xyz[:n_cam]
                uv_file = (project_radial(xyz_file, cam["focal"], cam["principal"], cam["radial"],
                                          cam["tangential"]))
                has_mono = mono and not (last and c == 2)
                has_d2 = d2 and not (last and c == 2) and not (k_real == 1 and c == 0)
                if has_mono:
                    write_pose_cdf(os.path.join(root, raw.mono_path(subject, name, cam_id)),
                                   xyz_file * 1000.0)
                if has_d2:
                    write_pose_cdf(os.path.join(root, raw.d2_path(subject, name, cam_id)), uv_file)
                files = [num] + ([n_cam] if has_mono else []) + ([n_cam] if has_d2 else [])
                f = min(files)
                n_video = num - 8 if (k_real == 0 and c == 2) else num + 3
                if videos:
                    frames = [_frame(image_size, uv[i, DOT_JOINT] if i < num else None)
                              for i in range(n_video)]
                    path = os.path.join(root, raw.video_path(subject, name, cam_id))
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    video_frames.write_video(path, frames, fps=raw.FPS)
                truth["examples"][(subject, name, c)] = {
                    "action": action, "subaction": subaction, "num_frames": f,
                    "positions_world": world[:f], "positions_camera": xyz[:f],
                    "keypoints_2d": uv[:f],
                    "keypoints_source": "D2_Positions" if has_d2 else "projected",
                    "positions_camera_source": "D3_Positions_mono" if has_mono else "computed",
                    "video_frames": n_video if videos else 0,
                }
                # VideoPose3D 2D: the same projection with 1 extra frame on camera 1.
                uv_vp = (uv_file[:num + 1] if c == 1 else uv).astype(np.float32)
                per_source["gt"].append(uv_vp[:, _SUBSET_17])
                noise = np.random.default_rng([seed, 7, k, c]).normal(0, 2.0, uv_vp[:, :17].shape)
                per_source["cpn_ft_h36m_dbb"].append(
                    (uv_vp[:, _SUBSET_17] + noise).astype(np.float32))
                per_source["detectron_pt_coco"].append(_coco_from_32(uv_vp).astype(np.float32))
                per_source["sh_ft_h36m"].append(_mpii_from_32(uv_vp).astype(np.float32))
            for source, views in per_source.items():
                if source == "detectron_pt_coco" and subject == "S11" and k_real == 0:
                    missing_2d[source].add((subject, vp3d_name))  # like S11 'Directions'
                    continue
                vp3d_2d[source].setdefault(subject, {})[vp3d_name] = views
    if videopose3d:
        # np.savez_compressed pickles the dicts into 0-d object arrays, as VideoPose3D does.
        np.savez_compressed(os.path.join(root, "data_3d_h36m.npz"), positions_3d=vp3d_3d)
        for source, positions_2d in vp3d_2d.items():
            np.savez_compressed(os.path.join(root, f"data_2d_h36m_{source}.npz"),
                                positions_2d=positions_2d, metadata=_VP3D_METADATA[source])
    truth["videopose3d"] = {
        "names": vp3d_names, "missing_2d": missing_2d,
        "positions_2d": {s: {(subj, n): v for subj, d in per.items() for n, v in d.items()}
                         for s, per in vp3d_2d.items()},
    }
    return truth
