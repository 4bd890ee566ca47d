"""Tests for jpose.export_onnx and ``launch/export.py --onnx``.

Reference: the ``jax.export`` program of the same variables, run by the standalone loader
(``jpose.exported_model.ExportedLifter``); the ONNX file is run by onnxruntime. onnx and
onnxruntime are in the ``test`` extra (wheels for Python 3.11 and 3.12), so these tests do
not skip: a missing package is a failure.
"""

import importlib.util
import json
import os
import sys
import types

import jax
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from jpose import export, export_onnx, exported_model
from jpose.nets import mlp, temporal
from jpose.training import loop
from tests.fakes import perturbed_batch_norm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "launch_export", os.path.join(REPO, "launch", "export.py"))
launch_export = importlib.util.module_from_spec(_spec)
sys.path.insert(0, os.path.join(REPO, "launch"))  # its `import _common`, as a script run has
try:
    _spec.loader.exec_module(launch_export)
finally:
    sys.path.remove(os.path.join(REPO, "launch"))


def _perturbed(variables, seed):
    return perturbed_batch_norm(variables, seed, scale=0.5)


def _keypoints(shape, seed):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)


def _session(path):
    return ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def _both(tmp_path_factory, cfg, variables, name):
    """(ONNX path, ExportedLifter) of the same variables."""
    base = tmp_path_factory.mktemp(name)
    export.export_lifter(variables, cfg, base / "jax", platforms=("cpu",))
    path = base / "model.onnx"
    meta = export_onnx.export_onnx(variables, cfg, path, metadata={"note": name})
    return path, meta, exported_model.ExportedLifter.load(base / "jax")


@pytest.fixture(scope="module")
def temporal_pair(tmp_path_factory):
    cfg = temporal.variant("tiny_9f")
    variables = _perturbed(temporal.init(jax.random.key(0), cfg), 1)
    return (cfg, variables) + _both(tmp_path_factory, cfg, variables, "temporal")


@pytest.fixture(scope="module")
def mlp_pair(tmp_path_factory):
    cfg = mlp.variant("tiny_mlp_heads")
    variables = _perturbed(mlp.init(jax.random.key(1), cfg), 2)
    return (cfg, variables) + _both(tmp_path_factory, cfg, variables, "mlp")


# ----------------------------------------------------------------------------- parity


def test_temporal_parity_dynamic_batch_and_time(temporal_pair):
    _, _, path, _, jax_model = temporal_pair
    sess = _session(path)
    (inp,) = sess.get_inputs()
    assert inp.name == "keypoints" and inp.shape == ["batch", "time", 17, 2]
    assert [(o.name, o.shape) for o in sess.get_outputs()] == [("poses", ["batch", "time", 17, 3])]
    # Two batch sizes and sequence lengths from one file, incl. T < receptive field (9).
    for i, (b, t) in enumerate([(1, 4), (3, 31)]):
        x = _keypoints((b, t, 17, 2), 10 + i)
        (out,) = sess.run(None, {"keypoints": x})
        assert out.shape == (b, t, 17, 3)
        np.testing.assert_allclose(out, jax_model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny_9f_causal", "tiny_27f_dense", "tiny_1f"])
def test_temporal_variants_match_in_process(name, tmp_path):
    """Causal slicing, undilated (dense) kernels and width-1 (no residual slice) graphs."""
    cfg = temporal.variant(name)
    variables = _perturbed(temporal.init(jax.random.key(2), cfg), 3)
    export_onnx.export_onnx(variables, cfg, tmp_path / "m.onnx")
    x = _keypoints((2, 12, 17, 2), 4)
    (out,) = _session(tmp_path / "m.onnx").run(None, {"keypoints": x})
    ref = np.asarray(temporal.apply(variables, x, config=cfg, train=False)[0])
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_body_frame_features_graph_matches_in_process(tmp_path):
    """The default in-the-wild model's input form: 3 features, hips-centred and scaled."""
    cfg = temporal.variant("tiny_9f", in_features=3, centre_joints=(11, 12))
    variables = _perturbed(temporal.init(jax.random.key(5), cfg), 6)
    export_onnx.export_onnx(variables, cfg, tmp_path / "m.onnx")
    x = _keypoints((2, 11, 17, 3), 7) * np.array([3.0, 3.0, 0.5], np.float32)
    (out,) = _session(tmp_path / "m.onnx").run(None, {"keypoints": x})
    ref = np.asarray(temporal.apply(variables, x, config=cfg, train=False)[0])
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_mlp_parity_with_heads(mlp_pair):
    _, _, path, _, jax_model = mlp_pair
    sess = _session(path)
    assert [o.name for o in sess.get_outputs()] == ["poses", "root", "scale"]
    for batch in (1, 7):
        x = _keypoints((batch, 17, 2), batch)
        outs = dict(zip(["poses", "root", "scale"], sess.run(None, {"keypoints": x})))
        ref = jax_model.predict(x)
        assert sorted(ref) == sorted(outs)
        for k in ref:
            np.testing.assert_allclose(outs[k], ref[k], rtol=1e-5, atol=1e-5, err_msg=k)


# ----------------------------------------------------------------------------- metadata


def test_metadata_round_trip(temporal_pair):
    cfg, variables, path, meta, jax_model = temporal_pair
    stored = json.loads(_session(path).get_modelmeta().custom_metadata_map["jpose"])
    assert stored == meta == export_onnx.read_metadata(path)
    assert meta["format"] == export_onnx.FORMAT and meta["format_version"] == 1
    assert meta["model_kind"] == "temporal" and meta["receptive_field"] == 9
    assert meta["config"] == jax_model.metadata["config"]
    assert meta["user"] == {"note": "temporal"}
    # The same layouts, joint names and units as the jax.export metadata.
    for key in ("input_layout", "output_layout", "input_joint_names", "output_joint_names",
                "units", "output_kind", "input_axes", "receptive_field", "model_kind"):
        assert meta[key] == jax_model.metadata[key], key
    flat = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert flat["receptive_field"] == "9" and flat["input_layout"] == "h36m_17"
    assert flat["output_units"] == export.POSE_UNITS


def test_trajectory_metadata(tmp_path):
    cfg = temporal.variant("tiny_trajectory_9f")
    meta = export_onnx.export_onnx(temporal.init(jax.random.key(0), cfg), cfg, tmp_path / "t.onnx")
    assert meta["output_kind"] == "trajectory" and meta["output_joint_names"] == ["pelvis"]
    assert meta["outputs"] == {"poses": {"shape": ["batch", "time", 1, 3], "dtype": "float32"}}
    assert "absolute position of the root" in meta["units"]["output"]


# ----------------------------------------------------------------------------- errors


def test_path_and_argument_errors(mlp_pair, tmp_path):
    cfg, variables, path, _, _ = mlp_pair
    with pytest.raises(ValueError, match=r"'\.onnx'"):
        export_onnx.export_onnx(variables, cfg, tmp_path / "model.bin")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_onnx.export_onnx(variables, cfg, tmp_path / "dir.onnx")
    with pytest.raises(FileExistsError, match="not a jpose ONNX export"):
        export_onnx.export_onnx(variables, cfg, tmp_path / "dir.onnx", overwrite=True)
    (tmp_path / "other.onnx").write_bytes(b"not onnx")
    with pytest.raises(FileExistsError, match="not a jpose ONNX export"):
        export_onnx.export_onnx(variables, cfg, tmp_path / "other.onnx", overwrite=True)
    assert (tmp_path / "other.onnx").read_bytes() == b"not onnx"
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):  # the parent "directory" is a file
        export_onnx.export_onnx(variables, cfg, tmp_path / "file" / "m.onnx")
    with pytest.raises(ValueError, match="layout"):
        export_onnx.export_onnx(variables, cfg, tmp_path / "a.onnx", layout="mpii_16")
    with pytest.raises(ValueError, match="variables"):
        export_onnx.export_onnx(variables, mlp.variant("tiny_mlp", hidden=8), tmp_path / "a.onnx")
    with pytest.raises(ValueError, match="metadata"):
        export_onnx.export_onnx(variables, cfg, tmp_path / "a.onnx", metadata={"x": object()})
    assert sorted(os.listdir(tmp_path)) == ["dir.onnx", "file", "other.onnx"]  # no temp files
    with pytest.raises(ValueError, match="not a jpose ONNX export"):
        export_onnx.read_metadata(_model_without_metadata(tmp_path))


def _model_without_metadata(tmp_path):
    graph = onnx.helper.make_graph([], "empty", [], [])
    path = tmp_path / "plain.onnx"
    onnx.save(onnx.helper.make_model(graph), path)
    return path


def test_overwrite_is_atomic(mlp_pair, tmp_path, monkeypatch):
    cfg, variables, _, _, _ = mlp_pair
    target = tmp_path / "m.onnx"
    export_onnx.export_onnx(variables, cfg, target, metadata={"run": 1})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_onnx.export_onnx(variables, cfg, target, metadata={"run": 2})

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        export_onnx.export_onnx(variables, cfg, target, metadata={"run": 2}, overwrite=True)
    monkeypatch.undo()
    assert export_onnx.read_metadata(target)["user"] == {"run": 1}
    export_onnx.export_onnx(variables, cfg, target, metadata={"run": 3}, overwrite=True)
    assert export_onnx.read_metadata(target)["user"] == {"run": 3}
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


# ----------------------------------------------------------------------------- launcher


def test_launch_export_onnx_flag(mlp_pair, tmp_path, monkeypatch):
    """``run(..., onnx=True)`` writes model.onnx beside the jax export; --overwrite works."""
    cfg, variables, _, _, _ = mlp_pair
    state = {"variables": variables}
    restored = types.SimpleNamespace(
        meta={"input_layout": "h36m_17", "layout": "h36m_17", "screen_focal": 2.5},
        run=types.SimpleNamespace(predictors={"pose": types.SimpleNamespace(output="pose")}),
        config=types.SimpleNamespace(to_dict=lambda: {"recipe": "fake"}),
    )
    monkeypatch.setattr(loop, "restore_for_inference", lambda workdir: restored)
    monkeypatch.setattr(loop, "predictor_variables",
                        lambda r, p: (types.SimpleNamespace(config=cfg), state["variables"]))
    out = tmp_path / "export"
    launch_export.run("unused", str(out), onnx=True)
    assert sorted(os.listdir(out)) == ["metadata.json", "model.jaxexport", "model.onnx",
                                       "variables.npz"]
    meta = export_onnx.read_metadata(out / "model.onnx")
    assert meta["user"] == {"config": {"recipe": "fake"}, "predictor": "pose", "screen_focal": 2.5}
    x = _keypoints((2, 17, 2), 0)
    np.testing.assert_allclose(_session(out / "model.onnx").run(["poses"], {"keypoints": x})[0],
                               exported_model.ExportedLifter.load(out)(x), rtol=1e-5, atol=1e-5)

    # --overwrite with new weights replaces both files ...
    state["variables"] = _perturbed(mlp.init(jax.random.key(5), cfg), 6)
    launch_export.run("unused", str(out), overwrite=True, onnx=True)
    np.testing.assert_allclose(_session(out / "model.onnx").run(["poses"], {"keypoints": x})[0],
                               exported_model.ExportedLifter.load(out)(x), rtol=1e-5, atol=1e-5)
    # ... a failed overwrite leaves the previous model.onnx in place ...
    before = (out / "model.onnx").read_bytes()

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    with monkeypatch.context() as m:
        m.setattr(launch_export.export, "export_lifter", fail)
        with pytest.raises(RuntimeError, match="disk full"):
            launch_export.run("unused", str(out), overwrite=True, onnx=True)
    assert (out / "model.onnx").read_bytes() == before
    # ... and an overwrite without --onnx drops the stale one.
    launch_export.run("unused", str(out), overwrite=True)
    assert "model.onnx" not in os.listdir(out)
    assert sorted(os.listdir(tmp_path)) == ["export"]


def test_readme_snippet_runs(temporal_pair):
    """The README's onnxruntime snippet, on a real file (STYLE: documented code is tested)."""
    _, _, path, meta, jax_model = temporal_pair
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("#### ONNX", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"workdir/sample/export/model.onnx"' in code
    scope = {}
    exec(code.replace('"workdir/sample/export/model.onnx"', repr(os.fspath(path))), scope)
    assert scope["meta"] == meta
    np.testing.assert_allclose(scope["poses"], jax_model(scope["screen"]), rtol=1e-5, atol=1e-5)
