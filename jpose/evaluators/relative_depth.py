"""Relative-depth evaluation (``relative_depth``): the % of relative-depth labels a pose
predictor gets wrong (Ronchi et al. BMVC 2018's metric: 34.3 % trained on Human3.6M,
24.1 % fine-tuned on LSP, on LSP's crowd-sourced test pairs).

Two kinds of evaluation set, one accumulator:

* **sequences with 3D** (the run's evaluation set, ``config.evals.<name>.type =
  "relative_depth"``): labels made from the ground-truth 3D by
  :func:`jpose.datasets.depth_pairs.make_labels` with a fixed seed (default: **all**
  ``J (J - 1) / 2`` pairs of every frame, 100 mm tie tolerance, no annotator noise; ties
  are not scored);
* **LSP-style records** (:meth:`RelativeDepthEvaluator.from_records`, items from
  :func:`lsp_items`): each image's 2D keypoints and its ``depth_pairs`` /
  ``depth_closer`` (the LSP builder's features, ``r = 2 * depth_closer - 1``).

Convention (:mod:`jpose.objectives.ordinal`): camera z forward, ``r = +1`` when the
pair's first joint is farther. A pair is wrong when the predicted depth difference has
the other sign (a tie counts wrong). Prediction as in :mod:`jpose.evaluators.protocols`
(whole sequences, optional flip averaging); pair indices refer to the predictor's output
layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np

from jpose import camera, skeleton
from jpose.datasets import depth_pairs
from jpose.evaluators.protocols import make_predict_fn, predict_sequence
from jpose.objectives import ordinal

__all__ = ["RelativeDepthAccumulator", "RelativeDepthEvaluator", "lsp_items"]


class RelativeDepthAccumulator:
    """``(wrong, scored)`` pair counts per group (action or ``"lsp"``)."""

    def __init__(self):
        self.wrong: dict[str, int] = {}
        self.count: dict[str, int] = {}

    def add(self, group: str, wrong, valid) -> None:
        wrong, valid = np.asarray(wrong, bool), np.asarray(valid, bool)
        self.wrong[group] = self.wrong.get(group, 0) + int(np.sum(wrong & valid))
        self.count[group] = self.count.get(group, 0) + int(np.sum(valid))

    def wrong_pct(self, group: str | None = None) -> float:
        """% wrong over all scored pairs (``group`` None) or one group's; NaN if none."""
        w = sum(self.wrong.values()) if group is None else self.wrong.get(group, 0)
        n = sum(self.count.values()) if group is None else self.count.get(group, 0)
        return 100.0 * w / n if n else float("nan")

    def summary(self) -> dict[str, float]:
        out = {"wrong_pct": self.wrong_pct(), "num_pairs": float(sum(self.count.values()))}
        out.update({f"wrong_pct/{g}": self.wrong_pct(g) for g in sorted(self.count)})
        return out

    def table(self) -> str:
        rows = [f"{g:<24s} {self.wrong_pct(g):6.1f} %  ({self.count[g]} pairs)"
                for g in sorted(self.count)]
        rows.append(f"{'all':<24s} {self.wrong_pct():6.1f} %  ({sum(self.count.values())} "
                    "pairs)")
        return "relative depth, % of pairs wrong\n" + "\n".join(rows)


def _padded(pairs_list, labels_list):
    """Pads per-record ``(K_i, 2)`` pairs and ``(K_i,)`` labels to one ``K`` (label 0:
    not scored)."""
    k = max([len(p) for p in pairs_list] + [1])
    pairs = np.zeros((len(pairs_list), k, 2), np.int32)
    labels = np.zeros((len(pairs_list), k), np.int32)
    for i, (p, r) in enumerate(zip(pairs_list, labels_list)):
        pairs[i, :len(p)] = p
        labels[i, :len(r)] = r
    return pairs, labels


#: Joints of other layouts that :func:`jpose.skeleton.convert` cannot make from LSP's 14
#: (it has no head centre), as affine combinations of LSP joints (weights sum to 1).
_LSP_SYNTHESIS = {
    "pelvis": (("left_hip", 0.5), ("right_hip", 0.5)),
    "spine": (("left_hip", 0.25), ("right_hip", 0.25), ("neck", 0.5)),
    "thorax": (("neck", 1.0),),
    "head": (("neck", 0.5), ("head_top", 0.5)),
}


def _from_lsp(xy: np.ndarray, layout: str) -> np.ndarray:
    """``(14, C)`` LSP joints in ``layout``: :func:`jpose.skeleton.convert`, or where that
    has no rule, LSP's joints by name and :data:`_LSP_SYNTHESIS` for the others."""
    try:
        return np.asarray(skeleton.convert(xy, "lsp_14", layout), np.float32)
    except ValueError:
        pass
    src = skeleton.get("lsp_14")
    rows = []
    for name in skeleton.get(layout).joint_names:
        if name in src.joint_names:
            rows.append(xy[src.index(name)])
        elif name in _LSP_SYNTHESIS:
            rows.append(sum(w * xy[src.index(n)] for n, w in _LSP_SYNTHESIS[name]))
        else:
            raise ValueError(f"lsp_items: cannot make joint {name!r} of {layout!r} from LSP's "
                             "14 joints")
    return np.stack(rows).astype(np.float32)


def lsp_items(examples: Iterable[Mapping[str, Any]], *, input_layout: str,
              layout: str) -> list[dict[str, np.ndarray]]:
    """Evaluation items from LSP builder examples (``keypoints_2d`` (14, 2) pixels,
    ``image_size`` (width, height), ``depth_pairs`` (K, 2) ``lsp_14`` indices,
    ``depth_closer`` (K,)): the 2D in normalised screen units converted to the
    predictor's ``input_layout`` (missing joints synthesised: :func:`jpose.skeleton.convert`,
    else the head centre as the mean of neck and head top, :data:`_LSP_SYNTHESIS`)
    and the pairs mapped by joint name to the output ``layout``. Images without pairs are
    skipped."""
    src = skeleton.get("lsp_14")
    out_index = np.array([skeleton.get(layout).index(n) for n in src.joint_names], np.int32)
    items = []
    for ex in examples:
        pairs = np.asarray(ex["depth_pairs"], np.int32).reshape(-1, 2)
        if len(pairs) == 0:
            continue
        screen = np.asarray(camera.pixels_to_screen(
            np.asarray(ex["keypoints_2d"], np.float32),
            np.asarray(ex["image_size"], np.float32)), np.float32)
        items.append({"inputs": _from_lsp(screen, input_layout),
                      "depth_pairs": out_index[pairs],
                      "depth_closer": np.asarray(ex["depth_closer"], np.int32)})
    return items


class RelativeDepthEvaluator:
    """``relative_depth``: % of relative-depth labels predicted wrong.

    ``run(variables) -> (accumulator, {"wrong_pct", "num_pairs", "wrong_pct/<group>"})``.
    The constructor is the loop's (``sequences`` of ``(action, inputs (F, J_in, C),
    poses_3d (F, J, 3))``); ``mode``, ``num_pairs``, ``tolerance`` and ``seed`` choose
    the labels (:func:`jpose.datasets.depth_pairs.make_labels`; the generator of
    sequence ``i`` is ``default_rng([seed, i])``).
    """

    kind = "relative_depth"

    def __init__(self, predictor, sequences, *, layouts: tuple[str, str], flip: bool,
                 bucket: int, frames=None, mode: str = "all", num_pairs: int = 1,
                 tolerance: float = depth_pairs.TOLERANCE_M, seed: int = 0):
        del frames
        if predictor.output != "pose":
            raise ValueError(f"evals: the relative_depth evaluator needs a pose predictor, "
                             f"got a {predictor.output!r} one")
        items = []
        for i, (name, inputs, poses) in enumerate(sequences):
            pairs, labels = depth_pairs.make_labels(
                np.random.default_rng([int(seed), i]), np.asarray(poses), mode=mode,
                num_pairs=num_pairs, tolerance=tolerance)
            items.append((name, np.asarray(inputs), pairs, labels))
        self._init(predictor, items, layouts=layouts, flip=flip, bucket=bucket)

    def _init(self, predictor, items, *, layouts, flip, bucket):
        self.items = tuple(items)
        self.bucket = int(bucket)
        self.predict_fn = make_predict_fn(predictor.fn, flip_layouts=layouts if flip else None)

    @classmethod
    def from_records(cls, predictor, records: Iterable[Mapping[str, Any]], *,
                     layouts: tuple[str, str], flip: bool, group: str = "lsp"):
        """An evaluator over single images: ``records`` of ``inputs`` (J_in, C) screen
        units, ``depth_pairs`` (K, 2) output-layout indices and ``depth_closer`` (K,)
        (e.g. :func:`lsp_items`). Each image is its own one-frame sequence."""
        self = cls.__new__(cls)
        if predictor.output != "pose":
            raise ValueError("the relative_depth evaluator needs a pose predictor")
        records = list(records)
        # One K for all (padding label 0: not scored), so the metric compiles once.
        pairs, labels = _padded(
            [np.asarray(r["depth_pairs"], np.int32).reshape(-1, 2) for r in records],
            [ordinal.labels_from_closer(np.asarray(r["depth_closer"], np.int32))
             for r in records])
        items = [(group, np.asarray(r["inputs"], np.float32)[None], pairs[i:i + 1],
                  labels[i:i + 1]) for i, r in enumerate(records)]
        self._init(predictor, items, layouts=layouts, flip=flip, bucket=1)
        return self

    def run(self, variables) -> tuple[RelativeDepthAccumulator, dict[str, float]]:
        acc = RelativeDepthAccumulator()
        for name, inputs, pairs, labels in self.items:
            pred = predict_sequence(self.predict_fn, variables, inputs, bucket=self.bucket)
            # Padded to the bucket (label 0: not scored), so one compile per length bucket.
            frames = pred.shape[0]
            pad = -(-frames // self.bucket) * self.bucket - frames
            z = np.pad(pred[..., 2], ((0, pad), (0, 0)))
            wrong, valid = _errors(z, np.pad(pairs, ((0, pad), (0, 0), (0, 0))),
                                   np.pad(labels, ((0, pad), (0, 0))))
            acc.add(name, np.asarray(wrong)[:frames], np.asarray(valid)[:frames])
        return acc, acc.summary()


_errors = jax.jit(ordinal.relative_depth_errors)
