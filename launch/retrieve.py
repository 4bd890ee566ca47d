r"""View-invariant pose retrieval with a trained workdir (MCSS, seed 004).

  python launch/retrieve.py --workdir=W [--predictor=embedding] [--features=predictor] \
      [--output=W/retrieval.json] [--index=W/retrieval_index.npz]

Builds an index of the run's evaluation set -- every kept frame of every view,
embedded by the recipe predictor ``--predictor`` (``embedding``; ``canonical_pose`` or
any pose predictor works too), or with ``--features=raw_2d`` the root-centred normalised
2D input (no learning) -- and queries it: for every ``--query_stride``-th frame, its
``K`` nearest neighbours from the *other* views, of the same subject and of the other
subjects, scored by Mean-PA-MPJPE@K against the oracle that retrieves by true 3D
(:mod:`jpose.evaluators.retrieval`). The run's config is read from its checkpoint, so
the workdir is all it needs. Prints the table; ``--output`` writes the summary JSON and
``--index`` the index and the per-query results (``.npz``), both atomically.
"""

import numpy as np
from absl import flags

import _common  # noqa: F401

from jpose import io  # noqa: E402
from jpose.evaluators import retrieval  # noqa: E402
from jpose.training import loop  # noqa: E402


def define_flags() -> None:
    """Defined on demand (not at import) so tests can import this module with others."""
    flags.DEFINE_string("workdir", None, "Workdir holding checkpoints.")
    flags.DEFINE_string("predictor", "embedding", "Recipe predictor to embed with.")
    flags.DEFINE_enum("features", "predictor", ["predictor", "raw_2d"],
                      "What to compare: the predictor's output or the raw 2D.")
    flags.DEFINE_list("ks", ["1", "5", "10", "20"], "Values of K.")
    flags.DEFINE_integer("frame_stride", 4, "Keep every n-th instant.")
    flags.DEFINE_integer("query_stride", 4, "Query every n-th kept frame.")
    flags.DEFINE_string("output", None, "Write the summary JSON here.")
    flags.DEFINE_string("index", None, "Write the index and per-query results (.npz).")
    flags.mark_flags_as_required(["workdir"])


def run(workdir: str, *, predictor: str = "embedding", features: str = "predictor",
        ks=retrieval.KS, frame_stride: int = 4, query_stride: int = 4):
    """``(summary, evaluator, index features, per-query results)``."""
    restored = loop.restore_for_inference(workdir, with_data=True)
    run_ = restored.run
    chosen = None
    if features == "predictor":
        if predictor not in run_.predictors:
            raise ValueError(f"--predictor: {predictor!r} is not one of the recipe's "
                             f"predictors {sorted(run_.predictors)}")
        chosen = run_.predictors[predictor]
    evaluator = retrieval.RetrievalEvaluator(
        chosen, run_.data.eval_sequences, layouts=(run_.data.input_layout, run_.data.layout),
        flip=False, bucket=int(restored.config.eval.bucket), ks=tuple(int(k) for k in ks),
        frame_stride=frame_stride, query_stride=query_stride)
    feats = evaluator.features(restored.variables)
    per_query = retrieval.retrieve(feats, evaluator.poses, evaluator.subjects,
                                   evaluator.cameras, evaluator.queries, ks=evaluator.ks)
    return retrieval.summarise(per_query, ks=evaluator.ks), evaluator, feats, per_query


def main(argv):
    del argv
    f = flags.FLAGS
    ks = tuple(int(k) for k in f.ks)
    with _common.one_line_errors("retrieve.py"):
        summary, ev, feats, per_query = run(
            f.workdir, predictor=f.predictor, features=f.features, ks=ks,
            frame_stride=f.frame_stride, query_stride=f.query_stride)
    what = f.predictor if f.features == "predictor" else "raw_2d"
    print(retrieval.format_table(summary, ks=ks, title=f"{what}, {len(ev.queries)} queries, "
                                 f"index of {len(ev.poses)} frames"))
    if f.output:
        io.save_json_atomic(f.output, {
            "units": "mm", "features": what, "workdir": f.workdir, "ks": list(ks),
            "frame_stride": f.frame_stride, "query_stride": f.query_stride,
            "num_queries": int(len(ev.queries)), "index_size": int(len(ev.poses)),
            "summary": summary})
    if f.index:
        arrays = {"features": feats, "poses_3d": ev.poses, "subject": ev.subjects,
                  "camera": ev.cameras, "queries": ev.queries}
        for mode, r in per_query.items():
            arrays.update({f"{mode}/{k}": np.asarray(v) for k, v in r.items()})
        io.save_npz_atomic(f.index, arrays)


if __name__ == "__main__":
    define_flags()
    _common.run_app(main, "retrieve.py")
