"""Pictures and animations of skeletons (matplotlib, headless).

Figures and animations are written atomically (to a temporary file, then renamed), so a
reader never sees a half-written PNG, GIF or MP4 even if the job is killed while plotting.

Colours: left limbs blue, right limbs red, the rest grey (a bone takes the side of its
child joint). 2D pixel convention: the image spans ``[0, width] x [0, height]``, so
pixel ``(i, j)`` (column, row) covers ``[i, i + 1) x [j, j + 1)`` -- jpose's convention
(:func:`jpose.camera.pixels_to_screen`).
"""

from __future__ import annotations

import fractions
import itertools
import math
import os
import secrets
import tempfile
from collections.abc import Sequence

import numpy as np

from jpose import skeleton as sk

__all__ = ["camera_to_plot", "draw_skeleton", "save_pose_comparison", "draw_overlay",
           "render_animation"]

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


# --------------------------------------------------------------------------------------
# 2D overlays and animations (matplotlib's Agg canvas, no pyplot state).

_DPI = 100
_TITLE_PX = 28  # height of the title band of render_animation, pixels (even)


def _bone_colour(skel: sk.Skeleton, child: int) -> str:
    if child in skel.joints_left:
        return _LEFT
    return _RIGHT if child in skel.joints_right else _CENTRE


def _figure(width_px: int, height_px: int):
    """An Agg figure of exactly ``width_px x height_px`` pixels, and its canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Agg truncates figsize * dpi to int; 1e-3 px of slack absorbs float error.
    fig = Figure(figsize=((width_px + 1e-3) / _DPI, (height_px + 1e-3) / _DPI), dpi=_DPI,
                 facecolor="white")
    return fig, FigureCanvasAgg(fig)


def _pixels(canvas, width_px: int, height_px: int) -> np.ndarray:
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    if rgb.shape != (height_px, width_px, 3):  # a matplotlib change we must notice
        raise RuntimeError(f"matplotlib rendered {rgb.shape[1]}x{rgb.shape[0]} px, expected "
                           f"{width_px}x{height_px}")
    return rgb.copy()


class _Overlay:
    """A 2D skeleton drawn in image pixel coordinates on an axis; ``update`` moves it."""

    def __init__(self, ax, skel: sk.Skeleton, *, linewidth: float):
        self.bones = skel.bones
        self.lines = [ax.plot([np.nan, np.nan], [np.nan, np.nan], color=_bone_colour(skel, c),
                              linewidth=linewidth, solid_capstyle="round")[0]
                      for c, _ in skel.bones]

    def update(self, keypoints: np.ndarray | None) -> None:
        for (child, parent), line in zip(self.bones, self.lines):
            if keypoints is None:
                line.set_data([np.nan, np.nan], [np.nan, np.nan])
            else:
                seg = keypoints[[parent, child]]
                line.set_data(seg[:, 0], seg[:, 1])


def _image_axes(fig, rect, width: float, height: float):
    ax = fig.add_axes(rect)
    ax.set_axis_off()
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # image rows go down
    return ax


def _check_keypoints(keypoints, skel: sk.Skeleton, name: str, leading: tuple[int, ...]):
    keypoints = np.asarray(keypoints, np.float64)
    want = leading + (skel.num_joints, 2)
    if keypoints.shape != want:
        raise ValueError(f"{name} must have shape {want} (layout {skel.name!r} has "
                         f"{skel.num_joints} joints), got {keypoints.shape}")
    return keypoints


def _check_image(image, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3 or 0 in image.shape:
        raise ValueError(f"{name} must be a uint8 (H, W, 3) RGB image, got dtype "
                         f"{image.dtype} shape {image.shape}")
    return image


def draw_overlay(image, keypoints_2d, layout: str | sk.Skeleton, *,
                 linewidth: float = 2.0) -> np.ndarray:
    """Draws a 2D skeleton on an image; returns a new uint8 (H, W, 3) image (same size).

    Args:
      image: uint8 (H, W, 3) RGB.
      keypoints_2d: (J, 2) pixels in the image (module docstring for the convention);
        NaN joints leave their bones out.
      layout: joint layout of ``keypoints_2d``.
      linewidth: bone width in points (1 pt = 100/72 px here).
    """
    skel = sk.get(layout)
    image = _check_image(image, "image")
    keypoints = _check_keypoints(keypoints_2d, skel, "keypoints_2d", ())
    height, width = image.shape[:2]
    fig, canvas = _figure(width, height)
    ax = _image_axes(fig, [0, 0, 1, 1], width, height)
    ax.imshow(image, extent=(0, width, height, 0), interpolation="nearest", aspect="auto")
    _Overlay(ax, skel, linewidth=linewidth).update(keypoints)
    return _pixels(canvas, width, height)


def _temp_beside(path: str) -> str:
    """A new empty file beside ``path`` with the same extension (writers pick the format
    from it); created ``0o666`` so the umask applies as for an ordinary new file."""
    directory, base = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(base)
    for _ in range(100):
        tmp = os.path.join(directory, f".{stem}.tmp-{secrets.token_hex(4)}{ext}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temp file beside {path!r}")


def _write_gif(path: str, frames, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    # GIF stores centiseconds; loop=0 repeats forever.
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(10, int(round(1000 / fps))), loop=0)


def _write_mp4(path: str, frames, fps: float) -> None:
    # PyAV (FFmpeg in-process, bundled in its wheel; already a dependency for reading
    # videos) rather than a subprocess: imageio-ffmpeg starts ffmpeg with a preexec_fn,
    # i.e. a Python-level fork() of a process that runs JAX's threads, which JAX warns
    # "will likely lead to a deadlock" (and the test suite turns warnings into errors).
    import av

    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(
            1001))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"  # what players expect; needs even sizes (guaranteed)
        stream.options = {"crf": "18"}  # visually lossless for line drawings
        for frame in itertools.chain([first], frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)


def render_animation(path: str, poses_3d, layout: str | sk.Skeleton, *,
                     keypoints_2d=None, frames=None, image_size=None, fps: float = 25,
                     frame_numbers: Sequence[int] | None = None, title: str | None = None,
                     panel_height: int = 360) -> str:
    """Renders a video of 3D poses beside their 2D keypoints on the video, as GIF or MP4.

    Layout of each output frame (pixels; ``H = panel_height``, ``band`` = 28 if ``title``
    else 0, ``(w, h)`` the video's size):

    * a title band ``band`` px tall across the top;
    * the **3D panel**, ``H x H``, at the left, below the band: the pose in plot axes
      (x, depth, up; :func:`camera_to_plot`), centred on the root joint each frame with a
      fixed radius for the whole clip (so size and motion are comparable), the legend
      (left / right / centre) and "frame N";
    * the **2D panel** (when ``keypoints_2d`` or ``frames`` is given), ``W2 x H`` with
      ``W2 = 2 * round(H * w / h / 2)``, right of the 3D panel: the video frame (or a white
      canvas) stretched to fill it, the 2D skeleton on top and "frame N" at its top left.
      Image point ``(u, v)`` lands at output column ``H + u * W2 / w`` and row
      ``band + v * H / h``.

    Output size: ``(H + W2) x (H + band)`` (``H x (H + band)`` without a 2D panel); all even,
    as H.264 needs. One figure is drawn once and its artists updated per frame.

    Args:
      path: output file; ``.gif`` (pillow) or ``.mp4`` (H.264, yuv420p, through PyAV's
        bundled FFmpeg), chosen by the extension. Written atomically: on any error nothing is
        left at ``path`` (an existing file stays as it was) and no temp file remains.
      poses_3d: (T, J, 3) camera-frame poses (x right, y down, z forward), metres; NaN
        joints leave their bones out.
      layout: joint layout of the poses and keypoints.
      keypoints_2d: optional (T, J, 2) pixels in the video frames (module docstring).
      frames: optional uint8 (T, h, w, 3) RGB video frames (an array or a sequence of
        arrays); None: a white canvas of ``image_size``.
      image_size: ``(w, h)`` pixels; needed with ``keypoints_2d`` and no ``frames``;
        must match ``frames`` if both are given.
      fps: frames per second of the output.
      frame_numbers: T ints to print as "frame N" (e.g. the source video's frame
        indices); default 0 .. T-1.
      title: optional text in the title band.
      panel_height: ``H``, an even number of pixels >= 64.

    Returns:
      ``path``.
    """
    skel = sk.get(layout)
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".gif", ".mp4"):
        raise ValueError(f"path must end in .gif or .mp4 (the format is chosen by the "
                         f"extension), got {path!r}")
    poses = np.asarray(poses_3d, np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (skel.num_joints, 3) or poses.shape[0] < 1:
        raise ValueError(f"poses_3d must have shape (T, {skel.num_joints}, 3) with T >= 1 "
                         f"(layout {skel.name!r}), got {poses.shape}")
    num = poses.shape[0]
    if keypoints_2d is not None:
        keypoints_2d = _check_keypoints(keypoints_2d, skel, "keypoints_2d", (num,))
    if frames is not None:
        if len(frames) != num:
            raise ValueError(f"frames has {len(frames)} frames but poses_3d has {num}")
        first = _check_image(frames[0], "frames[0]")
        frame_size = (first.shape[1], first.shape[0])
        if image_size is not None and tuple(np.asarray(image_size).tolist()) != frame_size:
            raise ValueError(f"image_size {tuple(image_size)} does not match the frames' "
                             f"(width, height) {frame_size}")
        image_size = frame_size
    elif keypoints_2d is not None and image_size is None:
        raise ValueError("image_size (width, height) is needed to draw keypoints_2d without "
                         "frames")
    show_2d = keypoints_2d is not None or frames is not None
    if show_2d:
        size = np.asarray(image_size, np.float64)
        if size.shape != (2,) or not np.all(np.isfinite(size)) or np.any(size <= 0):
            raise ValueError(f"image_size must be (width, height) > 0 pixels, got "
                             f"{image_size!r}")
        img_w, img_h = float(size[0]), float(size[1])
    if not (isinstance(panel_height, int) and panel_height >= 64 and panel_height % 2 == 0):
        raise ValueError(f"panel_height must be an even int >= 64, got {panel_height!r}")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if frame_numbers is None:
        frame_numbers = range(num)
    frame_numbers = [int(n) for n in frame_numbers]
    if len(frame_numbers) != num:
        raise ValueError(f"frame_numbers has {len(frame_numbers)} entries but poses_3d has "
                         f"{num} frames")

    from mpl_toolkits import mplot3d  # noqa: F401  (registers the "3d" projection)
    from matplotlib.lines import Line2D

    side = panel_height
    band = _TITLE_PX if title else 0
    width_2d = 2 * int(round(side * img_w / img_h / 2)) if show_2d else 0
    total_w, total_h = side + width_2d, side + band
    fig, canvas = _figure(total_w, total_h)
    frac_h = side / total_h

    # 3D panel: fixed radius for the clip, centred on the root each frame.
    plot = camera_to_plot(poses)
    root = plot[:, skel.root]
    finite = np.isfinite(plot)
    # Without a root, the mean of the finite joints (written out: nanmean warns on
    # all-NaN frames), else the origin.
    mean = np.sum(np.where(finite, plot, 0.0), axis=1) / np.maximum(finite.sum(axis=1), 1)
    centre = np.where(np.isfinite(root), root, mean)
    spread = np.abs(plot - centre[:, None])
    radius = max(1.0, float(np.nanmax(spread)) if np.any(np.isfinite(spread)) else 1.0)
    ax3 = fig.add_axes([0, 0, side / total_w, frac_h], projection="3d")
    ax3.view_init(elev=15.0, azim=-70.0)
    ax3.set_box_aspect((1, 1, 1))
    # No tick labels or axis titles: at panel sizes they only crowd and get clipped; the
    # axes are always (x, depth, up) as in save_pose_comparison.
    for setter in (ax3.set_xticklabels, ax3.set_yticklabels, ax3.set_zticklabels):
        setter([])
    bones3d = [ax3.plot([0, 0], [0, 0], [0, 0], color=_bone_colour(skel, c), linewidth=2)[0]
               for c, _ in skel.bones]
    handles = [Line2D([], [], color=c, linewidth=2) for c in (_LEFT, _RIGHT, _CENTRE)]
    ax3.legend(handles, ["left", "right", "centre"], loc="upper right", fontsize=7)
    label3d = ax3.text2D(0.03, 0.95, "", transform=ax3.transAxes, fontsize=8, va="top")

    if show_2d:
        ax2 = _image_axes(fig, [side / total_w, 0, width_2d / total_w, frac_h], img_w, img_h)
        blank = np.full((2, 2, 3), 255, np.uint8)
        picture = ax2.imshow(blank if frames is None else first,
                             extent=(0, img_w, img_h, 0), aspect="auto")
        overlay = _Overlay(ax2, skel, linewidth=2.0)
        label2d = ax2.text(0.02, 0.98, "", transform=ax2.transAxes, fontsize=8, va="top",
                           ha="left", color="white",
                           bbox=dict(facecolor="black", alpha=0.6, edgecolor="none", pad=2))
    if title:
        fig.text(0.5, 1 - band / 2 / total_h, title, ha="center", va="center", fontsize=10)

    def rendered():
        for t in range(num):
            for (child, parent), line in zip(skel.bones, bones3d):
                seg = plot[t, [parent, child]]
                line.set_data_3d(seg[:, 0], seg[:, 1], seg[:, 2])
            c = centre[t]
            ax3.set_xlim(c[0] - radius, c[0] + radius)
            ax3.set_ylim(c[1] - radius, c[1] + radius)
            ax3.set_zlim(c[2] - radius, c[2] + radius)
            text = f"frame {frame_numbers[t]}"
            label3d.set_text(text)
            if show_2d:
                if frames is not None:
                    image = _check_image(frames[t], f"frames[{t}]")
                    if image.shape != first.shape:
                        raise ValueError(f"frames[{t}] has shape {image.shape}, frames[0] "
                                         f"{first.shape}: all frames must have one size")
                    picture.set_data(image)
                overlay.update(None if keypoints_2d is None else keypoints_2d[t])
                label2d.set_text(text)
            yield _pixels(canvas, total_w, total_h)

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = _temp_beside(path)
    try:
        (_write_gif if ext == ".gif" else _write_mp4)(tmp, rendered(), float(fps))
        os.replace(tmp, path)
    except BaseException:  # also KeyboardInterrupt: never leave the temp file behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
