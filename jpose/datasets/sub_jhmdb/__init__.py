"""Sub-JHMDB as a TFDS dataset: video clips with 15 2D joints per frame.

Build (the release needs a sign-up, so it is read from a manual directory)::

    python launch/prepare_data.py --dataset=sub_jhmdb --manual_dir=<raw> --data_dir=<out>

which calls ``tfds_build.build("sub_jhmdb", manual_dir=..., data_dir=...)``. Raw reading
(and its conventions) is in :mod:`jpose.datasets.sub_jhmdb.raw`; a fake release for
tests and benchmarks in :mod:`jpose.datasets.sub_jhmdb.fake_raw`.

One example per clip, in the splits of each of the three official train/test splits
(``train1``/``test1``, ``train2``/``test2``, ``train3``/``test3``; a clip is in one split
of each pair). Keys are ``"<class>/<video>"``.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from jpose.datasets import tfds_build
from jpose.datasets.sub_jhmdb import raw

__all__ = ["Builder"]

_DESCRIPTION = """\
Sub-JHMDB (Jhuang et al., ICCV 2013): the JHMDB clips whose 15 puppet joints are all
in the frame, with the official three train/test splits. One example per clip.

Coordinates: 2D image pixels, x right, y down, the centre of the top-left pixel at
(0, 0). The raw `pos_img` values are MATLAB image coordinates (top-left pixel centre at
(1, 1)); 1 is subtracted. Joint layout: jpose `jhmdb_15` (neck, belly, head(face),
right_shoulder, left_shoulder, right_hip, left_hip, right_elbow, left_elbow,
right_knee, left_knee, right_wrist, left_wrist, right_ankle, left_ankle), the raw
order. The raw data have no visibility flag: `visible` marks joints on the image area
[-0.5, W-0.5] x [-0.5, H-0.5]. `box` is the extent (outer pixel edges) of the puppet
mask where the mask exists and is non-empty for the frame (`box_source` 0), else the
tight box around the visible joints (`box_source` 1). Frames are the release's PNG
files, byte for byte.
"""


class Builder(tfds_build.PoseDatasetBuilder, skip_registration=True):
    """Sub-JHMDB: PNG frames, 2D joints (pixels, ``jhmdb_15``), boxes, splits 1-3."""

    name = "sub_jhmdb"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: one example per clip, splits train/test 1-3."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download JHMDB from http://jhmdb.is.tue.mpg.de/ (joint positions, puppet masks,
renamed images and the Sub-JHMDB splits) and unpack into manual_dir:

  manual_dir/
    Rename_Images/<class>/<video>/00001.png, 00002.png, ...
    joint_positions/<class>/<video>/joint_positions.mat
    puppet_mask/<class>/<video>/puppet_mask.mat      (optional; boxes from joints otherwise)
    sub_splits/<class>_test_split_1.txt, _2.txt, _3.txt

Classes are those with sub_splits files; each split file lists '<video>.avi 1|2'
(1 = train, 2 = test).
"""
    DESCRIPTION = _DESCRIPTION
    HOMEPAGE = "http://jhmdb.is.tue.mpg.de/"
    CITATION = """\
@inproceedings{Jhuang:ICCV:2013,
  title = {Towards understanding action recognition},
  author = {H. Jhuang and J. Gall and S. Zuffi and C. Schmid and M. J. Black},
  booktitle = {International Conference on Computer Vision (ICCV)},
  pages = {3192--3199},
  year = {2013}
}"""

    def _features(self) -> tfds.features.FeaturesDict:
        j = raw.NUM_JOINTS
        return tfds.features.FeaturesDict({
            **tfds_build.video_pose_features(num_joints=j, layout="jhmdb_15", encoding="png"),
            "visible": tfds_build.tensor_feature(
                (None, j), np.bool_,
                "(T, 15) joint lies on the image area [-0.5, W-0.5] x [-0.5, H-0.5] "
                "(the raw data have no visibility flag), jhmdb_15."),
            "box": tfds_build.tensor_feature(
                (None, 4), np.float32,
                "(T, 4) person box (x0, y0, x1, y1) in image pixels: puppet-mask extent "
                "(outer pixel edges) or tight box of the visible joints, see box_source."),
            "box_source": tfds_build.tensor_feature(
                (None,), np.int32, "(T,) 0 = box from the puppet mask, 1 = from the joints."),
            "scale": tfds_build.tensor_feature(
                (None,), np.float32, "(T,) the release's per-frame puppet scale (unitless)."),
            "viewpoint": tfds.features.Text(doc="camera viewpoint, compass code (E, ENE, ... WSW)."),
            "action": tfds.features.Text(doc="action class, e.g. 'catch'."),
            "video": tfds.features.Text(doc="video name (the split files' name without .avi)."),
        })

    def _split_generators(self, dl_manager):
        root = dl_manager.manual_dir
        release = raw.index_release(root)
        # Check every clip's annotation against its frames before writing anything.
        for key in release.clips:
            raw.check_clip(root, key)
        return {split: self._generate_examples(root, release.splits[split])
                for split in raw.SPLITS}

    def _generate_examples(self, root, keys):
        for key in keys:
            clip = raw.read_clip(root, key)
            yield key, {name: clip[name] for name in self.info.features}
