"""Pictures of skeletons (matplotlib, headless).

Figures are written atomically (to a temporary file, then renamed), so a reader never
sees a half-written PNG even if the job is killed while plotting.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np

from jpose import skeleton as sk

__all__ = ["camera_to_plot", "draw_skeleton", "save_pose_comparison"]

# Left limbs blue, right limbs red, the rest grey: the usual convention in the field.
_LEFT, _RIGHT, _CENTRE = "tab:blue", "tab:red", "0.35"


def camera_to_plot(poses: np.ndarray) -> np.ndarray:
    """Camera-frame poses (x right, y down, z forward) to plot axes (x, depth, up)."""
    poses = np.asarray(poses)
    return np.stack([poses[..., 0], poses[..., 2], -poses[..., 1]], axis=-1)


def draw_skeleton(ax, pose: np.ndarray, skeleton: str | sk.Skeleton, *,
                                    alpha: float = 1.0, linestyle: str = "-", label: str | None = None):
    """Draws one pose ``(J, 3)`` (plot axes: x, depth, up) on a 3D matplotlib axis."""
    skel = sk.get(skeleton)
    pose = np.asarray(pose, np.float64)
    if pose.shape != (skel.num_joints, 3):
        raise ValueError(f"pose must have shape ({skel.num_joints}, 3) for layout "
                                          f"{skel.name!r}; got {pose.shape}.")
    left, right = set(skel.joints_left), set(skel.joints_right)
    for child, parent in skel.bones:
        color = _LEFT if child in left else _RIGHT if child in right else _CENTRE
        seg = pose[[parent, child]]
        ax.plot(seg[:, 0], seg[:, 1], seg[:, 2], color=color, alpha=alpha,
                        linestyle=linestyle, linewidth=2,
                        label=label if (child, parent) == skel.bones[0] else None)


def save_pose_comparison(path: str, truth: Sequence[np.ndarray],
                                                  predictions: Sequence[np.ndarray], skeleton: str | sk.Skeleton,
                                                  *, titles: Sequence[str] | None = None,
                                                  prediction_label: str = "predicted",
                                                  frame: str = "camera") -> str:
    """Saves a row of 3D panels, true (solid) vs predicted (dashed) skeletons.

    Args:
        path: output PNG path (parent directories are created).
        truth, predictions: sequences of poses ``(J, 3)`` in metres, one per panel.
        skeleton: layout of the poses.
        titles: one title per panel.
        prediction_label: legend label of the dashed skeleton.
        frame: ``"camera"`` (x right, y down, z forward) or ``"world"`` (Z-up).
    Returns:
        ``path``.
    """
    import matplotlib
    matplotlib.use("Agg")  # Headless: CI and servers have no display.
    import matplotlib.pyplot as plt

    if len(truth) != len(predictions):
        raise ValueError(f"truth has {len(truth)} poses but predictions has "
                                          f"{len(predictions)}.")
    if frame not in ("camera", "world"):
        raise ValueError(f"frame must be 'camera' or 'world'; got {frame!r}.")
    convert = camera_to_plot if frame == "camera" else np.asarray
    n = len(truth)
    fig = plt.figure(figsize=(4 * n, 4.4))
    for i, (t, p) in enumerate(zip(truth, predictions)):
        ax = fig.add_subplot(1, n, i + 1, projection="3d")
        t, p = convert(np.asarray(t)), convert(np.asarray(p))
        # Centre both on the true root so panels compare shape, not placement.
        root = sk.get(skeleton).root
        t, p = t - t[root], p - p[root]
        draw_skeleton(ax, t, skeleton, label="true")
        draw_skeleton(ax, p, skeleton, linestyle="--", alpha=0.8, label=prediction_label)
        radius = max(0.9, float(np.abs(np.concatenate([t, p])).max()))
        ax.set_xlim(-radius, radius)
        ax.set_ylim(-radius, radius)
        ax.set_zlim(-radius, radius)
        ax.set_box_aspect((1, 1, 1))
        ax.set_xlabel("x (m)")
        ax.set_ylabel("depth (m)" if frame == "camera" else "y (m)")
        ax.set_zlabel("up (m)")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
        if i == 0:
            ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
