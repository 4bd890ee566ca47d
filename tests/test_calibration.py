"""Tests for jpose.calibration: Anipose / Pose2Sim TOML files and default intrinsics.

References: calibration files written by hand exactly as aniposelib's ``toml.dump`` and
Pose2Sim's writer lay them out, and a NumPy port of OpenCV's ``projectPoints`` (pinhole,
radial k1 k2 k3, tangential p1 p2; Rodrigues by its closed form), independent of jpose.
"""

import math
import os

import jax
import numpy as np
import pytest

from jpose import calibration as cal
from jpose import camera as C


def x64():
    return jax.enable_x64(True)


# Laid out exactly as aniposelib's CameraGroup.dump (the `toml` package: trailing commas,
# a space after '['), translations in millimetres.
ANIPOSE = """\
[cam_0]
name = "A"
size = [ 1920, 1080,]
matrix = [ [ 1500.5, 0.0, 959.5,], [ 0.0, 1502.25, 539.5,], [ 0.0, 0.0, 1.0,],]
distortions = [ -0.21, 0.05, 0.0, 0.0, 0.012,]
rotation = [ 0.1, -0.4, 0.05,]
translation = [ 120.0, -350.0, 4200.0,]

[cam_1]
name = "B"
size = [ 1280, 720,]
matrix = [ [ 1000.0, 0.0, 650.0,], [ 0.0, 1000.0, 355.0,], [ 0.0, 0.0, 1.0,],]
distortions = [ -0.05, 0.0, 0.0, 0.0, 0.0,]
rotation = [ -0.2, 1.3, 0.1,]
translation = [ -800.0, 200.0, 3900.0,]

[cam_2]
name = "C"
size = [ 1920, 1080,]
matrix = [ [ 1700.0, 0.0, 960.0,], [ 0.0, 1700.0, 540.0,], [ 0.0, 0.0, 1.0,],]
distortions = [ 0.02, -0.01, 0.0, 0.0, 0.0,]
rotation = [ 0.05, -2.9, 0.02,]
translation = [ 300.0, -100.0, 5100.0,]

[metadata]
adjusted = true
error = 0.87
"""

# Pose2Sim's Calib.toml: free section names, 4 distortions with tangential terms, metres.
POSE2SIM = """\
[int_cam01_img]
name = "int_cam01_img"
size = [ 1088.0, 1920.0]
matrix = [ [ 1682.6, 0.0, 534.9], [ 0.0, 1686.0, 980.2], [ 0.0, 0.0, 1.0]]
distortions = [ -0.046, 0.06, -0.0006, 0.0008]
rotation = [ 1.67, 1.0, -0.66]
translation = [ 0.82, 0.69, 2.68]
fisheye = false

[int_cam02_img]
name = "int_cam02_img"
size = [ 1088.0, 1920.0]
matrix = [ [ 1700.1, 0.0, 540.3], [ 0.0, 1698.7, 962.0], [ 0.0, 0.0, 1.0]]
distortions = [ -0.03, 0.02, 0.0011, -0.0009]
rotation = [ 1.2, -1.1, 0.9]
translation = [ -0.31, 0.52, 3.05]
fisheye = false

[metadata]
adjusted = false
error = 0.0
"""


project_camera = jax.jit(C.project_camera)
project_opencv = jax.jit(cal.project_opencv)


def ring_cameras(num=3, radial=(0.0, 0.0, 0.0), tangential=(0.0, 0.0)):
    """Cameras 4 m around the origin looking at it, float64 NumPy (look-at by hand)."""
    azimuth = np.arange(num) * 2 * np.pi / num
    centre = np.stack([4 * np.cos(azimuth), 4 * np.sin(azimuth), np.full(num, 1.5)], -1)
    forward = np.array([0.0, 0.0, 1.0]) - centre
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    return C.CameraParams(
        rotation=np.stack([right, np.cross(forward, right), forward], axis=-2),
        centre=centre, focal=np.tile([1150.0, 1148.0], (num, 1)),
        principal=np.tile([500.0, 490.0], (num, 1)), radial=np.tile(radial, (num, 1)),
        tangential=np.tile(tangential, (num, 1)), image_size=np.tile([1000, 1000.0], (num, 1)))


def write(tmp_path, text, name="calibration.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def rodrigues_ref(r):
    """Closed-form Rodrigues formula, as cv2.Rodrigues."""
    theta = np.linalg.norm(r)
    k = r / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * kx @ kx


def opencv_project_ref(points, table):
    """cv2.projectPoints in NumPy: points (N, 3) in the file's units -> pixels (N, 2)."""
    k = np.array(table["matrix"], float)
    d = np.zeros(5)
    d[:len(table["distortions"])] = table["distortions"]
    k1, k2, p1, p2, k3 = d
    xc = points @ rodrigues_ref(np.array(table["rotation"], float)).T + np.array(
        table["translation"], float)
    x, y = xc[:, 0] / xc[:, 2], xc[:, 1] / xc[:, 2]
    r2 = x * x + y * y
    rad = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    xd = x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([k[0, 0] * xd + k[0, 2], k[1, 1] * yd + k[1, 2]], axis=-1)


def tables(text):
    import tomllib
    doc = tomllib.loads(text)
    return [v for key, v in doc.items() if key != "metadata"]


def points_in_view(n=20, seed=0):
    """World points (metres) near the origin, which every fixture camera looks at."""
    return np.random.default_rng(seed).uniform(-0.6, 0.6, size=(n, 3))


def test_anipose_file_projects_like_opencv(tmp_path):
    path = write(tmp_path, ANIPOSE)
    with x64():
        calib = cal.read_calibration(path, dtype=np.float64)
        assert calib.names == ("A", "B", "C")
        assert calib.sections == ("cam_0", "cam_1", "cam_2")
        assert calib.units == "mm" and calib.units_source.startswith("inferred")
        assert calib.metadata["adjusted"] is True
        world_m = points_in_view()
        for v, table in enumerate(tables(ANIPOSE)):
            ref = opencv_project_ref(world_m * 1000.0, table)  # the file works in mm
            cam = C.CameraParams(*(f[v] for f in calib.cameras))
            np.testing.assert_allclose(np.asarray(project_camera(world_m, cam)), ref,
                                       rtol=0, atol=1e-7)
            np.testing.assert_allclose(
                np.asarray(project_opencv(world_m, cam, calib.distortions[v])), ref,
                rtol=0, atol=1e-7)


def test_anipose_mapping_fields(tmp_path):
    calib = cal.read_calibration(write(tmp_path, ANIPOSE), dtype=np.float64)
    table = tables(ANIPOSE)[0]
    rot = rodrigues_ref(np.array(table["rotation"]))
    np.testing.assert_allclose(calib.cameras.rotation[0], rot, atol=1e-12)
    np.testing.assert_allclose(calib.cameras.centre[0],
                               -rot.T @ np.array(table["translation"]) / 1000, atol=1e-12)
    np.testing.assert_array_equal(calib.cameras.focal[0], [1500.5, 1502.25])
    np.testing.assert_array_equal(calib.cameras.principal[0], [959.5, 539.5])
    np.testing.assert_array_equal(calib.cameras.radial[0], [-0.21, 0.05, 0.012])  # k1 k2 k3
    np.testing.assert_array_equal(calib.cameras.image_size[1], [1280, 720])
    np.testing.assert_array_equal(calib.distortions[1], [-0.05, 0, 0, 0, 0])
    assert calib.cameras.rotation.dtype == np.float64
    assert cal.read_calibration(write(tmp_path, ANIPOSE)).cameras.focal.dtype == np.float32
    assert calib.index("B") == 1
    with pytest.raises(KeyError, match="'Z'.*'A', 'B', 'C'"):
        calib.index("Z")


def test_pose2sim_file_with_tangential_distortion(tmp_path):
    with x64():
        calib = cal.read_calibration(write(tmp_path, POSE2SIM), dtype=np.float64)
        assert calib.sections == ("int_cam01_img", "int_cam02_img")
        assert calib.units == "m"
        for v, table in enumerate(tables(POSE2SIM)):
            # Points 3 m in front of the camera on a grid over the whole image.
            cam = C.CameraParams(*(f[v] for f in calib.cameras))
            (w, h), (fx, fy), (cx, cy) = cam.image_size, cam.focal, cam.principal
            u, vv = np.meshgrid(np.linspace(0, w, 12), np.linspace(0, h, 12))
            ray = np.stack([(u.ravel() - cx) / fx, (vv.ravel() - cy) / fy,
                            np.ones(u.size)], axis=-1)
            world = 3.0 * ray @ cam.rotation + cam.centre  # R^T x_cam + c
            ref = opencv_project_ref(world, table)
            exact = np.asarray(project_opencv(world, cam, calib.distortions[v]))
            np.testing.assert_allclose(exact, ref, rtol=0, atol=1e-7)
            # jpose's own model: within the documented bound 0.4 |p| r^2 f of OpenCV's.
            approx = np.asarray(project_camera(world, cam))
            xc = (world - cam.centre) @ cam.rotation.T
            r2 = np.sum(np.asarray(xc[:, :2] / xc[:, 2:]) ** 2, axis=-1)
            p = np.linalg.norm(table["distortions"][2:4])
            bound = 0.4 * p * r2 * max(table["matrix"][0][0], table["matrix"][1][1])
            err = np.linalg.norm(approx - ref, axis=-1)
            assert np.all(err <= bound + 1e-9), (err - bound).max()
            # ... and closer than copying (p1, p2) unscaled.
            copied = project_camera(world, cam._replace(
                tangential=np.array(table["distortions"][2:4])))
            assert err.mean() < 0.6 * np.linalg.norm(np.asarray(copied) - ref, axis=-1).mean()


def test_tangential_fit_is_the_least_squares_factor():
    """TANGENTIAL_FIT minimises the mean squared field difference over a disk."""
    rng = np.random.default_rng(0)
    r = np.sqrt(rng.uniform(0, 1, 40_000)) * 0.5
    t = rng.uniform(0, 2 * np.pi, r.shape)
    x, y = r * np.cos(t), r * np.sin(t)
    p1, p2 = 1e-3, -2e-3
    r2 = x * x + y * y
    ocv = np.stack([2 * p1 * x * y + p2 * (r2 + 2 * x * x), p1 * (r2 + 2 * y * y) + 2 * p2 * x * y])

    def jpose_field(s):
        a, b = s * p1, s * p2
        tan = a * y + b * x
        return np.stack([x * tan + b * r2, y * tan + a * r2])

    scales = np.linspace(1.0, 1.8, 81)
    mse = [np.mean((jpose_field(s) - ocv) ** 2) for s in scales]
    assert abs(scales[int(np.argmin(mse))] - cal.TANGENTIAL_FIT) <= 0.011
    np.testing.assert_allclose(cal.opencv_to_jpose_tangential([p1, p2]), [1.4e-3, -2.8e-3])
    np.testing.assert_allclose(cal.jpose_to_opencv_tangential([1.4e-3, -2.8e-3]), [p1, p2])


@pytest.mark.parametrize("text", [ANIPOSE, POSE2SIM], ids=["anipose", "pose2sim"])
def test_round_trip(tmp_path, text):
    first = cal.read_calibration(write(tmp_path, text), dtype=np.float64)
    out = str(tmp_path / "out" / "written.toml")
    cal.write_calibration(out, first)
    second = cal.read_calibration(out, dtype=np.float64)
    assert second.names == first.names and second.sections == first.sections
    assert second.units == first.units and second.units_source == "file: [metadata] units"
    np.testing.assert_array_equal(second.distortions, first.distortions)
    for a, b in zip(first.cameras, second.cameras):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert second.metadata["error"] == first.metadata["error"]
    assert not [f for f in os.listdir(tmp_path / "out") if f != "written.toml"]  # no temp


def test_write_camera_params_and_units(tmp_path):
    with x64():
        cams = ring_cameras(3, radial=(-0.1, 0.02, 0.0), tangential=(1.4e-3, -7e-4))
        path = str(tmp_path / "v.toml")
        cal.write_calibration(path, cams, names=["left", "mid", "right"], units="mm")
        with open(path) as f:
            text = f.read()
        assert "[cam_0]" in text and 'name = "mid"' in text and 'units = "mm"' in text
        back = cal.read_calibration(path, dtype=np.float64)
        # Translations are in mm in the file, metres after reading.
        t = np.array(tables(text)[0]["translation"])
        np.testing.assert_allclose(t / 1000, -np.asarray(cams.rotation[0] @ cams.centre[0]),
                                   atol=1e-12)
        np.testing.assert_allclose(back.distortions[0], [-0.1, 0.02, 1e-3, -5e-4, 0.0],
                                   atol=1e-15)
        world = np.broadcast_to(points_in_view(10) + np.array([0, 0, 1.0]), (3, 10, 3))
        np.testing.assert_allclose(np.asarray(project_camera(world, back.cameras)),
                                   np.asarray(project_camera(world, cams)), atol=1e-8)
        assert cal.read_calibration(path, units="m").units_source == "given"


def test_units_given_and_cm(tmp_path):
    text = ANIPOSE.replace("[metadata]", "[metadata]\nunits = \"cm\"")
    calib = cal.read_calibration(write(tmp_path, text), dtype=np.float64)
    assert calib.units == "cm"
    mm = cal.read_calibration(write(tmp_path, ANIPOSE, "b.toml"), dtype=np.float64)
    np.testing.assert_allclose(calib.cameras.centre, mm.cameras.centre * 10)
    given = cal.read_calibration(write(tmp_path, text, "c.toml"), units="mm",
                                 dtype=np.float64)
    np.testing.assert_allclose(given.cameras.centre, mm.cameras.centre)
    with pytest.raises(ValueError, match="units must be one of"):
        cal.read_calibration(write(tmp_path, text, "d.toml"), units="inch")


def test_write_failure_leaves_existing_file(tmp_path):
    path = tmp_path / "cal.toml"
    path.write_text("old")
    cams = ring_cameras(2)
    bad = cams._replace(rotation=np.asarray(cams.rotation) * 2)
    with pytest.raises(ValueError, match="rotation matrices"):
        cal.write_calibration(str(path), bad)
    with pytest.raises(ValueError, match="names must be 2 distinct"):
        cal.write_calibration(str(path), cams, names=["a", "a"])
    with pytest.raises(ValueError, match=r"distortions must have shape \(2, 4\)"):
        cal.write_calibration(str(path), cams, distortions=np.zeros((2, 3)))
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["cal.toml"]


def _edit(field_line, new_line):
    assert field_line in ANIPOSE
    return ANIPOSE.replace(field_line, new_line, 1)


@pytest.mark.parametrize("text, pattern", [
    (_edit("matrix = [ [ 1500.5, 0.0, 959.5,], [ 0.0, 1502.25, 539.5,], [ 0.0, 0.0, 1.0,],]\n",
           ""), r"\[cam_0\] matrix: missing"),
    (_edit("[ 0.0, 0.0, 1.0,],]\ndistortions = [ -0.21", "]\ndistortions = [ -0.21"),
     r"\[cam_0\] matrix: expected a 3x3 array"),
    (_edit("[ 1500.5, 0.0, 959.5,]", "[ 1500.5, 3.0, 959.5,]"), r"\[cam_0\] matrix: skew"),
    (_edit("distortions = [ -0.05, 0.0, 0.0, 0.0, 0.0,]", "distortions = [ -0.05, 0.0, 0.0,]"),
     r"\[cam_1\] distortions: expected 4 or 5"),
    (_edit("rotation = [ -0.2, 1.3, 0.1,]", 'rotation = [ -0.2, "x", 0.1,]'),
     r"\[cam_1\] rotation: expected a 3 array"),
    (_edit("translation = [ 300.0, -100.0, 5100.0,]", "translation = [ 300.0, -100.0,]"),
     r"\[cam_2\] translation: expected a 3 array"),
    (_edit("size = [ 1280, 720,]", "size = [ 1280, -720,]"), r"\[cam_1\] size: expected"),
    (_edit('name = "B"\n', 'name = "B"\nfisheye = true\n'), r"\[cam_1\] fisheye: fisheye"),
    (_edit('name = "C"', 'name = "A"'), r"camera names must be distinct, \['A'\]"),
    ("[cam_0\nname = 1", "not a valid TOML file"),
    ("[metadata]\nerror = 1.0\n", "no camera table"),
])
def test_bad_files_name_file_and_field(tmp_path, text, pattern):
    path = write(tmp_path, text, "broken.toml")
    with pytest.raises(ValueError, match=pattern) as err:
        cal.read_calibration(path)
    assert path in str(err.value)


def test_ambiguous_units_and_missing_file(tmp_path):
    text = POSE2SIM.replace("[ 0.82, 0.69, 2.68]", "[ 8.2, 6.9, 50.0]").replace(
        "[ -0.31, 0.52, 3.05]", "[ -3.1, 5.2, 60.0]")
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match="cannot tell the unit.*pass units="):
        cal.read_calibration(path)
    assert cal.read_calibration(path, units="cm").units == "cm"
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        cal.read_calibration(str(tmp_path / "nope.toml"))


def test_default_intrinsics(tmp_path):
    intr = cal.default_intrinsics(1920, 1080)
    np.testing.assert_array_equal(intr.focal, [1920, 1920])
    np.testing.assert_array_equal(intr.principal, [960, 540])
    np.testing.assert_array_equal(intr.image_size, [1920, 1080])
    assert intr.source.startswith("default: f = max(width, height) = 1920 px (53.1 degrees")
    # The stated field of view: the long side's edges project at +-53.13/2 degrees.
    half = math.degrees(math.atan((1920 / 2) / intr.focal[0]))
    assert abs(2 * half - 53.13) < 0.01
    portrait = cal.default_intrinsics(720, 1280)
    np.testing.assert_array_equal(portrait.focal, [1280, 1280])
    given = cal.default_intrinsics(640, 480, focal_length=(500, 510))
    np.testing.assert_array_equal(given.focal, [500, 510])
    assert given.source.startswith("given: f = (500, 510) px")
    cam = given.camera()
    assert C.camera_batch_shape(cam) == ()
    np.testing.assert_allclose(np.asarray(project_camera(np.array([0.0, 0.0, 2.0]), cam)),
                               [320, 240])
    # One camera without a leading axis writes and reads back (centre 0: metres).
    path = tmp_path / "one.toml"
    cal.write_calibration(str(path), cam, names=["phone"])
    back = cal.read_calibration(str(path), dtype=np.float64)
    assert back.names == ("phone",) and back.cameras.focal.shape == (1, 2)
    np.testing.assert_array_equal(back.cameras.focal[0], [500, 510])
    np.testing.assert_array_equal(back.cameras.centre[0], [0, 0, 0])
    for args, kwargs in [((0, 480), {}), ((640, float("nan")), {}),
                         ((640, 480), {"focal_length": -1}),
                         ((640, 480), {"focal_length": (1, 2, 3)}),
                         ((640, 480), {"focal_length": "wide"})]:
        with pytest.raises(ValueError):
            cal.default_intrinsics(*args, **kwargs)
