"""Run logs: a JSON-lines metrics file and a PNG of the training curves.

Only process 0 writes (callers check ``jax.process_index() == 0``). Records are one
JSON object per line with a ``step`` and a ``kind`` (``train`` or ``eval``). On resume,
records from steps after the restored checkpoint are dropped (they belong to work that
is about to be redone), and an evaluation repeated at the same step replaces the earlier
row, so the file always describes one consistent run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from jpose import io

__all__ = ["MetricsLog", "plot_curves"]


def _atomic_write(path: str, write) -> None:
    io.atomic_write(path, write, binary=path.endswith(".png"))


class MetricsLog:
    """Appends metric records to ``<workdir>/metrics.jsonl``."""

    def __init__(self, workdir: str, *, resume_step: int | None = None):
        self.path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(self.path):
            records = self.read(self.path)
            self._keep(records, lambda r: resume_step is not None and r["step"] <= resume_step)

    def write(self, kind: str, step: int, values: Mapping[str, Any]) -> None:
        """Appends a record; an ``eval`` record replaces one already at that step (a
        rerun of a finished run re-evaluates it without duplicating the row)."""
        record = {"kind": kind, "step": int(step)}
        record.update({k: float(v) for k, v in values.items()})
        if kind == "eval" and os.path.exists(self.path):
            self._keep(self.read(self.path),
                       lambda r: not (r["kind"] == "eval" and r["step"] == int(step)))
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _keep(self, records: list[dict], keep) -> None:
        """Rewrites the file (atomically) with the records ``keep`` accepts, if any go."""
        kept = [r for r in records if keep(r)]
        if len(kept) != len(records):
            _atomic_write(self.path, lambda f: f.writelines(json.dumps(r) + "\n" for r in kept))

    @staticmethod
    def read(path: str) -> list[dict]:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]


def plot_curves(metrics_path: str, png_path: str, *, train_key: str = "loss",
                eval_keys: tuple[str, ...] = ("mpjpe_mm", "p_mpjpe_mm")) -> str:
    """Plots the training loss and the validation errors (mm) from ``metrics.jsonl``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = MetricsLog.read(metrics_path)
    train = [(r["step"], r[train_key]) for r in records
             if r["kind"] == "train" and math.isfinite(r.get(train_key, math.nan))]
    evals = [r for r in records if r["kind"] == "eval"]
    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(10, 3.6))
    if train:
        ax_loss.plot(*zip(*train), color="tab:blue")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel(f"training {train_key}")
    ax_loss.set_yscale("log")
    ax_loss.grid(alpha=0.3)
    plotted = False
    for key in eval_keys:
        points = [(r["step"], r[key]) for r in evals if key in r]
        if points:
            ax_eval.plot(*zip(*points), marker="o", label=key)
            plotted = True
    ax_eval.set_xlabel("step")
    ax_eval.set_ylabel("validation error (mm)")
    ax_eval.grid(alpha=0.3)
    # Evaluations may report none of eval_keys (e.g. retrieval only, or only
    # evaluator-prefixed keys): legend() with no labelled curve warns.
    if plotted:
        ax_eval.legend()
    fig.tight_layout()
    try:
        _atomic_write(png_path, lambda f: fig.savefig(f, format="png", dpi=80))
    finally:
        plt.close(fig)
    return png_path
