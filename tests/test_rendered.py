"""Rendered image sequences (jpose.datasets.rendered): alignment, determinism, files.

The alignment checks are independent of the label code: they use jpose.camera for the
projection and only the rendered segmentation (pixels and centroids) as the reference.
"""

import dataclasses
import io
import os

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pybullet")

from jpose import camera as camera_lib  # noqa: E402
from jpose import skeleton  # noqa: E402
from jpose.datasets import multiview, samples, tfds_build  # noqa: E402
from jpose.datasets import rendered as R  # noqa: E402

_H36M = skeleton.get("h36m_17").joint_names
_LINK = {n: i for i, n in enumerate(R.LINK_NAMES)}

# URDF geometry (humanoid.urdf, URDF units): sphere centres along the parent link's y
# axis, which is also the direction to the next joint (chest and neck offsets are pure y).
_ROOT_SPHERE = (0.28 / 0.944604, 0.36)  # (fraction of pelvis->spine, radius)
_CHEST_SPHERE = (0.48 / 0.895576, 0.44)  # (fraction of spine->neck, radius)
_HEAD_RADIUS = 0.41


@pytest.fixture(scope="module")
def tiny():
    return R.render_sequences(R.RenderConfig(tiny=True))


@pytest.fixture(scope="module")
def sharp():
    # 256 px like the default, a few frames of two clips, no shadows (faster).
    cfg = R.RenderConfig(num_cameras=3, clips=("walk", "cartwheel"), num_subjects=1,
                         frame_stride=7, max_frames=5, shadows=False)
    return R.render_sequences(cfg)


def _project(record):
    cam = camera_lib.CameraParams(*(np.asarray(f, np.float32) for f in record.camera))
    return np.asarray(camera_lib.project_camera(np.asarray(record.positions_world, np.float32), cam))


# ------------------------------------------------------------------------ alignment


def _silhouette_centre(centre_cam, radius, cam):
    """Pixel centre of the image of a sphere (camera coordinates ``centre_cam``, metres):
    the ellipse whose ends along the radial direction are at angles alpha +- beta from
    the optical axis, ``sin beta = radius / |C|``; centroid = that centre (affine map)."""
    c = np.asarray(centre_cam, np.float64)
    lateral = np.linalg.norm(c[:2])
    alpha, beta = np.arctan2(lateral, c[2]), np.arcsin(radius / np.linalg.norm(c))
    rho = 0.5 * (np.tan(alpha + beta) + np.tan(alpha - beta))
    xy = c[:2] / lateral * rho if lateral > 0 else np.zeros(2)
    return np.asarray(cam.focal, np.float64) * xy + np.asarray(cam.principal, np.float64)


def test_pybullet_camera_is_the_jpose_camera():
    """A lone sphere in front of a jpose camera (fractional principal point, fx != fy)
    renders where jpose projects it: the mask centroid equals the silhouette's centre.
    pybullet's sphere is a mesh whose outline shifts the centroid by up to ~0.2 px
    depending on its orientation (and whose slightly smaller effective radius moves an
    off-axis silhouette by a few hundredths), so the check averages 24 random
    orientations; a half-pixel convention error would show as 0.5 px."""
    import pybullet as p
    from scipy.spatial.transform import Rotation

    cams = multiview.make_cameras(2, seed=3, focal_px=300.0, image_size=(240, 200), distortion=False)
    cam = R._camera(cams, 1)
    assert not np.allclose(np.asarray(cam.principal) % 1.0, 0.0)
    rot = np.asarray(cam.rotation, np.float64)
    client = p.connect(p.DIRECT)
    try:
        shape = p.createVisualShape(p.GEOM_SPHERE, radius=0.4, physicsClientId=client)
        body = p.createMultiBody(baseMass=0, baseVisualShapeIndex=shape, physicsClientId=client)
        view, proj = R.pybullet_matrices(cam)
        for offset in ((0.0, 0.0, 5.0), (1.0, -0.6, 5.0), (-0.7, 0.9, 4.0)):
            centre = camera_lib.camera_to_world(np.asarray(offset, np.float32), cam.rotation, cam.centre)
            centre = np.asarray(centre, np.float64)
            want = _silhouette_centre(rot @ (centre - np.asarray(cam.centre, np.float64)), 0.4, cam)
            errors = []
            for seed in range(24):
                quat = Rotation.random(random_state=seed).as_quat().tolist()  # xyzw
                p.resetBasePositionAndOrientation(body, centre.tolist(), quat, physicsClientId=client)
                out = p.getCameraImage(240, 200, view, proj, renderer=p.ER_TINY_RENDERER, physicsClientId=client)
                rows, cols = np.nonzero(np.asarray(out[4]).reshape(200, 240) >= 0)
                errors.append([cols.mean() - want[0], rows.mean() - want[1]])
            errors = np.asarray(errors)
            assert np.abs(errors).max() < 0.3, errors
            np.testing.assert_allclose(errors.mean(0), 0.0, atol=0.1)
    finally:
        p.disconnect(physicsClientId=client)


def test_labels_are_the_jpose_projection(sharp):
    for seq in sharp.sequences:
        r = seq.record
        np.testing.assert_allclose(r.keypoints_clean, _project(r), atol=2e-3)
        np.testing.assert_array_equal(r.keypoints, r.keypoints_clean)
        cam_pos = camera_lib.world_to_camera(r.positions_world, r.camera.rotation, r.camera.centre)
        np.testing.assert_allclose(r.positions_camera, np.asarray(cam_pos), atol=1e-5)
        np.testing.assert_array_equal(r.confidence, r.visible.astype(np.float32))
        assert r.positions_world.shape == (seq.num_frames, 17, 3)
        assert seq.images.shape == (seq.num_frames, 256, 256, 3) and seq.images.dtype == np.uint8


def test_projected_joints_lie_on_the_rendered_body(sharp):
    # Joints well inside a solid of the humanoid (pelvis: root sphere, head: head sphere,
    # wrists: hand spheres) project onto a body pixel in every frame and view, occluded
    # or not (then another part covers them). Knees and ankles sit within 5 mm of their
    # shin cap's / foot box's surface (a third of a pixel here): within one pixel.
    for seq in sharp.sequences:
        kp = _project(seq.record)
        frames = np.arange(seq.num_frames)[:, None]
        cols, rows = np.rint(kp[..., 0]).astype(int), np.rint(kp[..., 1]).astype(int)
        deep = [_H36M.index(n) for n in ("pelvis", "head", "right_wrist", "left_wrist")]
        assert seq.mask[frames, rows[:, deep], cols[:, deep]].all()
        padded = np.pad(seq.mask, ((0, 0), (1, 1), (1, 1)))
        dilated = np.zeros_like(seq.mask)
        for dr in range(3):
            for dc in range(3):
                dilated |= padded[:, dr:dr + 256, dc:dc + 256]
        edge = [_H36M.index(n) for n in ("right_knee", "left_knee", "right_ankle", "left_ankle")]
        assert dilated[frames, rows[:, edge], cols[:, edge]].all()
    # The joints' box lies inside the mask's box (a 1 px margin); not head_top, which
    # h36m_17 extrapolates above the head sphere (skeleton.SYNTHESIS_RULES).
    body = [j for j, n in enumerate(_H36M) if n != "head_top"]
    for seq in sharp.sequences:
        kp = _project(seq.record)[:, body]
        for f in range(seq.num_frames):
            rows, cols = np.nonzero(seq.mask[f])
            assert kp[f, :, 0].min() >= cols.min() - 1 and kp[f, :, 0].max() <= cols.max() + 1
            assert kp[f, :, 1].min() >= rows.min() - 1 and kp[f, :, 1].max() <= rows.max() + 1


def test_unoccluded_sphere_centroids_match_the_projection(sharp):
    """Root, chest and head spheres: mask centroid of the link = projected centre."""
    j = {n: _H36M.index(n) for n in ("pelvis", "spine", "neck", "head")}
    checked = 0
    for seq in sharp.sequences:
        r = seq.record
        scale = float(sharp.subject_scales[sharp.subjects.index(r.subject)]) * samples.URDF_SCALE
        w = np.asarray(r.positions_world, np.float64)
        spheres = {
            "root": (w[:, j["pelvis"]] + _ROOT_SPHERE[0] * (w[:, j["spine"]] - w[:, j["pelvis"]]), _ROOT_SPHERE[1]),
            "chest": (w[:, j["spine"]] + _CHEST_SPHERE[0] * (w[:, j["neck"]] - w[:, j["spine"]]), _CHEST_SPHERE[1]),
            "neck": (w[:, j["head"]], _HEAD_RADIUS),
        }
        cam = camera_lib.CameraParams(*(np.asarray(f, np.float32) for f in r.camera))
        focal = float(np.mean(r.camera.focal))
        for link, (centre, radius) in spheres.items():
            in_cam = np.asarray(camera_lib.world_to_camera(centre.astype(np.float32), cam.rotation, cam.centre),
                                np.float64)
            for f in range(seq.num_frames):
                rows, cols = np.nonzero(seq.segmentation[f] == _LINK[link])
                # pybullet's sphere mesh covers ~0.93 of the disc: keep the unoccluded ones.
                if rows.size < 0.9 * np.pi * (radius * scale * focal / in_cam[f, 2]) ** 2:
                    continue
                want = _silhouette_centre(in_cam[f], radius * scale, cam)
                np.testing.assert_allclose([cols.mean(), rows.mean()], want, atol=0.3)
                checked += 1
    assert checked >= 30


def test_pose_in_pybullet_equals_the_label_kinematics():
    import pybullet as p

    cfg = R.RenderConfig(clips=("cartwheel",), frame_stride=9, max_frames=6)
    clip = R._clip(cfg, "cartwheel", 0, 1.07)
    tree = samples.deepmimic_tree()
    client = p.connect(p.DIRECT)
    try:
        with R._quiet_stdout():
            body = p.loadURDF(os.path.join(samples.data_path(), "humanoid", "humanoid.urdf"),
                              globalScaling=0.25 * 1.07, useFixedBase=True,
                              flags=p.URDF_MAINTAIN_LINK_ORDER, physicsClientId=client)
        joints = {n: i for i, n in enumerate(R.LINK_NAMES)}
        for f in range(clip.frame_indices.shape[0]):
            R._set_pose(p, client, body, joints, tree, clip, f)
            for j, name in enumerate(tree.joint_names):
                if name == "head":
                    continue
                link = joints["root" if name == "pelvis" else name]
                got = p.getLinkState(body, link, computeForwardKinematics=True, physicsClientId=client)[4]
                np.testing.assert_allclose(got, clip.positions16[f, j], atol=1e-6)
    finally:
        p.disconnect(physicsClientId=client)


def test_visibility_follows_the_segmentation(sharp):
    seen = 0
    for seq in sharp.sequences:
        kp = seq.record.keypoints_clean
        rows = np.clip(np.rint(kp[..., 1]).astype(int), 0, 255)
        cols = np.clip(np.rint(kp[..., 0]).astype(int), 0, 255)
        part = seq.segmentation[np.arange(seq.num_frames)[:, None], rows, cols]
        knee = _H36M.index("right_knee")
        # Links that meet at the right knee: thigh (right_hip), shin (right_knee) and the
        # foot (right_ankle, its child joint's link).
        links = [_LINK["right_hip"], _LINK["right_knee"], _LINK["right_ankle"]]
        on_body = part[:, knee] >= 0
        own = np.isin(part[:, knee], links)
        # On a body pixel: visible exactly when that pixel is one of its own links.
        np.testing.assert_array_equal(seq.record.visible[on_body, knee], own[on_body])
        # In a gap (background pixel): visible needs an own-link pixel within 3 px.
        for f in np.nonzero(~on_body & seq.record.visible[:, knee])[0]:
            r, c = rows[f, knee], cols[f, knee]
            assert np.isin(seq.segmentation[f, max(r - 3, 0):r + 4, max(c - 3, 0):c + 4], links).any()
        seen += int((~seq.record.visible).sum())
    assert 0 < seen  # some self-occlusion in a cartwheel


# ---------------------------------------------------------------------- randomness


def test_same_seed_same_pixels(tiny):
    again = R.render_sequences(R.RenderConfig(tiny=True))
    assert len(again.sequences) == len(tiny.sequences) == 4
    for a, b in zip(tiny.sequences, again.sequences):
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.segmentation, b.segmentation)
        for f in ("positions_world", "positions_camera", "keypoints_clean", "visible"):
            np.testing.assert_array_equal(getattr(a.record, f), getattr(b.record, f))


def test_appearance_changes_pixels_not_labels(tiny):
    other = R.render_sequences(R.RenderConfig(tiny=True, appearance_seed=1))
    for a, b in zip(tiny.sequences, other.sequences):
        np.testing.assert_array_equal(a.segmentation, b.segmentation)
        for f in multiview.SequenceRecord._fields:
            x, y = getattr(a.record, f), getattr(b.record, f)
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y)
        body, back = a.mask, ~a.mask
        assert np.abs(a.images[body].astype(int) - b.images[body]).mean() > 10  # colours, light
        assert np.abs(a.images[back].astype(int) - b.images[back]).mean() > 10  # backgrounds
    # Within one render: subjects wear different outfits, sequences have other backgrounds.
    s1, s2 = tiny.select(subjects=["S1"], cameras=[0])[0], tiny.select(subjects=["S2"], cameras=[0])[0]
    colour = lambda s: s.images[s.segmentation == _LINK["chest"]].mean(0)  # noqa: E731
    assert np.abs(colour(s1) - colour(s2)).max() > 10
    both = ~s1.mask[0] & ~s2.mask[0]
    assert np.abs(s1.images[0][both].astype(int) - s2.images[0][both]).mean() > 10
    # The geometry seed does change the labels.
    moved = R.render_sequences(R.RenderConfig(tiny=True, seed=1))
    assert not np.allclose(moved.sequences[0].record.keypoints_clean, tiny.sequences[0].record.keypoints_clean)


# -------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def written(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("rendered")
    manual, data_dir = str(root / "raw"), str(root / "data")
    table = R.write_penn_action(tiny, manual)
    tfds_build.build("penn_action", manual_dir=manual, data_dir=data_dir, progress=False)
    examples = {}
    for split in ("train", "test"):
        source = tfds_build.load("penn_action", data_dir=data_dir, split=split)
        for i in range(len(source)):
            ex = source[i]
            examples[ex["sequence"].decode()] = (split, ex)
    return manual, table, examples


def test_penn_action_builder_reads_the_files_with_identical_labels(tiny, written):
    manual, table, examples = written
    assert sorted(examples) == sorted(table) == ["0001", "0002", "0003", "0004"]
    for k, seq in enumerate(tiny.sequences, start=1):
        split, ex = examples[f"{k:04d}"]
        r = seq.record
        assert table[f"{k:04d}"] == (r.subject, r.action, r.camera_index)
        assert split == ("test" if r.subject in tiny.split_subjects("test") else "train")
        kp = skeleton.convert(r.keypoints_clean, "h36m_17", "penn_action_13")
        np.testing.assert_array_equal(ex["keypoints_2d"], kp)
        np.testing.assert_array_equal(ex["visible"], skeleton.convert_visibility(r.visible, "h36m_17", "penn_action_13"))
        assert ex["action"].decode() == r.action and ex["view"].decode() in ("front", "back", "left", "right")
        np.testing.assert_array_equal(ex["image_size"], [64, 64])
        for f in range(seq.num_frames):  # the mask's outer pixel edges
            rows, cols = np.nonzero(seq.mask[f])
            np.testing.assert_array_equal(ex["box"][f], [cols.min() - 0.5, rows.min() - 0.5,
                                                         cols.max() + 0.5, rows.max() + 0.5])
        frames = np.stack(ex["frames"])
        for f in range(seq.num_frames):
            with open(os.path.join(manual, "frames", f"{k:04d}", f"{f + 1:06d}.jpg"), "rb") as fh:
                np.testing.assert_array_equal(frames[f], np.asarray(Image.open(io.BytesIO(fh.read()))))
        assert np.abs(frames.astype(int) - seq.images).mean() < 6  # JPEG at quality 95


def test_penn_action_needs_both_splits(tmp_path):
    one = R.render_sequences(R.RenderConfig(tiny=True, num_test_subjects=0))
    with pytest.raises(ValueError, match="needs train and test sequences"):
        R.write_penn_action(one, str(tmp_path))


def test_read_back_with_3d_labels(tiny, written):
    manual, _, _ = written
    back = R.read_penn_action(manual)
    assert back.config == tiny.config and back.splits == tiny.splits and back.layout == "h36m_17"
    for a, b in zip(tiny.sequences, back.sequences):
        for f in multiview.SequenceRecord._fields:
            x, y = getattr(a.record, f), getattr(b.record, f)
            if f == "camera":
                for g in camera_lib.CameraParams._fields:
                    np.testing.assert_array_equal(getattr(x, g), getattr(y, g))
            elif isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y)
                assert x.dtype == y.dtype
            else:
                assert x == y
        np.testing.assert_array_equal(a.segmentation, b.segmentation)
        np.testing.assert_array_equal(a.frame_indices, b.frame_indices)
    for g in camera_lib.CameraParams._fields:
        np.testing.assert_array_equal(getattr(back.cameras, g), getattr(tiny.cameras, g))


# --------------------------------------------------------------------------- uses


def test_synchronised_views_and_single_frames(tiny):
    v = R.synchronised_views(tiny, "S1", "walk")
    assert v["images"].shape == (2, 4, 64, 64, 3) and v["keypoints_2d"].shape == (2, 4, 17, 2)
    np.testing.assert_array_equal(v["camera_index"], [0, 1])
    got = camera_lib.project_camera(np.broadcast_to(v["positions_world"], (2, 4, 17, 3)), v["camera"])
    np.testing.assert_allclose(v["keypoints_2d"], np.asarray(got), atol=2e-3)

    full = R.single_frames(tiny)
    assert full["images"].shape == (16, 64, 64, 3)
    crops = R.single_frames(tiny, "train", crop_size=32)
    assert crops["images"].shape == (8, 32, 32, 3) and set(crops["subject"]) == {"S1"}
    cam = camera_lib.CameraParams(*(crops[f"camera_{f}"] for f in camera_lib.CameraParams._fields))
    np.testing.assert_allclose(crops["keypoints_2d"], np.asarray(camera_lib.project_perspective(
        crops["positions_camera"], cam.focal, cam.principal)), atol=2e-3)
    # The crop shows the person: the centre pixel region is not background-only black.
    assert crops["images"].mean() > 20
    kp, vis = R.keypoints_2d(tiny.sequences[0].record, "mpii_16")
    assert kp.shape == (4, 16, 2) and vis.shape == (4, 16)


def test_records_feed_the_multiview_tuples(tiny):
    from jpose.datasets import multiview_tuples

    tuples = multiview_tuples.multiview_tuples(R.records(tiny, "train"), cameras=(0, 1))
    assert len(tuples) == 4
    assert tuples[0]["keypoints_2d"].shape == (2, 17, 2)


# ------------------------------------------------------------------------- config


def test_config_checks_and_json():
    cfg = R.RenderConfig(tiny=True, seed=4)
    assert cfg.effective().image_size == (64, 64) and cfg.effective().num_cameras == 2
    assert R.RenderConfig.from_json(cfg.to_json()) == cfg
    assert R.RenderConfig(image_size=128).image_size == (128, 128)
    with pytest.raises(ValueError, match="tiny: sets"):
        R.RenderConfig(tiny=True, num_cameras=3)
    with pytest.raises(ValueError, match="clips"):
        R.render_sequences(R.RenderConfig(clips=("moonwalk",)))
    with pytest.raises(ValueError, match="backgrounds"):
        R.render_sequences(dataclasses.replace(R.RenderConfig(tiny=True), backgrounds=("nowhere",)))
