"""A fake LSP + LSPET release (and relative-depth JSON) in the exact on-disk format.

For tests and the throughput benchmark: tiny random JPEGs, ``joints.mat`` in each
release's own axis order and visibility convention, and Ronchi et al.'s
``relative_depth_lsp_v1.json`` (plain or zipped) with a shuffled ``joint_names`` order,
images listed in shuffled order, labels derived from a known per-joint depth.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Any

import numpy as np
import scipy.io

from jpose.datasets.lsp import raw

__all__ = ["write_fake_release"]


def _jpeg(rng: np.random.Generator, width: int, height: int) -> bytes:
    from PIL import Image

    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _write_dataset(root: str, config: str, n: int, image_size, occluded_fraction: float,
                   rng: np.random.Generator) -> dict[str, Any]:
    """Images + joints.mat of one release; returns the ground truth in builder convention."""
    c = raw.CONFIGS[config]
    os.makedirs(os.path.join(root, c.directory, "images"), exist_ok=True)
    base_w, base_h = image_size
    # Sizes vary per image (as in the real releases) and width != height, so that the
    # (width, height) order of the feature is checked.
    sizes = np.stack([base_w + np.arange(n) % 3, base_h + np.arange(n) % 2], -1).astype(np.int32)
    # Stored (MATLAB, 1-based) coordinates inside the image, with fractional parts.
    raw_xy = 1.0 + rng.uniform(0.0, 1.0, (n, 14, 2)) * (sizes[:, None, :] - 1)
    visible = rng.uniform(size=(n, 14)) >= occluded_fraction
    if n:
        # A known case: image 0 has its head top occluded and its right ankle visible.
        visible[0, 13], visible[0, 0] = False, True
    flag = np.where(visible, c.visible_flag, 1 - c.visible_flag).astype(np.float64)
    joints = np.concatenate([raw_xy, flag[..., None]], -1)  # (n, 14, 3)
    order = [("image", "joint", "xyv").index(a) for a in c.layout]
    scipy.io.savemat(os.path.join(root, c.directory, "joints.mat"),
                     {"joints": np.transpose(joints, order)})
    ids = []
    for i in range(n):
        rel = raw.image_relpath(config, i)
        ids.append(os.path.basename(rel)[:-4])
        with open(os.path.join(root, rel), "wb") as f:
            f.write(_jpeg(rng, int(sizes[i, 0]), int(sizes[i, 1])))
    return {"image_id": ids, "keypoints_2d": (raw_xy - 1.0).astype(np.float32),
            "visible": visible, "image_size": sizes, "raw_xy": raw_xy}


def write_fake_release(root: str | os.PathLike, *, num_lsp: int = 10, num_lspet: int = 6,
                       image_size: tuple[int, int] = (32, 24), relative_depth: str | None = "json",
                       pairs_per_image: int = 5, num_depth_missing: int = 1,
                       num_depth_mismatch: int = 1, occluded_fraction: float = 0.25,
                       seed: int = 0) -> dict[str, Any]:
    """Writes ``lsp_dataset/``, ``lspet_dataset/`` and the relative-depth file under ``root``.

    Args:
      root: the manual directory to create.
      num_lsp, num_lspet: image counts (the real releases: 2000 and 10,000). LSP's train
        split is the first ``num_lsp // 2``.
      image_size: base (width, height) in pixels; image ``i`` is ``i % 3`` wider and
        ``i % 2`` taller.
      relative_depth: ``"json"`` (``relative_depth_lsp_v1.json``), ``"zip"``
        (``relative_depth_lsp_v1.zip`` holding it) or ``None`` (no file).
      pairs_per_image: annotated joint pairs per image (the GUI sampled 5).
      num_depth_missing: the last this many LSP images get no JSON entry.
      num_depth_mismatch: the first this many JSON-listed images get keypoints shifted by
        2.5 px in x (a different label version): ``depth_keypoints_agree`` False.
      occluded_fraction: probability of a joint being occluded.
      seed: NumPy seed.

    Returns:
      ``{"lsp": gt, "lspet": gt, "depth_joint_names": [...], "num_train": num_lsp // 2}``
      with each ``gt`` holding ``image_id`` (list), ``keypoints_2d`` (N, 14, 2) float32
      0-based pixels in ``lsp_14`` order, ``visible`` (N, 14) bool (True = visible),
      ``image_size`` (N, 2) (width, height); ``gt["lsp"]`` also ``depth_z`` (N, 14), a
      per-joint depth from which the labels were derived, and ``depth``: ``{image_id:
      {"pairs" (K, 2) lsp_14 indices, "closer" (K,), "risk", "prob", "keypoints_agree"}}``
      for the images listed in the JSON.
    """
    root = os.fspath(root)
    if relative_depth not in ("json", "zip", None):
        raise ValueError(f"relative_depth: expected 'json', 'zip' or None, got {relative_depth!r}")
    rng = np.random.default_rng(seed)
    lsp = _write_dataset(root, "lsp", num_lsp, image_size, occluded_fraction, rng)
    lspet = _write_dataset(root, "lspet", num_lspet, image_size, occluded_fraction, rng)
    num_train = num_lsp // 2
    out = {"lsp": lsp, "lspet": lspet, "num_train": num_train}

    # The JSON's joint order: the documented names, shuffled (never the lsp_14 order), so
    # that only mapping by name gives the right joints.
    while True:
        perm = rng.permutation(14)
        names = [raw.DEPTH_JOINT_NAMES[p] for p in perm]
        to_lsp = [raw.LSP_JOINT_NAMES.index(raw.DEPTH_NAME_TO_LSP[n]) for n in names]
        if to_lsp != list(range(14)):
            break
    from_lsp = np.argsort(to_lsp)  # lsp_14 index -> JSON index
    out["depth_joint_names"] = names
    z = rng.permutation(num_lsp * 14).reshape(num_lsp, 14).astype(np.float64)  # distinct
    lsp["depth_z"] = z
    lsp["depth"] = {}
    listed = list(range(max(num_lsp - num_depth_missing, 0)))
    images = []
    for rank, i in enumerate(rng.permutation(listed)):  # listed in shuffled order
        i = int(i)
        pairs = np.array([rng.choice(14, 2, replace=False) for _ in range(pairs_per_image)],
                         np.int32).reshape(-1, 2)
        closer = np.where(z[i, pairs[:, 0]] < z[i, pairs[:, 1]], 0, 1).astype(np.int32)
        risk = rng.uniform(0, 1, len(pairs)).round(3)
        prob = rng.uniform(0, 1, len(pairs)).round(3)
        agree = rank >= num_depth_mismatch
        # JSON keypoints copy joints.mat (1-based, JSON order) up to rounding; mismatching
        # images are shifted.
        kp = lsp["raw_xy"][i][to_lsp] + rng.uniform(-0.3, 0.3, (14, 2))
        if not agree:
            kp[:, 0] += 2.5
        images.append({
            "im_file": f"images/{lsp['image_id'][i]}.jpg",
            "is_train": bool(i < num_train),
            "keypoints": [round(float(v), 2) for v in kp.reshape(-1)],
            "occluded": [int(not v) for v in lsp["visible"][i][to_lsp]],
            "anns": [{"kp0": int(from_lsp[a]), "kp1": int(from_lsp[b]), "label": int(lab),
                      "risk": float(r), "prob": float(p)}
                     for (a, b), lab, r, p in zip(pairs, closer, risk, prob)],
        })
        lsp["depth"][lsp["image_id"][i]] = {
            "pairs": pairs, "closer": closer, "risk": risk.astype(np.float32),
            "prob": prob.astype(np.float32), "keypoints_agree": agree}
    if relative_depth is not None:
        text = json.dumps({"joint_names": names, "images": images})
        if relative_depth == "json":
            with open(os.path.join(root, raw.DEPTH_JSON), "w") as f:
                f.write(text)
        else:
            with zipfile.ZipFile(os.path.join(root, raw.DEPTH_ZIP), "w",
                                 compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(raw.DEPTH_JSON, text)
    return out
