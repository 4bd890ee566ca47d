"""End-to-end tests of launch/video_to_3d.py with a fake per-frame detector (no mediapipe).

The fake reads each frame's grey level (the synthetic video's frame index, encoded in its
brightness) and returns known 33-landmark pixels for it, so the tests check that frames
arrive in order and that the pipeline equals ``launch/lift.py`` on those landmarks.
"""

import importlib.util
import os
import subprocess
import sys

import av
import jax
import numpy as np
import pytest

from jpose import export, video_detect, video_detect_worker
from jpose.nets import temporal

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "video_to_3d", os.path.join(REPO, "launch", "video_to_3d.py"))
video_to_3d = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(video_to_3d)
lift = video_to_3d.lift

WIDTH, HEIGHT, NUM_FRAMES = 64, 48, 8


def _level(t):
    return 30 + 25 * t  # frame t's grey level (flat frames survive H.264 to +-2)


def _landmarks(t):
    """Known (33, 4) pixels + visibility for frame t: a fixed spread moving right."""
    rng = np.random.default_rng(0)
    xy = rng.uniform([16, 8], [48, 40], (33, 2)) + [0.5 * t, 0.0]
    vis = np.full((33, 1), 0.9)
    if t == 4:
        vis[15] = 0.1  # left_wrist unsure on frame 4: filled in time, not lifted from
    return np.concatenate([xy, np.zeros((33, 1)), vis], -1).astype(np.float32)


def fake_landmarker():
    """Frame -> its known landmarks; frame 0 has nobody (None)."""
    def landmarker(image):
        assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
        t = int(round((float(image.mean()) - 30) / 25))
        return None if t == 0 else _landmarks(t)
    return landmarker


def _write_video(path):
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for t in range(NUM_FRAMES):
            image = np.full((HEIGHT, WIDTH, 3), _level(t), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    cfg = temporal.variant("tiny_9f")
    variables = jax.tree.map(np.asarray, temporal.init(jax.random.key(3), cfg))
    export.export_lifter(variables, cfg, root / "model", platforms=("cpu",))
    return str(root / "model"), _write_video(root / "in.mp4")


def _count_frames(path):
    with av.open(path) as container:
        return sum(1 for _ in container.decode(video=0))


def test_video_to_npz_and_render(setup, tmp_path):
    model, video = setup
    out = video_to_3d.run(video, str(tmp_path / "out.npz"), model_dir=model,
                          render=str(tmp_path / "out.mp4"),
                          detections=str(tmp_path / "lm.npz"),
                          landmarker=fake_landmarker(), progress=False)
    with np.load(tmp_path / "out.npz", allow_pickle=False) as saved:
        assert saved["poses_3d"].shape == (1, NUM_FRAMES - 1, 17, 3)
        assert np.all(np.isfinite(saved["poses_3d"]))
        np.testing.assert_array_equal(saved["frames"], np.arange(1, NUM_FRAMES))
        np.testing.assert_array_equal(saved["image_size"], [WIDTH, HEIGHT])
        assert str(saved["input_layout"]) == "mediapipe_33"
        assert float(saved["fps"]) == pytest.approx(10.0)
        assert str(saved["video"]) == os.path.abspath(video)
        np.testing.assert_array_equal(saved["poses_3d"], out["poses_3d"])
        wrist = list(saved["joint_names"]).index("left_wrist")
        assert saved["filled"][0, 3, wrist] and saved["filled"][0].sum() == 1  # frame 4

    # The landmarks kept: the known pixels, NaN where nobody; lifting them with
    # launch/lift.py gives the same poses.
    with np.load(tmp_path / "lm.npz", allow_pickle=False) as lm:
        assert lm["landmarks"].shape == (NUM_FRAMES, 33, 4)
        assert np.all(np.isnan(lm["landmarks"][0]))
        np.testing.assert_allclose(lm["landmarks"][5], _landmarks(5), rtol=1e-6)
    direct = lift.run(model, str(tmp_path / "lm.npz"), str(tmp_path / "direct.npz"),
                      layout="mediapipe_33")
    np.testing.assert_array_equal(direct["poses_3d"], out["poses_3d"])

    assert _count_frames(str(tmp_path / "out.mp4")) == NUM_FRAMES  # every video frame
    assert sorted(os.listdir(tmp_path)) == ["direct.npz", "lm.npz", "out.mp4", "out.npz"]


def test_separate_process_worker(setup, tmp_path, monkeypatch):
    """The subprocess path (MediaPipe's own environment), with this interpreter and the
    fake detector imported by the worker; progress lines are parsed, the .npz written."""
    _, video = setup
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.dirname(__file__), REPO]))
    backend = video_detect.detect_video(
        video, str(tmp_path / "lm.npz"), python=sys.executable,
        landmarker_spec="test_video_to_3d:fake_landmarker", progress=True)
    assert backend == sys.executable
    with np.load(tmp_path / "lm.npz", allow_pickle=False) as lm:
        assert lm["landmarks"].shape == (NUM_FRAMES, 33, 4)
        np.testing.assert_allclose(lm["landmarks"][7], _landmarks(7), rtol=1e-6)
        assert str(lm["detector"]) == "test_video_to_3d:fake_landmarker"


def test_missing_mediapipe_names_the_extra_and_the_environment(setup, tmp_path,
                                                                monkeypatch):
    _, video = setup
    monkeypatch.setattr(video_detect, "_in_process_landmarker", lambda: None)
    monkeypatch.delenv(video_detect.ENV_VAR, raising=False)
    monkeypatch.setattr(video_detect, "DEFAULT_PYTHON", str(tmp_path / "none/bin/python"))
    with pytest.raises(video_detect.MediaPipeUnavailable) as info:
        video_detect.detect_video(video, str(tmp_path / "lm.npz"), progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert "pip install 'jpose[detect]'" in message
    assert video_detect.ENV_COMMAND in message and video_detect.ENV_VAR in message
    monkeypatch.setenv(video_detect.ENV_VAR, str(tmp_path / "missing-python"))
    with pytest.raises(video_detect.MediaPipeUnavailable, match="missing-python.*does not "
                                                                "exist"):
        video_detect.detect_video(video, str(tmp_path / "lm.npz"), progress=False)
    assert not os.listdir(tmp_path)


def test_command_line_reports_missing_mediapipe(setup, tmp_path):
    if importlib.util.find_spec("mediapipe") is not None:
        pytest.skip("mediapipe is importable here: it would run")
    model, video = setup
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           video_detect.ENV_VAR: str(tmp_path / "no-python")}
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "launch", "video_to_3d.py"), f"--video={video}",
         f"--output={tmp_path / 'out.npz'}", f"--model={model}"],
        capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    assert "video_to_3d.py: error: MediaPipe Pose is not available" in proc.stderr
    assert "jpose[detect]" in proc.stderr
    assert not (tmp_path / "out.npz").exists()


def test_lazy_frames_decode_in_order_and_rewind(setup):
    _, video = setup
    seen = []
    frames = video_detect.VideoFrames(video, NUM_FRAMES, on_decode=seen.append)
    levels = [float(frames[t].mean()) for t in (0, 0, 1, 2, 7, 3)]
    np.testing.assert_allclose(levels, [_level(t) for t in (0, 0, 1, 2, 7, 3)], atol=3)
    assert seen == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]  # 0 cached; 3 after 7 re-opens
    frames.close()
    assert video_detect_worker.upright(np.arange(6).reshape(2, 3, 1), 90).shape == (3, 2, 1)
    # Counter-clockwise 90 degrees: the top row's last pixel goes to the top-left.
    assert video_detect_worker.upright(np.arange(6).reshape(2, 3, 1), 90)[0, 0, 0] == 2


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None,
                    reason="mediapipe not installed (pip install 'jpose[detect]')")
def test_real_mediapipe_on_a_rendered_person(tmp_path):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (256, 384), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse([106, 40, 150, 90], fill=(230, 190, 160))
    draw.rectangle([93, 95, 163, 230], fill=(40, 60, 160))
    for x0, y0, x1, y1, colour, width in ((93, 100, 58, 220, (230, 190, 160), 14),
                                           (163, 100, 198, 220, (230, 190, 160), 14),
                                           (108, 230, 98, 370, (30, 30, 30), 18),
                                           (148, 230, 158, 370, (30, 30, 30), 18)):
        draw.line([x0, y0, x1, y1], fill=colour, width=width)
    lm = video_detect_worker.mediapipe_landmarker()(np.asarray(image))
    assert lm is not None and lm.shape == (33, 4)
    assert 100 < lm[0, 0] < 160 and 30 < lm[0, 1] < 110  # the nose in the head
