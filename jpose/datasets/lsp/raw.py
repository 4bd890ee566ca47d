"""Reading the LSP / LSP-extended releases and Ronchi et al.'s relative-depth JSON.

Plain functions returning NumPy values, testable without TFDS (the builder in
``jpose.datasets.lsp`` only maps them to features). Formats: ``shared/DATASET_FORMATS.md``
section 6.

Conventions of everything returned here:

* Joints in jpose layout ``lsp_14`` (right_ankle, right_knee, right_hip, left_hip,
  left_knee, left_ankle, right_wrist, right_elbow, right_shoulder, left_shoulder,
  left_elbow, left_wrist, neck, head_top): the order of both ``joints.mat`` files, so
  they are copied as they are.
* 2D keypoints in **pixels**, x right, y down, **centre of the top-left pixel at (0, 0)**
  (``image_crops.py``). LSP was annotated in MATLAB, whose image coordinates put the
  top-left pixel centre at (1, 1), so **1 is subtracted** from the stored x and y (the
  same shift is applied to the keypoints of the relative-depth JSON, which copies the
  LSP labels; their agreement is checked on the raw values, so it does not depend on
  this choice).
* ``visible`` is True for a **visible (not occluded)** joint. The two releases store
  opposite flags: LSP ``joints(3, j, i) == 0`` means visible (so ``visible = flag == 0``),
  LSPET ``joints(j, 3, i) == 1`` means visible (``visible = flag == 1``). Flags other
  than 0 and 1 are rejected, as the normalisation would be ambiguous.
* Image counts come from ``joints.mat`` (the real releases have 2000 LSP and 10,000
  LSPET images); the LSP train split is the first ``N // 2`` images (im0001-im1000 in the
  real release), the test split the rest; LSPET is all train.

Relative depth (Ronchi et al., BMVC 2018), ``relative_depth_lsp_v1.json`` (or the
released ``relative_depth_lsp_v1.zip`` holding it): pairs are re-indexed from the file's
``joint_names`` order to ``lsp_14`` **by name** (:data:`DEPTH_NAME_TO_LSP`; ``nose`` stands
for LSP's head top), and images are matched to LSP images by their ``imNNNN.jpg`` file
name, never by list position. A pair ``(a, b)`` with label ``l`` means joint
``(a, b)[l]`` is **closer to the camera** (smaller depth, camera z forward): label 0 =>
``kp0`` closer.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import types
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jpose import skeleton
from jpose.datasets import raw_files

__all__ = [
    "LSP_JOINT_NAMES",
    "DEPTH_JOINT_NAMES",
    "DEPTH_NAME_TO_LSP",
    "DEPTH_JSON",
    "DEPTH_ZIP",
    "KEYPOINT_AGREEMENT_PX",
    "CONFIGS",
    "image_relpath",
    "read_joints",
    "find_relative_depth",
    "read_relative_depth",
    "read_config",
    "example",
]

#: The 14 joints of both releases, in file order = jpose layout ``lsp_14``.
LSP_JOINT_NAMES: tuple[str, ...] = skeleton.get("lsp_14").joint_names

#: The probable ``joint_names`` of ``relative_depth_lsp_v1.json`` (unconfirmed; the
#: builder maps whatever order the file has by name). Used by the fake release.
DEPTH_JOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
    "left_ankle", "right_ankle")

#: JSON joint name -> ``lsp_14`` joint name. ``nose`` is LSP's head top: Ronchi et al.'s
#: training code maps it onto LSP's 14th joint, whose labels are the LSP head-top points.
#: The ``lsp_14`` names themselves are accepted too (identity).
DEPTH_NAME_TO_LSP: Mapping[str, str] = types.MappingProxyType(
    {"nose": "head_top", **{n: n for n in LSP_JOINT_NAMES}})

DEPTH_JSON = "relative_depth_lsp_v1.json"
DEPTH_ZIP = "relative_depth_lsp_v1.zip"

#: Largest distance (pixels) between a JSON keypoint and the ``joints.mat`` one for which
#: they count as the same label; larger means another LSP label version (e.g. observer-
#: vs person-centric left/right) and is reported in ``depth_keypoints_agree``.
KEYPOINT_AGREEMENT_PX = 1.0


@dataclasses.dataclass(frozen=True)
class _Config:
    directory: str  # under the manual dir
    digits: int  # of the 1-based image number in im%0Nd.jpg
    layout: tuple[str, str, str]  # axes of ``joints`` as loaded by scipy
    visible_flag: int  # the raw flag value that means "visible"
    depth: bool  # whether the relative-depth JSON applies


#: Per config: directory, file-name digits, ``joints`` axes order, the raw flag value
#: meaning "visible", and whether the relative-depth JSON applies.
CONFIGS: Mapping[str, Any] = types.MappingProxyType({
    "lsp": _Config(directory="lsp_dataset", digits=4, layout=("xyv", "joint", "image"),
                   visible_flag=0, depth=True),
    "lspet": _Config(directory="lspet_dataset", digits=5, layout=("joint", "xyv", "image"),
                     visible_flag=1, depth=False),
})

_IM_FILE = re.compile(r"(?:^|[/\\])(im(\d{4})\.jpg)$")


def _config(config: str):
    if config not in CONFIGS:
        raise ValueError(f"config: expected one of {sorted(CONFIGS)}, got {config!r}")
    return CONFIGS[config]


def image_relpath(config: str, index: int) -> str:
    """Path under the manual dir of image ``index`` (0-based): ``lsp_dataset/images/im0001.jpg``."""
    c = _config(config)
    return f"{c.directory}/images/im{index + 1:0{c.digits}d}.jpg"


def read_joints(path: str | os.PathLike, config: str) -> dict[str, np.ndarray]:
    """Reads ``joints.mat`` of ``config`` (``"lsp"``: (3, 14, N); ``"lspet"``: (14, 3, N)).

    Returns:
      ``keypoints_2d`` (N, 14, 2) float32, 0-based pixels, ``lsp_14``;
      ``visible`` (N, 14) bool, True = visible;
      ``raw_xy`` (N, 14, 2) float64, the stored (1-based) values, for comparisons.
    """
    c = _config(config)
    path = os.fspath(path)
    data = raw_files.load_mat_v5(path, ["joints"])
    expected = tuple({"xyv": 3, "joint": 14, "image": None}[a] for a in c.layout)
    joints = raw_files.check_shape(data["joints"], expected, path=path, name="joints")
    # -> (N, 14, 3) whatever the stored axis order.
    joints = np.transpose(joints, [c.layout.index(a) for a in ("image", "joint", "xyv")])
    joints = joints.astype(np.float64)
    flags = joints[..., 2]
    bad = np.unique(flags[(flags != 0) & (flags != 1)])
    if bad.size:
        raise raw_files.MalformedRawFileError(
            path, "joints", f"visibility flags must be 0 or 1 (here {c.visible_flag} = "
            f"visible), found {bad[:5].tolist()}")
    raw_xy = joints[..., :2]
    return {
        "keypoints_2d": (raw_xy - 1.0).astype(np.float32),
        "visible": flags == c.visible_flag,
        "raw_xy": raw_xy,
    }


def find_relative_depth(manual_dir: str | os.PathLike) -> str | None:
    """``relative_depth_lsp_v1.json`` (preferred) or ``.zip`` under ``manual_dir``, or None."""
    for name in (DEPTH_JSON, DEPTH_ZIP):
        path = os.path.join(os.fspath(manual_dir), name)
        if os.path.isfile(path):
            return path
    return None


def _load_json(path: str) -> Any:
    """The parsed JSON of ``path``, or of the member named :data:`DEPTH_JSON` of a zip."""
    try:
        if path.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                # The member may sit in a folder inside the archive (layout unconfirmed).
                members = sorted(m for m in z.namelist() if os.path.basename(m) == DEPTH_JSON)
                text = z.read(members[0]) if members else None
            if text is None:
                raise raw_files.MalformedRawFileError(
                    path, DEPTH_JSON, "not in the archive")
        else:
            with open(path, "rb") as f:
                text = f.read()
        return json.loads(text)
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise raw_files.MalformedRawFileError(
            path, "", f"not a readable JSON file (or zip of one): {type(e).__name__}: {e}") from e


def _int(value, path, name, lo, hi) -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not float(value).is_integer() or not lo <= int(value) < hi):
        raise raw_files.MalformedRawFileError(
            path, name, f"expected an integer in [{lo}, {hi}), got {value!r}")
    return int(value)


def _float(value, path, name) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise raw_files.MalformedRawFileError(path, name, f"expected a number, got {value!r}")
    return float(value)


def _json_to_lsp(names: Any, path: str) -> np.ndarray:
    """``perm[j]`` = ``lsp_14`` index of the file's joint ``j`` (a bijection, by name)."""
    if not isinstance(names, list) or len(names) != len(LSP_JOINT_NAMES):
        raise raw_files.MalformedRawFileError(
            path, "joint_names", f"expected a list of {len(LSP_JOINT_NAMES)} names, got {names!r}")
    unknown = [n for n in names if n not in DEPTH_NAME_TO_LSP]
    if unknown:
        raise raw_files.MalformedRawFileError(
            path, "joint_names", f"unknown joint name(s) {unknown}; known: "
            f"{sorted(DEPTH_NAME_TO_LSP)} ('nose' = LSP head_top)")
    perm = np.array([LSP_JOINT_NAMES.index(DEPTH_NAME_TO_LSP[n]) for n in names], np.int32)
    if len(set(perm.tolist())) != len(perm):
        raise raw_files.MalformedRawFileError(
            path, "joint_names", f"{names} names some lsp_14 joint twice "
            f"(via {dict(DEPTH_NAME_TO_LSP)})")
    return perm


def read_relative_depth(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Reads Ronchi et al.'s relative-depth file (JSON, or the zip holding it).

    Returns:
      ``{image_id: record}`` keyed by the file stem of ``im_file`` (``"im0001"``), each
      record with ``index`` (position in ``images``, for messages), ``is_train`` (bool),
      ``pairs`` (K, 2) int32 ``lsp_14`` indices in the file's (kp0, kp1) order,
      ``closer`` (K,) int32 = the label (index 0 or 1 into the pair of the joint closer
      to the camera), ``risk`` (K,) and ``prob`` (K,) float32, ``keypoints_2d``
      (14, 2) float32 in ``lsp_14`` order, 0-based pixels (stored value - 1), and
      ``raw_xy`` (14, 2) float64 as stored.
    """
    path = os.fspath(path)
    data = _load_json(path)
    if not isinstance(data, dict):
        raise raw_files.MalformedRawFileError(path, "", "expected a JSON object at the top level")
    perm = _json_to_lsp(raw_files.field(data, "joint_names", path), path)
    images = raw_files.field(data, "images", path)
    if not isinstance(images, list):
        raise raw_files.MalformedRawFileError(path, "images", "expected a list")
    j = len(perm)
    out: dict[str, dict[str, Any]] = {}
    for i, im in enumerate(images):
        where = f"images[{i}]"
        if not isinstance(im, dict):
            raise raw_files.MalformedRawFileError(path, where, "expected an object")
        im_file = im.get("im_file")
        m = _IM_FILE.search(im_file) if isinstance(im_file, str) else None
        if m is None:
            raise raw_files.MalformedRawFileError(
                path, f"{where}.im_file", f"expected a path ending in imNNNN.jpg, got {im_file!r}")
        image_id = m.group(1)[:-4]
        if image_id in out:
            raise raw_files.MalformedRawFileError(
                path, f"{where}.im_file", f"{m.group(1)} also appears at "
                f"images[{out[image_id]['index']}]")
        is_train = im.get("is_train")
        if not isinstance(is_train, bool) and is_train not in (0, 1):
            raise raw_files.MalformedRawFileError(
                path, f"{where}.is_train", f"expected a bool, got {is_train!r}")
        kp = im.get("keypoints")
        if not isinstance(kp, list) or len(kp) != 2 * j:
            raise raw_files.MalformedRawFileError(
                path, f"{where}.keypoints", f"expected a list of {2 * j} numbers (x0, y0, x1, "
                f"y1, ...), got {type(kp).__name__} of length {len(kp) if isinstance(kp, list) else '-'}")
        kp = np.array([_float(v, path, f"{where}.keypoints") for v in kp], np.float64).reshape(j, 2)
        raw_xy = np.empty_like(kp)
        raw_xy[perm] = kp
        anns = im.get("anns", [])
        if not isinstance(anns, list):
            raise raw_files.MalformedRawFileError(path, f"{where}.anns", "expected a list")
        pairs, closer, risk, prob = [], [], [], []
        for k, a in enumerate(anns):
            an = f"{where}.anns[{k}]"
            if not isinstance(a, dict):
                raise raw_files.MalformedRawFileError(path, an, "expected an object")
            kp0 = _int(a.get("kp0"), path, f"{an}.kp0", 0, j)
            kp1 = _int(a.get("kp1"), path, f"{an}.kp1", 0, j)
            if kp0 == kp1:
                raise raw_files.MalformedRawFileError(path, an, f"kp0 == kp1 == {kp0}")
            pairs.append((perm[kp0], perm[kp1]))
            closer.append(_int(a.get("label"), path, f"{an}.label", 0, 2))
            risk.append(_float(a.get("risk"), path, f"{an}.risk"))
            prob.append(_float(a.get("prob"), path, f"{an}.prob"))
        out[image_id] = {
            "index": i,
            "is_train": bool(is_train),
            "pairs": np.array(pairs, np.int32).reshape(-1, 2),
            "closer": np.array(closer, np.int32),
            "risk": np.array(risk, np.float32),
            "prob": np.array(prob, np.float32),
            "keypoints_2d": (raw_xy - 1.0).astype(np.float32),
            "raw_xy": raw_xy,
        }
    return out


def _no_depth() -> dict[str, Any]:
    return {"depth_pairs": np.zeros((0, 2), np.int32), "depth_closer": np.zeros((0,), np.int32),
            "depth_risk": np.zeros((0,), np.float32), "depth_prob": np.zeros((0,), np.float32),
            "has_depth": False, "depth_keypoints_agree": False}


def read_config(manual_dir: str | os.PathLike, config: str) -> dict[str, list[dict[str, Any]]]:
    """Everything but the image bytes of config ``"lsp"`` or ``"lspet"``, per split.

    Checks that ``joints.mat`` exists and that every image it implies exists
    (:class:`~jpose.datasets.raw_files.MissingRawFilesError` lists all missing paths).
    For ``"lsp"`` reads the relative-depth file when present and checks it: every
    ``im_file`` must be an LSP image, ``is_train`` must agree with the split; keypoints
    that differ from ``joints.mat`` by more than :data:`KEYPOINT_AGREEMENT_PX` only set
    ``depth_keypoints_agree`` False (a different LSP label version; the depth pairs are
    kept, as they refer to joints, not to label positions).

    Returns:
      ``{split: [record, ...]}`` in image order; each record has ``image_id``,
      ``image_path`` (absolute), ``keypoints_2d`` (14, 2) float32, ``visible`` (14,) bool
      and the ``depth_*`` / ``has_depth`` fields of the features (empty / False without
      relative depth).
    """
    c = _config(config)
    manual_dir = os.fspath(manual_dir)
    joints_rel = f"{c.directory}/joints.mat"
    hint = ("Expected layout: lsp_dataset/{joints.mat, images/im%04d.jpg}, "
            "lspet_dataset/{joints.mat, images/im%05d.jpg}, optional relative_depth_lsp_v1.json|.zip")
    raw_files.require_paths("lsp", manual_dir, [joints_rel], hint=hint)
    joints = read_joints(os.path.join(manual_dir, joints_rel), config)
    n = len(joints["visible"])
    relpaths = [image_relpath(config, i) for i in range(n)]
    raw_files.require_paths("lsp", manual_dir, relpaths, hint=hint)

    num_train = n // 2 if config == "lsp" else n
    depth_path = find_relative_depth(manual_dir) if c.depth else None
    depth = read_relative_depth(depth_path) if depth_path else {}
    ids = [os.path.basename(p)[:-4] for p in relpaths]
    index = {image_id: i for i, image_id in enumerate(ids)}
    for image_id, rec in depth.items():
        where = f"images[{rec['index']}]"
        if image_id not in index:
            raise raw_files.MalformedRawFileError(
                depth_path, f"{where}.im_file", f"{image_id}.jpg is not one of the {n} LSP "
                f"images of {joints_rel}")
        in_train = index[image_id] < num_train
        if rec["is_train"] != in_train:
            raise raw_files.MalformedRawFileError(
                depth_path, f"{where}.is_train", f"is {rec['is_train']} for {image_id}.jpg, but "
                f"the LSP split puts it in {'train' if in_train else 'test'} (train = first "
                f"{num_train} of {n} images)")

    records = []
    for i, image_id in enumerate(ids):
        rec = {"image_id": image_id, "image_path": os.path.join(manual_dir, relpaths[i]),
               "keypoints_2d": joints["keypoints_2d"][i], "visible": joints["visible"][i],
               **_no_depth()}
        d = depth.get(image_id)
        if d is not None:
            dist = np.linalg.norm(d["raw_xy"] - joints["raw_xy"][i], axis=-1)
            rec.update(depth_pairs=d["pairs"], depth_closer=d["closer"], depth_risk=d["risk"],
                       depth_prob=d["prob"], has_depth=True,
                       depth_keypoints_agree=bool(np.all(dist <= KEYPOINT_AGREEMENT_PX)))
        records.append(rec)
    if config == "lsp":
        return {"train": records[:num_train], "test": records[num_train:]}
    return {"train": records}


def example(record: Mapping[str, Any]) -> dict[str, Any]:
    """The feature dict of one record of :func:`read_config`: reads the JPEG bytes and size."""
    from PIL import Image

    path = record["image_path"]
    with open(path, "rb") as f:
        data = f.read()
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, size = im.format, im.size
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, ...
        raise raw_files.MalformedRawFileError(path, "", f"not a readable image ({e})") from e
    if fmt != "JPEG":
        raise raw_files.MalformedRawFileError(path, "", f"expected a JPEG image, found {fmt}")
    out = {k: record[k] for k in (
        "image_id", "keypoints_2d", "visible", "depth_pairs", "depth_closer", "depth_risk",
        "depth_prob", "has_depth", "depth_keypoints_agree")}
    out["image"] = data
    out["image_size"] = np.array(size, np.int32)  # PIL: (width, height)
    return out
