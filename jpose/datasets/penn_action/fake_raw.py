"""A fake Penn Action release in the exact raw on-disk format, for tests and benchmarks.

Writes ``frames/%04d/%06d.jpg`` (PIL JPEG) and ``labels/%04d.mat`` (MATLAB v5 via
``scipy.io.savemat``: ``action``, ``pose`` char; ``x``, ``y``, ``bbox`` double;
``visibility`` logical; ``train``, ``nframes`` and ``dimensions = [H W n]`` double),
with the release's irregular cases:

* the sequences in ``missing_bbox`` lack their last ``bbox`` row (like 1154 and 1865);
* odd-numbered positions are test sequences (``train = -1``);
* frame sizes and counts differ between sequences.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.io

__all__ = ["ACTIONS", "VIEWS", "write_fake_release"]

ACTIONS = ("baseball_pitch", "tennis_serve", "jump_rope")
VIEWS = ("front", "back", "right")


def write_fake_release(root: str | os.PathLike, *, num_sequences: int = 4, num_frames: int = 3,
                       width: int = 32, height: int = 24, missing_bbox: tuple[int, ...] = (2,),
                       seed: int = 0) -> dict:
    """Writes a fake release under ``root``; returns what the builder must read back.

    Sequence ``i`` (1-based, ``"%04d"``) has ``num_frames + (i % 2)`` frames of size
    ``(width + 4 * (i % 2)) x height`` and is a training sequence when ``i`` is odd.

    Returns ``{"splits": {"train": [...], "test": [...]}, "sequences": {seq: {...}}}``
    with ``keypoints_2d (T,13,2)`` float32 jpose pixels (the written MATLAB values minus
    1), ``visible``, ``box (T,4)`` float32 (written bbox minus 1, the missing row
    repeated), ``box_valid``, ``action``, ``view``, ``sequence``, ``image_size`` ``(W,
    H)``, ``frame_paths`` and ``raw`` (the arrays written).
    """
    from PIL import Image

    if num_frames < 2:
        raise ValueError(f"num_frames: expected >= 2 (a missing bbox row needs one left), got {num_frames}")
    root = os.fspath(root)
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    splits: dict[str, list[str]] = {"train": [], "test": []}
    sequences: dict[str, dict] = {}
    for i in range(1, num_sequences + 1):
        seq = f"{i:04d}"
        t = num_frames + (i % 2)
        w, h = width + 4 * (i % 2), height
        directory = os.path.join(root, "frames", seq)
        os.makedirs(directory, exist_ok=True)
        frame_paths = []
        for f in range(t):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            path = os.path.join(directory, f"{f + 1:06d}.jpg")
            Image.fromarray(pixels).save(path, format="JPEG", quality=90)
            frame_paths.append(path)
        # MATLAB image coordinates: pixel centres at 1 .. W.
        x = rng.uniform(1.0, w, (t, 13))
        y = rng.uniform(1.0, h, (t, 13))
        visibility = rng.random((t, 13)) < 0.8
        bbox = np.stack([x.min(1) - 2.0, y.min(1) - 2.0, x.max(1) + 2.0, y.max(1) + 2.0], -1)
        written_bbox = bbox[:-1] if i in missing_bbox else bbox
        train = 1.0 if i % 2 else -1.0
        action, view = ACTIONS[i % len(ACTIONS)], VIEWS[i % len(VIEWS)]
        scipy.io.savemat(os.path.join(root, "labels", f"{seq}.mat"), {
            "action": action, "pose": view, "x": x, "y": y, "visibility": visibility,
            "train": np.array([[train]]), "bbox": written_bbox,
            "dimensions": np.array([[h, w, t]], np.float64), "nframes": np.array([[float(t)]])})

        # Expected output, computed here independently of the builder's helpers.
        box = bbox - 1.0
        box_valid = np.ones((t,), bool)
        if i in missing_bbox:
            box[-1] = box[-2]
            box_valid[-1] = False
        splits["train" if train > 0 else "test"].append(seq)
        sequences[seq] = {
            "keypoints_2d": (np.stack([x, y], -1) - 1.0).astype(np.float32),
            "visible": visibility,
            "box": box.astype(np.float32),
            "box_valid": box_valid,
            "action": action,
            "view": view,
            "sequence": seq,
            "image_size": np.array([w, h], np.int32),
            "frame_paths": frame_paths,
            "raw": {"x": x, "y": y, "bbox": written_bbox},
        }
    return {"splits": splits, "sequences": sequences}
