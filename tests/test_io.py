"""jpose.io: every broken user .npz gives one plain error naming it; writes are atomic.

The bad files are written here byte by byte (truncations of real archives at every cut,
random bytes, a pickled object array), so the test does not depend on which exception
numpy or zipfile happens to raise for each.
"""

import io as _stdio
import os
import stat
import zipfile

import numpy as np
import pytest

from jpose import io


def _npz_bytes(compressed=False, **arrays):
    buf = _stdio.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


ARRAYS = {"poses": np.arange(24, dtype=np.float32).reshape(2, 4, 3),
          "names": np.asarray(["a", "b"]), "flag": np.asarray(True)}


# ----------------------------------------------------------------------------- load_npz


def test_load_npz_round_trip_and_empty_archive(tmp_path):
    path = tmp_path / "ok.npz"
    path.write_bytes(_npz_bytes(**ARRAYS))
    out = io.load_npz(path)
    assert list(out) == list(ARRAYS)  # the archive's order
    for k, v in ARRAYS.items():
        assert out[k].dtype == v.dtype
        np.testing.assert_array_equal(out[k], v)
    (tmp_path / "none.npz").write_bytes(_npz_bytes())
    assert io.load_npz(tmp_path / "none.npz") == {}


def test_load_npz_missing_directory_and_empty(tmp_path):
    missing = str(tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError, match=r"^--input '.*absent\.npz' does not exist$"):
        io.load_npz(missing, what="--input")
    with pytest.raises(ValueError, match=r"input '.*' is a directory, not an \.npz file"):
        io.load_npz(tmp_path)
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"'.*empty\.npz' is empty \(0 bytes\)"):
        io.load_npz(tmp_path / "empty.npz")


@pytest.mark.parametrize("compressed", [False, True])
def test_load_npz_truncated_at_every_cut(tmp_path, compressed):
    data = _npz_bytes(compressed, **ARRAYS)
    path = tmp_path / "cut.npz"
    for cut in range(1, len(data), 7):  # every 7th byte: headers, members, directory
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"cut\.npz' is not a valid \.npz \(truncated"):
            io.load_npz(path)


def test_load_npz_random_bytes_and_pickle_are_not_called_pickles(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    with pytest.raises(ValueError, match=r"noise\.npz' is not a valid \.npz \(truncated or "
                                         r"not a zip archive\)") as e:
        io.load_npz(path)
    assert "pickle" not in str(e.value)  # numpy's own message blames pickles
    path.write_bytes(b'{"json": "not npz"}')
    with pytest.raises(ValueError, match="not a zip archive"):
        io.load_npz(path)


def test_load_npz_refuses_object_arrays_and_npy_and_foreign_members(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, ok=np.zeros(3), ragged=np.asarray([np.zeros(2), np.zeros(3)], dtype=object))
    with pytest.raises(ValueError, match=r"obj\.npz' holds object arrays \('ragged'\), which "
                                         r"need pickle; refused"):
        io.load_npz(path)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"is a single \.npy array, not an \.npz archive"):
        io.load_npz(tmp_path / "one.npy")
    npy = _stdio.BytesIO()
    np.save(npy, np.zeros(3))
    with zipfile.ZipFile(tmp_path / "text.npz", "w") as z:  # NpzFile gives such members as bytes
        z.writestr("poses.npy", npy.getvalue())
        z.writestr("README.txt", b"hello")
    with pytest.raises(ValueError, match=r"text\.npz' is not a valid \.npz \(member "
                                         r"'README\.txt' is not a \.npy array\)"):
        io.load_npz(tmp_path / "text.npz")
    with zipfile.ZipFile(tmp_path / "header.npz", "w") as z:
        z.writestr("poses.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': garbage}")
    with pytest.raises(ValueError, match=r"header\.npz' is not a valid \.npz \(member "
                                         r"'poses' is truncated or corrupt"):
        io.load_npz(tmp_path / "header.npz")
    data = bytearray(_npz_bytes(x=np.arange(1000.0)))
    data[len(data) // 2] ^= 0xFF  # inside x's payload: the zip's CRC no longer matches
    (tmp_path / "flip.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"member 'x' is truncated or corrupt: BadZipFile"):
        io.load_npz(tmp_path / "flip.npz")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_load_npz_unreadable(tmp_path):
    path = tmp_path / "secret.npz"
    path.write_bytes(_npz_bytes(x=np.zeros(1)))
    path.chmod(0)
    try:
        with pytest.raises(ValueError, match=r"secret\.npz' cannot be read \(Permission denied\)"):
            io.load_npz(path)
    finally:
        path.chmod(0o600)


# ----------------------------------------------------------------------------- writes


@pytest.fixture
def umask():
    """Sets the process umask for one test (restored after)."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_have_the_mode_of_a_normal_file(tmp_path, umask):
    umask(0o022)
    io.save_npz_atomic(tmp_path / "a.npz", ARRAYS)
    io.atomic_write(tmp_path / "b.txt", lambda f: f.write("héllo\n"), binary=False)
    with open(tmp_path / "plain", "w"):
        pass
    assert _mode(tmp_path / "a.npz") == _mode(tmp_path / "b.txt") == _mode(tmp_path / "plain")
    assert _mode(tmp_path / "a.npz") == 0o644  # world-readable, not mkstemp's 0600
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    umask(0o077)
    io.save_npz_atomic(tmp_path / "a.npz", ARRAYS)  # replacing: the new file's mode
    assert _mode(tmp_path / "a.npz") == 0o600
    np.testing.assert_array_equal(io.load_npz(tmp_path / "a.npz")["poses"], ARRAYS["poses"])


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_leaves_previous_file_and_no_temp(tmp_path, error):
    path = tmp_path / "out.bin"
    io.atomic_write(path, lambda f: f.write(b"old"), binary=True)

    def fail(f):
        f.write(b"partial new content")
        raise error("disk full")

    with pytest.raises(error, match="disk full"):
        io.atomic_write(path, fail, binary=True)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]  # temp file removed


def test_save_npz_atomic_creates_parents_and_refuses_object_arrays(tmp_path):
    path = tmp_path / "deep" / "er" / "x.npz"
    io.save_npz_atomic(path, {"a": np.ones(2)})
    assert os.listdir(path.parent) == ["x.npz"]
    with pytest.raises(ValueError, match=r"object arrays \('bad'\) cannot be stored"):
        io.save_npz_atomic(path, {"a": np.zeros(1), "bad": np.asarray([None], dtype=object)})
    np.testing.assert_array_equal(io.load_npz(path)["a"], np.ones(2))  # left as it was
    assert os.listdir(path.parent) == ["x.npz"]


def test_save_json_atomic_writes_strict_json(tmp_path):
    import json

    path = tmp_path / "r.json"
    io.save_json_atomic(path, {"a": float("nan"), "b": [1.5, float("inf")], "c": {"d": 2}})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.5, None], "c": {"d": 2}}
