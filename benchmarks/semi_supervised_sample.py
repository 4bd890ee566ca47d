r"""VideoPose3D semi-supervised vs supervised on the embedded data, and on your own files.

  python benchmarks/semi_supervised_sample.py --workdir=/tmp/semi [--runs=semi,supervised,no_bone,files] \
      [--labels=few|S1]

Labelled: 10 % of subject S1 (``--labels=few``, the default) or all of S1; unlabelled: S2-S4 (2D and camera intrinsics only); evaluation: S5
through camera 7 (unseen subject and viewpoint), action-wise Protocols #1, #2 and
N-MPJPE in millimetres. ``files`` is the semi-supervised run with the unlabelled stream
read from user sequence files (``jpose.datasets.user_sequences``) written from S2-S4:
the path a user's own unlabelled videos take. Each run is ``launch/train.py`` with
``launch/configs/videopose_semi/sample.py`` (a few minutes each on 2 CPU cores); runs
already in ``--workdir`` are resumed or re-evaluated, not retrained.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CONFIG = os.path.join(ROOT, "launch", "configs", "videopose_semi", "sample.py")
RUNS = {"semi": "", "supervised": "supervised", "no_bone": "no_bone", "files": ""}


def write_files(directory: str) -> list[str]:
    """User sequence files of the sample's unlabelled subjects (no 3D)."""
    import importlib.util

    from jpose.datasets import multiview, user_sequences

    spec = importlib.util.spec_from_file_location("semi_sample", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    d = module.get_config("").data
    ds = multiview.make_multiview_dataset(
        d.motion, layout=d.layout, num_subjects=d.num_subjects, num_cameras=d.num_cameras,
        held_out_cameras=tuple(d.held_out_cameras), seed=d.generator_seed)
    os.makedirs(directory, exist_ok=True)
    return user_sequences.user_sequences_from_records(
        ds.split("unlabelled"), os.path.join(directory, "video_"), with_3d=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--labels", choices=("few", "S1"), default="few")
    args = parser.parse_args()
    rows = {}
    for name in args.runs.split(","):
        workdir = os.path.join(args.workdir, name)
        switches = ",".join(s for s in ("few" if args.labels == "few" else "", RUNS[name]) if s)
        command = [sys.executable, os.path.join(ROOT, "launch", "train.py"),
                   f"--config={CONFIG}" + (f":{switches}" if switches else ""),
                   f"--workdir={workdir}"]
        if name == "files":
            files = write_files(os.path.join(args.workdir, "my_videos"))
            print(f"wrote {len(files)} user sequence files")
            command += ["--config.streams.unlabelled.source=files",
                        f"--config.streams.unlabelled.paths=('{os.path.dirname(files[0])}',)"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(workdir, "eval.json")) as f:
            protocols = json.load(f)["protocols_mm"]
        rows[name] = {k: protocols[k]["action_wise"] for k in ("mpjpe", "p_mpjpe", "n_mpjpe")}
    print("| run | MPJPE (#1) | P-MPJPE (#2) | N-MPJPE |\n| --- | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(f"| {name} | {r['mpjpe']:.1f} | {r['p_mpjpe']:.1f} | {r['n_mpjpe']:.1f} |")


if __name__ == "__main__":
    main()
