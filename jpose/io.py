"""File helpers shared by the launch scripts: safe ``.npz`` reads and all-or-nothing writes.

* :func:`load_npz` reads a user's ``.npz`` without pickle and turns every way such a file
  can be broken (missing, a directory, empty, truncated, not an archive, object arrays)
  into one plain-words error naming the file, instead of a zipfile/pickle traceback.
* :func:`atomic_write` (and :func:`save_npz_atomic` on top of it) writes to a temp file
  beside the target and renames it into place, so a crash or an exception mid-write
  leaves the previous file (or none), never a truncated one. The result has the mode a
  plain ``open(path, "w")`` would give it (``0o666 & ~umask``), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import zipfile
import zlib
from collections.abc import Callable, Mapping
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "load_npz", "save_json_atomic", "save_npz_atomic"]

# np.savez writes a zip archive: local-file header first, or only the end-of-central-
# directory record for an archive with no arrays. (np.load tests the same prefixes.)
_ZIP_PREFIXES = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_PREFIX = b"\x93NUMPY"


def load_npz(path: str | os.PathLike, *, what: str = "input") -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``, by name; never unpickles anything.

    Args:
      path: the file.
      what: how the messages name the file, e.g. ``"input"`` or ``"--input"``.

    Returns:
      ``{name: array}`` in the archive's order (empty for an archive with no arrays).

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: with the path and the problem in plain words: a directory, an empty
        (0-byte) file, a file that cannot be read, a ``.npy`` (one array, not an
        archive), a truncated file or one that is not a zip archive, a member that is not
        a ``.npy`` array, or object arrays (loading those needs pickle, which can run
        arbitrary code, so they are refused).
    """
    path = os.fspath(path)
    where = f"{what} {path!r}"
    if not os.path.exists(path):
        raise FileNotFoundError(f"{where} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"{where} is a directory, not an .npz file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_PREFIX))
    except OSError as e:
        raise ValueError(f"{where} cannot be read ({e.strerror or e})") from None
    if not head:
        raise ValueError(f"{where} is empty (0 bytes)")
    # Check the magic ourselves: on anything that is not a zip, np.load falls back to
    # unpickling and, with allow_pickle=False, reports "pickled data", which misleads.
    if head.startswith(_NPY_PREFIX):
        raise ValueError(f"{where} is a single .npy array, not an .npz archive of named "
                         "arrays (save it with np.savez)")
    if not head.startswith(_ZIP_PREFIXES):
        raise ValueError(f"{where} is not a valid .npz (truncated or not a zip archive)")
    arrays: dict[str, np.ndarray] = {}
    refused: list[str] = []
    try:
        # Our own file object: np.load(path) leaks its handle when the archive is invalid
        # (a ResourceWarning on every truncated file).
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            for name in data.files:
                try:
                    value = data[name]
                except MemoryError:  # a real (huge) array, not a broken file
                    raise
                except Exception as e:  # noqa: BLE001 -- see below
                    # numpy's pickle refusal is "Object arrays cannot be loaded when
                    # allow_pickle=False". Anything else is a broken member, and numpy's
                    # header parser then raises whatever its tokenizer or zlib hit
                    # (ValueError, SyntaxError, tokenize.TokenError, EOFError, ...).
                    if isinstance(e, ValueError) and "allow_pickle" in str(e):
                        refused.append(name)
                        continue
                    raise ValueError(f"{where} is not a valid .npz (member {name!r} is "
                                     f"truncated or corrupt: {type(e).__name__}: {e})") from None
                if not isinstance(value, np.ndarray):  # NpzFile gives other members as bytes
                    raise ValueError(f"{where} is not a valid .npz (member {name!r} is not a "
                                     ".npy array)")
                arrays[name] = value
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        # Opening the archive: a truncated one has lost its central directory (the zip
        # index, written last). Member reads are handled above.
        raise ValueError(f"{where} is not a valid .npz (truncated or not a zip archive: "
                         f"{e})") from None
    if refused:
        raise ValueError(f"{where} holds object arrays ({', '.join(map(repr, refused))}), "
                         "which need pickle; refused (save numeric or string arrays)")
    return arrays


def _create_beside(path: str) -> tuple[int, str]:
    """Creates a new, uniquely named temp file in ``path``'s directory; (fd, name).

    Unlike ``tempfile.mkstemp`` (always 0600), it is created with ``0o666`` so the kernel
    applies the umask (and any default ACL) exactly as for an ordinary new file; reading
    the umask in-process (``os.umask``) would briefly change it for every thread.
    """
    directory, base = os.path.split(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(
        os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.tmp-{secrets.token_hex(4)}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temp file beside {path!r}")


def atomic_write(path: str | os.PathLike, write_fn: Callable[[IO[Any]], Any], *,
                 binary: bool) -> None:
    """Calls ``write_fn(f)`` on a temp file beside ``path``, then renames it to ``path``.

    Creates the parent directories if needed. The temp file (``.<name>.tmp-<hex>`` in the
    same directory, so the rename is atomic on one file system) is flushed and fsynced
    before the rename, so a crash leaves the old file or the new one, not a torn one.
    If ``write_fn`` (or anything else) raises, the temp file is removed, ``path`` is left
    as it was and the exception propagates. The new file's mode is ``0o666 & ~umask``,
    as for ``open(path, "w")``.

    Args:
      path: the file to (re)place.
      write_fn: writes the whole content to the open file object it is given.
      binary: ``True`` for a bytes file object, ``False`` for UTF-8 text.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = _create_beside(path)
    try:
        f = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")
        with f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # also KeyboardInterrupt: never leave the temp file behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_npz_atomic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez`` of ``arrays`` to ``path`` through :func:`atomic_write`.

    A crash or kill mid-write leaves the previous file (or none), never a truncated one.
    ``path`` is used as given (no ``.npz`` is appended).

    Raises:
      ValueError: an array has an object dtype (it would need pickle, which
        :func:`load_npz` refuses); nothing is written.
    """
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    objects = [k for k, v in arrays.items() if v.dtype.hasobject]
    if objects:
        raise ValueError(f"save_npz_atomic: {os.fspath(path)!r}: object arrays "
                         f"({', '.join(map(repr, objects))}) cannot be stored without pickle")
    atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)


def save_json_atomic(path: str | os.PathLike, value: Any) -> None:
    """``value`` as strict, indented JSON at ``path`` through :func:`atomic_write`.

    Non-finite floats become ``null`` (``json.dumps`` would write ``NaN`` / ``Infinity``,
    which other JSON readers reject).
    """
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    text = json.dumps(clean(value), indent=2, allow_nan=False)
    atomic_write(path, lambda f: f.write(text), binary=False)
