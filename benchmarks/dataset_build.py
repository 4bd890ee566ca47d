"""Dataset build and load throughput: fake raw releases at realistic sizes -> TFDS -> windows.

Usage:
  python benchmarks/dataset_build.py                     # every dataset, default sizes
  python benchmarks/dataset_build.py --datasets h36m --h36m-frames 5000

For each dataset a fake raw release (``jpose/datasets/<name>/fake_raw.py``: the exact
on-disk formats) is written to a temporary directory and built with
:func:`jpose.datasets.tfds_build.build` into array_record files; the table gives the
annotated frames (or images) per second of the build (writing the fake is not timed).
Sizes: Human3.6M ``poses``: 2 subjects x 3 sequences x 4 cameras of ``--h36m-frames``
frames (a real take has 1,000-5,000 frames at 50 fps); ``images``: the same videos at
``--video-size`` pixels, every 5th frame; MPI-INF-3DHP: 2 sequences x 14 cameras of
``--mpi-frames`` frames; Penn Action / Sub-JHMDB: 40 clips of 40 frames at 320x240;
LSP: 2,000 images at 160x160.

Then the loader: the built Human3.6M ``poses`` split is read back
(``tfds_build.load``), turned into records and sequences (the training path of
``jpose.training.data``) and served as batches of 1024 receptive-field windows of 243
frames by ``pipelines.training_batches``; windows/s is compared with what one training
step consumes (``benchmarks/training_throughput.py``: about 200 windows/s for the
243-frame model on this CPU).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from types import MappingProxyType

import numpy as np


def _timed_build(name, raw, data_dir, config=None):
    from jpose.datasets import tfds_build

    t = time.perf_counter()
    builder = tfds_build.build(name, manual_dir=raw, data_dir=data_dir, config=config,
                               progress=False)
    return time.perf_counter() - t, builder


def _frames_in(builder, key):
    total = 0
    for split in builder.info.splits:
        source = builder.as_data_source(split=split)
        total += sum(int(np.asarray(source[i][key]).shape[0]) for i in range(len(source)))
    return total


def bench_h36m(args, tmp):
    from jpose.datasets.h36m import fake_raw

    raw = os.path.join(tmp, "h36m_raw")
    seqs = {"S1": ("Directions 1", "Walking 1", "Eating 2"),
            "S5": ("Directions 1", "Walking 1", "Eating 1")}
    fake_raw.write_fake_release(raw, subjects=("S1", "S5"), sequences=seqs,
                                num_frames=args.h36m_frames, videos=False, videopose3d=False)
    secs, builder = _timed_build("h36m", raw, os.path.join(tmp, "tfds"), "poses")
    frames = _frames_in(builder, "positions_world")
    rows = [("h36m poses", frames, secs)]
    raw_v = os.path.join(tmp, "h36m_video_raw")
    fake_raw.write_fake_release(raw_v, subjects=("S1",), sequences={"S1": ("Directions 1",)},
                                num_frames=args.video_frames,
                                image_size=(args.video_size, args.video_size),
                                videopose3d=False)
    secs, builder = _timed_build("h36m", raw_v, os.path.join(tmp, "tfds"), "images")
    images = sum(len(builder.as_data_source(split=s)) for s in builder.info.splits)
    rows.append((f"h36m images ({args.video_size}px video -> 256px crops)", images, secs))
    return rows


def bench_mpi(args, tmp):
    from jpose.datasets.mpi_inf_3dhp import fake_raw, raw as mpi_raw

    root = os.path.join(tmp, "mpi_raw")
    truth = fake_raw.write_fake_release(root, sequences=(("S1", "Seq1"), ("S2", "Seq1")),
                                        num_frames=args.mpi_frames, video_cameras=(),
                                        no_video_sequences=(), test_sequences=("TS1",),
                                        num_test_frames=200)
    mpi_raw.SEQUENCE_INFO = MappingProxyType(dict(truth["frame_counts"]))
    secs, builder = _timed_build("mpi_inf_3dhp", root, os.path.join(tmp, "tfds"), "poses")
    return [("mpi_inf_3dhp poses (14 cameras)", _frames_in(builder, "positions_camera"), secs)]


def bench_clips(args, tmp):
    from jpose.datasets.penn_action import fake_raw as penn
    from jpose.datasets.sub_jhmdb import fake_raw as jhmdb

    rows = []
    root = os.path.join(tmp, "penn_raw")
    penn.write_fake_release(root, num_sequences=40, num_frames=40, width=320, height=240,
                            missing_bbox=())
    secs, builder = _timed_build("penn_action", root, os.path.join(tmp, "tfds"))
    rows.append(("penn_action (320x240 JPEG)", _frames_in(builder, "keypoints_2d"), secs))
    root = os.path.join(tmp, "jhmdb_raw")
    jhmdb.write_fake_release(root, num_classes=4, videos_per_class=10, num_frames=40,
                             width=320, height=240)
    secs, builder = _timed_build("sub_jhmdb", root, os.path.join(tmp, "tfds"))
    frames = _frames_in(builder, "keypoints_2d")
    rows.append(("sub_jhmdb (320x240 PNG, 3 splits x train/test)", frames, secs))
    return rows


def bench_lsp(args, tmp):
    from jpose.datasets.lsp import fake_raw

    root = os.path.join(tmp, "lsp_raw")
    fake_raw.write_fake_release(root, num_lsp=2000, num_lspet=0, image_size=(160, 160))
    secs, builder = _timed_build("lsp", root, os.path.join(tmp, "tfds"), "lsp")
    images = sum(len(builder.as_data_source(split=s)) for s in builder.info.splits)
    return [("lsp (2,000 JPEG images + relative depth)", images, secs)]


def bench_loader(args, tmp):
    from jpose.datasets import pipelines, records, tfds_build

    examples = []
    for split in ("S1", "S5"):
        source = tfds_build.load("h36m", data_dir=os.path.join(tmp, "tfds"), split=split,
                                 config="poses")
        examples.extend(source[i] for i in range(len(source)))
    t = time.perf_counter()
    recs = records.records_from_examples(examples, layout="h36m_17")
    seqs = pipelines.sequences_from_records(recs, layout="h36m_17", with_cameras=False)
    windows = pipelines.temporal_windows(seqs, receptive_field=243)
    batches = pipelines.training_batches(windows, global_batch_size=1024, seed=0,
                                         flip_augment="h36m_17")
    setup = time.perf_counter() - t
    for k in range(2):
        batches.batch(k)
    t = time.perf_counter()
    for k in range(2, 2 + args.loader_steps):
        b = batches.batch(k)
    secs = time.perf_counter() - t
    rate = 1024 * args.loader_steps / secs
    print(f"\nLoader: {len(windows):,} frames in {len(seqs)} sequences (records + sequences "
          f"{setup:.1f} s); batches of 1024 x 243-frame windows with flips: "
          f"{rate:,.0f} windows/s ({secs / args.loader_steps * 1e3:.1f} ms per batch; "
          f"inputs {b['inputs'].shape}). One 243-frame training step on this CPU consumes "
          f"about 200 windows/s, so the loader is about {rate / 200:,.0f}x faster than needed.")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["h36m", "mpi_inf_3dhp", "clips", "lsp"])
    p.add_argument("--h36m-frames", type=int, default=3000)
    p.add_argument("--video-frames", type=int, default=500)
    p.add_argument("--video-size", type=int, default=500)
    p.add_argument("--mpi-frames", type=int, default=3000)
    p.add_argument("--loader-steps", type=int, default=20)
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}\n")
    print("| dataset (config) | frames or images | build s | per second |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        benches = {"h36m": bench_h36m, "mpi_inf_3dhp": bench_mpi, "clips": bench_clips,
                   "lsp": bench_lsp}
        for name in args.datasets:
            for label, n, secs in benches[name](args, tmp):
                print(f"| {label} | {n:,} | {secs:.1f} | {n / secs:,.0f} |", flush=True)
        if "h36m" in args.datasets:
            bench_loader(args, tmp)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
