"""Tests for jpose.visualize: overlays and animations, read back and checked pixel by pixel.

The reference is geometry done by hand: a T-pose 4 m in front of a pinhole camera is
projected in NumPy, mapped into the animation's 2D panel by the layout formula that
``render_animation`` documents, and the pixels there must carry the bone's colour.
"""

import os

import av
import numpy as np
import pytest
from PIL import Image

from jpose import skeleton as sk
from jpose import visualize as vis

LAYOUT = "h36m_17"
W, H = 64, 48  # video frame size, pixels
FOCAL, CENTRE = 80.0, np.array([32.0, 24.0])
PANEL = 200  # panel_height in the tests

# A T-pose (camera frame: x right, y down), metres; the subject's left is at +x.
_XY = {
    "pelvis": (0, 0), "right_hip": (-0.15, 0), "right_knee": (-0.15, 0.45),
    "right_ankle": (-0.15, 0.9), "left_hip": (0.15, 0), "left_knee": (0.15, 0.45),
    "left_ankle": (0.15, 0.9), "spine": (0, -0.25), "neck": (0, -0.5), "head": (0, -0.62),
    "head_top": (0, -0.75), "left_shoulder": (0.2, -0.5), "left_elbow": (0.5, -0.5),
    "left_wrist": (0.8, -0.5), "right_shoulder": (-0.2, -0.5), "right_elbow": (-0.5, -0.5),
    "right_wrist": (-0.8, -0.5),
}


def t_pose(num_frames=4):
    skel = sk.get(LAYOUT)
    pose = np.array([[*_XY[n], 4.0] for n in skel.joint_names])
    # A little sideways drift, so the frames differ.
    return pose[None] + np.arange(num_frames)[:, None, None] * np.array([0.02, 0.0, 0.0])


def project(poses):
    return FOCAL * poses[..., :2] / poses[..., 2:] + CENTRE


def midpoint(kp, a, b):
    skel = sk.get(LAYOUT)
    return (kp[skel.index(a)] + kp[skel.index(b)]) / 2


def window(img, col, row, r=1):
    """Pixels of the (2r+1)^2 window around output pixel (col, row), as (N, 3) ints."""
    c, rr = int(np.floor(col)), int(np.floor(row))
    return img[rr - r:rr + r + 1, c - r:c + r + 1].reshape(-1, 3).astype(int)


def assert_colour(img, col, row, side):
    px = window(img, col, row)
    if side == "left":  # tab:blue (31, 119, 180)
        assert np.any(px[:, 2] > px[:, 0] + 60), px
    else:  # tab:red (214, 39, 40)
        assert np.any(px[:, 0] > px[:, 2] + 60), px


BONES = [("left_elbow", "left_wrist", "left"), ("left_knee", "left_ankle", "left"),
         ("right_elbow", "right_wrist", "right"), ("right_knee", "right_ankle", "right")]


def test_draw_overlay_pixels():
    image = np.zeros((H, W, 3), np.uint8)
    kp = project(t_pose(1))[0]
    out = vis.draw_overlay(image, kp, LAYOUT)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert not image.any()  # the input is not drawn on
    for u, v in kp:  # every joint lies on a drawn bone
        assert window(out, u, v).max() > 60, (u, v)
    for a, b, side in BONES:
        assert_colour(out, *midpoint(kp, a, b), side)
    # Far from the skeleton (bottom corners), the image is untouched.
    assert out[-6:, :6].max() < 20 and out[-6:, -6:].max() < 20
    with pytest.raises(ValueError, match=r"keypoints_2d must have shape \(17, 2\)"):
        vis.draw_overlay(image, kp[:5], LAYOUT)
    with pytest.raises(ValueError, match="uint8"):
        vis.draw_overlay(image.astype(float), kp, LAYOUT)


def panel_position(u, v, band):
    """render_animation's documented mapping of image point (u, v) to output (col, row)."""
    width_2d = 2 * round(PANEL * W / H / 2)
    return PANEL + u * width_2d / W, band + v * PANEL / H


def read_gif(path):
    with Image.open(path) as im:
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
    return frames


def read_mp4(path):
    # PyAV (a jpose dependency) rather than imageio's reader, whose ffmpeg pipes can
    # outlive it and surface as ResourceWarnings in a later test.
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        rate = stream.average_rate
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], rate


def test_render_gif_layout_and_colours(tmp_path):
    poses = t_pose(4)
    kp = project(poses)
    frames = np.zeros((4, H, W, 3), np.uint8)
    frames[:, 2:7, 55:62] = 255  # a white block in the video, top right
    path = str(tmp_path / "anim.gif")
    assert vis.render_animation(path, poses, LAYOUT, keypoints_2d=kp, frames=frames, fps=10,
                                frame_numbers=[100, 101, 102, 103], title="T-pose",
                                panel_height=PANEL) == path
    out = read_gif(path)
    band = 28
    assert len(out) == 4
    assert out[0].shape == (PANEL + band, PANEL + 266, 3)
    assert os.listdir(tmp_path) == ["anim.gif"]  # no temp file left
    for t in (0, 3):
        img = out[t]
        for u, v in kp[t]:
            assert window(img, *panel_position(u, v, band), r=2).max() > 60
        for a, b, side in BONES:
            assert_colour(img, *panel_position(*midpoint(kp[t], a, b), band), side)
        # The video frame fills the panel: its white block lands where the mapping says.
        assert window(img, *panel_position(58.5, 4.5, band)).min() > 200
        # Bottom right of the 2D panel: video black, no skeleton, no text.
        assert img[-25:-5, -25:-5].max() < 30
    # The skeleton moved between frames (drift of 0.06 m = 1.2 px in the video).
    assert not np.array_equal(out[0][band:, PANEL:], out[3][band:, PANEL:])


def test_render_mp4_blank_canvas(tmp_path):
    poses = t_pose(3)
    kp = project(poses)
    path = str(tmp_path / "anim.mp4")
    vis.render_animation(path, poses, LAYOUT, keypoints_2d=kp, image_size=(W, H), fps=12.5,
                         panel_height=PANEL)
    out, rate = read_mp4(path)
    assert len(out) == 3 and rate == 12.5
    assert out[0].shape == (PANEL, PANEL + 266, 3)
    img = out[1]
    # White canvas: bones are darker than the canvas and carry their side's colour.
    for a, b, side in BONES:
        col, row = panel_position(*midpoint(kp[1], a, b), 0)
        assert window(img, col, row).min() < 200
        assert_colour(img, col, row, side)
    assert img[-25:-5, -25:-5].min() > 230  # far away: blank canvas


def test_render_3d_only_and_errors(tmp_path):
    poses = t_pose(2)
    path = str(tmp_path / "only3d.gif")
    vis.render_animation(path, poses, LAYOUT, panel_height=64)
    out = read_gif(path)
    assert len(out) == 2 and out[0].shape == (64, 64, 3)
    # Missing joints (NaN), even a whole missing frame, leave bones out without error.
    holes = poses.copy()
    holes[0, :3] = np.nan
    holes[1] = np.nan
    kp_holes = project(holes)
    vis.render_animation(path, holes, LAYOUT, keypoints_2d=kp_holes, image_size=(W, H),
                         panel_height=64)
    assert len(read_gif(path)) == 2
    kp = project(poses)
    with pytest.raises(ValueError, match="image_size"):
        vis.render_animation(str(tmp_path / "a.gif"), poses, LAYOUT, keypoints_2d=kp)
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        vis.render_animation(str(tmp_path / "a.avi"), poses, LAYOUT)
    with pytest.raises(ValueError, match=r"poses_3d must have shape \(T, 17, 3\)"):
        vis.render_animation(str(tmp_path / "a.gif"), poses[:, :4], LAYOUT)
    with pytest.raises(ValueError, match="panel_height"):
        vis.render_animation(str(tmp_path / "a.gif"), poses, LAYOUT, panel_height=101)
    assert sorted(os.listdir(tmp_path)) == ["only3d.gif"]


@pytest.mark.parametrize("ext", [".gif", ".mp4"])
def test_render_failure_leaves_nothing(tmp_path, ext):
    path = tmp_path / f"clip{ext}"
    path.write_bytes(b"previous")
    poses = t_pose(3)
    frames = [np.zeros((H, W, 3), np.uint8)] * 2 + [np.zeros((H + 2, W, 3), np.uint8)]
    with pytest.raises(ValueError, match=r"frames\[2\] has shape"):
        vis.render_animation(str(path), poses, LAYOUT, keypoints_2d=project(poses),
                             frames=frames, panel_height=64)
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == [path.name]


def test_save_pose_comparison_still_works(tmp_path):
    pose = t_pose(1)[0]
    path = vis.save_pose_comparison(str(tmp_path / "p.png"), [pose], [pose + 0.01], LAYOUT,
                                    titles=["one"])
    with Image.open(path) as im:
        assert im.size[0] > 100
