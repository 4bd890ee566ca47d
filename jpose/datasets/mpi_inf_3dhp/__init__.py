"""MPI-INF-3DHP as a TFDS dataset (array_record), built from the raw release.

Build (the release needs a sign-up, so it is read from a manual directory)::

    python launch/prepare_data.py --dataset=mpi_inf_3dhp --manual_dir=<raw> \
        --data_dir=<out> [--config=poses|images]

which calls ``tfds_build.build("mpi_inf_3dhp", manual_dir=..., data_dir=..., config=...)``.
Raw layout: :data:`Builder.MANUAL_DOWNLOAD_INSTRUCTIONS`; file formats and sources:
``shared/DATASET_FORMATS.md`` section 3; readers: :mod:`jpose.datasets.mpi_inf_3dhp.raw`.

Configs (:class:`Mpi3dhpConfig`):

* ``poses`` (default): one example per (subject, sequence, camera) of the training set
  (splits ``S1`` ... ``S8``, whichever are present) and one per test sequence (split
  ``test``), in the shared pose-sequence schema (``jpose.datasets`` issue 6). Poses from
  ``annot.mat``; the world frame and the cameras from ``camera.calibration``.
* ``images``: square person crops every ``frame_step`` frames from the training videos
  and every ``test_frame_step`` frames among the *valid* test frames.

Conventions and choices (also in :data:`Builder.DESCRIPTION`):

* 3D in metres (the files are in mm), 2D in pixels as stored (the projection of the 3D
  with the calibration; pixel origin 0/1 unconfirmed, no shift applied); camera frame
  x right, y down, z forward; joints ``mpi_inf_3dhp_28`` (all stored) and
  ``mpi_inf_3dhp_17`` (the "relevant" test joints = 28-joint indices
  ``[7,5,14,15,16,9,10,11,23,24,25,18,19,20,4,3,6]``, root pelvis at 14).
* Training world frame: ``x_world = R^T x_cam + centre`` with the calibration's
  world -> camera ``[R | t]`` (``t`` mm), ``centre = -R^T t / 1000``. Every camera of one
  instant gives the same world pose.
* Surplus annotation rows (more rows than video frames) are dropped: F from the official
  table (``raw.SEQUENCE_INFO``); for sequences not in it the longest video, else all rows.
  fps 25 or 50 from the table (unknown sequences: the video's rate, else 25).
* Test set: no calibration ships with it, so the world frame **is** the camera frame
  (``rotation`` identity, ``centre`` 0, ``positions_world`` = ``positions_camera``), and
  ``focal``/``principal`` are least-squares fits of ``annot2`` to ``annot3`` per
  sequence over its valid frames (as mmpose does); ``image_size`` is measured on the
  first image (the table: TS1-4 2048x2048, TS5-6 1920x1080, when there is none);
  ``camera_index`` is -1 and ``camera_id`` ""; fps 25 (TS1-4) / 50 (TS5-6), unconfirmed.
  The test files store only the 17 joints: the ``*_full`` (28-joint) features hold them
  at their 28-joint indices and **NaN** at the 11 others.
* Camera subsets (vnect, ...: ``raw.CAMERA_SETS``) are applied by pipelines; by default
  every camera of ``annot.mat`` (14) is stored for ``poses`` and every camera with a
  video for ``images``. A config with explicit ``cameras`` requires their videos
  (``images``).
* ``images``: frames past the end of a short video (S6 Seq2 camera 2 has 3911 frames)
  are skipped; cameras without a video give no crops.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from jpose.datasets import image_crops, raw_files, tfds_build, video_frames
from jpose.datasets.mpi_inf_3dhp import raw

__all__ = ["Builder", "Mpi3dhpConfig"]

_RELEVANT = np.asarray(raw.RELEVANT_17)
_SUBJECTS = tuple(f"S{k}" for k in range(1, 9))
_TEST_NAMES = tuple(f"TS{k}" for k in range(1, 7))


@dataclasses.dataclass(eq=False)
class Mpi3dhpConfig(tfds.core.BuilderConfig):
    """Builder config.

    Attributes:
      kind: ``"poses"`` (pose sequences) or ``"images"`` (person crops).
      cameras: training cameras to store (``None``: all of ``annot.mat`` for poses, all
        with a video for images).
      frame_step: training frames kept by ``images`` (0, step, 2 step, ...).
      test_frame_step: ``images`` keeps valid test frames ``f`` with ``f % step == 0``;
        1 keeps all 2929 valid frames of the standard protocol.
      crop_size: side of the square crops, pixels.
      crop_scale: square side = ``crop_scale`` x the larger side of the 17-joint box.
    """

    kind: str = "poses"
    cameras: tuple[int, ...] | None = None
    frame_step: int = 10
    test_frame_step: int = 1
    crop_size: int = 256
    crop_scale: float = 1.25


def _f32(shape, doc: str) -> tfds.features.Tensor:
    return tfds_build.tensor_feature(shape, np.float32, doc)


def _camera_feature() -> tfds.features.FeaturesDict:
    return tfds_build.camera_feature(
        rotation="world->camera rotation R, x_cam = R (x_world - centre); identity for the "
                 "test set",
        centre="camera centre in the world frame, metres (-R^T t / 1000); zero for the test set",
        focal="(fx, fy) pixels: calibration intrinsic [0], [5]; test set: least-squares estimate",
        principal="(cx, cy) pixels: calibration intrinsic [2], [6]; test set: least-squares "
                  "estimate",
        radial="radial distortion (k1, k2, k3); zero (the release has none)",
        tangential="tangential distortion (p1, p2), Human3.6M order; zero",
        image_size="(width, height) pixels")


class Builder(tfds_build.PoseDatasetBuilder, skip_registration=True):
    """MPI-INF-3DHP (Mehta et al. 3DV 2017): training S1-S8 and test TS1-TS6."""

    name = "mpi_inf_3dhp"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: poses and images configs."}
    BUILDER_CONFIGS = [
        Mpi3dhpConfig(name="poses", kind="poses", description=(
            "Pose sequences per (subject, sequence, camera); test sequences in 'test'.")),
        Mpi3dhpConfig(name="images", kind="images", description=(
            "256x256 person crops of every 10th training frame and every valid test frame.")),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "poses"
    HOMEPAGE = "https://vcai.mpi-inf.mpg.de/3dhp-dataset/"
    CITATION = """@inproceedings{mehta2017monocular,
  title={Monocular 3D Human Pose Estimation In The Wild Using Improved CNN Supervision},
  author={Mehta, Dushyant and Rhodin, Helge and Casas, Dan and Fua, Pascal and
          Sotnychenko, Oleksandr and Xu, Weipeng and Theobalt, Christian},
  booktitle={3D Vision (3DV), 2017 Fifth International Conference on},
  year={2017}
}"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download the release with the official get_dataset.sh / get_testset.sh (sign-up at
https://vcai.mpi-inf.mpg.de/3dhp-dataset/) and point manual_dir at its root:

  <manual_dir>/
    S1/ ... S8/                      (any subset)
      Seq1/ Seq2/
        annot.mat                    (required)
        camera.calibration           (required for the 'poses' config)
        imageSequence/video_<c>.avi  (c = 0..13; needed by 'images'; unzip -j as the script does)
    mpi_inf_3dhp_test_set/           (optional; also accepted one level deeper)
      TS1/ ... TS6/
        annot_data.mat               (MATLAB v7.3 / HDF5)
        imageSequence/img_000001.jpg ... (needed by 'images', valid frames)
"""
    DESCRIPTION = """\
MPI-INF-3DHP, 3D human pose with 14 calibrated cameras (training S1-S8) and 6 test
sequences (TS1-TS6). 3D in metres (files: mm), 2D in pixels as stored. Camera frame x right,
y down, z forward. Joint layouts (jpose.skeleton): mpi_inf_3dhp_28 (all stored joints) and
mpi_inf_3dhp_17 (the 17 'relevant' test joints = 28-joint indices
[7,5,14,15,16,9,10,11,23,24,25,18,19,20,4,3,6]; root pelvis = 14).
Training: world frame x_world = R^T x_cam + centre from camera.calibration; rows of annot.mat
beyond the video frame count are dropped. Test ('test' split): world frame = camera frame,
focal/principal fitted by least squares, valid/activity from annot_data.mat, 28-joint
features NaN outside the 17 stored joints, camera_index -1.
Config 'poses': one example per (subject, sequence, camera). Config 'images': JPEG square
crops (1.25 x the 17-joint box) of every 10th training frame and every valid test frame."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        c = self.builder_config
        if c.kind not in ("poses", "images"):
            raise ValueError(f"config.kind: expected 'poses' or 'images', got {c.kind!r}")
        if c.cameras is not None and (
                not c.cameras or any(not 0 <= k < raw.NUM_CAMERAS for k in c.cameras)):
            raise ValueError(f"config.cameras: expected camera indices in 0..13, got {c.cameras}")
        if c.frame_step < 1 or c.test_frame_step < 1:
            raise ValueError("config.frame_step / test_frame_step: expected >= 1, got "
                             f"{c.frame_step}, {c.test_frame_step}")
        if c.crop_size < 1 or not c.crop_scale > 0:
            raise ValueError("config.crop_size / crop_scale: expected positive, got "
                             f"{c.crop_size}, {c.crop_scale}")

    # ------------------------------------------------------------------ features

    def _features(self) -> tfds.features.FeaturesDict:
        t = tfds_build.tensor_feature
        text = tfds.features.Text
        j17, j28 = "mpi_inf_3dhp_17", "mpi_inf_3dhp_28"
        if self.builder_config.kind == "images":
            s = self.builder_config.crop_size
            return tfds.features.FeaturesDict({
                "image": tfds.features.Image(
                    shape=(s, s, 3), encoding_format="jpeg",
                    doc=f"{s}x{s} RGB square crop around the person (black outside the frame)"),
                "box": _f32((4,), "crop box (x0, y0, x1, y1), original-image pixels (square)"),
                "keypoints_2d": _f32((17, 2), f"2D joints, crop pixels, {j17}"),
                "positions_camera": _f32((17, 3), f"3D joints, camera frame, metres, {j17}"),
                "frame_index": t((), np.int32, "0-based frame index in the video / test sequence"),
                "valid": t((), np.bool_, "test valid_frame (always True for training)"),
                "activity": t((), np.int32, "test activity id 1..7 (0 for training)"),
                "subject": text(doc="'S1'..'S8' or 'TS1'..'TS6'"),
                "sequence": text(doc="'Seq1', 'Seq2' or the test name"),
                "camera_index": t((), np.int32, "training camera 0..13; -1 for the test set"),
            })
        nan = "test set: NaN outside the 17 stored joints"
        return tfds.features.FeaturesDict({
            "subject": text(doc="'S1'..'S8' (training) or 'TS1'..'TS6' (test)"),
            "sequence": text(doc="'Seq1'/'Seq2' (training) or the test name 'TS<k>'"),
            "action": text(doc="always '' (MPI-INF-3DHP has no action labels)"),
            "subaction": t((), np.int32, "training sequence number (Seq1 -> 1); 0 for test"),
            "camera_index": t((), np.int32, "training camera 0..13; -1 for the test set"),
            "camera_id": text(doc="camera name in camera.calibration ('0'..'13'); '' for test"),
            "fps": t((), np.float32, "frames per second (25 or 50)"),
            "positions_world": _f32((None, 17, 3), f"3D joints, world frame (test: the camera "
                                                   f"frame), metres, {j17}"),
            "positions_camera": _f32((None, 17, 3), "3D joints, camera frame x_cam = R (x_world "
                                                    f"- centre), metres, {j17}"),
            "keypoints_2d": _f32((None, 17, 2), f"2D joints, original-image pixels, {j17}"),
            "positions_world_full": _f32((None, 28, 3), f"as positions_world, {j28}; {nan}"),
            "positions_camera_full": _f32((None, 28, 3), f"as positions_camera, {j28}; {nan}"),
            "keypoints_2d_full": _f32((None, 28, 2), f"as keypoints_2d, {j28}; {nan}"),
            "positions_camera_universal": _f32(
                (None, 17, 3), "univ_annot3: 3D rescaled to the universal (Human3.6M-height) "
                               f"skeleton, camera frame, metres, {j17}"),
            "valid": t((None,), np.bool_, "test valid_frame (frames used in evaluation); "
                                          "all True for training"),
            "activity": t((None,), np.int32, "test activity id 1..7 (raw.ACTIVITY_NAMES); "
                                             "0 for training"),
            "camera": _camera_feature(),
        })

    # ------------------------------------------------------------------ discovery

    def _split_generators(self, dl_manager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        config = self.builder_config
        train = raw.find_training_sequences(manual_dir)
        test = raw.find_test_sequences(manual_dir)
        missing: list[str] = []
        if not train and test is None:
            missing += [os.path.join(s, q, "annot.mat")
                        for s in _SUBJECTS for q in ("Seq1", "Seq2")]
            missing += [os.path.join(raw.TEST_DIR, n, "annot_data.mat") for n in _TEST_NAMES]
        per_file = ["annot.mat"] + (["camera.calibration"] if config.kind == "poses" else [])
        for subject, sequence in train:
            for q in ([sequence] if sequence else ["Seq1", "Seq2"]):
                missing += [os.path.join(subject, q, f) for f in per_file]
                if config.kind == "images" and config.cameras is not None:
                    missing += [raw.video_path(subject, q, c) for c in config.cameras]
        if test is not None:
            dirs = [d for _, d in test] or [os.path.join(raw.TEST_DIR, n) for n in _TEST_NAMES]
            missing += [os.path.join(d, "annot_data.mat") for d in dirs]
        raw_files.require_paths(self.name, manual_dir, missing,
                                hint=self.MANUAL_DOWNLOAD_INSTRUCTIONS)

        splits = {}
        for subject in dict.fromkeys(s for s, _ in train):
            sequences = [q for s, q in train if s == subject]
            splits[subject] = self._generate_examples(
                manual_dir=manual_dir, subject=subject, sequences=sequences)
        if test:
            splits["test"] = self._generate_examples(manual_dir=manual_dir, test=test)
        return splits

    def _generate_examples(self, *, manual_dir: str, subject: str | None = None,
                           sequences: list[str] | None = None,
                           test: list[tuple[str, str]] | None = None):
        images = self.builder_config.kind == "images"
        if test is not None:
            generate = self._test_images if images else self._test_poses
            for name, rel_dir in test:
                yield from generate(manual_dir, name, rel_dir)
        else:
            generate = self._train_images if images else self._train_poses
            for sequence in sequences:
                yield from generate(manual_dir, subject, sequence)

    # ------------------------------------------------------------------ poses

    def _train_poses(self, manual_dir: str, subject: str, sequence: str):
        seq = raw.load_training_sequence(manual_dir, subject, sequence,
                                         cameras=self.builder_config.cameras)
        frames = seq["num_frames"]
        for k, c in enumerate(seq["cameras"].tolist()):
            world = seq["positions_world_full"][k]
            cam = seq["positions_camera_full"][k]
            kp = seq["keypoints_2d_full"][k]
            yield f"{subject}/{sequence}/{c}", {
                "subject": subject,
                "sequence": sequence,
                "action": "",
                "subaction": np.int32(int(sequence[3:])),
                "camera_index": np.int32(c),
                "camera_id": str(c),
                "fps": np.float32(seq["fps"]),
                "positions_world": world[:, _RELEVANT],
                "positions_camera": cam[:, _RELEVANT],
                "keypoints_2d": kp[:, _RELEVANT],
                "positions_world_full": world,
                "positions_camera_full": cam,
                "keypoints_2d_full": kp,
                "positions_camera_universal": seq["positions_camera_universal"][k],
                "valid": np.ones(frames, np.bool_),
                "activity": np.zeros(frames, np.int32),
                "camera": seq["camera"][k],
            }

    def _test_poses(self, manual_dir: str, name: str, rel_dir: str):
        seq = raw.load_test_sequence(manual_dir, name, rel_dir)

        def full(x):
            out = np.full(x.shape[:1] + (28,) + x.shape[2:], np.nan, np.float32)
            out[:, _RELEVANT] = x
            return out

        cam, kp = seq["positions_camera"], seq["keypoints_2d"]
        yield name, {
            "subject": name,
            "sequence": name,
            "action": "",
            "subaction": np.int32(0),
            "camera_index": np.int32(-1),
            "camera_id": "",
            "fps": np.float32(seq["fps"]),
            "positions_world": cam,
            "positions_camera": cam,
            "keypoints_2d": kp,
            "positions_world_full": full(cam),
            "positions_camera_full": full(cam),
            "keypoints_2d_full": full(kp),
            "positions_camera_universal": seq["positions_camera_universal"],
            "valid": seq["valid"],
            "activity": seq["activity"],
            "camera": seq["camera"],
        }

    # ------------------------------------------------------------------ images

    def _crop_example(self, image: np.ndarray, keypoints_17: np.ndarray) -> dict[str, Any] | None:
        """``image``, ``box``, ``keypoints_2d`` of the square crop around ``keypoints_17`` px."""
        config = self.builder_config
        box = image_crops.square_box(image_crops.box_from_keypoints(keypoints_17),
                                     scale=config.crop_scale)
        if not np.isfinite(box).all():
            return None  # no finite keypoint: nowhere to crop
        crop = image_crops.crop_and_resize(image, box, config.crop_size)
        return {
            "image": image_crops.encode_image(crop, format="JPEG"),
            "box": box.astype(np.float32),
            "keypoints_2d": image_crops.to_crop(keypoints_17, box,
                                                config.crop_size).astype(np.float32),
        }

    def _train_images(self, manual_dir: str, subject: str, sequence: str):
        config = self.builder_config
        cameras = config.cameras
        if cameras is None:
            cameras = [c for c in range(raw.NUM_CAMERAS) if os.path.exists(
                os.path.join(manual_dir, raw.video_path(subject, sequence, c)))]
        if not cameras:
            return
        seq = raw.load_training_sequence(manual_dir, subject, sequence, cameras=cameras,
                                         calibration=False)
        wanted = range(0, seq["num_frames"], config.frame_step)
        for k, c in enumerate(seq["cameras"].tolist()):
            video = os.path.join(manual_dir, raw.video_path(subject, sequence, c))
            # A short video yields only the frames it has (documented: S6 Seq2 camera 2).
            for f, image in video_frames.read_frames(video, wanted):
                kp = seq["keypoints_2d_full"][k, f, _RELEVANT]
                crop = self._crop_example(image, kp)
                if crop is None:
                    continue
                yield f"{subject}/{sequence}/{c}/{f:06d}", {
                    **crop,
                    "positions_camera": seq["positions_camera_full"][k, f, _RELEVANT],
                    "frame_index": np.int32(f),
                    "valid": np.bool_(True),
                    "activity": np.int32(0),
                    "subject": subject,
                    "sequence": sequence,
                    "camera_index": np.int32(c),
                }

    def _test_images(self, manual_dir: str, name: str, rel_dir: str):
        from PIL import Image

        step = self.builder_config.test_frame_step
        data = raw.read_test_annot(os.path.join(manual_dir, rel_dir, "annot_data.mat"))
        frames = [f for f in np.flatnonzero(data["valid"]).tolist() if f % step == 0]
        paths = [raw.test_image_path(rel_dir, f) for f in frames]
        raw_files.require_paths(self.name, manual_dir, paths,
                                hint=self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        for f, rel in zip(frames, paths):
            path = os.path.join(manual_dir, rel)
            try:
                with Image.open(path) as im:
                    image = np.asarray(im.convert("RGB"))
            except Exception as e:
                raise raw_files.MalformedRawFileError(path, "", f"not a readable image ({e})") \
                    from e
            crop = self._crop_example(image, data["annot2"][f])
            if crop is None:
                continue
            yield f"{name}/{f:06d}", {
                **crop,
                "positions_camera": (data["annot3"][f] / 1000.0).astype(np.float32),
                "frame_index": np.int32(f),
                "valid": np.bool_(True),
                "activity": np.int32(data["activity"][f]),
                "subject": name,
                "sequence": name,
                "camera_index": np.int32(-1),
            }
