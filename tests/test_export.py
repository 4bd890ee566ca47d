"""Tests for jpose.export and the standalone loader jpose/exported_model.py.

References: the in-process ``apply(..., train=False)`` of the same variables (parity of the
deserialised program), the published screen-normalisation formula computed by hand, and a
subprocess in which jpose/flax/optax cannot be imported (standalone loader).
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jpose import camera, export, exported_model
from jpose.nets import mlp, temporal
from tests.fakes import perturbed_batch_norm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADER_PATH = os.path.join(REPO, "jpose", "exported_model.py")


def _perturbed(variables, seed):
    return perturbed_batch_norm(variables, seed, scale=0.5)


@pytest.fixture(scope="module")
def temporal_export(tmp_path_factory):
    cfg = temporal.variant("tiny_27f")
    variables = _perturbed(temporal.init(jax.random.key(0), cfg), 1)
    directory = tmp_path_factory.mktemp("temporal") / "export"
    meta = export.export_lifter(variables, cfg, directory, metadata={"note": "tiny"})
    return cfg, variables, directory, meta


@pytest.fixture(scope="module")
def mlp_export(tmp_path_factory):
    cfg = mlp.variant("tiny_mlp_heads")
    variables = _perturbed(mlp.init(jax.random.key(1), cfg), 2)
    directory = tmp_path_factory.mktemp("mlp") / "export"
    export.export_lifter(variables, cfg, directory)
    return cfg, variables, directory


def _keypoints(shape, seed):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)


# ----------------------------------------------------------------------------- parity


def test_temporal_parity_symbolic_batch_and_time(temporal_export, monkeypatch):
    cfg, variables, directory, meta = temporal_export
    assert sorted(os.listdir(directory)) == ["metadata.json", "model.jaxexport", "variables.npz"]
    assert meta["input_shape"] == ["b", "t", 17, 2]
    assert meta["outputs"]["poses"]["shape"] == ["b", "t", 17, 3]
    assert meta["receptive_field"] == 27 and meta["model_kind"] == "temporal"
    assert meta["user"] == {"note": "tiny"}

    # The stored program takes the weights as arguments (one per leaf, plus the keypoints)
    # and has symbolic batch and time axes.
    blob = (directory / "model.jaxexport").read_bytes()
    exported = jax.export.deserialize(bytearray(blob))
    num_leaves = len(jax.tree.leaves(variables))
    assert len(exported.in_avals) == num_leaves + 1
    kp_shape = exported.in_avals[-1].shape
    assert jax.export.is_symbolic_dim(kp_shape[0]) and jax.export.is_symbolic_dim(kp_shape[1])
    assert kp_shape[2:] == (17, 2)
    assert exported.platforms == ("cpu", "cuda")

    ref_fn = jax.jit(lambda v, x: temporal.apply(v, x, config=cfg, train=False)[0])
    cases = [(1, 5), (3, 40), (2, 1)]  # two+ batch sizes, sequence lengths (incl. T < 27)
    inputs = [_keypoints((b, t, 17, 2), 10 + i) for i, (b, t) in enumerate(cases)]
    refs = [np.asarray(ref_fn(variables, x)) for x in inputs]

    model = exported_model.ExportedLifter.load(directory)
    # From here on nothing may trace the model or export again: only the stored program runs.
    def forbidden(*args, **kwargs):
        raise AssertionError("re-export or in-process model call")

    monkeypatch.setattr(jax.export, "export", forbidden)
    monkeypatch.setattr(temporal, "apply", forbidden)
    for x, ref in zip(inputs, refs):
        out = model(x)
        assert isinstance(out, np.ndarray) and out.shape == x.shape[:-1] + (3,)
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # No batch axis: (T, J, C) -> (T, J, 3).
    np.testing.assert_allclose(model(inputs[0][0]), refs[0][0], rtol=1e-5, atol=1e-5)
    assert model.receptive_field == 27
    assert model.joint_names == model.input_joint_names and len(model.joint_names) == 17
    assert model.joint_names[0] == "pelvis"


def test_weights_are_an_argument_not_constants(temporal_export, tmp_path):
    """Swapping variables.npz for other weights changes the output to theirs."""
    cfg, _, directory, _ = temporal_export
    other = _perturbed(temporal.init(jax.random.key(7), cfg), 3)
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    with open(copy / "variables.npz", "wb") as f:
        np.savez(f, **export.flatten_variables(other))
    x = _keypoints((2, 6, 17, 2), 5)
    ref = np.asarray(temporal.apply(other, x, config=cfg, train=False)[0])
    out = exported_model.ExportedLifter.load(copy)(x)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_mlp_parity_with_heads(mlp_export):
    cfg, variables, directory = mlp_export
    model = exported_model.ExportedLifter.load(directory)
    assert model.kind == "mlp" and model.receptive_field == 1
    assert model.metadata["input_shape"] == ["b", 17, 2]
    for shape in [(1, 17, 2), (7, 17, 2), (2, 3, 17, 2)]:
        x = _keypoints(shape, sum(shape))
        ref, _ = mlp.apply(variables, x, config=cfg, train=False)
        out = model.predict(x)
        assert sorted(out) == ["poses", "root", "scale"]
        np.testing.assert_allclose(out["poses"], np.asarray(ref.pose), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["root"], np.asarray(ref.root), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["scale"], np.asarray(ref.scale), rtol=1e-5, atol=1e-5)
    assert model.metadata["units"]["output"].startswith("metres, camera frame x right y down")


def test_metadata_contents(temporal_export):
    cfg, variables, directory, _ = temporal_export
    meta = json.loads((directory / "metadata.json").read_text())
    assert meta["format"] == exported_model.FORMAT
    assert meta["format_version"] == export.FORMAT_VERSION == exported_model.FORMAT_VERSION
    assert meta["config"]["filter_widths"] == [3, 3, 3] and meta["config"]["channels"] == 16
    assert meta["input_layout"] == meta["output_layout"] == "h36m_17"
    assert meta["jax_version"] == jax.__version__
    assert "x = u / w * 2 - 1, y = v / w * 2 - h / w" in meta["units"]["input"]
    assert "root-relative" in meta["units"]["output"] and "metres" in meta["units"]["output"]
    # The leaf list rebuilds the variables pytree exactly.
    paths = [leaf["path"] for leaf in meta["variables"]]
    flat = jax.tree_util.tree_flatten_with_path(variables)[0]
    assert paths == ["/".join(k.key for k in path) for path, _ in flat]
    with np.load(directory / "variables.npz", allow_pickle=False) as data:
        for (path, leaf), name in zip(flat, paths):
            np.testing.assert_array_equal(data[name], leaf)


def test_trajectory_variant_metadata(tmp_path):
    cfg = temporal.variant("tiny_trajectory_9f")
    meta = export.export_lifter(
        temporal.init(jax.random.key(0), cfg), cfg, tmp_path / "traj", platforms=("cpu",)
    )
    assert meta["output_kind"] == "trajectory" and meta["output_joint_names"] == ["pelvis"]
    assert "absolute position of the root" in meta["units"]["output"]
    assert meta["platforms"] == ["cpu"]


# ----------------------------------------------------------------------------- standalone


def test_loader_runs_without_jpose_flax_optax(temporal_export, tmp_path):
    cfg, variables, directory, _ = temporal_export
    x = _keypoints((2, 9, 17, 2), 3)
    ref = np.asarray(temporal.apply(variables, x, config=cfg, train=False)[0])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "ref.npy", ref)
    script = textwrap.dedent(
        f"""
        import importlib.abc, importlib.util, sys
        BLOCKED = ("jpose", "flax", "optax")
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("blocked: " + name)
                return None
        sys.meta_path.insert(0, Block())
        import numpy as np
        spec = importlib.util.spec_from_file_location("exported_model", {LOADER_PATH!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        model = mod.ExportedLifter.load({str(directory)!r})
        out = model(np.load({str(tmp_path / "x.npy")!r}))
        np.testing.assert_allclose(out, np.load({str(tmp_path / "ref.npy")!r}), rtol=1e-5, atol=1e-5)
        bad = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        assert not bad, bad
        print("STANDALONE_OK", out.shape)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env,
        cwd=str(tmp_path), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STANDALONE_OK (2, 9, 17, 3)" in proc.stdout


def test_pixels_to_screen_matches_camera():
    # Hand case: the image centre maps to (0, 0); the top-left corner to (-1, -h/w).
    uv = np.array([[500.0, 400.0], [0.0, 0.0], [1000.0, 800.0]])
    got = exported_model.pixels_to_screen(uv, 1000, 800)
    np.testing.assert_allclose(got, [[0.0, 0.0], [-1.0, -0.8], [1.0, 0.8]], atol=1e-12)
    uv = np.random.default_rng(0).uniform(0, 1920, (4, 17, 2)).astype(np.float32)
    ref = np.asarray(camera.pixels_to_screen(uv, np.array([1920.0, 1080.0], np.float32)))
    np.testing.assert_allclose(exported_model.pixels_to_screen(uv, 1920, 1080), ref, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- errors


def test_loader_errors(temporal_export, tmp_path):
    _, _, directory, _ = temporal_export
    broken = tmp_path / "broken"
    shutil.copytree(directory, broken)
    os.remove(broken / "variables.npz")
    with pytest.raises(FileNotFoundError, match="variables.npz") as e:
        exported_model.ExportedLifter.load(broken)
    assert "model.jaxexport" in str(e.value) and "metadata.json" in str(e.value)

    old = tmp_path / "old"
    shutil.copytree(directory, old)
    meta = json.loads((old / "metadata.json").read_text())
    meta["format_version"] = 99
    (old / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format_version 99"):
        exported_model.ExportedLifter.load(old)

    model = exported_model.ExportedLifter.load(directory)
    with pytest.raises(ValueError, match=r"\(batch, T, J=17, C=2\)"):
        model(np.zeros((2, 5, 16, 2), np.float32))
    with pytest.raises(ValueError, match=r"\(batch, T, J=17, C=2\)"):
        model(np.zeros((17, 2), np.float32))
    bad = np.zeros((1, 4, 17, 2), np.float32)
    bad[0, 2, 3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        model(bad)
    assert model(np.zeros((0, 4, 17, 2), np.float32)).shape == (0, 4, 17, 3)


def test_export_argument_errors(tmp_path):
    cfg = mlp.variant("tiny_mlp")
    variables = mlp.init(jax.random.key(0), cfg)
    with pytest.raises(ValueError, match="layout"):
        export.export_lifter(variables, cfg, tmp_path / "a", layout="mpii_16")
    with pytest.raises(ValueError, match="Unknown joint layout"):
        export.export_lifter(variables, cfg, tmp_path / "a", layout="nope")
    with pytest.raises(ValueError, match="variables"):
        export.export_lifter(variables, mlp.variant("tiny_mlp", hidden=8), tmp_path / "a")
    with pytest.raises(ValueError, match="config"):
        export.export_lifter(variables, {"hidden": 16}, tmp_path / "a")
    with pytest.raises(ValueError, match="metadata"):
        export.export_lifter(variables, cfg, tmp_path / "a", metadata={"x": object()})
    assert os.listdir(tmp_path) == []


def test_overwrite_refusal(mlp_export, tmp_path):
    cfg, variables, _ = mlp_export
    target = tmp_path / "export"
    export.export_lifter(variables, cfg, target, metadata={"run": 1}, platforms=("cpu",))
    before = {n: (target / n).read_bytes() for n in os.listdir(target)}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.export_lifter(variables, cfg, target, metadata={"run": 2}, platforms=("cpu",))
    assert {n: (target / n).read_bytes() for n in os.listdir(target)} == before

    export.export_lifter(variables, cfg, target, metadata={"run": 2}, overwrite=True, platforms=("cpu",))
    assert exported_model.ExportedLifter.load(target).metadata["user"] == {"run": 2}
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no temp or old dirs left

    # overwrite=True never deletes a directory that is not an export.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a jpose export"):
        export.export_lifter(variables, cfg, other, overwrite=True, platforms=("cpu",))
    assert (other / "notes.txt").read_text() == "keep me"


def test_failure_mid_export_leaves_nothing(mlp_export, tmp_path, monkeypatch):
    cfg, variables, _ = mlp_export
    target = tmp_path / "export"
    export.export_lifter(variables, cfg, target, metadata={"run": 1}, platforms=("cpu",))

    def fail(self, *args, **kwargs):
        raise RuntimeError("disk full")

    # serialize() runs after variables.npz is already written into the temp directory.
    monkeypatch.setattr(jax.export.Exported, "serialize", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_lifter(variables, cfg, tmp_path / "new", platforms=("cpu",))
    assert sorted(os.listdir(tmp_path)) == ["export"]
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_lifter(
            variables, cfg, target, metadata={"run": 2}, overwrite=True, platforms=("cpu",)
        )
    assert sorted(os.listdir(tmp_path)) == ["export"]
    assert exported_model.ExportedLifter.load(target).metadata["user"] == {"run": 1}
