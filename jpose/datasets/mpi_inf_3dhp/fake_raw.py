"""A fake MPI-INF-3DHP release in the exact raw on-disk format (tests, benchmarks).

Writes, under ``root`` (``shared/DATASET_FORMATS.md`` section 3):

* ``S<k>/Seq<j>/annot.mat`` (MATLAB v5, :func:`scipy.io.savemat`): ``annot2``,
  ``annot3``, ``univ_annot3`` as ``(14, 1)`` cell arrays of ``(R, 56)`` / ``(R, 84)``
  float64 matrices (R = frames + surplus rows, like the real files), ``cameras`` uint8
  ``0..13`` and ``frames`` uint16 ``0..R-1``;
* ``S<k>/Seq<j>/camera.calibration``: the Skeletool text format with its header, 14
  seven-line blocks, keys padded to 14 columns (``name`` at column 0, the others indented
  by two spaces) and a trailing space on the 16-number lines;
* ``S<k>/Seq<j>/imageSequence/video_<c>.avi`` for a few cameras
  (:func:`jpose.datasets.video_frames.write_video`; MJPEG by default);
* ``mpi_inf_3dhp_test_set/TS<k>/annot_data.mat`` (HDF5 via h5py with a MATLAB v7.3
  header in a 512-byte user block): ``annot2`` ``(N, 1, 17, 2)``, ``annot3`` and
  ``univ_annot3`` ``(N, 1, 17, 3)``, ``valid_frame`` and ``activity_annotation`` ``(N, 1)``,
  ``bb_crop`` ``(N, 34)``, all float64; and ``imageSequence/img_%06d.jpg`` (1-based).

The person is a random cloud of 28 joints moving along a smooth trajectory in a z-up world
(metres), seen by 14 look-at cameras; 2D annotations are exact pinhole projections. Each
frame shows a white disc at joint ``dot_joint`` on a grey background (white, not a colour:
luma keeps full resolution in the 4:2:0 videos), so that crops can be checked against
their keypoints.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.io

from jpose.datasets.mpi_inf_3dhp import raw

__all__ = ["write_fake_release", "calibration_text"]

_JOINTS_28 = (
    "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top",
    "left_clavicle", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_clavicle", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe",
    "right_hip", "right_knee", "right_ankle", "right_foot", "right_toe",
)

_DEFAULT_SEQUENCES = (("S1", "Seq1"), ("S1", "Seq2"), ("S2", "Seq1"), ("S2", "Seq2"))


def _num(v: float) -> str:
    """Shortest exact decimal without exponent (``0``, ``1``, ``1497.693``)."""
    return np.format_float_positional(float(v), trim="-")


def calibration_text(entries: Mapping[int, Mapping[str, Any]]) -> str:
    """``camera.calibration`` text for ``{name: {sensor, size, intrinsic, extrinsic}}``.

    ``intrinsic`` and ``extrinsic`` are (4, 4) (written row-major), ``extrinsic`` world
    -> camera with ``t`` in mm.
    """
    lines = [raw.CALIBRATION_HEADER]
    for name, e in entries.items():
        lines.append(f"{'name':<14}{name}")
        lines.append(f"  {'sensor':<12}{' '.join(_num(v) for v in e['sensor'])}")
        lines.append(f"  {'size':<12}{' '.join(_num(v) for v in e['size'])}")
        lines.append(f"  {'animated':<12}0")
        for key in ("intrinsic", "extrinsic"):
            # The 16-number lines end with a space before the newline, as in the release.
            lines.append(f"  {key:<12}{' '.join(_num(v) for v in np.ravel(e[key]))} ")
        lines.append(f"  {'radial':<12}0")
    return "\n".join(lines) + "\n"


def _look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World -> camera rotation (rows: camera x right, y down, z forward), z-up world."""
    forward = target - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def _project(points: np.ndarray, focal, principal) -> np.ndarray:
    return points[..., :2] / points[..., 2:] * np.asarray(focal) + np.asarray(principal)


def _draw_frame(size: tuple[int, int], dot, radius: float) -> np.ndarray:
    """Grey RGB frame (H, W, 3) with a white disc centred at pixel ``dot`` (x, y)."""
    w, h = size
    image = np.full((h, w, 3), 60, np.uint8)
    ys, xs = np.mgrid[0:h, 0:w]
    disc = (xs - dot[0]) ** 2 + (ys - dot[1]) ** 2 <= radius ** 2
    image[disc] = 255
    return image


def _write_mat73(path: str, datasets: Mapping[str, np.ndarray]) -> None:
    """HDF5 with a MATLAB v7.3 header in its 512-byte user block (as MATLAB writes it)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in datasets.items():
            d = f.create_dataset(name, data=np.asarray(value, np.float64))
            d.attrs["MATLAB_class"] = np.bytes_(b"double")
    text = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2015 "
            b"HDF5 schema 1.00 .")
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header)


def write_fake_release(
    root: str | os.PathLike,
    *,
    sequences: Sequence[tuple[str, str]] = _DEFAULT_SEQUENCES,
    num_frames: int = 12,
    extra_rows: int = 3,
    video_cameras: Sequence[int] = (0, 2, 5),
    no_video_sequences: Sequence[tuple[str, str]] = (("S2", "Seq2"),),
    short_videos: Mapping[tuple[str, str, int], int] | None = None,
    image_size: tuple[int, int] = (96, 80),
    fps: Mapping[tuple[str, str], float] | None = None,
    test_sequences: Sequence[str] = ("TS1", "TS5"),
    num_test_frames: int = 10,
    test_image_sizes: Mapping[str, tuple[int, int]] | None = None,
    dot_joint: str = "right_wrist",
    video_codec: str = "mjpeg",
    seed: int = 0,
) -> dict[str, Any]:
    """Writes a fake release under ``root``; returns the values written.

    Args:
      root: the manual directory to write into.
      sequences: training ``(subject, sequence)`` folders.
      num_frames: video frames F of every training sequence (the "true" frame count).
      extra_rows: surplus annotation rows after the F frames (the release has a few).
      video_cameras: cameras with a video (``annot.mat`` always has all 14 cells).
      no_video_sequences: sequences written without any video.
      short_videos: ``(subject, sequence, camera) -> frames`` for videos shorter than F.
      image_size: training (width, height) px (even numbers; the release has 2048x2048).
      fps: video frame rate per sequence (default: :data:`raw.SEQUENCE_INFO`'s, else 25).
      test_sequences: test folders ``TS<k>`` (empty: no test set).
      num_test_frames: frames N per test sequence.
      test_image_sizes: (width, height) per test name (default 64x64 for TS1-4 and 96x54
        for TS5-6, the release's 2048x2048 and 1920x1080 scaled down).
      dot_joint: the ``mpi_inf_3dhp_17`` joint drawn as a white disc in every image.
      video_codec: ``"mjpeg"`` (near lossless) or ``"mpeg4"``.
      seed: NumPy seed.

    Returns:
      ``{"train": {(subject, sequence): {...}}, "test": {name: {...}}, "dot_joint",
      "frame_counts"}`` in the builder's convention (metres, pixels, ``mpi_inf_3dhp_28`` /
      ``mpi_inf_3dhp_17`` order): per training sequence ``num_frames``, ``num_rows``, ``fps``, ``positions_world_full``
      (R, 28, 3), ``positions_camera_full`` (14, R, 28, 3), ``keypoints_2d_full``
      (14, R, 28, 2), ``positions_camera_universal`` (14, R, 17, 3), ``cameras``
      ``{c: {rotation, centre, focal, principal, image_size}}`` and ``videos``
      ``{c: frames}``; per test sequence ``positions_camera`` (N, 17, 3),
      ``keypoints_2d``, ``positions_camera_universal``, ``valid`` (N,) bool, ``activity``
      (N,) int32, ``focal``, ``principal``, ``image_size``. ``frame_counts`` maps each
      training sequence to ``(num_frames, fps)``, a :data:`raw.SEQUENCE_INFO` replacement.
    """
    root = os.fspath(root)
    rng = np.random.default_rng(seed)
    short_videos = dict(short_videos or {})
    fps = dict(fps or {})
    width, height = image_size
    if width % 2 or height % 2:
        raise ValueError(f"image_size: expected even (width, height), got {image_size}")
    relevant = np.asarray(raw.RELEVANT_17)
    names_17 = [_JOINTS_28[i] for i in relevant]
    if dot_joint not in names_17:
        raise ValueError(f"dot_joint: expected one of {names_17}, got {dot_joint!r}")
    dot17 = names_17.index(dot_joint)
    radius = max(2.5, min(image_size) / 30)
    rows = num_frames + extra_rows

    # A body-sized random joint cloud around the pelvis (joint 4), metres.
    template = rng.uniform([-0.3, -0.3, -0.85], [0.3, 0.3, 0.85], size=(28, 3))
    template[4] = 0.0
    truth: dict[str, Any] = {"train": {}, "test": {}, "dot_joint": dot_joint, "frame_counts": {}}

    for subject, sequence in sequences:
        seq_dir = os.path.join(root, subject, sequence)
        os.makedirs(os.path.join(seq_dir, "imageSequence"), exist_ok=True)
        t = np.arange(rows, dtype=np.float64)[:, None]
        pelvis = np.concatenate([0.3 * np.sin(t / 5), 0.2 * np.cos(t / 7), np.full_like(t, 0.9)],
                                -1)
        world = pelvis[:, None] + template[None] + 0.02 * rng.normal(size=(rows, 28, 3))

        cams, calib = {}, {}
        cam3, cam2, univ = [], [], []
        base_focal = 0.8 * min(image_size) / 2 * 4.5
        for c in range(raw.NUM_CAMERAS):
            angle = 2 * np.pi * c / raw.NUM_CAMERAS + rng.uniform(-0.1, 0.1)
            elevation = 3.0 if c >= 11 else 0.5 + 0.1 * c
            centre = np.array([4.5 * np.cos(angle), 4.5 * np.sin(angle), elevation])
            # Rounded so the file stays readable; the truth below uses the rounded values
            # (orthonormal to ~1e-12) and the rounded centre.
            rot = np.round(_look_at(centre, np.array([0.0, 0.0, 0.9])), 12) + 0.0
            t_mm = np.round(-rot @ centre * 1000.0, 6) + 0.0
            centre = -rot.T @ t_mm / 1000.0
            focal = np.array([base_focal + c, base_focal + 1.0 - 0.5 * c])
            principal = np.array([width / 2 - 0.5 + 0.1 * c, height / 2 - 0.5 - 0.1 * c])
            intrinsic = np.eye(4)
            intrinsic[0, [0, 2]] = focal[0], principal[0]
            intrinsic[1, [1, 2]] = focal[1], principal[1]
            extrinsic = np.eye(4)
            extrinsic[:3, :3], extrinsic[:3, 3] = rot, t_mm
            calib[c] = {"sensor": (10, 10), "size": (width, height), "intrinsic": intrinsic,
                        "extrinsic": extrinsic}
            x_cam = (world - centre) @ rot.T  # metres
            pelvis_cam = x_cam[:, 4:5]
            cam3.append(x_cam)
            cam2.append(_project(x_cam, focal, principal))
            univ.append(pelvis_cam + 0.93 * (x_cam - pelvis_cam))
            cams[c] = {"rotation": rot, "centre": centre, "focal": focal, "principal": principal,
                       "image_size": np.array([width, height], np.float64)}
        cam3, cam2, univ = np.stack(cam3), np.stack(cam2), np.stack(univ)

        def cells(values):
            out = np.empty((raw.NUM_CAMERAS, 1), object)
            for c in range(raw.NUM_CAMERAS):
                out[c, 0] = values[c].reshape(rows, -1)
            return out

        scipy.io.savemat(os.path.join(seq_dir, "annot.mat"), {
            "annot2": cells(cam2),
            "annot3": cells(cam3 * 1000.0),
            "univ_annot3": cells(univ * 1000.0),
            "cameras": np.arange(raw.NUM_CAMERAS, dtype=np.uint8),
            "frames": np.arange(rows, dtype=np.uint16)[:, None],
        })
        with open(os.path.join(seq_dir, "camera.calibration"), "w", newline="\n") as f:
            f.write(calibration_text(calib))

        seq_fps = float(fps.get((subject, sequence),
                                raw.SEQUENCE_INFO.get((subject, sequence), (0, 25.0))[1]))
        videos = {}
        if (subject, sequence) not in no_video_sequences:
            from jpose.datasets import video_frames

            for c in video_cameras:
                n = short_videos.get((subject, sequence, c), num_frames)
                dots = cam2[c, :n, relevant[dot17]]
                frames = [_draw_frame(image_size, dots[i], radius) for i in range(n)]
                video_frames.write_video(os.path.join(root, raw.video_path(subject, sequence, c)),
                                         frames, fps=seq_fps, codec=video_codec)
                videos[c] = n
        truth["train"][(subject, sequence)] = {
            "num_frames": num_frames,
            "num_rows": rows,
            "fps": seq_fps,
            "positions_world_full": world,
            "positions_camera_full": cam3,
            "keypoints_2d_full": cam2,
            "positions_camera_universal": univ[:, :, relevant],
            "cameras": cams,
            "videos": videos,
        }
        truth["frame_counts"][(subject, sequence)] = (num_frames, seq_fps)

    sizes = {"TS1": (64, 64), "TS2": (64, 64), "TS3": (64, 64), "TS4": (64, 64),
             "TS5": (96, 54), "TS6": (96, 54)}
    sizes.update(test_image_sizes or {})
    for name in test_sequences:
        from PIL import Image

        tw, th = sizes.get(name, (64, 64))
        seq_dir = os.path.join(root, raw.TEST_DIR, name)
        os.makedirs(os.path.join(seq_dir, "imageSequence"), exist_ok=True)
        n = num_test_frames
        t = np.arange(n, dtype=np.float64)[:, None]
        root_cam = np.concatenate(
            [0.2 * np.sin(t / 4), 0.1 * np.cos(t / 3), 4.5 + 0.1 * np.sin(t / 6)], -1)
        body = template[relevant][:, [0, 2, 1]] * np.array([1.0, -1.0, 1.0])  # z-up -> y-down
        x_cam = root_cam[:, None] + body[None] + 0.02 * rng.normal(size=(n, 17, 3))
        f0 = 0.8 * min(tw, th) / 2 * 4.5
        focal = np.array([f0 * 1.01, f0 * 0.99])
        principal = np.array([tw / 2 + 0.7, th / 2 - 0.3])
        kp2 = _project(x_cam, focal, principal)
        univ = x_cam[:, 14:15] + 0.93 * (x_cam - x_cam[:, 14:15])
        valid = rng.uniform(size=n) < 0.7
        valid[:2] = (True, False)
        activity = rng.integers(1, 8, size=n).astype(np.int32)
        _write_mat73(os.path.join(seq_dir, "annot_data.mat"), {
            "annot2": (kp2)[:, None],
            "annot3": (x_cam * 1000.0)[:, None],
            "univ_annot3": (univ * 1000.0)[:, None],
            "valid_frame": valid[:, None].astype(np.float64),
            "activity_annotation": activity[:, None].astype(np.float64),
            "bb_crop": np.zeros((n, 34)),
        })
        for i in range(n):
            image = _draw_frame((tw, th), kp2[i, dot17], max(2.5, min(tw, th) / 30))
            rel = raw.test_image_path(os.path.join(raw.TEST_DIR, name), i)
            Image.fromarray(image).save(os.path.join(root, rel), quality=95)
        truth["test"][name] = {
            "positions_camera": x_cam,
            "keypoints_2d": kp2,
            "positions_camera_universal": univ,
            "valid": valid,
            "activity": activity,
            "focal": focal,
            "principal": principal,
            "image_size": np.array([tw, th], np.float64),
        }
    return truth
