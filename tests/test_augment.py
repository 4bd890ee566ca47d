"""Clip-consistent augmentation (jpose.datasets.augment)."""

import math

import numpy as np
import pytest

from jpose import skeleton
from jpose.datasets import augment as A

W, H = 1000.0, 1002.0


def _project(cam_points, cam):
    """Human3.6M ProjectPointRadial.m in float64 NumPy (independent of jpose.camera)."""
    x = np.asarray(cam_points, np.float64)
    x = x[..., :2] / x[..., 2:3]
    r2 = np.sum(x * x, axis=-1)
    k, p = np.asarray(cam["radial"], np.float64), np.asarray(cam["tangential"], np.float64)
    rad = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    tan = p[0] * x[..., 1] + p[1] * x[..., 0]
    xxx = x * (rad + tan)[..., None] + np.stack([p[1] * r2, p[0] * r2], axis=-1)
    return np.asarray(cam["focal"], np.float64) * xxx + np.asarray(cam["principal"], np.float64)


def _rot(yaw):
    """World->camera rotation of an upright camera (world z up) looking horizontally at
    azimuth ``yaw``: rows are the camera's x (right), y (down), z (forward) in world axes."""
    c, s = math.cos(yaw), math.sin(yaw)
    fwd = np.array([c, s, 0.0])
    right = np.array([s, -c, 0.0])
    down = np.array([0.0, 0.0, -1.0])
    return np.stack([right, down, fwd])


def _example(f=4, *, focal=(1100.0, 1100.0), seed=0, full=True):
    """A Human3.6M-shaped example whose 2D is the exact projection of its 3D."""
    rng = np.random.default_rng(seed)
    cam = {
        "rotation": _rot(0.3).astype(np.float32),
        "centre": np.asarray([-4.0, -1.0, 1.6], np.float32),
        "focal": np.asarray(focal, np.float32),
        "principal": np.asarray([505.0, 498.0], np.float32),
        "radial": np.asarray([-0.2, 0.24, -0.003], np.float32),
        "tangential": np.asarray([-0.0014, -0.001], np.float32),
        "image_size": np.asarray([W, H], np.float32),
    }
    world32 = (rng.normal(scale=0.25, size=(f, 32, 3)) + [0.0, 0.0, 1.0]).astype(np.float32)
    world17 = skeleton.convert(world32, "h36m_32", "h36m_17").astype(np.float32)
    ex = {"subject": b"S1", "fps": np.float32(50.0), "camera": cam, "valid": np.ones(f, bool)}
    for suffix, world in (("", world17), ("_full", world32)):
        if suffix and not full:
            continue
        xyz = (world.astype(np.float64) - cam["centre"]) @ cam["rotation"].astype(np.float64).T
        ex["positions_world" + suffix] = world
        ex["positions_camera" + suffix] = xyz.astype(np.float32)
        ex["keypoints_2d" + suffix] = _project(xyz, cam).astype(np.float32)
    ex["confidence"] = rng.uniform(size=(f, 17)).astype(np.float32)
    return ex


# --------------------------------------------------------------------------- flip


def test_flip_swaps_left_and_right_joints():
    ex = _example()
    out = A.flip_example(ex, layout="h36m_17")
    # h36m_17: left hip/knee/ankle 4, 5, 6 and shoulder/elbow/wrist 11, 12, 13; right 1, 2, 3, 14, 15, 16.
    pairs = [(4, 1), (5, 2), (6, 3), (11, 14), (12, 15), (13, 16)]
    swap = list(range(17))
    for a, b in pairs:
        swap[a], swap[b] = b, a
    kp = ex["keypoints_2d"]
    for j in range(17):
        np.testing.assert_allclose(out["keypoints_2d"][:, j, 0], (W - 1) - kp[:, swap[j], 0], atol=1e-4)
        np.testing.assert_array_equal(out["keypoints_2d"][:, j, 1], kp[:, swap[j], 1])
        np.testing.assert_array_equal(out["positions_camera"][:, j, 0], -ex["positions_camera"][:, swap[j], 0])
        np.testing.assert_array_equal(out["positions_camera"][:, j, 1:], ex["positions_camera"][:, swap[j], 1:])
        np.testing.assert_array_equal(out["confidence"][:, j], ex["confidence"][:, swap[j]])
    # Full layout (h36m_32): RightUpLeg 1 <-> LeftUpLeg 6, RightHand 27 <-> LeftHand 19.
    for a, b in ((1, 6), (27, 19), (0, 0)):
        np.testing.assert_array_equal(out["positions_camera_full"][:, a, 0], -ex["positions_camera_full"][:, b, 0])
    # The input is untouched.
    np.testing.assert_array_equal(ex["keypoints_2d"], _example()["keypoints_2d"])


def test_flip_keeps_camera_geometry_consistent():
    ex = _example()
    out = A.flip_example(ex, layout="h36m_17")
    cam = out["camera"]
    assert cam["principal"][0] == pytest.approx(W - 1 - 505.0)
    np.testing.assert_array_equal(cam["tangential"], np.asarray([-0.0014, 0.001], np.float32))
    for suffix in ("", "_full"):
        np.testing.assert_allclose(_project(out["positions_camera" + suffix], cam),
                                   out["keypoints_2d" + suffix], atol=2e-3)
        xyz = (out["positions_world" + suffix].astype(np.float64) - cam["centre"]) @ cam["rotation"].astype(np.float64).T
        np.testing.assert_allclose(xyz, out["positions_camera" + suffix], atol=1e-5)
    # Flipping twice is the identity.
    back = A.flip_example(out, layout="h36m_17")
    for key in ("keypoints_2d", "positions_camera", "positions_world_full"):
        np.testing.assert_allclose(back[key], ex[key], atol=1e-4)


def test_flip_mirrors_images_with_keypoints():
    ex = _example(f=1, full=False)
    image = np.zeros((1, int(H), int(W), 1), np.uint8)
    u, v = 100, 40
    image[0, v, u, 0] = 255
    ex["image"] = image
    out = A.flip_example(ex, layout="h36m_17")
    assert out["image"][0, v, int(W) - 1 - u, 0] == 255 and out["image"].sum() == 255
    with pytest.raises(ValueError, match="image"):
        A.flip_example(dict(ex, image=np.zeros((1, 5, 7, 3), np.uint8)), layout="h36m_17")


# ------------------------------------------------------------------ rotation / scale


def test_rotation_and_scale_about_the_root():
    ex = _example()
    angle, scale = 0.3, 1.2
    out = A.rotate_scale_example(ex, angle=angle, scale=scale, centre="root", layout="h36m_17")
    c = ex["keypoints_2d"][:, 0].astype(np.float64).mean(axis=0)  # h36m_17 root = pelvis 0
    ca, sa = math.cos(angle), math.sin(angle)
    d = ex["keypoints_2d"].astype(np.float64) - c
    want = c + scale * np.stack([ca * d[..., 0] - sa * d[..., 1], sa * d[..., 0] + ca * d[..., 1]], -1)
    np.testing.assert_allclose(out["keypoints_2d"], want, atol=1e-3)
    p = ex["positions_camera"].astype(np.float64)
    np.testing.assert_allclose(out["positions_camera"][..., 0], ca * p[..., 0] - sa * p[..., 1], atol=1e-5)
    np.testing.assert_allclose(out["positions_camera"][..., 2], p[..., 2], atol=1e-6)
    np.testing.assert_array_equal(out["positions_world"], ex["positions_world"])
    # With fx == fy the new camera reproduces the new 2D from the 3D, distortion included.
    cam = out["camera"]
    for suffix in ("", "_full"):
        np.testing.assert_allclose(_project(out["positions_camera" + suffix], cam),
                                   out["keypoints_2d" + suffix], atol=5e-3)
        xyz = (out["positions_world" + suffix].astype(np.float64) - cam["centre"]) @ cam["rotation"].astype(np.float64).T
        np.testing.assert_allclose(xyz, out["positions_camera" + suffix], atol=1e-5)


# --------------------------------------------------------- clip-consistent draws


def _similarity_per_frame(before, after):
    """Per frame, the complex factor z with after - mean = z (before - mean) (least squares)."""
    a = before[..., 0] + 1j * before[..., 1]
    b = after[..., 0] + 1j * after[..., 1]
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return np.sum(np.conj(a) * b, axis=1) / np.sum(np.abs(a) ** 2, axis=1)


def test_one_draw_per_clip():
    rng = np.random.default_rng(7)
    ex = _example(f=6, full=False)
    params = []
    for _ in range(4):
        out, aug = A.augment_clip(ex, rng, layout="h36m_17", flip_probability=0.0,
                                  max_rotation_deg=30.0, scale_range=(0.8, 1.25))
        z = _similarity_per_frame(ex["keypoints_2d"].astype(np.float64), out["keypoints_2d"].astype(np.float64))
        # Every frame of the clip got the same rotation and scale: the drawn ones.
        np.testing.assert_allclose(np.abs(z), aug.scale, rtol=1e-5)
        np.testing.assert_allclose(np.angle(z), aug.angle, atol=1e-5)
        assert abs(aug.angle) <= math.radians(30.0) and 0.8 <= aug.scale <= 1.25
        params.append((aug.angle, aug.scale))
    assert len(set(params)) == 4  # different clips, different draws
    # Flips: the same for all frames of a clip, and both outcomes occur over clips.
    flips = []
    for _ in range(12):
        out, aug = A.augment_clip(ex, rng, layout="h36m_17", flip_probability=0.5)
        mirrored = np.allclose(out["keypoints_2d"][:, 0, 0], (W - 1) - ex["keypoints_2d"][:, 0, 0], atol=1e-3)
        same = np.allclose(out["keypoints_2d"], ex["keypoints_2d"])
        assert mirrored == aug.flip and same == (not aug.flip)
        flips.append(aug.flip)
    assert any(flips) and not all(flips)
    # Same seed, same draws.
    a = A.augment_clip(ex, np.random.default_rng(3), layout="h36m_17", max_rotation_deg=10.0)[1]
    b = A.augment_clip(ex, np.random.default_rng(3), layout="h36m_17", max_rotation_deg=10.0)[1]
    assert (a.flip, a.angle, a.scale) == (b.flip, b.angle, b.scale)


# ------------------------------------------------------------------ random erasing


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_erasing_is_bounded_and_local(dtype):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 200 if dtype == np.uint8 else 0.8, size=(2, 5, 20, 30, 3)).astype(dtype)
    out, boxes = A.random_erasing(images, np.random.default_rng(1), probability=1.0)
    assert out.dtype == dtype and out.shape == images.shape and boxes.shape == (2, 5, 4)
    flat_in, flat_out = images.reshape(-1, 20, 30, 3), out.reshape(-1, 20, 30, 3)
    colours = []
    for n, (top, left, h, w) in enumerate(boxes.reshape(-1, 4)):
        assert h >= 1 and w >= 1 and top >= 0 and left >= 0 and top + h <= 20 and left + w <= 30
        assert 0.02 * 600 * 0.5 <= h * w <= 0.4 * 600 * 1.5
        inside = np.zeros((20, 30), bool)
        inside[top:top + h, left:left + w] = True
        np.testing.assert_array_equal(flat_out[n][~inside], flat_in[n][~inside])
        patch = flat_out[n][inside]
        assert np.all(patch == patch[0])  # one colour
        colours.append(tuple(patch[0]))
    assert len(set(colours)) > 1 and len({tuple(b) for b in boxes.reshape(-1, 4)}) > 1
    untouched, none = A.random_erasing(images, np.random.default_rng(1), probability=0.0)
    np.testing.assert_array_equal(untouched, images)
    assert not none.any()


def test_mean_pixel_of_by_hand():
    images = np.zeros((2, 3, 4, 5, 3), np.uint8)
    images[0] = [10, 20, 200]
    images[1] = [30, 41, 255]
    images[1, 0, 0, 0] = [30, 41, 0]  # one pixel of 120 differs in the last channel
    # Channel means: (10 + 30) / 2, (20 + 41) / 2, (60 * 200 + 59 * 255 + 0) / 120.
    want = np.array([20.0, 30.5, (60 * 200 + 59 * 255) / 120])
    got = A.mean_pixel_of(images)
    assert got.dtype == np.float64 and got.shape == (3,)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="images"):
        A.mean_pixel_of(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="no pixels"):
        A.mean_pixel_of(np.zeros((0, 4, 4, 3)))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_erasing_fills_with_the_mean_pixel(dtype):
    rng = np.random.default_rng(5)
    images = rng.uniform(0, 255 if dtype == np.uint8 else 1.0, size=(3, 4, 16, 24, 3)).astype(dtype)
    if dtype == np.uint8:
        mean = np.array([123.6, 116.2, 103.5])  # nearest, halves to even: 124, 116, 104
        want = np.array([124, 116, 104], np.uint8)
    else:
        mean = np.array([0.485, 0.456, 0.406])
        want = mean.astype(np.float32)
    out, boxes = A.random_erasing(images, np.random.default_rng(9), probability=0.7, mean_pixel=mean)
    assert out.dtype == dtype and out.shape == images.shape
    flat_in, flat_out = images.reshape(-1, 16, 24, 3), out.reshape(-1, 16, 24, 3)
    erased = 0
    for n, (top, left, h, w) in enumerate(boxes.reshape(-1, 4)):
        inside = np.zeros((16, 24), bool)
        inside[top:top + h, left:left + w] = True
        np.testing.assert_array_equal(flat_out[n][~inside], flat_in[n][~inside])
        np.testing.assert_array_equal(flat_out[n][inside], np.broadcast_to(want, (inside.sum(), 3)))
        erased += h > 0
    assert 0 < erased < 12
    # Deterministic from the rng; the boxes do not depend on the fill, and the stream
    # advances the same way with and without it.
    g1, g2, g3 = (np.random.default_rng(9) for _ in range(3))
    again, boxes2 = A.random_erasing(images, g1, probability=0.7, mean_pixel=mean)
    np.testing.assert_array_equal(again, out)
    np.testing.assert_array_equal(boxes2, boxes)
    _, boxes_random = A.random_erasing(images, g2, probability=0.7)
    np.testing.assert_array_equal(boxes_random, boxes)
    assert g1.random() == g2.random()
    # With mean_pixel_of of the dataset itself.
    m = A.mean_pixel_of(images)
    out_m, boxes_m = A.random_erasing(images, g3, probability=1.0, mean_pixel=m)
    top, left, h, w = boxes_m.reshape(-1, 4)[0]
    fill = np.rint(m).astype(dtype) if dtype == np.uint8 else m.astype(dtype)
    np.testing.assert_array_equal(out_m.reshape(-1, 16, 24, 3)[0, top, left], fill)
    with pytest.raises(ValueError, match=r"mean_pixel: expected \(3,\)"):
        A.random_erasing(images, np.random.default_rng(0), mean_pixel=[0.5, 0.5])
    with pytest.raises(ValueError, match="mean_pixel: expected finite"):
        A.random_erasing(images, np.random.default_rng(0), mean_pixel=[0.5, np.nan, 0.5])


# ---------------------------------------------------------------------- bad input


def test_bad_input():
    ex = _example(f=2, full=False)
    with pytest.raises(ValueError, match="rng"):
        A.augment_clip(ex, 0, layout="h36m_17")
    with pytest.raises(ValueError, match="camera"):
        A.flip_example({k: v for k, v in ex.items() if k != "camera"}, layout="h36m_17")
    with pytest.raises(ValueError, match="layout"):
        A.flip_example(ex, layout="mpi_inf_3dhp_28")
    with pytest.raises(ValueError, match="resample"):
        A.rotate_scale_example(dict(ex, image=np.zeros((2, 4, 4, 3), np.uint8)), angle=0.1, centre="box")
    with pytest.raises(ValueError, match="scale_range"):
        A.augment_clip(ex, np.random.default_rng(0), layout="h36m_17", scale_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="area_range"):
        A.random_erasing(np.zeros((4, 4, 3)), np.random.default_rng(0), area_range=(0.5, 0.2))
