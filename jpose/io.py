"""File helpers shared by the launch scripts: writes that never leave a half-written file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

import numpy as np

__all__ = ["save_npz_atomic"]


def save_npz_atomic(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez`` to a temp file beside ``path``, synced, then renamed into place.

    A crash or kill mid-write leaves the previous file (or none), never a truncated one.
    Arrays must not be object arrays (readers load with ``allow_pickle=False``).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
