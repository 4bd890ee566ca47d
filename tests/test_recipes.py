"""Recipes, streams, stages and checkpoint fingerprints of the generic training system."""

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jpose import recipes
from jpose.recipes import Step, supervised
from jpose.training import checkpoint as ckpt_lib
from jpose.training import loop, parallel, step as step_lib, streams
from launch.configs import common
from tests.fakes import FixedNetwork


def _step():
    return Step(rng=jax.random.key(0), step=jnp.int32(0), bn_momentum=jnp.float32(0.1))


def test_supervised_loss_equals_hand_computed_values():
    b, j = 3, 17
    target = np.zeros((b, 1, j, 3), np.float32)
    pose = target.copy()
    pose[..., 0] = 0.03  # every joint 30 mm off
    pose[2] = 5.0  # a padding row (weight 0) with a huge error must not count
    root = np.array([[[0.1, 0.0, 5.0]], [[0.0, 0.0, 2.0]], [[9.0, 9.0, 9.0]]], np.float32)
    root_pred = root.copy()[:, :, None, :]
    root_pred[0, 0, 0, 0] += 0.1  # 100 mm at 5 m depth -> 0.02 (1 / z weighting)
    root_pred[1, 0, 0, 1] += 0.2  # 200 mm at 2 m -> 0.1
    root_pred[2] += 100.0  # padding
    nets = {"pose": FixedNetwork(jnp.asarray(pose)),
            "trajectory": FixedNetwork(jnp.asarray(root_pred))}
    params = {n: {"w": jnp.zeros(())} for n in nets}
    stats = {n: {} for n in nets}
    batch = {"inputs": np.zeros((b, 9, j, 2), np.float32), "poses_3d": target,
             "trajectory": root, "weight": np.array([1, 1, 0], np.float32)}
    loss, new_stats, metrics = supervised.supervised_terms(params, stats, batch, _step(),
                                                           nets=nets)
    assert float(loss) == pytest.approx(0.03 + (0.02 + 0.1) / 2, rel=1e-5)
    total, count = metrics["mpjpe_mm"]
    assert float(total / count) == pytest.approx(30.0, rel=1e-5) and float(count) == 2 * j
    assert set(new_stats) == {"pose", "trajectory"}


def _hp(trajectory=True):
    return ml_collections.ConfigDict({
        "model": {"kind": "temporal", "variant": "tiny_9f", "overrides": {}},
        "recipe": {"name": "supervised", "stream": "labelled", "trajectory": trajectory}})


META = {"num_joints_in": 17, "num_joints_out": 17, "in_features": 2}


def test_trajectory_network_is_separate_and_unused_by_the_pose_predictor():
    hp = _hp()
    nets = supervised.networks(hp, META)
    assert nets["trajectory"].num_joints_out == 1
    assert nets["trajectory"].config.filter_widths == nets["pose"].config.filter_widths
    variables = recipes.init_networks(jax.random.key(0), nets)
    predictors = supervised.predictors(nets)
    keypoints = jax.random.normal(jax.random.key(1), (1, 12, 17, 2))

    def pose_output(params):
        return jnp.sum(predictors["pose"].fn(
            {"params": params, "batch_stats": variables["batch_stats"]}, keypoints))

    grads = jax.grad(pose_output)(variables["params"])
    assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree.leaves(grads["trajectory"]))
    assert any(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads["pose"]))
    # No shared weights: the two networks' kernels differ (independent keys).
    a = variables["params"]["pose"]["block0_conv"]["kernel"]
    b = variables["params"]["trajectory"]["block0_conv"]["kernel"]
    assert a.shape == b.shape and not np.allclose(a, b)
    traj = predictors["trajectory"].fn(variables, keypoints)
    assert traj.shape == (1, 12, 1, 3) and predictors["trajectory"].output == "trajectory"


def test_train_step_trains_both_networks_of_a_recipe():
    hp = _hp()
    nets = supervised.networks(hp, META)
    tx = optax.sgd(0.1)
    init_fn = functools.partial(step_lib.init_state, supervised.RECIPE, nets, hp, tx)
    state = init_fn(jax.random.key(0))
    before = jax.device_get(state["params"])
    train_step = jax.jit(step_lib.make_train_step(
        supervised.RECIPE, nets, hp, tx, learning_rate=lambda s: 0.1,
        bn_momentum=lambda s: 0.1))
    rng = np.random.default_rng(0)
    batch = {"labelled": {
        "inputs": rng.normal(size=(4, 9, 17, 2)).astype(np.float32),
        "poses_3d": rng.normal(size=(4, 1, 17, 3)).astype(np.float32),
        "trajectory": rng.uniform(2, 6, size=(4, 1, 3)).astype(np.float32),
        "weight": np.ones(4, np.float32)}}
    state, metrics = train_step(state, batch, jax.random.key(1))
    for net in ("pose", "trajectory"):
        moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), before[net],
                             jax.device_get(state["params"][net]))
        assert max(jax.tree.leaves(moved)) > 0
    assert {"loss", "mpjpe_mm", "trajectory_wmpjpe", "grad_norm"} <= set(metrics)


def test_recipe_lookup():
    assert recipes.get("supervised") is supervised.RECIPE
    assert recipes.get("tests.toy_two_stream:RECIPE").streams == ("labelled", "unlabelled")
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        recipes.get("nope")
    with pytest.raises(ValueError, match="cannot import"):
        recipes.get("no_such_module:RECIPE")
    with pytest.raises(ValueError, match="not a jpose.recipes.Recipe"):
        recipes.get("jpose.recipes.supervised:loss")


def test_stream_seeds_are_independent_and_stable():
    assert streams.stream_seed(0, "labelled") == streams.stream_seed(0, "labelled")
    assert streams.stream_seed(0, "labelled") != streams.stream_seed(0, "unlabelled")
    assert streams.stream_seed(0, "labelled") != streams.stream_seed(1, "labelled")


def _tiny_config(**changes):
    c = common.apply_tiny(common.base_config())
    c.model.variant = "tiny_9f"
    for k, v in changes.items():
        node = c
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return c


def _save_tiny(directory, config, **kw):
    ckpt = ckpt_lib.Checkpointer(str(directory), save_every=1, keep=1, config=config, **kw)
    ckpt.save(1, {"w": jnp.zeros(2)}, force=True)
    ckpt.close()


def test_fingerprint_is_the_whole_config_minus_the_allow_list(tmp_path):
    base = _tiny_config()
    _save_tiny(tmp_path / "a", base)
    # Cadence and length may change on resume...
    ckpt_lib.Checkpointer(str(tmp_path / "a"), save_every=1, keep=1, config=_tiny_config(
        eval_every=5, log_every=7, num_steps=99)).check_compatible()
    # ...anything else may not: here the batch-norm schedule, which used to slip through.
    changed = ckpt_lib.Checkpointer(str(tmp_path / "a"), save_every=1, keep=1,
                                    config=_tiny_config(**{"bn_momentum.final": 0.01}))
    with pytest.raises(ckpt_lib.IncompatibleCheckpointError,
                       match=r"bn_momentum.final: checkpoint 0.001 vs config 0.01"):
        changed.check_compatible()


def test_fingerprint_hashes_the_files_a_run_consumes(tmp_path):
    data = tmp_path / "data.npz"
    data.write_bytes(b"first version")
    _save_tiny(tmp_path / "a", _tiny_config(**{"data.path": str(data)}))
    moved = tmp_path / "moved.npz"
    moved.write_bytes(b"first version")
    # The same content elsewhere is the same input...
    ckpt_lib.Checkpointer(str(tmp_path / "a"), save_every=1, keep=1, config=_tiny_config(
        **{"data.path": str(moved)})).check_compatible()
    # ...but changed content is not, though the path is the same.
    data.write_bytes(b"second version")
    with pytest.raises(ckpt_lib.IncompatibleCheckpointError, match=r"data.path.sha256"):
        ckpt_lib.Checkpointer(str(tmp_path / "a"), save_every=1, keep=1, config=_tiny_config(
            **{"data.path": str(data)})).check_compatible()


def test_init_from_copies_named_networks_with_a_fresh_optimiser(tmp_path):
    first = _tiny_config(num_steps=4, checkpoint_every=4, eval_every=0)
    loop.train_and_evaluate(first, str(tmp_path / "stage1"), progress=False)
    trained = loop.restore_for_inference(str(tmp_path / "stage1")).variables

    second = _tiny_config(**{"init_from.workdir": str(tmp_path / "stage1"),
                             "init_from.networks": ("pose",), "recipe.trajectory": True})
    run = loop.build_run(second)
    mesh = parallel.make_mesh(jax.devices()[:1])
    init_fn, _ = loop._abstract_state(run, jax.random.key(0))
    fresh = init_fn(jax.random.key(0))
    state, resolved = loop._init_from(second, fresh, mesh)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state["params"]["pose"]),
                 jax.device_get(trained["params"]["pose"]))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state["batch_stats"]["pose"]),
                 jax.device_get(trained["batch_stats"]["pose"]))
    # The trajectory network (not in stage 1) and the optimiser start fresh, at step 0.
    jax.tree.map(np.testing.assert_array_equal, state["params"]["trajectory"],
                 fresh["params"]["trajectory"])
    jax.tree.map(np.testing.assert_array_equal, state["opt_state"], fresh["opt_state"])
    assert int(state["step"]) == 0 and set(resolved) == {"init_from.workdir"}

    other = _tiny_config(**{"init_from.workdir": str(tmp_path / "stage1"),
                            "init_from.networks": ("pose",), "model.variant": "tiny_27f"})
    run = loop.build_run(other)
    fresh = loop._abstract_state(run, jax.random.key(0))[0](jax.random.key(0))
    with pytest.raises(ValueError, match="another architecture"):
        loop._init_from(other, fresh, mesh)
    missing = _tiny_config(**{"init_from.workdir": str(tmp_path / "stage1"),
                              "init_from.networks": ("trajectory",)})
    with pytest.raises(ValueError, match="has no network 'trajectory'"):
        loop._init_from(missing, fresh, mesh)
    assert os.path.exists(tmp_path / "stage1" / "config.json")


def test_pck_evaluator_counts_valid_frames_per_scene():
    from jpose.evaluators import PCKEvaluator
    from jpose.recipes import Predictor

    rng = np.random.default_rng(0)
    target = rng.normal(size=(6, 17, 3)).astype(np.float32)
    error = np.zeros_like(target)
    error[:, :8, 0] = 0.2  # 8 of 17 joints 200 mm off (misses), the rest exact (hits)
    error[5] = 10.0  # an invalid frame: must not count
    predictor = Predictor(lambda variables, keypoints: keypoints, "pose", "pose")
    evaluator = PCKEvaluator(
        predictor, [("TS5", target + error, target)], layouts=("mpi_inf_3dhp_17",) * 2,
        flip=False, bucket=8,
        frames=[{"valid": np.arange(6) < 5, "activity": np.full(6, 2)}])
    _, values = evaluator.run(None)
    # The pelvis (root, index 14) is exact after root subtraction: 9 / 17 joints are hits.
    assert values["pck3d_150mm"] == pytest.approx(100 * 9 / 17, rel=1e-6)
    assert values["pck3d_150mm/Outdoor"] == values["pck3d_150mm"]
    assert "pck3d_150mm/Studio GS" not in values
    assert values["mpjpe_mm"] == pytest.approx(200 * 8 / 17, rel=1e-4)
    with pytest.raises(ValueError, match="needs per-frame valid flags"):
        PCKEvaluator(predictor, [("TS5", target, target)], layouts=("mpi_inf_3dhp_17",) * 2,
                     flip=False, bucket=8)


def test_pck_evaluator_without_activity_labels_reports_total_and_scene():
    from jpose.evaluators import PCKEvaluator
    from jpose.recipes import Predictor

    target = np.zeros((4, 17, 3), np.float32)
    pred = target.copy()
    pred[:2, 0, 0] = 0.2  # one joint of two frames misses
    predictor = Predictor(lambda variables, keypoints: keypoints, "pose", "pose")
    evaluator = PCKEvaluator(predictor, [("TS1", pred, target)],
                             layouts=("mpi_inf_3dhp_17",) * 2, flip=False, bucket=8,
                             frames=[{"valid": np.ones(4, bool), "activity": np.zeros(4)}])
    _, values = evaluator.run(None)
    assert values["pck3d_150mm"] == pytest.approx(100 * (1 - 2 / 68), rel=1e-6)
    assert values["pck3d_150mm/Studio GS"] == values["pck3d_150mm"]
    assert not any(k.startswith("pck3d_150mm/") and "Studio" not in k for k in values)


def test_evaluator_on_another_dataset_reads_only_its_evaluation_set(monkeypatch):
    """evals.<name>.data: a cross-dataset evaluation set; its layouts must match."""
    c = _tiny_config()
    run = loop.build_run(c, with_streams=False)
    calls = []
    real = streams._records
    monkeypatch.setattr(streams, "_records",
                        lambda config, **kw: calls.append(kw) or real(config, **kw))
    c.evals.test.data = {"generator_seed": 7}
    (evaluator,) = loop.make_evaluators(c, run).values()
    assert calls == [{"with_train": False}]  # the other dataset's training set is not read
    other = streams.load_data(loop.with_data(c, {"generator_seed": 7}))
    assert [a for a, _, _ in evaluator.sequences] == [a for a, _, _ in other.eval_sequences]
    np.testing.assert_array_equal(evaluator.sequences[0][2], other.eval_sequences[0][2])
    assert not np.array_equal(evaluator.sequences[0][2], run.data.eval_sequences[0][2])
    c.evals.test.data = {"layout": "mpi_inf_3dhp_17"}
    with pytest.raises(ValueError, match="evals.test.data: its joint layouts"):
        loop.make_evaluators(c, run)


def test_downsampling_takes_each_record_from_its_own_frame_rate():
    """MPI-INF-3DHP mixes 25 and 50 fps: 12.5 fps is every 2nd or every 4th frame."""
    c = _tiny_config(**{"data.protocol": "subjects", "data.labelled_subjects": ("S1",)})
    train, _, _ = streams._records(c)
    mixed = tuple(r._replace(fps=25.0 if i % 2 else 50.0) for i, r in enumerate(train))
    c.data.downsample_fps = 12.5
    split = streams.labelled_split(c.data, mixed)
    out = {(r.subject, r.action, r.camera_index): r for r in (*split.labelled, *split.unlabelled)}
    for r in mixed:
        k = int(r.fps / 12.5)
        got = out[(r.subject, r.action, r.camera_index)]
        np.testing.assert_array_equal(got.positions_world, r.positions_world[::k])
        assert got.fps == 12.5
    c.data.protocol = "fraction"  # one stride for VideoPose3D's chunks: refused
    with pytest.raises(ValueError, match="different frame rates"):
        streams.labelled_split(c.data, mixed)


def test_unlabelled_stream_from_your_own_files(tmp_path):
    """The semi-supervised recipe's unlabelled stream read from user sequence files made
    from the sample data: same 2D inputs and cameras as the dataset's own split."""
    from jpose.datasets import multiview, user_sequences

    config = _load("videopose_semi/sample", "tiny")
    d = config.data
    ds = multiview.make_multiview_dataset(
        d.motion, layout=d.layout, num_subjects=d.num_subjects, num_cameras=d.num_cameras,
        held_out_cameras=tuple(d.held_out_cameras), synthetic_frames=d.synthetic_frames,
        seed=d.generator_seed)
    paths = user_sequences.user_sequences_from_records(
        ds.split("unlabelled"), str(tmp_path / "mine_"), with_3d=False)
    assert paths
    config.streams.unlabelled.source = "files"
    config.streams.unlabelled.paths = (str(tmp_path),)
    data = streams.load_data(config)
    run = loop.build_run(config, data=data)
    files = run.streams.streams["unlabelled"]
    own = data.splits["unlabelled"]
    assert files.split == "files"
    seqs = files.batches.dataset.sequences
    assert seqs.num_frames == own.num_frames
    np.testing.assert_allclose(np.concatenate([s.inputs for s in seqs]),
                               np.concatenate([s.inputs for s in own]), atol=1e-6)
    np.testing.assert_allclose(np.stack([s.camera for s in seqs]),
                               np.stack([s.camera for s in own]), atol=1e-6)
    # As the primary (3D-reading) stream, unlabelled files are refused.
    config.streams.labelled.source = "files"
    config.streams.labelled.paths = (str(tmp_path),)
    with pytest.raises(ValueError, match="poses_3d"):
        loop.build_run(config, data=data)


def _load(name, arg):
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "launch", "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"cfg_{name.replace('/', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)
