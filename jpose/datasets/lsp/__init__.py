"""TFDS builder for Leeds Sports Pose (LSP), LSP-extended (LSPET) and LSP relative depth.

Build (raw files laid out as in :attr:`Builder.MANUAL_DOWNLOAD_INSTRUCTIONS`)::

    python launch/prepare_data.py --dataset=lsp --manual_dir=<raw> --data_dir=<out> --config=lsp
    python launch/prepare_data.py --dataset=lsp --manual_dir=<raw> --data_dir=<out> --config=lspet

which calls ``tfds_build.build("lsp", manual_dir=..., data_dir=..., config=...)``. The
reading is in :mod:`jpose.datasets.lsp.raw`; :mod:`jpose.datasets.lsp.fake_raw` writes a
fake release in the same format.

The LSP images carry Ronchi et al.'s (BMVC 2018) crowd-sourced relative-depth pairs used
for weak 3D supervision; both configs share one feature set (LSPET examples have empty
depth arrays) so that a pipeline can mix them.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from jpose.datasets import tfds_build
from jpose.datasets.lsp import raw

__all__ = ["Builder"]

_J = len(raw.LSP_JOINT_NAMES)
_ORDER = ", ".join(raw.LSP_JOINT_NAMES)


class Builder(tfds_build.PoseDatasetBuilder, skip_registration=True):
    """LSP (2000 images: train = first half, test = second) and LSPET (10,000, train)."""

    name = "lsp"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "LSP + LSPET images and 14 joints (lsp_14), visibility normalised to "
                 "True = visible; LSP relative-depth pairs of Ronchi et al. mapped by name.",
    }
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(
            name="lsp", description="Leeds Sports Pose: splits train (im0001-im1000) and "
                                    "test (im1001-im2000), with relative depth if present."),
        tfds.core.BuilderConfig(
            name="lspet", description="LSP-extended: split train (im00001-im10000), no depth."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Unzip lsp_dataset.zip and lspet_dataset.zip (http://sam.johnson.io/research/lsp.html) into
manual_dir, and optionally put Ronchi et al.'s relative_depth_lsp_v1.json there (or the
released relative_depth_lsp_v1.zip as downloaded; https://data.caltech.edu/records/20096):

  <manual_dir>/lsp_dataset/joints.mat            joints (3, 14, N), N = 2000
  <manual_dir>/lsp_dataset/images/im0001.jpg ... im2000.jpg
  <manual_dir>/lspet_dataset/joints.mat          joints (14, 3, N), N = 10000
  <manual_dir>/lspet_dataset/images/im00001.jpg ... im10000.jpg
  <manual_dir>/relative_depth_lsp_v1.json        (optional; or relative_depth_lsp_v1.zip)

Config 'lsp' needs only lsp_dataset/, config 'lspet' only lspet_dataset/. The image
counts are taken from joints.mat and every image it implies must exist.
"""
    DESCRIPTION = f"""\
Leeds Sports Pose (LSP, Johnson & Everingham 2010) and LSP-extended (LSPET, 2011):
single-person sports images with 14 2D joints, and for LSP the relative-depth pairs of
Ronchi et al. (BMVC 2018).

* Joints: jpose layout 'lsp_14' ({_ORDER}), the order of both joints.mat files.
  Left/right as labelled in the release (observer- vs person-centric: unconfirmed).
* keypoints_2d: pixels of the original image, x right, y down, centre of the top-left
  pixel at (0, 0): the stored MATLAB (1-based) values minus 1.
* visible: True = visible (not occluded). Raw LSP flags 0 = visible, raw LSPET flags
  1 = visible; both are normalised to this one meaning.
* Splits: config 'lsp' train = the first N // 2 images (im0001-im1000 of the real 2000),
  test = the rest; config 'lspet' train = all (10,000).
* Relative depth (config 'lsp', when relative_depth_lsp_v1.json/.zip is present):
  depth_pairs (K, 2) are lsp_14 joint indices (the file's joint_names are mapped by name;
  'nose' is LSP's head_top); depth_closer[k] in {{0, 1}} is the index into
  depth_pairs[k] of the joint closer to the camera (smaller depth, camera z forward;
  the file's label 0 => kp0 closer). Images are matched by their imNNNN.jpg name; the
  file's is_train must agree with the split. depth_keypoints_agree is False when the
  file's keypoints differ from joints.mat by more than {raw.KEYPOINT_AGREEMENT_PX:g} px
  (another LSP label version); the pairs are kept either way.
"""
    HOMEPAGE = "http://sam.johnson.io/research/lsp.html"
    CITATION = """\
@inproceedings{johnson2010clustered,
  title={Clustered Pose and Nonlinear Appearance Models for Human Pose Estimation},
  author={Johnson, Sam and Everingham, Mark},
  booktitle={British Machine Vision Conference (BMVC)}, year={2010}}
@inproceedings{johnson2011learning,
  title={Learning Effective Human Pose Estimation from Inaccurate Annotation},
  author={Johnson, Sam and Everingham, Mark},
  booktitle={Computer Vision and Pattern Recognition (CVPR)}, year={2011}}
@inproceedings{ronchi2018relative,
  title={It's all Relative: Monocular 3D Human Pose Estimation from Weakly Supervised Data},
  author={Ronchi, Matteo Ruggero and Mac Aodha, Oisin and Eng, Robert and Perona, Pietro},
  booktitle={British Machine Vision Conference (BMVC)}, year={2018}}
"""

    def _features(self) -> tfds.features.FeaturesDict:
        return tfds.features.FeaturesDict({
            "image": tfds.features.Image(
                shape=(None, None, 3), encoding_format="jpeg",
                doc="The release's JPEG, bytes unchanged (RGB, uint8 once decoded)."),
            "image_id": tfds.features.Text(doc="File stem, e.g. 'im0001' (LSP) or 'im00001' (LSPET)."),
            "image_size": tfds_build.tensor_feature(
                (2,), np.int32, "(width, height) of the image in pixels, read from the JPEG."),
            "keypoints_2d": tfds_build.tensor_feature(
                (_J, 2), np.float32, "2D joints, lsp_14 order, pixels (x right, y down, top-left "
                "pixel centre at (0, 0): the 1-based MATLAB labels minus 1)."),
            "visible": tfds_build.tensor_feature(
                (_J,), np.bool_, "True = joint visible (not occluded), lsp_14 order; raw LSP "
                "flag 0 and raw LSPET flag 1 both map to True."),
            "depth_pairs": tfds_build.tensor_feature(
                (None, 2), np.int32, "Relative-depth joint pairs (K, 2), lsp_14 indices (Ronchi "
                "et al.; mapped by joint name, 'nose' = head_top); K = 0 without depth."),
            "depth_closer": tfds_build.tensor_feature(
                (None,), np.int32, "(K,) index 0 or 1 into depth_pairs[k] of the joint closer "
                "to the camera (smaller depth); = the file's label."),
            "depth_risk": tfds_build.tensor_feature(
                (None,), np.float32, "(K,) crowd-agreement 'risk' of each pair, as released."),
            "depth_prob": tfds_build.tensor_feature(
                (None,), np.float32, "(K,) crowd-agreement 'prob' of each pair, as released."),
            "has_depth": tfds_build.tensor_feature(
                (), np.bool_, "True when the relative-depth file lists this image (K may be 0)."),
            "depth_keypoints_agree": tfds_build.tensor_feature(
                (), np.bool_, "True when has_depth and the depth file's 14 keypoints lie within "
                f"{raw.KEYPOINT_AGREEMENT_PX:g} px of joints.mat (same LSP label version)."),
        })

    def _split_generators(self, dl_manager):
        splits = raw.read_config(dl_manager.manual_dir, self.builder_config.name)
        return {name: self._generate_examples(records) for name, records in splits.items()}

    def _generate_examples(self, records):
        for record in records:
            yield record["image_id"], raw.example(record)
