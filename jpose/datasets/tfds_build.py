"""TFDS builders without TensorFlow: one base class, one ``build`` and one ``load``.

Each raw release (``shared/DATASET_FORMATS.md``) has a builder in
``jpose/datasets/<name>/`` that reads the files from a **manual directory** (the
releases need a licence or a sign-up, so nothing is downloaded) and writes a versioned
TFDS dataset in **array_record** format::

    <data_dir>/<name>/<config>/<version>/<name>-<split>.array_record-0000k-of-0000n
                                         dataset_info.json, features.json

array_record files give O(1) random access by index, which grain reads
deterministically on one host or many (:func:`load` returns the random-access source).

Why TFDS without TensorFlow: TFDS 4.9 serialises examples with its own protobuf code
and writes array_record natively; images are given to it already **encoded** (JPEG or
PNG bytes, which needs no TensorFlow; a NumPy image would call ``tf.image``) and are
decoded on read with PIL. Text features read back as ``bytes``.

Builders subclass :class:`PoseDatasetBuilder` with ``skip_registration=True``: they are
looked up through :data:`BUILDERS`, never through TFDS's global registry, so their
names cannot clash with TFDS's own catalogue and re-imports in tests are harmless.

Interrupted builds: TFDS writes into ``incomplete.XXXXXX_<version>/`` and renames it to
``<version>/`` only after every split is written, so a dataset that looks complete
*is* complete. An exception removes the temporary directory; a killed process can
leave one behind, and :func:`build` deletes such leftovers before starting, so a second
build restarts cleanly. ``restart=True`` also rebuilds a complete dataset; the old build
is kept aside until the new one is complete and restored if the rebuild fails.
"""

from __future__ import annotations

import abc
import dataclasses
import glob
import importlib
import logging
import os
import shutil
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from jpose.camera import CAMERA_FIELD_SHAPES
from jpose.datasets.raw_files import MissingRawFilesError

__all__ = [
    "BUILDERS",
    "PoseDatasetBuilder",
    "builder_class",
    "build",
    "load",
    "tensor_feature",
    "camera_feature",
    "derived_config",
    "video_pose_features",
]

#: Dataset name -> module defining its ``Builder`` class.
BUILDERS: dict[str, str] = {
    "h36m": "jpose.datasets.h36m",
    "mpi_inf_3dhp": "jpose.datasets.mpi_inf_3dhp",
    "sub_jhmdb": "jpose.datasets.sub_jhmdb",
    "penn_action": "jpose.datasets.penn_action",
    "lsp": "jpose.datasets.lsp",
}


class PoseDatasetBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of jpose's builders: array_record, manual directory, documented features.

    Subclasses set ``name``, ``VERSION``, ``RELEASE_NOTES``, ``BUILDER_CONFIGS`` (if
    any), ``DESCRIPTION`` (units, frames, joint layouts), ``HOMEPAGE``, ``CITATION``,
    ``MANUAL_DOWNLOAD_INSTRUCTIONS`` and implement :meth:`_features`,
    ``_split_generators`` and ``_generate_examples``.
    """

    DESCRIPTION: str = ""
    HOMEPAGE: str = ""
    CITATION: str = ""

    def __init__(self, *, file_format: str = "array_record", **kwargs: Any):
        super().__init__(file_format=file_format, **kwargs)

    @abc.abstractmethod
    def _features(self) -> tfds.features.FeaturesDict:
        """The dataset's features, each documented (units, frame, joint layout)."""

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=self._features(),
            homepage=self.HOMEPAGE or None,
            citation=self.CITATION or None,
        )


def tensor_feature(shape, dtype, doc: str) -> tfds.features.Tensor:
    """A ``Tensor`` feature with its documentation (say units, frame and layout)."""
    return tfds.features.Tensor(shape=shape, dtype=dtype, doc=doc)


_CAMERA_DOCS = {
    "rotation": "world-to-camera rotation R: x_cam = R (x_world - centre)",
    "centre": "camera centre in the world frame, metres",
    "focal": "focal lengths (fx, fy), pixels",
    "principal": "principal point (cx, cy), pixels",
    "radial": "radial distortion (k1, k2, k3), Human3.6M model",
    "tangential": "tangential distortion (p1, p2), Human3.6M stored order",
    "image_size": "(width, height) of the original images, pixels",
}


def camera_feature(**docs: str) -> tfds.features.FeaturesDict:
    """The ``camera`` feature: the :class:`jpose.camera.CameraParams` fields, float32.

    ``docs`` replaces the documentation of fields (e.g. how a dataset obtains them).
    """
    unknown = set(docs) - set(_CAMERA_DOCS)
    if unknown:
        raise ValueError(f"docs: unknown camera fields {sorted(unknown)}")
    return tfds.features.FeaturesDict(
        {k: tensor_feature(shape, np.float32, docs.get(k, _CAMERA_DOCS[k]))
         for k, shape in CAMERA_FIELD_SHAPES.items()},
        doc="the camera of this example (jpose.camera.CameraParams fields)")


def video_pose_features(*, num_joints: int, layout: str, encoding: str,
                        image_size_doc: str = "(width, height) of the frames in pixels"
                        ) -> dict[str, tfds.features.FeatureConnector]:
    """``frames``, ``keypoints_2d`` and ``image_size`` of a 2D video-pose clip (Sub-JHMDB,
    Penn Action): the release's image files stored byte for byte, joints in 0-based pixels
    converted from MATLAB's 1-based ones."""
    return {
        "frames": tfds.features.Sequence(
            tfds.features.Image(encoding_format=encoding),
            doc=f"(T, H, W, 3) uint8 RGB frames; stored as the release's {encoding.upper()} bytes."),
        "keypoints_2d": tensor_feature(
            (None, num_joints, 2), np.float32,
            f"(T, {num_joints}, 2) image pixels (x right, y down, top-left pixel centre (0, 0); "
            f"raw MATLAB values minus 1), joint layout {layout}."),
        "image_size": tensor_feature((2,), np.int32, image_size_doc + "."),
    }


def builder_class(name: str) -> type[PoseDatasetBuilder]:
    """The builder class of dataset ``name`` (one of :data:`BUILDERS`)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(BUILDERS)}")
    return importlib.import_module(BUILDERS[name]).Builder


def derived_config(name: str, base: str, **fields: Any) -> tfds.core.BuilderConfig:
    """A variant of config ``base`` of dataset ``name`` with some fields changed.

    E.g. ``derived_config("h36m", "images", frame_step=2, crop_size=224)`` (25 fps,
    224-pixel crops), named ``images_crop_size224_frame_step2`` so that it is built into
    its own directory. Pass the returned config as ``config=`` to :func:`build` and
    :func:`load`.
    """
    cls = builder_class(name)
    configs = {c.name: c for c in (cls.BUILDER_CONFIGS or ())}
    if base not in configs:
        raise ValueError(f"config: {name} has no config {base!r}; known: {sorted(configs)}")
    cfg = configs[base]
    known = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"fields: {name}'s config {base!r} has no fields {unknown}")
    if not fields:
        return cfg
    suffix = "_".join(f"{k}{v}" for k, v in sorted(fields.items()))
    return dataclasses.replace(cfg, name=f"{base}_{suffix}", **fields)


def _remove_incomplete(builder: tfds.core.DatasetBuilder) -> None:
    """Deletes ``incomplete.*`` directories a killed build of this version left behind."""
    version_dir = os.fspath(builder.data_path)
    parent, version = os.path.split(version_dir.rstrip("/"))
    for stale in glob.glob(os.path.join(parent, f"incomplete.*_{version}")):
        logging.warning("removing the unfinished build %s", stale)
        shutil.rmtree(stale, ignore_errors=True)


def build(name: str, *, manual_dir: str, data_dir: str,
          config: str | tfds.core.BuilderConfig | None = None,
          restart: bool = False, progress: bool = True, num_shards: int | None = None,
          **builder_kwargs: Any) -> PoseDatasetBuilder:
    """Builds dataset ``name`` from the raw files in ``manual_dir`` into ``data_dir``.

    Args:
      name: one of :data:`BUILDERS`.
      manual_dir: the directory holding the raw release (layout: the builder's docs).
      data_dir: where TFDS datasets live.
      config: builder config name (``None``: the builder's default), or a config from
        :func:`derived_config`.
      restart: rebuild even if a complete dataset of this version exists.
      progress: TFDS's progress bars (examples per split).
      num_shards: force this many array_record shards per split (default: TFDS's
        size-based choice).
      **builder_kwargs: passed to the builder (e.g. ``allow_pickle`` for Human3.6M's
        VideoPose3D files).

    Returns:
      The prepared builder (``builder.as_data_source(split)`` reads it).
    """
    if not os.path.isdir(manual_dir):
        raise FileNotFoundError(f"{name}: manual_dir {manual_dir!r} is not a directory")
    cls = builder_class(name)
    if not os.listdir(manual_dir):
        raise MissingRawFilesError(name, manual_dir, ["(the raw release: the directory is empty)"],
                                   cls.MANUAL_DOWNLOAD_INSTRUCTIONS or "")
    builder = cls(data_dir=data_dir, config=config, **builder_kwargs)
    _remove_incomplete(builder)
    download_config = tfds.download.DownloadConfig(
        manual_dir=manual_dir, download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS,
        num_shards=num_shards)
    tfds.display_progress_bar(progress)
    version_dir = os.fspath(builder.data_path).rstrip("/")
    previous = None
    if restart and os.path.isdir(version_dir):
        # TFDS's own overwrite modes delete the old build *before* generating; keep it
        # aside instead and put it back if the rebuild fails.
        previous = f"{version_dir}.previous"
        shutil.rmtree(previous, ignore_errors=True)
        os.rename(version_dir, previous)
        builder = cls(data_dir=data_dir, config=config, **builder_kwargs)
    try:
        builder.download_and_prepare(download_config=download_config)
    except BaseException:
        if previous is not None and not os.path.isdir(version_dir):
            os.rename(previous, version_dir)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return builder


def load(name: str, *, data_dir: str, split: str,
         config: str | tfds.core.BuilderConfig | None = None):
    """Random-access source (``len``, ``__getitem__``) over a built split, for grain.

    Raises ``FileNotFoundError`` naming the expected directory when it was not built.
    """
    cls = builder_class(name)
    builder = cls(data_dir=data_dir, config=config)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"{name}: no complete build at {os.fspath(builder.data_path)}; run "
            f"launch/prepare_data.py --dataset={name} --manual_dir=<raw dir> --data_dir={data_dir}")
    return builder.as_data_source(split=split)
