"""Person boxes and crops for the image datasets (NumPy + PIL, no TensorFlow).

Pixel convention (all jpose datasets): ``(x, y)`` with ``x`` to the right and ``y``
down, the **centre of the top-left pixel at (0, 0)**; boxes are ``(x0, y0, x1, y1)`` in
those pixel coordinates. A crop of box ``b`` to ``S x S`` pixels maps an image point
``p`` to ``(p - (x0, y0)) * S / (x1 - x0)`` (:func:`to_crop`), so keypoints stored with
a crop are in crop pixels by this formula; areas outside the image are black.
"""

from __future__ import annotations

import io

import numpy as np

__all__ = [
    "box_from_keypoints",
    "square_box",
    "crop_and_resize",
    "to_crop",
    "encode_image",
]


def box_from_keypoints(keypoints, visible=None) -> np.ndarray:
    """Tight boxes ``(..., 4)`` = ``(x0, y0, x1, y1)`` around the keypoints ``(..., J, 2)``.

    ``visible`` ``(..., J)`` bool selects the joints used; a frame with none gives NaN.
    """
    kp = np.asarray(keypoints, np.float64)
    if kp.ndim < 2 or kp.shape[-1] != 2:
        raise ValueError(f"keypoints: expected shape (..., J, 2), got {kp.shape}")
    vis = np.isfinite(kp).all(-1)
    if visible is not None:
        visible = np.asarray(visible, bool)
        if visible.shape != kp.shape[:-1]:
            raise ValueError(f"visible: expected shape {kp.shape[:-1]}, got {visible.shape}")
        vis &= visible
    lo = np.where(vis[..., None], kp, np.inf).min(-2)
    hi = np.where(vis[..., None], kp, -np.inf).max(-2)
    box = np.concatenate([lo, hi], -1)
    return np.where(vis.any(-1)[..., None], box, np.nan)


def square_box(box, *, scale: float = 1.25, min_size: float = 1.0) -> np.ndarray:
    """The square box with the same centre as ``box``, side ``scale * max(w, h)``."""
    box = np.asarray(box, np.float64)
    centre = (box[..., :2] + box[..., 2:]) / 2
    side = np.maximum(np.max(box[..., 2:] - box[..., :2], -1) * scale, min_size)
    half = side[..., None] / 2
    return np.concatenate([centre - half, centre + half], -1)


def to_crop(points, box, size: int) -> np.ndarray:
    """Image pixels ``(..., J, 2)`` -> pixels of the ``size x size`` crop of ``box (..., 4)``."""
    points = np.asarray(points, np.float64)
    box = np.asarray(box, np.float64)
    scale = size / (box[..., 2] - box[..., 0])
    return (points - box[..., None, :2]) * scale[..., None, None]


def crop_and_resize(image: np.ndarray, box, size: int) -> np.ndarray:
    """The ``size x size`` RGB crop of ``box`` (bilinear; black outside the image).

    Output pixel ``(u, v)`` samples the image at ``(x0, y0) + (u, v) * w / size`` (the
    inverse of :func:`to_crop`); the box must be square.
    """
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image: expected uint8 (H, W, 3), got {image.dtype} {image.shape}")
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, np.float64))
    if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
        raise ValueError(f"box: expected finite (x0, y0, x1, y1) with x1 > x0, y1 > y0, got {box}")
    step = (x1 - x0) / size
    # PIL's affine transform maps output pixel centres (u + 0.5) to input coordinates
    # whose pixel centres are at +0.5 as well; shift so that centres map onto centres.
    c = x0 + 0.5 - 0.5 * step
    f = y0 + 0.5 - 0.5 * step
    out = Image.fromarray(image).transform(
        (size, size), Image.Transform.AFFINE, (step, 0.0, c, 0.0, step, f),
        resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    return np.asarray(out)


def encode_image(image: np.ndarray, *, format: str = "JPEG", quality: int = 95) -> bytes:
    """Encodes an RGB uint8 image as JPEG or PNG bytes (for TFDS ``Image`` features)."""
    from PIL import Image

    buf = io.BytesIO()
    kwargs = {"quality": quality} if format.upper() == "JPEG" else {}
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format=format, **kwargs)
    return buf.getvalue()
