"""A fake Sub-JHMDB release in the exact raw on-disk format, for tests and benchmarks.

Writes ``Rename_Images/<class>/<video>/%05d.png`` (PIL), ``joint_positions.mat`` and
``puppet_mask.mat`` (MATLAB v5 via ``scipy.io.savemat``) and
``sub_splits/<class>_test_split_<k>.txt``, with the release's irregular cases:

* the first clip has **no puppet mask** (its boxes come from the joints);
* the second clip's mask is **empty in frame 1** (that frame's box comes from the joints);
* in the first clip's frame 0 the right ankle (joint 13) lies **outside the image**;
* clips alternate between ``num_frames`` and ``num_frames + 1`` frames.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.io

__all__ = ["CLASSES", "write_fake_release"]

CLASSES = ("catch", "golf", "pullup", "run", "walk")
_VIEWPOINTS = ("E", "ENE", "NNW", "S", "WSW")


def _video_name(cls: str, i: int) -> str:
    # Real names look like 'Frisbee_catch_f_cm_np1_ri_med_0'.
    return f"Clip{i}_{cls}_f_cm_np1_ri_med_{i}"


def write_fake_release(root: str | os.PathLike, *, num_classes: int = 3,
                       videos_per_class: int = 2, num_frames: int = 3, width: int = 32,
                       height: int = 24, seed: int = 0) -> dict:
    """Writes a fake release under ``root``; returns what the builder must read back.

    Returns ``{"classes": [...], "splits": {split: sorted keys}, "clips": {key: {...}}}``
    where each clip holds ``keypoints_2d (T,15,2)`` float32 jpose pixels (the written
    MATLAB values minus 1), ``visible``, ``box`` float32, ``box_source`` int32, ``scale``
    float32, ``viewpoint``, ``action``, ``video``, ``image_size`` ``(width, height)``,
    ``frame_paths`` and ``raw_pos_img`` (the ``(2, 15, T)`` array written).
    """
    from PIL import Image

    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes: expected 1..{len(CLASSES)}, got {num_classes}")
    if videos_per_class < 2 or num_frames < 2:
        raise ValueError("videos_per_class and num_frames: expected >= 2 (irregular cases need them)")
    root = os.fspath(root)
    rng = np.random.default_rng(seed)
    classes = list(CLASSES[:num_classes])
    splits: dict[str, list[str]] = {f"{s}{k}": [] for k in (1, 2, 3) for s in ("train", "test")}
    clips: dict[str, dict] = {}
    os.makedirs(os.path.join(root, "sub_splits"), exist_ok=True)
    clip_index = 0
    for c, cls in enumerate(classes):
        lines: dict[int, list[str]] = {1: [], 2: [], 3: []}
        for i in range(videos_per_class):
            video = _video_name(cls, i)
            key = f"{cls}/{video}"
            t = num_frames + (clip_index % 2)
            # Frames.
            frame_dir = os.path.join(root, "Rename_Images", cls, video)
            os.makedirs(frame_dir, exist_ok=True)
            frame_paths = []
            for f in range(t):
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                path = os.path.join(frame_dir, f"{f + 1:05d}.png")
                Image.fromarray(pixels).save(path, format="PNG")
                frame_paths.append(path)
            # Joints in MATLAB coordinates: pixel centres at 1 .. W.
            pos = np.empty((2, 15, t))
            pos[0] = rng.uniform(1.0, width, (15, t))
            pos[1] = rng.uniform(1.0, height, (15, t))
            if clip_index == 0:
                pos[0, 13, 0] = width + 3.25  # right ankle off the right edge
            scale = rng.uniform(0.5, 2.0, (1, t))
            viewpoint = _VIEWPOINTS[clip_index % len(_VIEWPOINTS)]
            joint_dir = os.path.join(root, "joint_positions", cls, video)
            os.makedirs(joint_dir, exist_ok=True)
            scipy.io.savemat(os.path.join(joint_dir, "joint_positions.mat"), {
                "pos_img": pos, "pos_world": rng.uniform(-1.0, 2.0, (2, 15, t)),
                "scale": scale, "viewpoint": viewpoint})

            # Expected output, computed here independently of the builder's helpers.
            keypoints = np.transpose(pos, (2, 1, 0)) - 1.0
            x, y = keypoints[..., 0], keypoints[..., 1]
            visible = (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
            lo = np.where(visible[..., None], keypoints, np.inf).min(1)
            hi = np.where(visible[..., None], keypoints, -np.inf).max(1)
            box = np.concatenate([lo, hi], -1)
            source = np.ones((t,), np.int32)
            # Puppet mask: a labelled rectangle per frame.
            if clip_index != 0:
                mask = np.zeros((height, width, t), np.uint8)
                for f in range(t):
                    if clip_index == 1 and f == 1:
                        continue  # empty mask: the box falls back to the joints
                    r0 = int(rng.integers(0, height // 2))
                    r1 = int(rng.integers(r0 + 1, height + 1))
                    c0 = int(rng.integers(0, width // 2))
                    c1 = int(rng.integers(c0 + 1, width + 1))
                    mask[r0:r1, c0:c1, f] = rng.integers(1, 6, (r1 - r0, c1 - c0))
                    # Outer edges of pixels r0 .. r1-1, c0 .. c1-1 (centres at integers).
                    box[f] = (c0 - 0.5, r0 - 0.5, c1 - 0.5, r1 - 0.5)
                    source[f] = 0
                mask_dir = os.path.join(root, "puppet_mask", cls, video)
                os.makedirs(mask_dir, exist_ok=True)
                scipy.io.savemat(os.path.join(mask_dir, "puppet_mask.mat"), {"part_mask": mask})

            for k in (1, 2, 3):
                flag = 1 if (i + k + c) % 2 == 0 else 2
                lines[k].append(f"{video}.avi {flag}")
                splits[f"{'train' if flag == 1 else 'test'}{k}"].append(key)
            clips[key] = {
                "keypoints_2d": keypoints.astype(np.float32),
                "visible": visible,
                "box": box.astype(np.float32),
                "box_source": source,
                "scale": scale[0].astype(np.float32),
                "viewpoint": viewpoint,
                "action": cls,
                "video": video,
                "image_size": np.array([width, height], np.int32),
                "frame_paths": frame_paths,
                "raw_pos_img": pos,
            }
            clip_index += 1
        for k in (1, 2, 3):
            path = os.path.join(root, "sub_splits", f"{cls}_test_split_{k}.txt")
            with open(path, "w", newline="\n") as f:
                f.write("\n".join(lines[k]) + "\n")
    return {"classes": classes, "splits": {s: sorted(v) for s, v in splits.items()},
            "clips": clips}
