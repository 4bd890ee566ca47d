r"""The multi-view lifting recipe against its baselines on the embedded data.

  python launch/configs/multiview_lifting/benchmark.py [--switches=virtual_views] [--out=W]

Trains ``sample.py`` (``L_pre`` then ``L_T``) and ``sample.py:reproj_only`` (the thesis'
ablation) on one load of the data, and scores two label-using references on the same
evaluation set: the mean training pose (each camera's frame, root-relative; this one
reads the training 3D, which the recipe never does) and the recipe's own pre-training
output (the flat, weak-perspective start). Prints and writes ``W/benchmark.json``
(action-wise means in mm).
"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from jpose.training import loop, streams  # noqa: E402

_OUT = flags.DEFINE_string("out", "", "Directory for the runs (default: a temporary one).")
_SWITCHES = flags.DEFINE_string("switches", "", "Extra config switches for every run.")


def _config(arg):
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "sample.py")
    spec = importlib.util.spec_from_file_location("mv_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _mean_pose_mm(data):
    """Protocol #1 of predicting the mean training pose (root-relative, camera frame)."""
    train = data.splits["train"]
    mean = np.mean(np.concatenate([s.poses_3d for s in train]), axis=0)
    errs = []
    for _, _, poses in data.eval_sequences:
        rel = poses - poses[:, :1]
        errs.append(np.mean(np.linalg.norm(rel - (mean - mean[:1])[None], axis=-1)))
    return float(np.mean(errs)) * 1000


def main(argv):
    del argv
    out = _OUT.value or tempfile.mkdtemp()
    extra = [s for s in _SWITCHES.value.split(",") if s]
    base = _config(",".join(extra))
    data = streams.load_data(base)
    rows = {"mean training pose (reads 3D labels)": {"mpjpe": _mean_pose_mm(data)}}
    for name, switches in (("pre-training only (L_pre)", ["pretrain_only"]),
                           ("re-projection only (L_reproj)", ["reproj_only"]),
                           ("transform re-projection (L_T)", [])):
        if switches == ["pretrain_only"]:
            c = _config(",".join(extra))
            c.num_epochs = int(c.recipe.pretrain_epochs)
            c.recipe.pretrain_epochs = c.num_epochs + 1  # stay in phase 0
        else:
            c = _config(",".join(extra + switches))
        result = loop.train_and_evaluate(c, os.path.join(out, name.split(" ")[0]),
                                         progress=False, data=data)
        p = result["protocols_mm"]
        rows[name] = {k: p[k]["action_wise"] for k in ("mpjpe", "p_mpjpe", "n_mpjpe")}
        print(name, rows[name], flush=True)
    print("| run | MPJPE #1 | P-MPJPE #2 | N-MPJPE |\n| --- | ---: | ---: | ---: |")
    for name, r in rows.items():
        cells = " | ".join(f"{r[k]:.1f}" if k in r else "-" for k in ("mpjpe", "p_mpjpe",
                                                                       "n_mpjpe"))
        print(f"| {name} | {cells} |")
    with open(os.path.join(out, "benchmark.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    app.run(main)
