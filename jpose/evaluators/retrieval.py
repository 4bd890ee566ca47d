r"""View-invariant pose retrieval (``retrieval``): Mean-PA-MPJPE@K (MCSS, Mitra et al. 2020).

Every frame of every view is embedded (a recipe predictor: an ``embedding`` ``(..., D)``
or a pose ``(..., J, 3)``, flattened; or, with ``predictor=None``, the root-centred
normalised 2D input itself, the no-learning baseline). For each *query* frame the
``K`` nearest neighbours by squared Euclidean distance between those vectors are
retrieved -- exact, brute force, chunked over queries, in jnp -- from the frames of the
**other views** (another camera than the query's), either of the query's own subject
(``same_subject``; the synchronous frame of the other views is in the index, so a
perfectly view-invariant embedding retrieves it first) or of the other subjects
(``cross_subject``).

The score of a retrieved frame is the P-MPJPE (Protocol #2, similarity Procrustes, no
reflection; :func:`jpose.metrics.p_mpjpe`) of its true 3D pose aligned to the query's
true 3D pose, mean over joints, millimetres. ``Mean-PA-MPJPE@K`` is its mean over the
top ``K`` and over queries. The **oracle** retrieves by that very quantity (the ``K``
frames of the same index with the smallest P-MPJPE to the query), so per query its
mean is never larger than the embedding's: it is the floor a retrieval can reach, and
``gap@K = embedding - oracle``. Both are averaged over the same queries (those with at
least ``K`` frames in their index).

Views: the evaluator needs each sequence's subject, synchronised take and camera. Pass
them (``views``: :class:`RetrievalView` s, as ``launch/retrieve.py`` does from the
dataset's records), or let :func:`views_from_sequences` recover them from the training
loop's ``(action, inputs, poses_3d)`` evaluation sequences: sequences whose 3D bone
lengths agree (to ``1 mm``; root-relative camera-frame poses of one subject have the
same bone lengths in every view) are one subject, and one subject's sequences of the
same action and length are the synchronised views of one take, their camera the order
in which they come (the loaders list records by subject, action, camera).

Cost: ``queries x index`` Procrustes alignments (about 3 us each on one CPU core), so
the evaluator keeps every ``frame_stride``-th instant of each take and queries every
``query_stride``-th of those frames.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jpose import metrics, skeleton
from jpose.evaluators.protocols import make_predict_fn, predict_sequence

__all__ = ["KS", "MODES", "RetrievalView", "RetrievalResult", "RetrievalEvaluator",
           "views_from_sequences", "retrieve", "summarise", "features_2d", "format_table"]

KS = (1, 5, 10, 20)
MODES = ("same_subject", "cross_subject")


class RetrievalView(NamedTuple):
    """One camera's sequence of one synchronised take."""

    subject: str
    group: str  # the take: frame k of every view of a group is the same instant
    camera: int
    inputs: np.ndarray  # (F, J_in, C) normalised screen coordinates
    poses_3d: np.ndarray  # (F, J, 3) metres (any per-view frame: P-MPJPE aligns)


def views_from_sequences(sequences, *, layout: str, tolerance: float = 1e-3
                         ) -> tuple[RetrievalView, ...]:
    """Views recovered from ``(action, inputs, poses_3d)`` sequences (module doc)."""
    refs: list[np.ndarray] = []
    counts: dict[tuple, int] = {}
    out = []
    for action, inputs, poses in sequences:
        lengths = np.median(skeleton.bone_lengths(np.asarray(poses, np.float64), layout),
                            axis=0)
        for s, ref in enumerate(refs):
            if np.max(np.abs(ref - lengths)) < tolerance:
                break
        else:
            refs.append(lengths)
            s = len(refs) - 1
        group = f"S{s}/{action}/{len(inputs)}"
        camera = counts.get(group, 0)
        counts[group] = camera + 1
        out.append(RetrievalView(f"S{s}", group, camera, np.asarray(inputs),
                                 np.asarray(poses)))
    return tuple(out)


def features_2d(inputs):
    """The raw-2D baseline's vector: normalised screen ``(x, y)`` minus the root joint
    (joint 0), flattened ``(..., 2 J)``."""
    xy = np.asarray(inputs)[..., :2]
    return (xy - xy[..., :1, :]).reshape(xy.shape[:-2] + (-1,))


@functools.partial(jax.jit, static_argnames=("kmax",))
def _retrieve_chunk(feat_q, pose_q, subj_q, cam_q, feats, poses, subj, cam, *, kmax):
    """Top-``kmax`` P-MPJPEs (metres) of the embedding's and the oracle's retrievals for
    a chunk of queries, per mode: ``{mode: (emb (Q, k), emb_ok, oracle (Q, k),
    oracle_ok)}``."""
    d = (jnp.sum(feat_q * feat_q, -1)[:, None] + jnp.sum(feats * feats, -1)[None, :]
         - 2.0 * feat_q @ feats.T)
    q, n = d.shape
    target = jnp.broadcast_to(pose_q[:, None], (q, n) + pose_q.shape[1:])
    pred = jnp.broadcast_to(poses[None], (q, n) + poses.shape[1:])
    pa = jnp.mean(metrics.p_mpjpe(pred, target), axis=-1)  # (Q, N)
    other_view = cam[None, :] != cam_q[:, None]
    same = subj[None, :] == subj_q[:, None]
    inf = jnp.asarray(jnp.inf, d.dtype)
    out = {}
    for mode, allowed in (("same_subject", other_view & same),
                          ("cross_subject", other_view & ~same)):
        _, idx = jax.lax.top_k(-jnp.where(allowed, d, inf), kmax)
        emb_ok = jnp.take_along_axis(allowed, idx, axis=1)
        emb = jnp.take_along_axis(pa, idx, axis=1)
        neg_oracle, _ = jax.lax.top_k(-jnp.where(allowed, pa, inf), kmax)
        oracle = -neg_oracle
        out[mode] = (emb, emb_ok, oracle, jnp.isfinite(oracle))
    return out


def retrieve(features, poses, subjects, cameras, queries, *, ks: Sequence[int] = KS,
             chunk: int = 32) -> dict[str, dict[str, np.ndarray]]:
    """Per-query top-``max(ks)`` P-MPJPEs (metres) of embedding and oracle retrieval.

    Args:
      features: ``(N, D)`` float vectors compared by squared Euclidean distance.
      poses: ``(N, J, 3)`` true 3D poses, metres.
      subjects, cameras: ``(N,)`` int ids; the index of a query holds the frames of
        another camera, of the same subject (``same_subject``) or another one.
      queries: ``(M,)`` indices into the N frames.

    Returns ``{mode: {"embedding", "embedding_valid", "oracle", "oracle_valid"}}`` of
    ``(M, k)`` arrays, ``k = min(max(ks), N)``, best first for the oracle and in
    embedding-distance order for the embedding.
    """
    feats = jnp.asarray(features, jnp.float32)
    poses_j = jnp.asarray(poses, jnp.float32)
    subj = jnp.asarray(subjects, jnp.int32)
    cam = jnp.asarray(cameras, jnp.int32)
    queries = np.asarray(queries, np.int64)
    kmax = int(min(max(ks), feats.shape[0]))
    parts: dict[str, list] = {m: [] for m in MODES}
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        pad = chunk - len(q)  # one compiled shape: pad the last chunk with query 0
        qp = np.concatenate([q, np.zeros(pad, np.int64)])
        res = _retrieve_chunk(feats[qp], poses_j[qp], subj[qp], cam[qp], feats, poses_j,
                              subj, cam, kmax=kmax)
        for mode in MODES:
            parts[mode].append([np.asarray(a)[:len(q)] for a in res[mode]])
    names = ("embedding", "embedding_valid", "oracle", "oracle_valid")
    return {mode: {name: np.concatenate([p[i] for p in parts[mode]]) for i, name in
                   enumerate(names)} for mode in MODES}


def summarise(per_query: dict[str, dict[str, np.ndarray]], *, ks: Sequence[int] = KS
              ) -> dict[str, float]:
    """``{mode/mean_pa_mpjpe@K_mm, mode/oracle@K_mm, mode/gap@K_mm, mode/queries@K}``
    from :func:`retrieve`'s output (queries with at least K frames in their index)."""
    values = {}
    for mode, r in per_query.items():
        for k in ks:
            if k > r["embedding"].shape[1]:
                continue
            ok = r["embedding_valid"][:, :k].all(axis=1) & r["oracle_valid"][:, :k].all(axis=1)
            n = int(ok.sum())
            values[f"{mode}/queries@{k}"] = float(n)
            if n == 0:
                continue
            emb = 1000.0 * float(r["embedding"][ok, :k].mean())
            orc = 1000.0 * float(r["oracle"][ok, :k].mean())
            values[f"{mode}/mean_pa_mpjpe@{k}_mm"] = emb
            values[f"{mode}/oracle@{k}_mm"] = orc
            values[f"{mode}/gap@{k}_mm"] = emb - orc
    return values


def format_table(values: dict[str, float], *, ks: Sequence[int] = KS, title: str = "") -> str:
    """Mean-PA-MPJPE@K (mm) per mode, the oracle in brackets, from :func:`summarise`."""
    lines = [f"{title}: Mean-PA-MPJPE@K (mm), oracle in brackets" if title else
             "Mean-PA-MPJPE@K (mm), oracle in brackets"]
    for mode in MODES:
        cells = [f"@{k} {values[f'{mode}/mean_pa_mpjpe@{k}_mm']:.1f} "
                 f"({values[f'{mode}/oracle@{k}_mm']:.1f})" for k in ks
                 if f"{mode}/mean_pa_mpjpe@{k}_mm" in values]
        lines.append(f"  {mode:14s} " + ("  ".join(cells) if cells else "(no queries)"))
    return "\n".join(lines)


class RetrievalResult(NamedTuple):
    """What :meth:`RetrievalEvaluator.run` accumulates: the per-query results of
    :func:`retrieve` and their summary."""

    per_query: dict[str, dict[str, np.ndarray]]
    values: dict[str, float]
    ks: tuple[int, ...] = KS

    def table(self, title: str = "") -> str:
        return format_table(self.values, ks=self.ks, title=title)


class RetrievalEvaluator:
    """``retrieval``: Mean-PA-MPJPE@K of a predictor's embeddings (module doc).

    ``run(variables) -> (RetrievalResult, {"same_subject/mean_pa_mpjpe@1_mm": ...})``.
    ``predictor`` may be an ``embedding``, ``canonical_pose`` or ``pose`` predictor, or
    None for the raw-2D baseline. ``flip`` must be False (a mirrored embedding is not
    the embedding of the mirrored pose).
    """

    kind = "retrieval"

    def __init__(self, predictor, sequences, *, layouts: tuple[str, str], flip: bool,
                 bucket: int, frames=None, views: Sequence[RetrievalView] | None = None,
                 ks: Sequence[int] = KS, frame_stride: int = 4, query_stride: int = 4,
                 chunk: int = 32):
        del frames
        if flip:
            raise ValueError("evals: the retrieval evaluator needs flip=False (set "
                             "evals.<name>.flip = False)")
        if predictor is not None and predictor.output not in ("embedding", "canonical_pose",
                                                              "pose"):
            raise ValueError(f"evals: the retrieval evaluator needs an embedding or pose "
                             f"predictor, got a {predictor.output!r} one")
        self.views = tuple(views) if views is not None else views_from_sequences(
            sequences, layout=layouts[1])
        self.ks = tuple(int(k) for k in ks)
        self.frame_stride, self.query_stride = int(frame_stride), int(query_stride)
        self.chunk, self.bucket = int(chunk), int(bucket)
        self.predict_fn = None if predictor is None else make_predict_fn(predictor.fn)
        subjects = sorted({v.subject for v in self.views})
        frames, poses, subj, cams = [], [], [], []
        for v in self.views:
            keep = np.arange(0, len(v.inputs), self.frame_stride)
            frames.append(keep)
            poses.append(np.asarray(v.poses_3d, np.float32)[keep])
            subj.append(np.full(len(keep), subjects.index(v.subject), np.int32))
            cams.append(np.full(len(keep), int(v.camera), np.int32))
        self._keep = frames
        self.poses = np.concatenate(poses)
        self.subjects = np.concatenate(subj)
        self.cameras = np.concatenate(cams)
        self.queries = np.arange(0, len(self.poses), self.query_stride)

    def features(self, variables) -> np.ndarray:
        """``(N, D)`` retrieval vectors of the kept frames of every view."""
        out = []
        for v, keep in zip(self.views, self._keep):
            if self.predict_fn is None:
                f = features_2d(v.inputs)
            else:
                f = predict_sequence(self.predict_fn, variables,
                                     np.asarray(v.inputs, np.float32), bucket=self.bucket)
                f = f.reshape(f.shape[0], -1)
            out.append(np.asarray(f, np.float32)[keep])
        return np.concatenate(out)

    def run(self, variables) -> tuple[RetrievalResult, dict[str, float]]:
        per_query = retrieve(self.features(variables), self.poses, self.subjects,
                             self.cameras, self.queries, ks=self.ks, chunk=self.chunk)
        values = summarise(per_query, ks=self.ks)
        return RetrievalResult(per_query, values, self.ks), values
