"""Penn Action as a TFDS dataset: 2326 video sequences with 13 2D joints per frame.

Build (the release is read from a manual directory)::

    python launch/prepare_data.py --dataset=penn_action --manual_dir=<Penn_Action> --data_dir=<out>

which calls ``tfds_build.build("penn_action", manual_dir=..., data_dir=...)``. Raw
reading (and its conventions) is in :mod:`jpose.datasets.penn_action.raw`; a fake
release for tests and benchmarks in :mod:`jpose.datasets.penn_action.fake_raw`.

One example per sequence, keyed by its 4-digit number; splits ``train`` / ``test``
from the labels' ``train`` field (1 / -1).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from jpose.datasets import tfds_build
from jpose.datasets.penn_action import raw

__all__ = ["Builder"]

_DESCRIPTION = """\
Penn Action (Zhang, Zhu and Derpanis, ICCV 2013): 2326 video sequences of 15 actions
with 13 annotated 2D joints, a visibility flag and a person box per frame. One
example per sequence; the official train/test split.

Coordinates: 2D image pixels, x right, y down, the centre of the top-left pixel at
(0, 0). The raw labels are MATLAB image coordinates (top-left pixel centre at (1, 1)),
so 1 is subtracted from x, y and bbox. Joint layout: jpose `penn_action_13` (head,
left_shoulder, right_shoulder, left_elbow, right_elbow, left_wrist, right_wrist,
left_hip, right_hip, left_knee, right_knee, left_ankle, right_ankle), the raw order.
`box` is the release's bbox as (x0, y0, x1, y1) (corners sorted per row, as the column
order is unconfirmed); where the release lacks a bbox row (sequences 1154 and 1865,
last frame) the previous row is repeated and `box_valid` is False. Frames are the
release's JPEG files, byte for byte.
"""


class Builder(tfds_build.PoseDatasetBuilder, skip_registration=True):
    """Penn Action: JPEG frames, 2D joints (pixels, ``penn_action_13``), boxes."""

    name = "penn_action"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: one example per sequence, train/test."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download Penn_Action.tar.gz from http://dreamdragon.github.io/PennAction/ and unpack;
manual_dir is the Penn_Action/ folder:

  manual_dir/
    frames/0001/000001.jpg, 000002.jpg, ...   (4-digit sequence, 6-digit 1-based frame)
    labels/0001.mat ... labels/2326.mat
"""
    DESCRIPTION = _DESCRIPTION
    HOMEPAGE = "http://dreamdragon.github.io/PennAction/"
    CITATION = """\
@inproceedings{zhang2013actemes,
  title = {From Actemes to Action: A Strongly-supervised Representation for Detailed Action Understanding},
  author = {Zhang, Weiyu and Zhu, Menglong and Derpanis, Konstantinos G.},
  booktitle = {International Conference on Computer Vision (ICCV)},
  pages = {2248--2255},
  year = {2013}
}"""

    def _features(self) -> tfds.features.FeaturesDict:
        j = raw.NUM_JOINTS
        return tfds.features.FeaturesDict({
            **tfds_build.video_pose_features(
                num_joints=j, layout="penn_action_13", encoding="jpeg",
                image_size_doc="(width, height) of the frames in pixels (from 'dimensions')"),
            "visible": tfds_build.tensor_feature(
                (None, j), np.bool_, "(T, 13) the release's visibility flag, penn_action_13."),
            "box": tfds_build.tensor_feature(
                (None, 4), np.float32,
                "(T, 4) person box (x0, y0, x1, y1) in image pixels (raw bbox minus 1)."),
            "box_valid": tfds_build.tensor_feature(
                (None,), np.bool_,
                "(T,) False where the release has no bbox row (the box repeats the previous row)."),
            "action": tfds.features.Text(doc="action class, e.g. 'tennis_serve'."),
            "view": tfds.features.Text(doc="coarse camera view, the raw 'pose' field, e.g. 'back'."),
            "sequence": tfds.features.Text(doc="4-digit sequence number, e.g. '0001'."),
        })

    def _split_generators(self, dl_manager):
        root = dl_manager.manual_dir
        members: dict[str, list[str]] = {s: [] for s in raw.SPLITS}
        # Read and check every label against its frames before writing anything.
        for seq in raw.index_release(root):
            label, _ = raw.check_sequence(root, seq)
            members["train" if label["train"] else "test"].append(seq)
        return {split: self._generate_examples(root, members[split]) for split in raw.SPLITS}

    def _generate_examples(self, root, seqs):
        for seq in seqs:
            s = raw.read_sequence(root, seq)
            yield seq, {name: s[name] for name in self.info.features}
