"""Reading raw dataset releases: clear errors for missing and malformed files.

Every builder reads the files users have on disk exactly as the releases ship them
(``shared/DATASET_FORMATS.md``). The helpers here make the two common failures
actionable:

* :class:`MissingRawFilesError` lists **every path expected** under the manual directory
  (not just the first one missing), with the download hint of the dataset;
* :class:`MalformedRawFileError` names **the file and the field** at fault and what was
  expected (shape, type, value range).

MATLAB files: v5 files load with :func:`scipy.io.loadmat` (:func:`load_mat_v5`), v7.3
files are HDF5 and load with :mod:`h5py` (:func:`load_mat_v73`, which shows the MATLAB
dimensions reversed, as h5py does). Nothing here ever unpickles.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "MissingRawFilesError",
    "MalformedRawFileError",
    "require_paths",
    "load_mat_v5",
    "load_mat_v73",
    "field",
    "check_shape",
    "mat_string",
    "mat_scalar",
]


class MissingRawFilesError(FileNotFoundError):
    """Raw files a builder needs are not in the manual directory.

    Attributes:
      dataset: builder name.
      manual_dir: the directory searched.
      missing: the missing paths, relative to ``manual_dir``.
    """

    def __init__(self, dataset: str, manual_dir: str, missing: Sequence[str], hint: str = ""):
        self.dataset = dataset
        self.manual_dir = str(manual_dir)
        self.missing = tuple(missing)
        shown = "\n  ".join(self.missing[:40])
        more = f"\n  ... and {len(self.missing) - 40} more" if len(self.missing) > 40 else ""
        message = (f"{dataset}: {len(self.missing)} expected raw file(s) missing under "
                   f"{self.manual_dir}:\n  {shown}{more}")
        if hint:
            message += f"\n{hint}"
        super().__init__(message)


class MalformedRawFileError(ValueError):
    """A raw file exists but does not have the documented content.

    Attributes:
      path: the file.
      field: the variable, key, line or column at fault (``""`` for the whole file).
    """

    def __init__(self, path: str | os.PathLike, field: str, problem: str):
        self.path = os.fspath(path)
        self.field = field
        where = f"{self.path}: field {field!r}" if field else self.path
        super().__init__(f"{where}: {problem}")


def require_paths(dataset: str, manual_dir: str | os.PathLike, relpaths: Iterable[str], *,
                  hint: str = "") -> None:
    """Raises :class:`MissingRawFilesError` listing every path of ``relpaths`` not present."""
    manual_dir = os.fspath(manual_dir)
    missing = [p for p in relpaths if not os.path.exists(os.path.join(manual_dir, p))]
    if missing:
        raise MissingRawFilesError(dataset, manual_dir, missing, hint)


def load_mat_v5(path: str | os.PathLike, fields: Sequence[str]) -> dict[str, Any]:
    """Loads a MATLAB v4-v7.2 file with scipy; checks that ``fields`` are present.

    Raises :class:`MalformedRawFileError` naming the file when it is not a MATLAB file
    (or is a v7.3/HDF5 one) and naming the field when one is missing.
    """
    import scipy.io

    path = os.fspath(path)
    try:
        data = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises NotImplementedError (v7.3), ValueError, MatReadError
        import h5py

        if h5py.is_hdf5(path):
            raise MalformedRawFileError(path, "", "is a MATLAB v7.3 (HDF5) file, expected v5") from e
        raise MalformedRawFileError(path, "", f"not a readable MATLAB v5 file ({type(e).__name__}: {e})") from e
    for name in fields:
        if name not in data:
            present = sorted(k for k in data if not k.startswith("__"))
            raise MalformedRawFileError(path, name, f"missing; the file has {present}")
    return data


def load_mat_v73(path: str | os.PathLike, fields: Sequence[str]) -> dict[str, np.ndarray]:
    """Loads datasets ``fields`` of a MATLAB v7.3 (HDF5) file with h5py, as NumPy arrays.

    Shapes are h5py's (MATLAB's reversed).
    """
    import h5py

    path = os.fspath(path)
    try:
        f = h5py.File(path, "r")
    except Exception as e:
        raise MalformedRawFileError(path, "", f"not a readable MATLAB v7.3 (HDF5) file ({e})") from e
    with f:
        out = {}
        for name in fields:
            if name not in f:
                raise MalformedRawFileError(path, name, f"missing; the file has {sorted(f.keys())}")
            node = f[name]
            if not isinstance(node, h5py.Dataset):
                raise MalformedRawFileError(path, name, f"is a {type(node).__name__}, expected a dataset")
            out[name] = node[()]
    return out


def field(data: Mapping[str, Any], name: str, path: str) -> Any:
    """``data[name]``, or :class:`MalformedRawFileError` naming ``path`` and ``name``."""
    try:
        return data[name]
    except (KeyError, IndexError) as e:
        raise MalformedRawFileError(path, name, "missing") from e


def check_shape(array: Any, expected: Sequence[int | None], *, path: str, name: str,
                dtype_kind: str | None = "fiub") -> np.ndarray:
    """``np.asarray(array)`` checked against ``expected`` (``None`` = any size).

    ``dtype_kind``: allowed ``numpy.dtype.kind`` letters (default: numbers or bools).
    """
    a = np.asarray(array)
    ok = a.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, a.shape))
    if not ok:
        want = "(" + ", ".join("N" if e is None else str(e) for e in expected) + ")"
        raise MalformedRawFileError(path, name, f"has shape {a.shape}, expected {want}")
    if dtype_kind is not None and a.dtype.kind not in dtype_kind:
        raise MalformedRawFileError(path, name, f"has dtype {a.dtype}, expected a numeric array")
    return a


def mat_string(value: Any, *, path: str, name: str) -> str:
    """A MATLAB ``char`` as loaded by scipy (a ``(1,)`` unicode array) as ``str``."""
    a = np.asarray(value)
    if a.dtype.kind != "U" or a.size != 1:
        raise MalformedRawFileError(path, name, f"expected a MATLAB char string, got {a.dtype} {a.shape}")
    return str(a.reshape(-1)[0])


def mat_scalar(value: Any, *, path: str, name: str) -> float:
    """A MATLAB scalar as loaded by scipy (a ``(1, 1)`` array) as ``float``."""
    a = np.asarray(value)
    if a.size != 1 or a.dtype.kind not in "fiub":
        raise MalformedRawFileError(path, name, f"expected a numeric scalar, got {a.dtype} {a.shape}")
    return float(a.reshape(-1)[0])
