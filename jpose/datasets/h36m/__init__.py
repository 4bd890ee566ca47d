"""Human3.6M as a TFDS dataset (array_record), from the raw release or VideoPose3D's files.

Build (the raw files stay where they are; nothing is downloaded)::

    python launch/prepare_data.py --dataset=h36m --manual_dir=<raw> --data_dir=<out> \\
        [--config=poses|videopose3d_gt|videopose3d_cpn_ft_h36m_dbb|
                  videopose3d_detectron_pt_coco|videopose3d_sh_ft_h36m|images]

which calls ``tfds_build.build("h36m", manual_dir=..., data_dir=..., config=...)``. The
``videopose3d_*`` configs need the builder keyword argument ``allow_pickle=True``
(VideoPose3D's ``.npz`` files hold pickled dicts; see below). Read with
``tfds_build.load("h36m", data_dir=..., split="S1", config=...)``.

Configs (:data:`Builder.BUILDER_CONFIGS`):

* ``poses`` (default): one example per (subject, sequence, camera) from the raw CDF
  files (:func:`jpose.datasets.h36m.raw.load_subject`).
* ``videopose3d_<source>``: the same schema from ``data_3d_h36m.npz`` +
  ``data_2d_h36m_<source>.npz`` (:func:`jpose.datasets.h36m.raw.load_videopose3d`).
* ``images``: one example per (subject, sequence, camera, frame) every ``frame_step``
  frames: a square person crop of the video frame and its pose.

Splits: one per subject, named as the subject (``"S1"``, ``"S5"``, ...; those present).
The usual protocol trains on S1, S5-S8 and tests on S9, S11
(:data:`jpose.datasets.h36m_videopose3d.H36M_TRAIN_SUBJECTS` / ``H36M_TEST_SUBJECTS``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from jpose.datasets import image_crops, tfds_build, video_frames
from jpose.datasets.h36m import raw

__all__ = ["Builder", "H36MConfig"]

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)
class H36MConfig(tfds.core.BuilderConfig):
    """A Human3.6M config.

    Attributes:
      kind: ``"poses"`` (raw CDF files), ``"videopose3d"`` or ``"images"``.
      source_2d: VideoPose3D configs: ``<source>`` of ``data_2d_h36m_<source>.npz``.
      keypoints_layout: VideoPose3D configs: the jpose layout of that file's 2D joints
        (checked against the file's ``metadata``).
      frame_step: images: keep frames ``0, frame_step, 2 frame_step, ...`` (5 -> 10 fps).
      crop_size: images: side of the square crops, pixels.
    """

    kind: str = "poses"
    source_2d: str = ""
    keypoints_layout: str = ""
    frame_step: int = 5
    crop_size: int = 256


_COMMON_DESCRIPTION = """
Human3.6M (Ionescu et al., TPAMI 2014): 3D poses of 7 public subjects (S1, S5-S9, S11),
15 actions x 2 sub-actions, 4 calibrated cameras (ids 54138969, 55011271, 58860488,
60457274 = camera_index 0..3), 50 fps.

Units and frames: 3D in metres; world frame of the motion capture (z up); camera frame
x_cam = R (x_world - centre), x right, y down, z forward (OpenCV/Human3.6M); 2D in pixels
of the original 1000 x 1002 / 1000 x 1000 images, x right, y down, top-left pixel centre
(0, 0) (the release's D2_Positions and the projection with distortion agree on this).
Joints: `*_full` features hold all 32 stored joints (jpose layout `h36m_32`, metadata.xml
order); the others the standard 17 (`h36m_17` = 32-joint indices
[0,1,2,3,6,7,8,12,13,14,15,17,18,19,25,26,27]).
Cameras (metadata.xml <w0>, jpose.datasets.h36m_cameras): rotation world-to-camera
R = Rx(a) Ry(b) Rz(c), centre in metres, focal/principal in pixels, radial (k1, k2, k3),
tangential (p1, p2) in Human3.6M's stored order (VideoPose3D lists it reversed),
image_size (width, height). Projection with distortion: jpose.camera.project_perspective
(the official ProjectPointRadial).
Sequences: `sequence` is the file base name ('Directions 1', 'TakingPhoto', 'Photo 1',
...); `action` (one of the 15 classes) and `subaction` (1 or 2) come from metadata.xml's
per-subject name table, not from the name (S1 uses TakingPhoto/WalkingDog where the
others use Photo/WalkDog; S11's 'Phoning 2' is sub-action 2). `_ALL` sequences are skipped.
"""

_POSES_DESCRIPTION = """
Config `poses`: one example per (subject, sequence, camera) from
S*/MyPoseFeatures/D3_Positions/<seq>.cdf (world, mm -> m), with camera-frame positions
from D3_Positions_mono/<seq>.<cam>.cdf and 2D from D2_Positions/<seq>.<cam>.cdf when
present, else computed from the world positions and the camera (`positions_camera_source`
'D3_Positions_mono'|'computed', `keypoints_source` 'D2_Positions'|'projected'). Mono files
must agree with the computation within 5 mm (else the build fails naming the file: this
catches wrong camera conventions). When the world, mono and D2 files of an example have
different frame counts, all are truncated to the shortest.
"""

_VP3D_DESCRIPTION = """
Configs `videopose3d_<source>`: VideoPose3D's data_3d_h36m.npz (32 joints, world, metres)
and data_2d_h36m_<source>.npz (pixels; gt: projected truth, h36m_17; cpn_ft_h36m_dbb: CPN
detections, h36m_17; detectron_pt_coco: Detectron detections, coco_17; sh_ft_h36m:
stacked-hourglass detections, mpii_16), with metadata.xml cameras. `keypoints_2d` is the
file's 2D converted to h36m_17 by joint name (jpose.skeleton.convert: joints the layout
lacks are synthesised, e.g. COCO pelvis = mid-hip; `keypoints_2d_source` keeps the file's
own layout, named in `keypoints_layout`); `keypoints_2d_full` is the projection of the
32-joint truth; positions_camera is computed. Sequence names are the file's (S1's
TakingPhoto/WalkingDog renamed Photo/WalkDog by VideoPose3D). Frames: the shorter of 3D
and 2D (VideoPose3D cuts extra 2D frames). Sequences without 2D are skipped. The .npz files
hold pickled dicts: building requires allow_pickle=True.
"""

_IMAGES_DESCRIPTION = """
Config `images`: frames 0, frame_step, 2 frame_step, ... of S*/Videos/<seq>.<cam>.mp4
(decoded with PyAV), for frames that have a pose (video frames beyond the pose length are
ignored; if the video is shorter, only the frames it has are kept; a video that fails to
decode (VideoPose3D reports a corrupted S11 'Directions' video) keeps the frames decoded
before the failure, with a logged warning). Each example is a
square crop around the person: box = square_box(tight box of the 17 2D keypoints,
scale 1.25) in original image pixels, resized to crop_size x crop_size (bilinear, black
outside the image; jpose.datasets.image_crops), JPEG. `keypoints_2d` are in crop pixels
((p - box[:2]) * crop_size / box width). Poses as in `poses` for that frame.
`camera.image_size` is the decoded video frame size.
"""

_MANUAL = """
Put the Human3.6M raw release in the manual directory, exactly as extracted:

  <manual_dir>/
    metadata.xml                                   (from the official code-v1.2.zip)
    S1/MyPoseFeatures/D3_Positions/<seq>.cdf       (required; e.g. 'Directions 1.cdf')
    S1/MyPoseFeatures/D3_Positions_mono/<seq>.<camera_id>.cdf   (optional)
    S1/MyPoseFeatures/D2_Positions/<seq>.<camera_id>.cdf        (optional)
    S1/Videos/<seq>.<camera_id>.mp4                (config `images` only)
    S5/ S6/ S7/ S8/ S9/ S11/ ...                   (any subset of subjects)
    data_3d_h36m.npz                               (configs videopose3d_*)
    data_2d_h36m_<source>.npz                      (config videopose3d_<source>)

Per-subject archives (Poses_D3_Positions_S1.tgz, ..., Videos_S1.tgz) extract to this
layout; the VideoPose3D files are those of its DATASETS.md.
"""

_CITATION = """@article{h36m_pami,
  author = {Ionescu, Catalin and Papava, Dragos and Olaru, Vlad and Sminchisescu, Cristian},
  title = {Human3.6M: Large Scale Datasets and Predictive Methods for 3D Human Sensing
           in Natural Environments},
  journal = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  volume = {36}, number = {7}, pages = {1325--1339}, year = {2014}
}"""


def _vp3d_config(source: str, layout: str) -> H36MConfig:
    return H36MConfig(
        name=f"videopose3d_{source}", kind="videopose3d", source_2d=source,
        keypoints_layout=layout,
        description=f"VideoPose3D data_3d_h36m.npz + data_2d_h36m_{source}.npz ({layout}).")


def _text(doc: str) -> tfds.features.Text:
    return tfds.features.Text(doc=doc)


def _f32(shape, doc: str) -> tfds.features.Tensor:
    return tfds_build.tensor_feature(shape, np.float32, doc)


def _i32(shape, doc: str) -> tfds.features.Tensor:
    return tfds_build.tensor_feature(shape, np.int32, doc)


def _camera_feature(size_doc: str) -> tfds.features.FeaturesDict:
    return tfds_build.camera_feature(image_size=size_doc)


class Builder(tfds_build.PoseDatasetBuilder, skip_registration=True):
    """Human3.6M builder; see the module docstring and :attr:`DESCRIPTION`.

    Keyword argument ``allow_pickle`` (default False): must be True to build the
    ``videopose3d_*`` configs, whose ``.npz`` files store pickled dicts (unpickling can run
    code from the file); otherwise
    :class:`jpose.datasets.h36m_videopose3d.PickleNotAllowedError` is raised before
    anything is unpickled.
    """

    name = "h36m"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: poses, videopose3d_* and images configs."}
    BUILDER_CONFIGS = [
        H36MConfig(name="poses", kind="poses", description=(
            "Raw release CDF poses, one example per (subject, sequence, camera).")),
        _vp3d_config("gt", "h36m_17"),
        _vp3d_config("cpn_ft_h36m_dbb", "h36m_17"),
        _vp3d_config("detectron_pt_coco", "coco_17"),
        _vp3d_config("sh_ft_h36m", "mpii_16"),
        H36MConfig(name="images", kind="images", frame_step=5, crop_size=256,
                   description="Person crops (256 px JPEG) of every 5th video frame (10 fps)."),
    ]
    DEFAULT_CONFIG_NAME = "poses"
    DESCRIPTION = (_COMMON_DESCRIPTION + _POSES_DESCRIPTION + _VP3D_DESCRIPTION
                   + _IMAGES_DESCRIPTION)
    HOMEPAGE = "http://vision.imar.ro/human3.6m"
    CITATION = _CITATION
    MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL

    def __init__(self, *, allow_pickle: bool = False, **kwargs: Any):
        if not isinstance(allow_pickle, (bool, np.bool_)):
            raise ValueError(f"allow_pickle: expected a bool, got {allow_pickle!r}.")
        self._allow_pickle = bool(allow_pickle)
        super().__init__(**kwargs)

    # ----------------------------------------------------------------------------------
    # Features.

    def _features(self) -> tfds.features.FeaturesDict:
        config = self.builder_config
        if config.kind == "images":
            return self._image_features(config)
        vp3d = config.kind == "videopose3d"
        features = {
            "subject": _text("subject, 'S1'...'S11'"),
            "sequence": _text("file base name, e.g. 'Directions 1'"),
            "action": _text("action class (h36m_videopose3d.H36M_ACTION_CLASSES)"),
            "subaction": _i32((), "sub-action, 1 or 2 (metadata.xml name table)"),
            "camera_index": _i32((), "camera index 0..3"),
            "camera_id": _text("camera id, e.g. '54138969'"),
            "fps": _f32((), "frames per second (50)"),
            "positions_world": _f32((None, 17, 3), "(F, 17, 3) world frame, metres, h36m_17"),
            "positions_camera": _f32((None, 17, 3),
                                     "(F, 17, 3) camera frame R (x - centre), metres, h36m_17"),
            "keypoints_2d": _f32((None, 17, 2), "(F, 17, 2) pixels of the original image, "
                                 "h36m_17" + ("; the 2D file's keypoints converted by joint "
                                              "name" if vp3d else "")),
            "positions_world_full": _f32((None, 32, 3), "(F, 32, 3) world frame, metres, h36m_32"),
            "positions_camera_full": _f32((None, 32, 3),
                                          "(F, 32, 3) camera frame, metres, h36m_32"),
            "keypoints_2d_full": _f32((None, 32, 2), "(F, 32, 2) pixels, h36m_32"
                                      + ("; projection of the 3D truth" if vp3d else "")),
            "valid": tfds_build.tensor_feature((None,), np.bool_, "(F,) frame validity (all True)"),
            "activity": _i32((None,), "(F,) activity id (zeros: Human3.6M has none per frame)"),
            "camera": _camera_feature("(width, height) of the original images, pixels"),
            "keypoints_source": _text("the VideoPose3D 2D file name" if vp3d else
                                      "keypoints_2d from 'D2_Positions' or 'projected'"),
            "positions_camera_source": _text(
                "'D3_Positions_mono' (the file) or 'computed' (world + camera)"),
        }
        if vp3d:
            num = {"h36m_17": 17, "coco_17": 17, "mpii_16": 16}[config.keypoints_layout]
            features["keypoints_layout"] = _text("jpose layout of keypoints_2d_source")
            features["keypoints_2d_source"] = _f32(
                (None, num, 2), f"(F, {num}, 2) the 2D file's keypoints, pixels, "
                f"{config.keypoints_layout}")
        return tfds.features.FeaturesDict(features)

    def _image_features(self, config: H36MConfig) -> tfds.features.FeaturesDict:
        s = config.crop_size
        return tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(s, s, 3), encoding_format="jpeg",
                                         doc=f"{s}x{s} RGB crop around the person"),
            "box": _f32((4,), "square crop box (x0, y0, x1, y1), original image pixels"),
            "keypoints_2d": _f32((17, 2), "(17, 2) crop pixels, h36m_17"),
            "positions_camera": _f32((17, 3), "(17, 3) camera frame, metres, h36m_17"),
            "positions_world": _f32((17, 3), "(17, 3) world frame, metres, h36m_17"),
            "camera": _camera_feature("(width, height) of the decoded video frames, pixels"),
            "frame_index": _i32((), "0-based frame index in the video and the pose files"),
            "subject": _text("subject, 'S1'...'S11'"),
            "sequence": _text("file base name, e.g. 'Directions 1'"),
            "action": _text("action class"),
            "subaction": _i32((), "sub-action, 1 or 2"),
            "camera_index": _i32((), "camera index 0..3"),
            "camera_id": _text("camera id, e.g. '54138969'"),
            "keypoints_source": _text("'D2_Positions' or 'projected'"),
        })

    # ----------------------------------------------------------------------------------
    # Splits and examples.

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        config = self.builder_config
        if config.kind == "videopose3d":
            per_subject = raw.load_videopose3d(root, config.source_2d,
                                               allow_pickle=self._allow_pickle,
                                               expected_layout=config.keypoints_layout)
            return {s: self._generate_listed(examples) for s, examples in per_subject.items()}
        subjects = raw.check_release(root, videos=config.kind == "images")
        cameras = raw.load_cameras(root)
        if config.kind == "images":
            return {s: self._generate_images(root, s, cameras) for s in subjects}
        return {s: self._generate_examples(root, s, cameras) for s in subjects}

    def _generate_examples(self, root, subject, cameras):
        """Config ``poses``: examples of one subject."""
        for ex in raw.load_subject(root, subject, cameras):
            yield _key(ex), _pose_example(ex)

    def _generate_listed(self, examples):
        """Configs ``videopose3d_*``: one subject's examples (computed as consumed)."""
        for ex in examples:
            out = _pose_example(ex)
            out["keypoints_layout"] = ex["keypoints_layout"]
            out["keypoints_2d_source"] = ex["keypoints_2d_source"]
            yield _key(ex), out

    def _generate_images(self, root, subject, cameras):
        """Config ``images``: crops of every ``frame_step``-th frame of one subject's videos."""
        step = self.builder_config.frame_step
        for ex in raw.load_subject(root, subject, cameras):
            num = len(ex["keypoints_2d"])
            wanted = range(0, num, step)
            path = os.path.join(root, raw.video_path(subject, ex["sequence"], ex["camera_id"]))
            got = 0
            frames = video_frames.read_frames(path, wanted)
            while True:
                try:
                    index, frame = next(frames)
                except StopIteration:
                    break
                except Exception as e:  # noqa: BLE001 - PyAV/FFmpeg decoding errors
                    # VideoPose3D reports a corrupted video in the release (S11
                    # 'Directions'): keep the frames decoded so far, don't fail the build.
                    _LOG.warning("%s: decoding stopped after %d frame(s) (%s: %s); the rest "
                                 "of this video is skipped.", path, got, type(e).__name__, e)
                    break
                got += 1
                example = self._crop_example(ex, index, frame)
                if example is not None:
                    yield f"{_key(ex)}/{index:06d}", example
            if got < len(wanted):
                _LOG.info("%s: %d of %d wanted frames present (video shorter than the poses).",
                          path, got, len(wanted))

    def _crop_example(self, ex, index: int, frame: np.ndarray) -> dict[str, Any] | None:
        size = self.builder_config.crop_size
        kp = ex["keypoints_2d"][index]
        box = image_crops.square_box(image_crops.box_from_keypoints(kp), scale=1.25)
        if not np.all(np.isfinite(box)):
            return None
        crop = image_crops.crop_and_resize(frame, box, size)
        camera = dict(ex["camera"])
        camera["image_size"] = np.asarray((frame.shape[1], frame.shape[0]), np.float32)
        return {
            "image": image_crops.encode_image(crop, format="JPEG"),
            "box": box.astype(np.float32),
            "keypoints_2d": image_crops.to_crop(kp, box, size).astype(np.float32),
            "positions_camera": ex["positions_camera"][index],
            "positions_world": ex["positions_world"][index],
            "camera": camera,
            "frame_index": np.int32(index),
            "subject": ex["subject"],
            "sequence": ex["sequence"],
            "action": ex["action"],
            "subaction": np.int32(ex["subaction"]),
            "camera_index": np.int32(ex["camera_index"]),
            "camera_id": ex["camera_id"],
            "keypoints_source": ex["keypoints_source"],
        }


def _key(ex: dict[str, Any]) -> str:
    return f"{ex['subject']}/{ex['sequence']}/{ex['camera_id']}"


def _pose_example(ex: dict[str, Any]) -> dict[str, Any]:
    num = len(ex["positions_world"])
    return {
        "subject": ex["subject"],
        "sequence": ex["sequence"],
        "action": ex["action"],
        "subaction": np.int32(ex["subaction"]),
        "camera_index": np.int32(ex["camera_index"]),
        "camera_id": ex["camera_id"],
        "fps": np.float32(raw.FPS),
        "positions_world": ex["positions_world"],
        "positions_camera": ex["positions_camera"],
        "keypoints_2d": ex["keypoints_2d"],
        "positions_world_full": ex["positions_world_full"],
        "positions_camera_full": ex["positions_camera_full"],
        "keypoints_2d_full": ex["keypoints_2d_full"],
        "valid": np.ones((num,), np.bool_),
        "activity": np.zeros((num,), np.int32),
        "camera": ex["camera"],
        "keypoints_source": ex["keypoints_source"],
        "positions_camera_source": ex["positions_camera_source"],
    }
