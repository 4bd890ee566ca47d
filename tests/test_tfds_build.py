"""jpose.datasets.tfds_build and raw_files: build, restart after a kill, clear errors."""

import os
import sys
import types

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from jpose.datasets import raw_files, tfds_build


class _Toy(tfds_build.PoseDatasetBuilder):
    name = "jpose_toy"
    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put values.mat in manual_dir."
    DESCRIPTION = "toy"

    def _features(self):
        return tfds.features.FeaturesDict({
            "values": tfds_build.tensor_feature((None, 3), np.float32, "metres"),
            "name": tfds.features.Text(),
        })

    def _split_generators(self, dl_manager):
        path = os.path.join(dl_manager.manual_dir, "values.mat")
        raw_files.require_paths(self.name, dl_manager.manual_dir, ["values.mat"])
        data = raw_files.load_mat_v5(path, ["values"])
        values = raw_files.check_shape(data["values"], (None, 3), path=path, name="values")
        return {"train": self._generate_examples(values)}

    def _generate_examples(self, values):
        for i in range(len(values)):
            if os.environ.get("JPOSE_TOY_FAIL") == str(i):
                raise RuntimeError("interrupted")
            yield i, {"values": values[: i + 1].astype(np.float32), "name": f"row{i}"}


@pytest.fixture
def toy(monkeypatch):
    module = types.ModuleType("jpose_toy_module")
    module.Builder = _Toy
    monkeypatch.setitem(sys.modules, "jpose_toy_module", module)
    monkeypatch.setitem(tfds_build.BUILDERS, "jpose_toy", "jpose_toy_module")
    return _Toy


def test_build_load_and_restart(tmp_path, toy, monkeypatch):
    raw, data_dir = tmp_path / "raw", str(tmp_path / "data")
    raw.mkdir()
    values = np.arange(12, dtype=np.float64).reshape(4, 3)
    scipy.io.savemat(raw / "values.mat", {"values": values})

    # An interrupted build leaves nothing that looks complete.
    monkeypatch.setenv("JPOSE_TOY_FAIL", "2")
    with pytest.raises(RuntimeError, match="interrupted"):
        tfds_build.build("jpose_toy", manual_dir=str(raw), data_dir=data_dir, progress=False)
    with pytest.raises(FileNotFoundError, match="no complete build"):
        tfds_build.load("jpose_toy", data_dir=data_dir, split="train")
    # A killed build leaves an incomplete directory: the next build removes it.
    stale = os.path.join(data_dir, "jpose_toy", "incomplete.ABCDEF_1.0.0")
    os.makedirs(stale)
    monkeypatch.delenv("JPOSE_TOY_FAIL")
    tfds_build.build("jpose_toy", manual_dir=str(raw), data_dir=data_dir, progress=False)
    assert not os.path.exists(stale)
    source = tfds_build.load("jpose_toy", data_dir=data_dir, split="train")
    assert len(source) == 4
    by_name = {source[i]["name"]: source[i]["values"] for i in range(4)}
    np.testing.assert_array_equal(by_name[b"row2"], values[:3].astype(np.float32))
    files = os.listdir(os.path.join(data_dir, "jpose_toy", "1.0.0"))
    assert any(".array_record-" in f for f in files)

    # restart=True rebuilds from changed raw files.
    scipy.io.savemat(raw / "values.mat", {"values": values[:2] * 2})
    tfds_build.build("jpose_toy", manual_dir=str(raw), data_dir=data_dir, progress=False)
    assert len(tfds_build.load("jpose_toy", data_dir=data_dir, split="train")) == 4  # reused
    tfds_build.build("jpose_toy", manual_dir=str(raw), data_dir=data_dir, progress=False, restart=True)
    source = tfds_build.load("jpose_toy", data_dir=data_dir, split="train")
    assert len(source) == 2


def test_missing_and_malformed_files_are_named(tmp_path, toy):
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(raw_files.MissingRawFilesError, match="directory is empty") as e:
        tfds_build.build("jpose_toy", manual_dir=str(raw), data_dir=str(tmp_path / "d"), progress=False)
    assert "Put values.mat in manual_dir" in str(e.value)
    (raw / "other.txt").write_text("x")
    with pytest.raises(raw_files.MissingRawFilesError, match="values.mat") as e:
        tfds_build.build("jpose_toy", manual_dir=str(raw), data_dir=str(tmp_path / "d"), progress=False)
    assert e.value.missing == ("values.mat",)
    scipy.io.savemat(raw / "values.mat", {"other": np.zeros(3)})
    with pytest.raises(raw_files.MalformedRawFileError, match=r"values.mat: field 'values': missing"):
        tfds_build.build("jpose_toy", manual_dir=str(raw), data_dir=str(tmp_path / "d"), progress=False)
    scipy.io.savemat(raw / "values.mat", {"values": np.zeros((3, 4))})
    with pytest.raises(raw_files.MalformedRawFileError, match=r"shape \(3, 4\), expected \(N, 3\)"):
        tfds_build.build("jpose_toy", manual_dir=str(raw), data_dir=str(tmp_path / "d"), progress=False)
    (raw / "values.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(raw_files.MalformedRawFileError, match="not a readable MATLAB v5"):
        tfds_build.build("jpose_toy", manual_dir=str(raw), data_dir=str(tmp_path / "d"), progress=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        tfds_build.builder_class("nope")


def test_mat_helpers(tmp_path):
    import h5py

    path = str(tmp_path / "a.mat")
    scipy.io.savemat(path, {"s": "tennis_serve", "n": 46.0, "flag": np.array([[True, False]])})
    data = raw_files.load_mat_v5(path, ["s", "n", "flag"])
    assert raw_files.mat_string(data["s"], path=path, name="s") == "tennis_serve"
    assert raw_files.mat_scalar(data["n"], path=path, name="n") == 46.0
    assert data["flag"].dtype == np.uint8  # MATLAB logical through scipy
    with pytest.raises(raw_files.MalformedRawFileError, match="field 's': expected a numeric scalar"):
        raw_files.mat_scalar(data["s"], path=path, name="s")
    h5 = str(tmp_path / "b.mat")
    with h5py.File(h5, "w") as f:
        f["annot2"] = np.ones((5, 1, 17, 2))
        f.create_group("grp")
    out = raw_files.load_mat_v73(h5, ["annot2"])
    assert out["annot2"].shape == (5, 1, 17, 2)
    with pytest.raises(raw_files.MalformedRawFileError, match="'valid_frame': missing"):
        raw_files.load_mat_v73(h5, ["valid_frame"])
    with pytest.raises(raw_files.MalformedRawFileError, match="MATLAB v7.3"):
        raw_files.load_mat_v5(h5, ["annot2"])
