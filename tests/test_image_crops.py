"""jpose.datasets.image_crops and video_frames against hand-computed cases."""

import numpy as np
import pytest

from jpose.datasets import image_crops, raw_files, video_frames


def _coordinate_image(h=60, w=80):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 3, yy * 4, np.zeros_like(xx)], -1).astype(np.uint8)


def test_crop_samples_where_to_crop_says():
    img = _coordinate_image()
    box = np.array([10.0, 20.0, 30.0, 40.0])
    crop = image_crops.crop_and_resize(img, box, 40)
    assert crop.shape == (40, 40, 3)
    # Output pixel (u, v) samples image point (10, 20) + (u, v) * 20 / 40; the red and
    # green channels encode 3x and 4y, linear, so bilinear sampling is exact.
    for u, v in [(0, 0), (10, 4), (38, 30)]:
        assert crop[v, u, 0] == pytest.approx(3 * (10 + u / 2), abs=1)
        assert crop[v, u, 1] == pytest.approx(4 * (20 + v / 2), abs=1)
    # to_crop is the inverse map.
    np.testing.assert_allclose(image_crops.to_crop(np.array([[10.0, 20.0], [20.0, 30.0]]), box, 40),
                               [[0, 0], [20, 20]])
    # Outside the image is black.
    outside = image_crops.crop_and_resize(img, np.array([-40.0, -40.0, -20.0, -20.0]), 8)
    assert outside.max() == 0


def test_boxes():
    kp = np.array([[[1.0, 2.0], [5.0, 7.0], [3.0, 100.0]], [[0, 0], [1, 1], [2, 2]]])
    box = image_crops.box_from_keypoints(kp, np.array([[1, 1, 0], [0, 0, 0]], bool))
    np.testing.assert_array_equal(box[0], [1, 2, 5, 7])
    assert np.isnan(box[1]).all()
    sq = image_crops.square_box(np.array([0.0, 0.0, 4.0, 2.0]), scale=1.5)
    np.testing.assert_allclose(sq, [-1, -2, 5, 4])
    with pytest.raises(ValueError, match="keypoints"):
        image_crops.box_from_keypoints(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="box"):
        image_crops.crop_and_resize(_coordinate_image(), np.array([5.0, 5.0, 5.0, 5.0]), 8)


@pytest.mark.parametrize("codec,ext", [("mpeg4", "mp4"), ("mjpeg", "avi")])
def test_video_round_trip(tmp_path, codec, ext):
    frames = [np.full((32, 48, 3), 20 * i, np.uint8) for i in range(6)]
    path = str(tmp_path / f"v.{ext}")
    video_frames.write_video(path, frames, codec=codec)
    assert video_frames.count_frames(path) == 6
    got = list(video_frames.read_frames(path, [4, 1, 9]))
    assert [i for i, _ in got] == [1, 4]  # sorted, and beyond the end not yielded
    for i, f in got:
        assert f.shape == (32, 48, 3)
        assert abs(float(f.mean()) - 20 * i) < 4
    (tmp_path / "bad.mp4").write_bytes(b"junk")
    with pytest.raises(raw_files.MalformedRawFileError, match="bad.mp4: not a readable video"):
        video_frames.count_frames(str(tmp_path / "bad.mp4"))
