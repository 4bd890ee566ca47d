"""Rendering throughput of jpose.datasets.rendered (pybullet TinyRenderer, CPU, one core).

Usage:
  python benchmarks/render_throughput.py                  # 256 x 256, 4 cameras, 2 clips
  python benchmarks/render_throughput.py --size 128 --frames 40 --clips walk

Measured, after one untimed warm-up render (pybullet start, photo decoding, the rig):

* ``getCameraImage`` alone (humanoid posed once, one rig camera), with and without
  TinyRenderer's self-shadows: the renderer's share;
* ``render_sequences`` per frame, with and without shadows: the whole cost (posing,
  ``getCameraImage``, segmentation decoding, background compositing, labels,
  visibility);
* ``write_penn_action`` per frame (JPEG quality 95 + PNG part masks + one .mat per
  sequence).

The renderer is single-threaded, so rendering in N processes (e.g. one per clip or per
subject, with the same config otherwise) scales with cores. Timings on a shared machine
are noisy: the load average is printed.

Reference (2-core x86 container shared with other jobs, load 2-3, pinned to one core,
pybullet 3.2.7, 256 x 256, the humanoid about 100 px tall): getCameraImage 6.2-7.4 ms
with shadows, 3.4-5.0 ms without; render_sequences 8.3-11.6 ms per frame with shadows,
6.5-9.8 ms without; write_penn_action 4.6-6.6 ms per frame.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

from jpose.datasets import rendered


def _time_render(cfg: rendered.RenderConfig) -> tuple[float, int]:
    t0 = time.perf_counter()
    ds = rendered.render_sequences(cfg)
    dt = time.perf_counter() - t0
    return dt, sum(s.num_frames for s in ds.sequences)


def _time_camera_image(size: int, shadows: bool, repeats: int = 50) -> float:
    """ms per ``getCameraImage`` of the standing humanoid through rig camera 0."""
    import pybullet as p

    from jpose.datasets import multiview, samples

    cams = multiview.make_cameras(1, focal_px=1.145 * size, image_size=(size, size), distortion=False)
    view, proj = rendered.pybullet_matrices(rendered._camera(cams, 0))
    client = p.connect(p.DIRECT)
    try:
        with rendered._quiet_stdout():
            body = p.loadURDF(os.path.join(samples.data_path(), "humanoid", "humanoid.urdf"),
                              globalScaling=0.25, useFixedBase=True, physicsClientId=client)
        p.resetBasePositionAndOrientation(body, [0, 0, 0.9], [0.7071068, 0, 0, 0.7071068],
                                          physicsClientId=client)
        kwargs = dict(renderer=p.ER_TINY_RENDERER, flags=p.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX,
                      lightDirection=[1, 1, 2], shadow=int(shadows), physicsClientId=client)
        p.getCameraImage(size, size, view, proj, **kwargs)
        t0 = time.perf_counter()
        for _ in range(repeats):
            p.getCameraImage(size, size, view, proj, **kwargs)
        return 1000 * (time.perf_counter() - t0) / repeats
    finally:
        p.disconnect(physicsClientId=client)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="square image side, pixels")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--clips", default="walk,cartwheel", help="comma-separated DeepMimic clips")
    parser.add_argument("--frames", type=int, default=30, help="frames per (clip, camera)")
    args = parser.parse_args()

    clips = tuple(c for c in args.clips.split(",") if c)
    base = rendered.RenderConfig(image_size=args.size, num_cameras=args.cameras, clips=clips,
                                 num_subjects=1, frame_stride=1, max_frames=args.frames)
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, load {os.getloadavg()}")
    rendered.render_sequences(rendered.RenderConfig(tiny=True))  # warm-up
    for shadows in (True, False):
        print(f"getCameraImage {args.size}x{args.size}, shadows={shadows}: "
              f"{_time_camera_image(args.size, shadows):.2f} ms/frame")
    for shadows in (True, False):
        dt, n = _time_render(rendered.RenderConfig(**{**base.__dict__, "shadows": shadows}))
        print(f"render_sequences {args.size}x{args.size}, shadows={shadows}: {n} frames in "
              f"{dt:.2f} s = {1000 * dt / n:.2f} ms/frame ({n / dt:.0f} frames/s)")
    ds = rendered.render_sequences(base)
    n = sum(s.num_frames for s in ds.sequences)
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        rendered.write_penn_action(ds, root)
        dt = time.perf_counter() - t0
    print(f"write_penn_action: {n} frames in {dt:.2f} s = {1000 * dt / n:.2f} ms/frame")


if __name__ == "__main__":
    main()
