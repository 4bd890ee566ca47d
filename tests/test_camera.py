"""Tests for jpose.camera against independent references.

References: scipy.spatial.transform.Rotation (scalar-LAST quaternions), NumPy ports of the
published Human3.6M ``ProjectPointRadial`` formula and of VideoPose3D's ``project_to_2d``,
the official Human3.6M calibration of camera 54138969 (S1), finite differences, and
hand-computed values.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jpose import camera as C


def x64():
    """float64 context (jax.enable_x64 replaced jax.experimental.enable_x64)."""
    return jax.enable_x64(True)


def to_scipy_quat(q):
    return np.concatenate([q[..., 1:], q[..., :1]], axis=-1)


def from_scipy_quat(q):
    return np.concatenate([q[..., 3:], q[..., :3]], axis=-1)


def canonical(q):
    """Quaternion sign with w >= 0 (q and -q are the same rotation)."""
    return np.where(q[..., :1] < 0, -q, q)


def rotvecs_with_special_angles(seed=0):
    """Random axes with angles at 0, tiny, around the Taylor thresholds, generic, near pi."""
    rng = np.random.default_rng(seed)
    angles = np.array(
        [0.0, 1e-12, 1e-8, 1e-5, 2.4e-3, 2.5e-3, 0.069, 0.071, 0.3, 1.0, 2.0, 3.0,
         math.pi - 1e-3, math.pi - 1e-6]
    )
    axes = rng.normal(size=(len(angles), 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    generic = Rotation.random(20, random_state=seed).as_rotvec()
    return np.concatenate([axes * angles[:, None], generic])


# --------------------------------------------------------------------------------------
# Human3.6M reference data.
# Official H36M calibration of camera 54138969 for subject S1 (metadata.xml as read by
# Martinez et al.'s cameras.py): world-to-camera R, centre T in mm, f, c, k, p.
H36M_R = np.array(
    [
        [-0.9153617321513369, 0.40180836633680234, 0.02574754463350265],
        [0.051548117060134555, 0.1803735689384521, -0.9822464900705729],
        [-0.399319034032262, -0.8977836111057917, -0.185819527201491],
    ]
)
H36M_T_MM = np.array([1841.10702774543, 4955.28462344526, 1563.4453958977])
H36M_F = np.array([1145.04940458804, 1143.78109572365])
H36M_C = np.array([512.541504956548, 515.4514869776])
H36M_K = np.array([-0.207098910824901, 0.247775183068982, -0.00307515035078854])
H36M_P = np.array([-0.00142447157470321, -0.000975698859470499])

# The same camera as VideoPose3D's common/h36m_dataset.py stores it (float32-rounded):
# camera-to-world quaternion, centre in mm, and tangential_distortion = H36M p reversed.
VP3D_ORIENTATION = np.array(
    [0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088]
)
VP3D_TRANSLATION_MM = np.array([1841.1070556640625, 4955.28466796875, 1563.4454345703125])
VP3D_INTRINSIC_PX = np.array(
    [1145.0494384765625, 1143.7811279296875, 512.54150390625, 515.4514770507812,
     -0.20709891617298126, 0.24777518212795258, -0.0030751503072679043,
     -0.0009756988729350269, -0.00142447161488235]
)
VP3D_RES = (1000, 1002)

# All four S1 cameras from VideoPose3D's table (orientation, translation in mm).
S1_ORIENTATIONS = np.array(
    [
        [0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088],
        [0.6157187819480896, -0.764836311340332, -0.14833825826644897, 0.11794740706682205],
        [0.14651472866535187, -0.14647851884365082, 0.7653023600578308, -0.6094175577163696],
        [0.5834008455276489, -0.7853162288665771, 0.14548823237419128, -0.14749594032764435],
    ]
)
S1_TRANSLATIONS_MM = np.array(
    [
        [1841.1070556640625, 4955.28466796875, 1563.4454345703125],
        [1761.278564453125, -5078.0068359375, 1606.2650146484375],
        [-1846.7777099609375, 5215.04638671875, 1491.972412109375],
        [-1794.7896728515625, -3722.698974609375, 1574.8927001953125],
    ]
)
S1_FOCAL = np.array(
    [[1145.0494384765625, 1143.7811279296875], [1149.6756591796875, 1147.5916748046875],
     [1149.1407470703125, 1148.7989501953125], [1145.5113525390625, 1144.77392578125]]
)
S1_CENTER = np.array(
    [[512.54150390625, 515.4514770507812], [508.8486328125, 508.0649108886719],
     [519.8158569335938, 501.40264892578125], [514.9682006835938, 501.88201904296875]]
)
S1_RES = np.array([[1000.0, 1002.0], [1000.0, 1000.0], [1000.0, 1000.0], [1000.0, 1002.0]])


def h36m_s1_cameras():
    return C.CameraParams(
        rotation=C.quat_to_matrix(C.quat_conjugate(S1_ORIENTATIONS)),
        centre=jnp.asarray(S1_TRANSLATIONS_MM / 1000),
        focal=jnp.asarray(S1_FOCAL),
        principal=jnp.asarray(S1_CENTER),
        radial=jnp.zeros((4, 3)),
        tangential=jnp.zeros((4, 2)),
        image_size=jnp.asarray(S1_RES),
    )


def subject_points(n=40, seed=0, centre=(0.0, 0.0, 0.0)):
    """Points filling a 0.8 m x 0.8 m x 1.8 m box standing on the ground (a person)."""
    rng = np.random.default_rng(seed)
    lo = np.array([centre[0] - 0.4, centre[1] - 0.4, 0.0])
    hi = np.array([centre[0] + 0.4, centre[1] + 0.4, 1.8])
    return lo + (hi - lo) * rng.uniform(size=(n, 3))


# --------------------------------------------------------------------------------------
# Independent NumPy references.


def h36m_project_point_radial(P, R, T, f, c, k, p):
    """Loop port of Human3.6M's ProjectPointRadial.m: P (N, 3) world -> (N, 2) pixels."""
    out = np.empty((len(P), 2))
    for n, point in enumerate(P):
        X = R @ (point - T)
        x, y = X[0] / X[2], X[1] / X[2]
        r2 = x * x + y * y
        radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
        tan = p[0] * y + p[1] * x
        xd = x * (radial + tan) + p[1] * r2
        yd = y * (radial + tan) + p[0] * r2
        out[n] = [f[0] * xd + c[0], f[1] * yd + c[1]]
    return out


def videopose3d_project_to_2d(X, camera_params):
    """NumPy port of VideoPose3D common/camera.py:project_to_2d for one camera (9,)."""
    f = camera_params[..., :2]
    c = camera_params[..., 2:4]
    k = camera_params[..., 4:7]
    p = camera_params[..., 7:]
    XX = np.clip(X[..., :2] / X[..., 2:], -1, 1)
    r2 = np.sum(XX[..., :2] ** 2, axis=-1, keepdims=True)
    radial = 1 + np.sum(k * np.concatenate((r2, r2**2, r2**3), axis=-1), axis=-1, keepdims=True)
    tan = np.sum(p * XX, axis=-1, keepdims=True)
    XXX = XX * (radial + tan) + p * r2
    return f * XXX + c


def videopose3d_normalize_screen_coordinates(X, w, h):
    return X / w * 2 - [1, h / w]


# --------------------------------------------------------------------------------------
# Rotations. Computations are jitted in blocks: one compile per block is much cheaper on
# CPU than compiling every eager primitive separately.


@jax.jit
def _quat_block(qa, qb, v):
    return dict(
        matrix=C.quat_to_matrix(qa),
        norm=jnp.linalg.norm(C.quat_normalize(qa), axis=-1),
        rotated=C.quat_rotate(qa, v),
        product=C.quat_multiply(C.quat_normalize(qa), qb),
        inverse=C.quat_to_matrix(C.quat_conjugate(qa)),
    )


def test_quaternion_ops_match_scipy():
    rng = np.random.default_rng(1)
    rot_a = Rotation.random(16, random_state=2)
    rot_b = Rotation.random(16, random_state=3)
    # Unnormalised inputs: the functions normalise where documented.
    scale = rng.uniform(0.5, 2.0, size=(16, 1))
    qa = from_scipy_quat(rot_a.as_quat()) * scale
    qb = from_scipy_quat(rot_b.as_quat())
    v = rng.normal(size=(16, 3))
    with x64():
        out = _quat_block(qa, qb, v)
    np.testing.assert_allclose(out["matrix"], rot_a.as_matrix(), atol=1e-12)
    np.testing.assert_allclose(out["norm"], np.ones(16), atol=1e-14)
    np.testing.assert_allclose(out["rotated"], rot_a.apply(v), atol=1e-12)
    np.testing.assert_allclose(
        canonical(np.asarray(out["product"])),
        canonical(from_scipy_quat((rot_a * rot_b).as_quat())),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        Rotation.from_quat(to_scipy_quat(np.asarray(out["product"]))).as_matrix(),
        (rot_a * rot_b).as_matrix(),
        atol=1e-12,
    )
    np.testing.assert_allclose(out["inverse"], rot_a.inv().as_matrix(), atol=1e-12)


def test_matrix_to_quat_matches_scipy_including_every_pivot():
    rots = Rotation.random(32, random_state=4)
    # Rotations by ~pi about x, y, z force the x, y and z pivots of Shepperd's method.
    special = Rotation.from_rotvec(
        np.array([[math.pi - 1e-7, 0, 0], [0, math.pi - 1e-7, 0], [0, 0, math.pi - 1e-7],
                  [0.0, 0.0, 0.0], [1e-9, -2e-9, 0.0]])
    )
    # Exactly pi: the quaternion sign is ambiguous, so those are compared as rotations.
    exact_pi = Rotation.from_rotvec(math.pi * np.eye(3)).as_matrix()
    matrices = np.concatenate([rots.as_matrix(), special.as_matrix(), exact_pi])
    expected = canonical(from_scipy_quat(np.concatenate([rots.as_quat(), special.as_quat()])))
    with x64():
        q, back = jax.jit(lambda m: (C.matrix_to_quat(m), C.quat_to_matrix(C.matrix_to_quat(m))))(
            matrices
        )
    q = np.asarray(q)
    assert np.all(q[:, 0] >= 0)
    np.testing.assert_allclose(q[:-3], expected, atol=1e-12)
    np.testing.assert_allclose(back, matrices, atol=1e-14)


@jax.jit
def _axis_angle_block(r, matrices):
    matrix = C.axis_angle_to_matrix(r)
    quat = C.axis_angle_to_quat(r)
    return dict(
        matrix=matrix,
        quat=quat,
        log=C.matrix_to_axis_angle(matrix),
        log_reference=C.matrix_to_axis_angle(matrices),
        quat_log=C.quat_to_axis_angle(quat),
    )


@pytest.mark.parametrize("dtype,atol", [("float64", 1e-9), ("float32", 2e-6)])
def test_axis_angle_matches_scipy(dtype, atol):
    rotvec = rotvecs_with_special_angles()
    rots = Rotation.from_rotvec(rotvec)
    with jax.enable_x64(dtype == "float64"):
        out = _axis_angle_block(
            jnp.asarray(rotvec, dtype=dtype), jnp.asarray(rots.as_matrix(), dtype)
        )
    assert out["matrix"].dtype == out["quat"].dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(out["matrix"], rots.as_matrix(), atol=atol)
    np.testing.assert_allclose(out["quat"], canonical(from_scipy_quat(rots.as_quat())), atol=atol)
    # The log map recovers the rotation vector (unique for angles < pi). Near pi the
    # rotation vector of a float32 matrix is only determined to ~sqrt(eps): a property of
    # the problem, not of the method (the float64 case checks the method).
    log_atol = atol if dtype == "float64" else 2e-3
    np.testing.assert_allclose(out["log"], rotvec, atol=log_atol)
    np.testing.assert_allclose(out["log_reference"], rots.as_rotvec(), atol=log_atol)
    np.testing.assert_allclose(out["quat_log"], rotvec, atol=atol)


def test_log_map_near_pi_uses_the_right_axis():
    angles = np.array([math.pi - 1e-6, math.pi - 1e-3])
    rotvec = (angles[:, None, None] * np.eye(3)).reshape(-1, 3)
    with x64():
        r = jax.jit(C.matrix_to_axis_angle)(Rotation.from_rotvec(rotvec).as_matrix())
    np.testing.assert_allclose(r, rotvec, atol=1e-9)


def skew_generators():
    g = np.zeros((3, 3, 3))  # g[:, :, i] = d R / d r_i at r = 0 = skew(e_i)
    g[1, 2, 0], g[2, 1, 0] = -1, 1
    g[0, 2, 1], g[2, 0, 1] = 1, -1
    g[0, 1, 2], g[1, 0, 2] = -1, 1
    return g


def central_difference(fn, r, h=1e-6):
    """d fn / d r (..., 3, 3, 3) for a batch of rotation vectors r (..., 3), one call."""
    steps = h * np.eye(3)
    plus = np.asarray(fn(r[..., None, :] + steps))  # (..., 3 [direction], 3, 3)
    minus = np.asarray(fn(r[..., None, :] - steps))
    return np.moveaxis((plus - minus) / (2 * h), -3, -1)


def _log_exp(x):
    return C.matrix_to_axis_angle(C.axis_angle_to_matrix(x))


def _quat_round_trip(x):
    return C.quat_to_axis_angle(C.axis_angle_to_quat(x))


@jax.jit
def _gradient_block(zero, tiny, generic):
    """Jacobians at r = 0, at a batch of tiny angles, and of two round trips."""
    return dict(
        fwd_zero=jax.jacfwd(C.axis_angle_to_matrix)(zero),
        rev_zero=jax.jacrev(C.axis_angle_to_matrix)(zero),
        matrix=jax.vmap(jax.jacfwd(C.axis_angle_to_matrix))(tiny),
        quat=jax.vmap(jax.jacfwd(C.axis_angle_to_quat))(tiny),
        log_exp=jax.vmap(jax.jacfwd(_log_exp))(generic),
        quat_round_trip=jax.vmap(jax.jacrev(_quat_round_trip))(generic),
    )


def test_rodrigues_gradient_at_zero_and_tiny_angles_x64():
    direction = np.array([0.3, -0.5, 0.81])
    direction /= np.linalg.norm(direction)
    # Around 0 and across the float64 (~2.4e-3) and float32 (~0.07) Taylor thresholds.
    angles = np.array([1e-12, 1e-7, 1e-4, 2.40e-3, 2.45e-3, 0.069, 0.071, 0.5])
    tiny = angles[:, None] * direction
    generic = np.stack([np.zeros(3), 1e-9 * direction, 0.05 * direction, 2.0 * direction])
    with x64():
        out = _gradient_block(np.zeros(3), tiny, generic)
        fd = central_difference(jax.jit(C.axis_angle_to_matrix), tiny)
    assert out["fwd_zero"].dtype == jnp.float64
    # Exactly the skew generators at r = 0, forward and reverse mode.
    np.testing.assert_array_equal(out["fwd_zero"], skew_generators())
    np.testing.assert_array_equal(out["rev_zero"], skew_generators())
    np.testing.assert_allclose(out["matrix"], fd, atol=1e-8)
    # At tiny angles the Jacobian is the generator up to O(angle).
    np.testing.assert_allclose(
        out["matrix"][:3], np.broadcast_to(skew_generators(), (3, 3, 3, 3)), atol=1e-4
    )
    # d log(exp(r)) / dr = I for |r| < pi, including exactly 0 (log map near 0).
    eyes = np.broadcast_to(np.eye(3), (4, 3, 3))
    np.testing.assert_allclose(out["log_exp"], eyes, atol=1e-8)
    np.testing.assert_allclose(out["quat_round_trip"], eyes, atol=1e-8)


def test_rodrigues_gradient_float32_is_finite():
    angles = np.array([1e-30, 1e-8, 1e-3, 0.069, 0.071])
    tiny = jnp.asarray(angles[:, None] * np.array([0.6, 0.0, -0.8]), jnp.float32)
    # Near pi the quaternion has w ~ 0; gradients must stay finite there too.
    generic = jnp.asarray([[0.0, 0.0, 0.0], [1e-20, 0.0, 0.0], [0.0, 0.05, 0.0],
                           [0.0, 0.0, math.pi - 1e-3]], jnp.float32)
    out = _gradient_block(jnp.zeros(3, jnp.float32), tiny, generic)
    assert out["fwd_zero"].dtype == jnp.float32
    np.testing.assert_array_equal(out["fwd_zero"], skew_generators())
    np.testing.assert_array_equal(out["rev_zero"], skew_generators())
    for name in ("matrix", "quat", "log_exp", "quat_round_trip"):
        assert np.all(np.isfinite(out[name])), name
    np.testing.assert_allclose(
        out["matrix"][:3], np.broadcast_to(skew_generators(), (3, 3, 3, 3)), atol=1e-3
    )
    np.testing.assert_allclose(out["log_exp"][:3], np.broadcast_to(np.eye(3), (3, 3, 3)),
                               atol=1e-3)


def test_look_at_hand_case_and_convention():
    # Camera 5 m along -y, looking along +y at 1 m height: x_cam = world x (right),
    # y_cam = -world z (down), z_cam = world y (forward).
    rotation = C.look_at(jnp.array([0.0, -5.0, 1.0]), jnp.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(
        rotation, [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-7
    )


def test_look_at_puts_target_on_optical_axis():
    rng = np.random.default_rng(5)
    eye = rng.normal(size=(6, 3)) * 4
    target = rng.normal(size=(6, 3))
    rotation = C.look_at(eye, target)
    np.testing.assert_allclose(
        np.asarray(rotation) @ np.swapaxes(np.asarray(rotation), -1, -2),
        np.broadcast_to(np.eye(3), (6, 3, 3)),
        atol=1e-5,
    )
    np.testing.assert_allclose(np.linalg.det(np.asarray(rotation)), np.ones(6), atol=1e-5)
    focal = jnp.asarray([1150.0, 1140.0])
    principal = jnp.asarray([512.0, 498.0])
    on_axis = C.world_to_camera(target[:, None, :], rotation, eye)
    assert np.all(np.asarray(on_axis)[..., 2] > 0)
    uv = C.project_perspective(on_axis, focal, principal, jnp.asarray([0.1, -0.2, 0.05]),
                               jnp.asarray([0.01, -0.02]))
    np.testing.assert_allclose(uv, np.broadcast_to(principal, (6, 1, 2)), atol=1e-3)
    # A point above the target (world +z) appears higher in the image (smaller v).
    above = C.project_perspective(
        C.world_to_camera((target + [0, 0, 0.5])[:, None, :], rotation, eye), focal, principal
    )
    assert np.all(np.asarray(above)[..., 1] < principal[1])


# --------------------------------------------------------------------------------------
# Extrinsics and projection.


def test_videopose3d_quaternion_matches_official_h36m_rotation():
    # VideoPose3D's orientation is camera-to-world; our rotation is world-to-camera.
    with x64():
        rotation = C.quat_to_matrix(C.quat_conjugate(VP3D_ORIENTATION))
    np.testing.assert_allclose(rotation, H36M_R, atol=1e-6)
    # ... and the reversed-tangential claim: VP3D's table stores the official p reversed.
    np.testing.assert_allclose(VP3D_INTRINSIC_PX[7:], H36M_P[::-1], rtol=1e-6)


def test_world_camera_round_trip():
    rng = np.random.default_rng(6)
    points = rng.normal(size=(3, 7, 3))
    rotation = Rotation.random(3, random_state=7).as_matrix()
    centre = rng.normal(size=(3, 3))
    with x64():
        cam = C.world_to_camera(points, rotation, centre)
        expected = np.einsum("vij,vnj->vni", rotation, points - centre[:, None])
        np.testing.assert_allclose(cam, expected, atol=1e-12)
        np.testing.assert_allclose(C.camera_to_world(cam, rotation, centre), points, atol=1e-12)


@pytest.mark.parametrize("dtype,atol", [("float64", 1e-8), ("float32", 2e-3)])
def test_projection_matches_h36m_formula(dtype, atol):
    points = subject_points(30, seed=9)
    # The official camera, and one with exaggerated distortion so that any mix-up of the
    # coefficients (e.g. p1 <-> p2) moves pixels by far more than the tolerance.
    cases = [(H36M_K, H36M_P), (np.array([-0.25, 0.18, -0.05]), np.array([0.03, -0.05]))]
    for k, p in cases:
        expected = h36m_project_point_radial(points, H36M_R, H36M_T_MM / 1000, H36M_F,
                                             H36M_C, k, p)
        with jax.enable_x64(dtype == "float64"):
            cam = C.CameraParams(
                rotation=jnp.asarray(H36M_R, dtype),
                centre=jnp.asarray(H36M_T_MM / 1000, dtype),
                focal=jnp.asarray(H36M_F, dtype),
                principal=jnp.asarray(H36M_C, dtype),
                radial=jnp.asarray(k, dtype),
                tangential=jnp.asarray(p, dtype),
                image_size=jnp.asarray([1000.0, 1002.0], dtype),
            )
            uv = C.project_camera(jnp.asarray(points, dtype), cam)
            assert uv.dtype == jnp.dtype(dtype)
            np.testing.assert_allclose(uv, expected, atol=atol)
            if p[0] != H36M_P[0]:  # exaggerated case: a p1 <-> p2 mix-up is visible
                swapped = C.project_camera(
                    jnp.asarray(points, dtype), cam._replace(tangential=cam.tangential[::-1])
                )
                assert np.max(np.abs(np.asarray(swapped) - expected)) > 100 * atol
    # Sanity: the subject, near the world origin, is seen inside the 1000x1002 image.
    assert np.all((expected > 0) & (expected < 1000))


def test_videopose3d_intrinsics9_parity():
    rng = np.random.default_rng(10)
    points_cam = np.concatenate(
        [rng.uniform(-1.5, 1.5, size=(25, 2)), rng.uniform(3.0, 6.0, size=(25, 1))], axis=-1
    )  # |x / z| < 1, so VideoPose3D's clamp is inactive
    with x64():
        rotation = C.quat_to_matrix(C.quat_conjugate(VP3D_ORIENTATION))
        cam = C.from_intrinsics9(
            VP3D_INTRINSIC_PX,
            image_size=VP3D_RES,
            rotation=rotation,
            centre=VP3D_TRANSLATION_MM / 1000,
        )
        np.testing.assert_allclose(cam.tangential, VP3D_INTRINSIC_PX[[8, 7]])
        np.testing.assert_allclose(C.intrinsics9(cam), VP3D_INTRINSIC_PX, rtol=1e-15)
        uv = C.project_perspective(points_cam, cam.focal, cam.principal, cam.radial,
                                   cam.tangential)
        np.testing.assert_allclose(
            uv, videopose3d_project_to_2d(points_cam, VP3D_INTRINSIC_PX), atol=1e-9
        )
        # VideoPose3D's normalised-screen intrinsics (h36m_dataset.py) project to screen
        # coordinates of the same pixels.
        w, h = VP3D_RES
        vp3d_screen = np.concatenate(
            [VP3D_INTRINSIC_PX[:2] / w * 2,
             videopose3d_normalize_screen_coordinates(VP3D_INTRINSIC_PX[2:4], w, h),
             VP3D_INTRINSIC_PX[4:]]
        )
        np.testing.assert_allclose(C.intrinsics9(cam, screen=True), vp3d_screen, atol=1e-14)
        np.testing.assert_allclose(
            C.pixels_to_screen(uv, cam.image_size),
            videopose3d_project_to_2d(points_cam, vp3d_screen),
            atol=1e-12,
        )
        from_screen = C.from_intrinsics9(vp3d_screen, image_size=VP3D_RES, screen=True)
        np.testing.assert_allclose(from_screen.focal, VP3D_INTRINSIC_PX[:2], atol=1e-9)
        np.testing.assert_allclose(from_screen.principal, VP3D_INTRINSIC_PX[2:4], atol=1e-9)
        np.testing.assert_array_equal(from_screen.rotation, np.eye(3))
        # And it agrees with the official H36M formula with the official p.
        world = C.camera_to_world(points_cam, cam.rotation, cam.centre)
        expected = h36m_project_point_radial(np.asarray(world), H36M_R, H36M_T_MM / 1000,
                                             H36M_F, H36M_C, H36M_K, H36M_P)
        np.testing.assert_allclose(C.project_camera(world, cam), expected, atol=0.05)


# Jitted entry points shared by the tests below (one compile per shape, not per primitive).
project_camera = jax.jit(C.project_camera)
project_camera_masked = jax.jit(C.project_camera_masked)
virtual_cameras = jax.jit(
    C.virtual_cameras,
    static_argnums=0,
    static_argnames=("azimuth_jitter", "height_jitter", "up_axis", "dtype"),
)
augment_views = jax.jit(
    C.augment_views,
    static_argnums=1,
    static_argnames=("azimuth_jitter", "height_jitter", "up_axis"),
)


@jax.jit
def _masked_block(points, focal, principal, radial, tangential):
    def loss(p):
        uv, valid = C.project_perspective_masked(p, focal, principal, radial, tangential)
        return jnp.sum(jnp.where(valid[:, None], uv, 0.0) ** 2)

    uv, valid = C.project_perspective_masked(points, focal, principal, radial, tangential)
    return dict(
        uv=uv,
        valid=valid,
        raw=C.project_perspective(points, focal, principal, radial, tangential),
        near=C.project_perspective_masked(points, focal, principal, min_depth=0.1)[1],
        grad=jax.grad(loss)(points),
    )


def test_masked_projection():
    points = jnp.asarray([[0.2, -0.1, 2.0], [0.3, 0.3, -1.0], [0.1, 0.1, 0.0], [0.0, 0.1, 0.05]])
    principal = jnp.asarray([500.0, 400.0])
    out = _masked_block(points, jnp.asarray([1000.0, 1000.0]), principal,
                        jnp.asarray([0.1, 0.0, 0.0]), jnp.asarray([0.01, 0.02]))
    valid = np.asarray(out["valid"])
    np.testing.assert_array_equal(valid, [True, False, False, True])
    np.testing.assert_allclose(out["uv"][valid], out["raw"][valid], rtol=1e-6)
    np.testing.assert_allclose(out["uv"][~valid], np.broadcast_to(principal, (2, 2)))
    np.testing.assert_array_equal(out["near"], [True, False, False, False])
    # Behind-camera and on-plane points: finite, zero gradient; valid ones: nonzero.
    assert np.all(np.isfinite(out["grad"]))
    np.testing.assert_array_equal(out["grad"][1:3], 0.0)
    assert np.all(np.abs(np.asarray(out["grad"])[[0, 3]]).sum(-1) > 0)
    # project_camera_masked = world_to_camera + project_perspective_masked.
    cams = virtual_cameras(2)
    world = jnp.broadcast_to(jnp.asarray(subject_points(5), jnp.float32), (2, 5, 3))
    uv_c, valid_c = project_camera_masked(world, cams)
    np.testing.assert_allclose(uv_c, project_camera(world, cams), rtol=1e-6)
    assert bool(np.all(valid_c))
    # ... and marks a point behind a camera: camera 0 is at +x looking towards -x.
    behind = jnp.asarray([[[10.0, 0.0, 1.0]], [[0.0, 0.0, 1.0]]])
    np.testing.assert_array_equal(project_camera_masked(behind, cams)[1], [[False], [True]])


@jax.jit
def _simple_projections_block(points, scale, offset, focal, principal, weights):
    proj = C.project_perspective(points, focal, principal)
    return dict(
        ortho=C.project_orthographic(points),
        scaled=C.project_scaled_orthographic(points, scale, offset),
        weak=C.weak_perspective(points, focal, principal),
        perspective=proj,
        weak_scale=C.weak_perspective_scale(points, focal),
        weighted_scale=C.weak_perspective_scale(points, focal, weights=weights),
        back=C.backproject(proj, points[..., 2], focal, principal),
    )


def test_orthographic_weak_perspective_and_backproject():
    points = jnp.asarray([[[1.0, 2.0, 4.0], [-1.0, 0.5, 4.0]], [[0.5, 0.5, 2.0], [0.0, 1.0, 6.0]]])
    out = _simple_projections_block(
        points,
        jnp.asarray([2.0, 3.0]),
        jnp.asarray([[1.0, 1.0], [0.0, -1.0]]),
        jnp.asarray([100.0, 200.0]),
        jnp.asarray([10.0, 20.0]),
        jnp.asarray([[1.0, 1.0], [0.0, 1.0]]),
    )
    np.testing.assert_array_equal(out["ortho"], points[..., :2])
    np.testing.assert_allclose(out["scaled"], [[[3, 5], [-1, 2]], [[1.5, 0.5], [0, 2]]])
    # Pose 0 has all joints at depth 4: weak perspective == perspective.
    np.testing.assert_allclose(out["weak"][0], out["perspective"][0], rtol=1e-6)
    np.testing.assert_allclose(out["perspective"][0], [[35, 120], [-15, 45]], rtol=1e-6)
    # Pose 1: mean depth 4 -> scale (25, 50) px/m; weighted by (0, 1): depth 6.
    np.testing.assert_allclose(out["weak_scale"][1], [25.0, 50.0])
    np.testing.assert_allclose(out["weak"][1], [[22.5, 45.0], [10.0, 70.0]])
    np.testing.assert_allclose(out["weighted_scale"][1], [100.0 / 6, 200.0 / 6], rtol=1e-6)
    # backproject inverts undistorted projection.
    np.testing.assert_allclose(out["back"], points, rtol=1e-6)


def test_pixels_screen_hand_values_and_round_trip():
    size = jnp.asarray([1000.0, 1002.0])
    uv = jnp.asarray([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0], [250.0, 0.0]])
    xy = C.pixels_to_screen(uv, size)
    np.testing.assert_allclose(xy, [[-1, -1.002], [1, 1.002], [0, 0], [-0.5, -1.002]],
                               atol=1e-6)
    np.testing.assert_allclose(
        xy, videopose3d_normalize_screen_coordinates(np.asarray(uv), 1000, 1002), atol=1e-6
    )
    np.testing.assert_allclose(C.screen_to_pixels(xy, size), uv, atol=1e-4)
    # Per-view sizes (V, 2) with keypoints (V, J, 2); integer sizes are accepted.
    sizes = np.array([[1000, 1002], [640, 480]])
    kp = np.random.default_rng(11).uniform(0, 600, size=(2, 5, 2)).astype(np.float32)
    screen = C.pixels_to_screen(kp, sizes)
    np.testing.assert_allclose(
        screen[1], videopose3d_normalize_screen_coordinates(kp[1], 640, 480), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(C.screen_to_pixels(screen, sizes), kp, atol=1e-4)


# --------------------------------------------------------------------------------------
# Virtual cameras.


def horizontal_azimuth(centre, target):
    d = np.asarray(centre) - np.asarray(target)
    return np.arctan2(d[:, 1], d[:, 0]), np.hypot(d[:, 0], d[:, 1])


def test_virtual_cameras_see_the_subject():
    target = (0.3, -0.2, 1.0)
    cams = virtual_cameras(8, distance=4.5, height=1.7, target=target, focal=1145.0,
                           image_size=(1000, 1002), azimuth_offset=0.25)
    assert C.camera_batch_shape(cams) == (8,)
    assert all(x.dtype == jnp.float32 for x in cams)
    azimuth, radius = horizontal_azimuth(cams.centre, target)
    np.testing.assert_allclose(radius, 4.5, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(cams.centre)[:, 2], 1.7, rtol=1e-6)
    np.testing.assert_allclose(
        np.cos(azimuth - 0.25 - 2 * np.pi * np.arange(8) / 8), 1.0, atol=1e-6
    )
    np.testing.assert_allclose(cams.principal, np.broadcast_to([500.0, 501.0], (8, 2)))
    np.testing.assert_allclose(cams.focal, np.full((8, 2), 1145.0))
    # A 1.8 m subject around the target: in front of every camera and inside its image.
    points = jnp.asarray(subject_points(50, centre=target), jnp.float32)
    points_v = jnp.broadcast_to(points, (8, 50, 3))
    depth = np.asarray(jax.jit(C.world_to_camera)(points_v, cams.rotation, cams.centre))
    assert np.all(depth[..., 2] > 0)
    uv = np.asarray(project_camera(points_v, cams))
    assert np.all((uv > 0) & (uv < np.asarray(cams.image_size)[:, None, :]))
    on_axis = project_camera(jnp.broadcast_to(jnp.asarray(target, jnp.float32), (8, 1, 3)), cams)
    np.testing.assert_allclose(on_axis, np.asarray(cams.principal)[:, None, :], atol=1e-3)


def test_virtual_camera_jitter_needs_rng():
    with pytest.raises(ValueError, match="rng"):
        C.virtual_cameras(4, height_jitter=0.1)
    a = virtual_cameras(4, height_jitter=0.1, azimuth_jitter=0.2, rng=jax.random.key(0))
    b = virtual_cameras(4)
    heights = np.asarray(a.centre)[:, 2]
    assert np.all(np.abs(heights - 1.5) <= 0.1 + 1e-6) and not np.allclose(heights, 1.5)
    azimuth, _ = horizontal_azimuth(a.centre, (0, 0, 1))
    base, _ = horizontal_azimuth(b.centre, (0, 0, 1))
    wrapped = np.angle(np.exp(1j * (azimuth - base)))
    assert np.all(np.abs(wrapped) <= 0.2 + 1e-5) and not np.allclose(wrapped, 0)


def test_virtual_cameras_y_up_world():
    cams = virtual_cameras(3, target=(0.0, 1.0, 0.0), height=1.6, up_axis=1)
    np.testing.assert_allclose(np.asarray(cams.centre)[:, 1], 1.6, rtol=1e-6)
    # World up (+y) appears as image up (camera -y): column 1 of R is world y in camera.
    up_in_camera = np.asarray(cams.rotation)[:, :, 1]
    np.testing.assert_allclose(up_in_camera[:, 0], 0.0, atol=1e-6)
    assert np.all(up_in_camera[:, 1] < 0)


def test_augment_views_hand_case():
    real = virtual_cameras(4, distance=5.0, height=1.5)  # azimuths 0, 90, 180, 270 deg
    real = real._replace(focal=real.focal * jnp.asarray([1.0, 1.02, 0.98, 1.0])[:, None])
    aug = augment_views(real, 12)
    assert C.camera_batch_shape(aug) == (12,)
    for name in C.CameraParams._fields:
        np.testing.assert_array_equal(getattr(aug, name)[:4], getattr(real, name))
    azimuth, radius = horizontal_azimuth(aug.centre, (0, 0, 1))
    # Two virtual cameras in each 90 degree gap: one camera every 30 degrees.
    degrees = np.sort(np.round(np.degrees(azimuth), 3) % 360)
    np.testing.assert_allclose(degrees, np.arange(0, 360, 30), atol=1e-3)
    np.testing.assert_allclose(radius, 5.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(aug.centre)[:, 2], 1.5, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(aug.focal)[4:], np.full((8, 2), 1150.0), rtol=1e-6)
    # Uneven gaps: real cameras at 0, 60, 180 degrees (gaps 60, 120, 180) and 3 new ones.
    # Minimising the widest spacing puts 1 in the 120 degree gap and 2 in the 180 one.
    three = jax.tree.map(lambda a: a[jnp.asarray([0, 1, 3])], virtual_cameras(6))
    degrees = np.degrees(horizontal_azimuth(augment_views(three, 6).centre, (0, 0, 1))[0])
    np.testing.assert_allclose(np.sort(np.round(degrees[3:], 3) % 360), [120, 240, 300],
                               atol=1e-3)
    # Deterministic without rng; jittered with one.
    again = augment_views(real, 12)
    np.testing.assert_array_equal(again.centre, aug.centre)
    jittered = augment_views(real, 12, rng=jax.random.key(1), azimuth_jitter=0.05)
    np.testing.assert_array_equal(jittered.centre[:4], aug.centre[:4])
    assert not np.allclose(jittered.centre[4:], aug.centre[4:])


def test_augment_h36m_views_to_twelve():
    real = h36m_s1_cameras()
    aug = augment_views(real, 12)
    np.testing.assert_array_equal(aug.rotation[:4], real.rotation)
    target = np.asarray(C.optical_axes_target(real))
    _, radius_real = horizontal_azimuth(real.centre, target)
    azimuth, radius = horizontal_azimuth(aug.centre, target)
    np.testing.assert_allclose(radius[4:], radius_real.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(aug.centre)[4:, 2], np.asarray(real.centre)[:, 2].mean(), rtol=1e-5
    )
    # Interleaving: H36M's real cameras leave gaps of ~40-140 degrees; after augmenting
    # to 12 views every gap between neighbouring cameras is between 15 and 50 degrees.
    order = np.sort(azimuth)
    gaps = np.diff(np.concatenate([order, order[:1] + 2 * np.pi]))
    assert gaps.max() < np.radians(50) and gaps.min() > np.radians(15)
    # The subject near the origin is in front of and inside every camera.
    points = jnp.broadcast_to(jnp.asarray(subject_points(30), jnp.float32), (12, 30, 3))
    uv, valid = project_camera_masked(points, aug)
    assert bool(np.all(valid))
    assert np.all((np.asarray(uv) > 0) & (np.asarray(uv) < np.asarray(aug.image_size)[:, None]))


# --------------------------------------------------------------------------------------
# Batch polymorphism, jit and vmap.


def test_batch_polymorphism_vmap_and_jit_agree_with_loop():
    rng = np.random.default_rng(12)
    cams = virtual_cameras(2, distance=4.0)
    cams = cams._replace(radial=jnp.asarray([[0.1, -0.05, 0.01], [-0.2, 0.1, 0.0]]),
                         tangential=jnp.asarray([[0.01, -0.02], [0.005, 0.003]]))
    points = jnp.asarray(rng.normal(scale=0.3, size=(2, 5, 6, 3)) + [0, 0, 1], jnp.float32)
    # Reference: a Python loop over views and frames with one unbatched camera each
    # (eager, i.e. the un-jitted code path).
    loop = np.stack(
        [np.stack([C.project_camera(points[v, t], jax.tree.map(lambda a: a[v], cams))
                   for t in range(5)]) for v in range(2)]
    )
    assert loop.shape == (2, 5, 6, 2)
    np.testing.assert_allclose(project_camera(points, cams), loop, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(C.project_camera)(points, cams), loop, rtol=1e-6)
    # A single camera shared by everything, and size-1 axes broadcasting either way.
    single = jax.tree.map(lambda a: a[0], cams)
    np.testing.assert_allclose(project_camera(points, single)[0], loop[0], rtol=1e-6)
    np.testing.assert_allclose(project_camera(points[:, :1], cams), loop[:, :1], rtol=1e-6)
    shared_points = C.world_to_camera(points[:1], cams.rotation, cams.centre)
    assert shared_points.shape == (2, 5, 6, 3)
    # Rotations are batch-polymorphic too.
    rotvec = jnp.asarray(rng.normal(size=(2, 3, 3)), jnp.float32)
    np.testing.assert_allclose(
        jax.jit(C.axis_angle_to_matrix)(rotvec),
        Rotation.from_rotvec(np.asarray(rotvec).reshape(-1, 3)).as_matrix().reshape(2, 3, 3, 3),
        atol=2e-6,
    )
    np.testing.assert_allclose(
        C.intrinsics9(cams)[1], np.asarray(C.intrinsics9(jax.tree.map(lambda a: a[1], cams)))
    )


# --------------------------------------------------------------------------------------
# Bad input.

POINTS = np.zeros((2, 5, 3), np.float32)


def eyes(*batch):
    return np.broadcast_to(np.eye(3, dtype=np.float32), batch + (3, 3))


def bad_camera(**fields):
    return C.CameraParams(
        rotation=eyes(2), centre=np.zeros((2, 3)), focal=np.ones((2, 2)),
        principal=np.zeros((2, 2)), radial=np.zeros((2, 3)), tangential=np.zeros((2, 2)),
        image_size=np.ones((2, 2)),
    )._replace(**fields)


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: C.world_to_camera(np.zeros((5, 2)), eyes(), np.zeros(3)), "points"),
        (lambda: C.world_to_camera(POINTS, np.eye(4), np.zeros(3)), "rotation"),
        (lambda: C.world_to_camera(POINTS, eyes(2), np.zeros((2, 4))), "centre"),
        # Camera axes line up with the *first* points axes: (3,) vs (2, 5) is an error ...
        (lambda: C.world_to_camera(POINTS, eyes(3), np.zeros(3)), "rotation"),
        (lambda: C.world_to_camera(POINTS, eyes(5), np.zeros(3)), "rotation"),
        # ... and so is a camera with more leading axes than the points.
        (lambda: C.camera_to_world(POINTS, eyes(2, 5, 1), np.zeros(3)), "rotation"),
        (lambda: C.project_perspective(POINTS, jnp.ones(3), jnp.zeros(2)), "focal"),
        (lambda: C.project_perspective(POINTS, jnp.ones(2), jnp.zeros((3, 2))), "principal"),
        (lambda: C.project_perspective(POINTS, jnp.ones(2), jnp.zeros(2), jnp.zeros(2)), "radial"),
        (lambda: C.project_perspective(POINTS, np.ones(2), np.zeros(2), None, np.zeros(3)),
         "tangential"),
        (lambda: C.project_scaled_orthographic(POINTS, jnp.ones(3), jnp.zeros(2)), "scale"),
        (lambda: C.pixels_to_screen(jnp.zeros((4, 3)), jnp.ones(2)), "uv"),
        (lambda: C.pixels_to_screen(jnp.zeros((4, 2)), jnp.ones(3)), "image_size"),
        (lambda: C.backproject(np.zeros((4, 2)), np.ones(3), np.ones(2), np.zeros(2)), "depth"),
        (lambda: C.weak_perspective(POINTS, np.ones(2), np.zeros(2), weights=np.ones(4)),
         "weights"),
        (lambda: C.quat_to_matrix(jnp.ones(3)), "q"),
        (lambda: C.axis_angle_to_matrix(jnp.ones(4)), "rotvec"),
        (lambda: C.matrix_to_quat(jnp.ones((3, 2))), "rotation"),
        (lambda: C.look_at(jnp.zeros(2), jnp.ones(3)), "eye"),
        (lambda: C.from_intrinsics9(jnp.ones(8), image_size=(1000, 1000)), "intrinsics"),
        (lambda: C.project_camera(POINTS, bad_camera(focal=np.ones((2, 3)))), "cam.focal"),
        (lambda: C.project_camera(POINTS, bad_camera(radial=np.ones((3, 3)))), "cam.radial"),
        (lambda: C.project_camera(POINTS, bad_camera(rotation=eyes(3))), "rotation"),
        (lambda: C.project_camera(POINTS, (1, 2)), "cam"),
        (lambda: C.virtual_cameras(0), "num_views"),
        (lambda: C.virtual_cameras(3, focal=jnp.ones(3)), "focal"),
        (lambda: C.virtual_cameras(3, up_axis=3), "up_axis"),
        (lambda: C.augment_views(bad_camera(), 1), "num_views"),
        (lambda: C.intrinsics9(bad_camera(tangential=np.ones((2, 3)))), "cam.tangential"),
    ],
)
def test_bad_shapes_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        call()


def test_bad_shapes_raise_at_trace_time_under_jit():
    with pytest.raises(ValueError, match="centre"):
        jax.jit(C.world_to_camera)(POINTS, eyes(2), np.zeros((3, 3)))
