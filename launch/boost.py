r"""Li et al. ICCV 2019 two-stage boosting: baseline, completed pseudo-labels, fine-tuning.

  python launch/boost.py --workdir=W                       # the embedded data
  python launch/boost.py --workdir=W --config=launch/configs/li_boosting/sample.py:tiny

Stages (each a run in its own workdir under ``W``; rerunning resumes or re-evaluates):

A. ``W/A_baseline``: the lifter trained on the labelled set (``--config``).
B. Predicts the unlabelled videos with A, takes the 2D detector's per-joint confidence
   as the score ``s`` (a lifter has no heatmap confidence; documented choice), completes
   every video's joints with ``s <= boost.tau`` by
   :func:`jpose.solvers.trajectory_completion.complete_trajectories` (low rank +
   temporal smoothness, seed 000 Eq. 1) and takes each video's median bone lengths of
   the completed poses; writes ``W/pseudo_labels.npz``
   (:mod:`jpose.datasets.pseudo_labels`).
C. Fine-tunes A (``init_from``) with the ``li_boosting`` recipe three ways, the rows of
   the paper's Table 3: ``optimised_supervision`` (pseudo-labels, ``W = 1``),
   ``weighted_fidelity`` (``W(s)``) and ``bone_consistency`` (``W(s)`` + ``gamma U``).

Prints and writes ``W/boost.json``: ``{"table1": {"predictions" | "optimised": {metric:
mm}}, "table3": {row: {metric: mm}}}`` -- Table 1 on the unlabelled videos (all joints,
and joints with score > tau), Table 3 on the evaluation set; metrics ``mpjpe``,
``n_mpjpe``, ``p_mpjpe`` (action-wise for Table 3), millimetres.
"""

import os

from absl import flags
import ml_collections
import numpy as np
from ml_collections import config_flags

import _common  # noqa: F401

from jpose import confidence, io, metrics, skeleton  # noqa: E402
from jpose.datasets import pseudo_labels  # noqa: E402
from jpose.evaluators import protocols  # noqa: E402
from jpose.solvers import trajectory_completion as tc  # noqa: E402
from jpose.training import loop, streams  # noqa: E402


def define_flags() -> None:
    """Defined on demand (not at import) so tests can import this module with others."""
    config_flags.DEFINE_config_file(
        "config", os.path.join(_common.ROOT, "launch", "configs", "li_boosting", "sample.py"),
        "Stage-A config with a `boost` section.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Output directory (one run per stage).")
    flags.mark_flags_as_required(["workdir"])


METRICS = ("mpjpe", "n_mpjpe", "p_mpjpe")
ROWS = (("optimised_supervision", "plain", False), ("weighted_fidelity", "weighted", False),
        ("bone_consistency", "weighted", True))


def _errors(pred, target, mask) -> dict[str, tuple[float, float]]:
    """Per-metric (sum, count) in metres over ``mask`` (F, J) joints."""
    out = {"mpjpe": metrics.mpjpe(pred, target), "n_mpjpe": metrics.n_mpjpe(pred, target),
           "p_mpjpe": metrics.p_mpjpe(pred, target)}
    return {k: (float(np.sum(np.asarray(v) * mask)), float(mask.sum())) for k, v in out.items()}


def _complete(poses, confidence, *, tau: float, batch: int):
    """Completed poses (lists of (F_i, J, 3)) in batches padded to 64-frame buckets."""
    order = np.argsort([len(p) for p in poses])
    out = [None] * len(poses)
    config = tc.CompletionConfig(tau=tau)
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        idx = np.concatenate([idx, np.repeat(idx[-1:], batch - len(idx))])
        frames = -(-max(len(poses[i]) for i in idx) // 64) * 64
        j = poses[idx[0]].shape[1]
        p = np.zeros((batch, frames, j, 3), np.float32)
        c = np.zeros((batch, frames, j), np.float32)
        mask = np.zeros((batch, frames), bool)
        for k, i in enumerate(idx):
            f = len(poses[i])
            p[k, :f], c[k, :f], mask[k, :f] = poses[i], confidence[i], True
        res = tc.complete_trajectories(p, c, config=config, frame_mask=mask)
        done = np.asarray(res.poses)
        if not np.isfinite(done).all():
            raise FloatingPointError("trajectory completion gave non-finite poses")
        for k, i in enumerate(idx):
            out[i] = done[k, :len(poses[i])]
    return out


def _scores(kind: str, *, detector, plain, mirrored, averaged, b) -> np.ndarray:
    """One video's score ``(F, J)`` of kind ``kind`` (``jpose.confidence``; "a*b":
    product)."""
    parts = []
    for k in kind.split("*"):
        if k == "detector":
            parts.append(confidence.detector(detector))
        elif k == "flip":
            parts.append(confidence.flip_consistency(plain, mirrored,
                                                     sigma=float(b.flip_sigma)))
        elif k == "temporal":
            parts.append(confidence.temporal_consistency(averaged,
                                                         sigma=float(b.temporal_sigma)))
        else:
            raise ValueError(f"boost.confidence: unknown score {k!r} in {kind!r}; expected "
                             f"{' | '.join(confidence.KINDS)} or products like "
                             "'detector*temporal'")
    return confidence.combine(*parts)


def unlabelled_videos(config, restored):
    """``(data, sequences)``: the unlabelled split, or with ``boost.target`` (data
    overrides naming another dataset: cross-dataset boosting) all of that dataset's
    training videos."""
    target = dict(config.boost.get("target", {}) or {})
    if not target:
        data = restored.run.data
        if data.splits["unlabelled"] is None:
            raise ValueError("data.protocol leaves no unlabelled videos to boost with (set "
                             "data.protocol, or boost.target for another dataset's videos)")
        return data, data.splits["unlabelled"]
    data = streams.load_data(loop.with_data(restored.config, target))
    mine = (restored.run.data.input_layout, restored.run.data.layout)
    if (data.input_layout, data.layout) != mine:
        raise ValueError(f"boost.target: its joint layouts ({data.input_layout!r}, "
                         f"{data.layout!r}) differ from the labelled data's {mine}")
    return data, data.splits["train"]


def stage_b(config, workdir_a: str, path: str) -> dict:
    """Pseudo-labels of the unlabelled videos; returns Table 1 (mm) and, under
    ``confidence``, how well each score ranks the predictions' errors."""
    b = config.boost
    tau = float(b.tau)
    restored = loop.restore_for_inference(workdir_a, with_data=True)
    data, seqs = unlabelled_videos(config, restored)
    if data.input_layout != data.layout:
        raise ValueError("boosting needs the 2D confidences per 3D joint: 2D in the 3D layout")
    root = skeleton.get(data.layout).root
    others = np.arange(skeleton.get(data.layout).num_joints) != root  # the root errs 0

    def centred(p):
        return p - p[:, root:root + 1]

    fn = restored.run.predictors["pose"].fn
    plain_fn = protocols.make_predict_fn(fn)
    mirrored_fn = protocols.make_predict_fn(
        protocols.mirrored(fn, (data.input_layout, data.layout)))
    bucket = int(restored.config.eval.bucket)
    preds, scores, reports = [], [], {}
    kinds = sorted({*confidence.KINDS, str(b.confidence)})
    per_kind = {k: [] for k in kinds}
    for s in seqs:
        plain = protocols.predict_sequence(plain_fn, restored.variables, s.inputs, bucket=bucket)
        mirrored = protocols.predict_sequence(mirrored_fn, restored.variables, s.inputs,
                                              bucket=bucket)
        plain, mirrored = centred(plain), centred(mirrored)
        averaged = (plain + mirrored) / 2 if restored.config.eval.flip else plain
        preds.append(averaged)
        for k in kinds:
            per_kind[k].append(_scores(k, detector=s.confidence, plain=plain,
                                       mirrored=mirrored, averaged=averaged, b=b))
    scores = per_kind[str(b.confidence)]
    flat = np.concatenate([x.ravel() for x in scores])
    if np.ptp(flat) == 0 and flat[0] > tau:
        raise ValueError(f"boost.confidence={b.confidence!r}: every joint of the unlabelled "
                         f"videos scores {flat[0]:g} > tau={tau:g} (2D without per-joint "
                         "confidences?), so completion would change nothing; use "
                         "'temporal' or 'flip'")
    errors = np.concatenate([np.linalg.norm(p - centred(s.poses_3d), axis=-1)[:, others]
                             .ravel() for p, s in zip(preds, seqs)])
    for k in kinds:
        reports[k] = confidence.ranking_report(
            np.concatenate([x[:, others].ravel() for x in per_kind[k]]), errors, tau=tau)
    completed = _complete(preds, scores, tau=tau, batch=int(b.completion_batch))
    completed = [centred(c) for c in completed]
    table = {}
    for row, poses in (("predictions", preds), ("optimised", completed)):
        sums: dict[str, list[float]] = {}
        for which in ("all", "confident"):
            for p, s, c in zip(poses, seqs, scores):
                mask = np.ones(c.shape, bool) if which == "all" else c > tau
                for k, (t, n) in _errors(p, centred(s.poses_3d), mask).items():
                    acc = sums.setdefault(f"{k}_{which}", [0.0, 0.0])
                    acc[0] += t
                    acc[1] += n
        table[row] = {k: 1000 * t / max(n, 1) for k, (t, n) in sums.items()}
    lengths = [len(p) for p in completed]
    padded = np.zeros((len(completed), max(lengths)) + completed[0].shape[1:], np.float32)
    mask = np.zeros(padded.shape[:2], bool)
    for i, p in enumerate(completed):
        padded[i, :len(p)], mask[i, :len(p)] = p, True
    bone_lengths = np.asarray(tc.video_bone_lengths(padded, layout=data.layout,
                                                    frame_mask=mask))
    pseudo_labels.save(path, inputs=[s.inputs for s in seqs], poses_3d=completed,
                       confidence=scores, bone_lengths=bone_lengths, layout=data.layout,
                       subjects=[s.subject for s in seqs], actions=[s.action_name for s in seqs])
    table["fraction_confident"] = float(np.mean(flat > tau))
    table["confidence"] = {"used": str(b.confidence), "ranking": reports}
    return table


def finetune_config(config, *, workdir_a: str, pseudo_path: str, fidelity: str,
                    bone: bool) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(config.to_dict())
    b = config.boost
    c.recipe = {"name": "li_boosting", "stream": "labelled", "trajectory": False,
                "tau": float(b.tau), "fidelity": fidelity,
                "gamma": float(b.gamma) if bone else 0.0}
    c.streams = {"labelled": {"split": "labelled", "global_batch_size": 0, "network": ""},
                 "pseudo": {"source": "pseudo_labels", "path": pseudo_path, "flip": False,
                            "global_batch_size": 0, "network": ""}}
    c.init_from = {"workdir": workdir_a, "networks": ("pose",)}
    c.num_epochs = int(b.finetune_epochs)
    c.optimizer.learning_rate = float(b.finetune_learning_rate)
    c.lock()
    return c


#: Table 3 metrics of the MPI-INF-3DHP evaluator (``pck3d_auc``): %, %, mm.
PCK_METRICS = ("pck3d_150mm", "auc", "mpjpe_mm")


def _row(result) -> dict[str, float]:
    """Table 3 row: the Human3.6M protocols (action-wise, mm) where the run has them,
    else the first evaluator's 3DPCK / AUC / MPJPE totals."""
    if "protocols_mm" in result:
        return {k: result["protocols_mm"][k]["action_wise"] for k in METRICS}
    values = next(iter(result["evals"].values()))
    return {k: values[k] for k in PCK_METRICS}


def run(config, workdir: str, *, progress: bool = True) -> dict:
    os.makedirs(workdir, exist_ok=True)
    workdir_a = os.path.join(workdir, "A_baseline")
    table3 = {"baseline": _row(loop.train_and_evaluate(config, workdir_a, progress=progress))}
    pseudo_path = os.path.join(workdir, "pseudo_labels.npz")
    table1 = stage_b(config, workdir_a, pseudo_path)
    for row, fidelity, bone in ROWS:
        cfg = finetune_config(config, workdir_a=workdir_a, pseudo_path=pseudo_path,
                              fidelity=fidelity, bone=bone)
        table3[row] = _row(loop.train_and_evaluate(cfg, os.path.join(workdir, f"C_{row}"),
                                                   progress=progress))
    report = {"units": "mm", "tau": float(config.boost.tau), "table1": table1,
              "table3": table3}
    io.save_json_atomic(os.path.join(workdir, "boost.json"), report)
    return report


def format_report(report: dict) -> str:
    lines = ["Table 1 (unlabelled videos; all joints / score > tau)",
             "| | " + " | ".join(f"{m} all | {m} > tau" for m in METRICS) + " |"]
    for row in ("predictions", "optimised"):
        r = report["table1"][row]
        lines.append(f"| {row} | " + " | ".join(
            f"{r[m + '_all']:.1f} | {r[m + '_confident']:.1f}" for m in METRICS) + " |")
    conf = report["table1"]["confidence"]
    lines += ["", f"Scores (used: {conf['used']}; tau {report['tau']:g}): share > tau, "
              "MPJPE > tau / rest (mm), Spearman(score, error)"]
    for kind, r in conf["ranking"].items():
        lines.append(f"| {kind} | {r['fraction_confident']:.2f} | {r['mpjpe_confident_mm']:.1f}"
                     f" | {r['mpjpe_rest_mm']:.1f} | {r['spearman']:.2f} |")
    metrics_ = list(next(iter(report["table3"].values())))
    lines += ["", "Table 3 (evaluation set)", "| | " + " | ".join(metrics_) + " |"]
    for row, r in report["table3"].items():
        lines.append(f"| {row} | " + " | ".join(f"{r[m]:.1f}" for m in metrics_) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    with _common.one_line_errors("boost.py"):
        report = run(flags.FLAGS.config, flags.FLAGS.workdir)
    print(format_report(report))


if __name__ == "__main__":
    define_flags()
    _common.run_app(main, "boost.py")
