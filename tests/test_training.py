"""The training system: sharded steps, resume, non-finite stops, evaluation, configs.

conftest.py gives this process 4 fake CPU devices, so single- and multi-device runs can be
compared in one process.
"""

import functools
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jpose.evaluators import protocols as eval_lib
from jpose.nets import network
from jpose.recipes import supervised
from jpose.training import checkpoint as ckpt_lib
from jpose.training import logs, loop, optim, parallel, step as step_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ("sample_videopose", "videopose_27f", "videopose_243f", "martinez_mlp",
           "videopose_semi/sample", "videopose_semi/h36m", "li_boosting/h36m",
           "li_boosting/mpi_inf_3dhp")


def load_config(name: str, arg: str = "tiny") -> ml_collections.ConfigDict:
    path = os.path.join(ROOT, "launch", "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"cfg_{name.replace('/', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _tiny_nets(hp):
    return supervised.networks(hp, {"num_joints_in": 17, "num_joints_out": 17, "in_features": 2})


def _tiny_setup(num_devices: int, batch_size: int = 8, trajectory: bool = False):
    hp = ml_collections.ConfigDict({
        "model": {"kind": "temporal", "variant": "tiny_9f", "overrides": {}},
        "recipe": {"name": "supervised", "stream": "labelled", "trajectory": trajectory}})
    nets = _tiny_nets(hp)
    tx = optax.amsgrad(1e-3)
    mesh = parallel.make_mesh(jax.devices()[:num_devices])
    init_fn = functools.partial(step_lib.init_state, supervised.RECIPE, nets, hp, tx)
    rng = jax.random.key(0)
    abstract = jax.eval_shape(init_fn, rng)
    state = jax.jit(init_fn, out_shardings=step_lib.state_shardings(abstract, mesh))(rng)
    step = step_lib.jit_train_step(
        step_lib.make_train_step(supervised.RECIPE, nets, hp, tx,
                                 learning_rate=lambda s: 1e-3, bn_momentum=lambda s: 0.1),
        abstract, mesh)
    data_rng = np.random.default_rng(0)
    batches = [{"labelled": {
        "inputs": data_rng.normal(size=(batch_size, 9, 17, 2)).astype(np.float32),
        "poses_3d": data_rng.normal(size=(batch_size, 1, 17, 3)).astype(np.float32),
        "trajectory": data_rng.uniform(2, 6, size=(batch_size, 1, 3)).astype(np.float32),
        "weight": np.ones(batch_size, np.float32)}} for _ in range(3)]
    return mesh, state, step, batches



@pytest.mark.parametrize("eval_values", [{"mpjpe_mm": 50.0}, {"test/mpjpe_mm": 50.0}, None])
def test_plot_curves_labels_only_what_it_plots(tmp_path, eval_values):
    """No legend() without a labelled curve (matplotlib warns; warnings are errors here):
    evaluations with none of eval_keys, or none at all."""
    log = logs.MetricsLog(str(tmp_path))
    for k in range(3):
        log.write("train", k, {"loss": 1.0 / (k + 1)})
    if eval_values is not None:
        log.write("eval", 2, eval_values)
    png = str(tmp_path / "curves.png")
    assert logs.plot_curves(log.path, png) == png and os.path.getsize(png) > 0

def test_train_step_one_device_equals_four_devices():
    results = []
    for n in (1, 4):
        mesh, state, step, batches = _tiny_setup(n)
        for b in batches:
            state, metrics = step(state, parallel.global_batch(b, mesh), jax.random.key(7))
        assert int(state["step"]) == 3
        assert len(state["params"]["pose"]["expand_conv"]["kernel"].sharding.device_set) == n
        results.append(jax.device_get((state["params"], state["batch_stats"], metrics)))
    # Same global batch, same dropout masks (keys folded from the step): same result up to
    # the order of the all-reduce's float additions.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
                 results[0], results[1])


def test_global_batch_not_divisible_by_devices_is_a_clear_error():
    mesh = parallel.make_mesh(jax.devices()[:4])
    with pytest.raises(ValueError, match="global batch size 6 is not divisible by the 4 "
                                         "devices"):
        parallel.check_batch_size(6, mesh)
    parallel.check_batch_size(8, mesh)


def test_schedules_follow_videopose3d():
    lr = optim.learning_rate_schedule(
        {"name": "amsgrad_epoch_decay", "learning_rate": 1e-3, "lr_decay": 0.95}, 10)
    assert float(lr(9)) == pytest.approx(1e-3)
    assert float(lr(10)) == pytest.approx(0.95e-3)
    assert float(lr(25)) == pytest.approx(1e-3 * 0.95 ** 2)
    bn = optim.bn_momentum_schedule(0.1, 0.001, 80, 10)
    assert float(bn(0)) == pytest.approx(0.1)
    # VideoPose3D: 0.1 * exp(-epoch / epochs * log(0.1 / 0.001)), epoch 40 of 80 -> 0.01.
    assert float(bn(400)) == pytest.approx(0.01, rel=1e-5)
    steps = optim.learning_rate_schedule(
        {"name": "adam_steps", "learning_rate": 1e-3, "boundaries": (5, 8), "factor": 0.5}, 1)
    assert [float(steps(s)) for s in (4, 5, 8)] == pytest.approx([1e-3, 5e-4, 2.5e-4])


def test_non_finite_metrics_stop_naming_the_step():
    good = {"loss": np.float32(1.0)}
    pending = [(6, good), (7, {"loss": np.float32(np.nan)}), (8, good)]
    with pytest.raises(loop.NonFiniteLossError, match="loss became non-finite at step 7"):
        loop._flush(pending, None, 100)


@pytest.mark.parametrize("learning_rate, message", [
    (1e30, r"non-finite at step \d+"),
    # lr 1e8 gives a loss ~1e16 that stays finite: stopped as diverged, not left to run.
    (1e8, r"the loss diverged to .* at step \d+ .* above max_loss=1000")])
def test_exploding_run_stops_before_checkpointing(tmp_path, learning_rate, message):
    config = load_config("sample_videopose")
    config.optimizer.learning_rate = learning_rate
    config.num_steps = 12
    config.checkpoint_every = 12
    with pytest.raises(loop.NonFiniteLossError, match=message):
        loop.train_and_evaluate(config, str(tmp_path), progress=False)
    assert not os.path.exists(tmp_path / "checkpoints" / "12")
    assert not os.path.exists(tmp_path / "eval.json")  # never an "Infinity" in it


def test_evaluation_numbers_on_a_hand_built_case():
    # A "model" that returns the input's x, y and a constant depth 2 m: against targets
    # with depth 2.03 m at every joint the error is 30 mm everywhere; 10 mm for the
    # second action. Procrustes alignment removes a constant depth offset entirely.
    def predict_fn(variables, keypoints):
        z = jnp.full(keypoints.shape[:-1] + (1,), 2.0, keypoints.dtype)
        return jnp.concatenate([keypoints[..., :2], z], axis=-1)

    rng = np.random.default_rng(0)
    seqs = []
    for action, dz, frames in (("a", 0.03, 5), ("b", 0.01, 11)):
        xy = rng.normal(size=(frames, 17, 2)).astype(np.float32)
        target = np.concatenate([xy, np.full((frames, 17, 1), 2.0 + dz, np.float32)], -1)
        seqs.append((action, xy, target))
    acc = eval_lib.evaluate(predict_fn, None, seqs, bucket=8)
    # Root-relative comparison: the constant depth cancels after subtracting the root.
    assert acc.per_action_mm("mpjpe") == pytest.approx({"a": 0.0, "b": 0.0}, abs=1e-3)
    shifted = [(a, x, t + np.array([0, 0, 0.05], np.float32) * (np.arange(17) == 3)[:, None])
               for a, x, t in seqs]
    acc = eval_lib.evaluate(predict_fn, None, shifted, bucket=8)
    # Only joint 3 is 50 mm off: mean over 17 joints.
    assert acc.action_wise_mm("mpjpe") == pytest.approx(50 / 17, rel=1e-4)
    assert acc.counts["mpjpe"] == {"a": 5 * 17, "b": 11 * 17}


def test_flip_averaging_is_exact_for_a_mirror_equivariant_model():
    model = network.build({"kind": "temporal", "variant": "tiny_9f"})
    variables = model.init(jax.random.key(0))
    keypoints = jax.random.normal(jax.random.key(1), (1, 20, 17, 2))
    plain = eval_lib.make_predict_fn(model.predict)(variables, keypoints)
    flipped = eval_lib.make_predict_fn(model.predict, flip_layouts=("h36m_17", "h36m_17"))
    # Averaging f(x) with mirror(f(mirror(x))): applying it to mirror(x) gives the mirror.
    from jpose import skeleton
    a = flipped(variables, keypoints)
    b = skeleton.mirror(flipped(variables, skeleton.mirror(keypoints, "h36m_17")), "h36m_17")
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(a, plain, atol=1e-4)  # the augmentation changes predictions


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_runs_end_to_end_in_tiny_mode(name, tmp_path):
    config = load_config(name)
    result = loop.train_and_evaluate(config, str(tmp_path), progress=False)
    if config.evals.test.type == "pck3d_auc":  # MPI-INF-3DHP's evaluator
        values = result["evals"]["test"]
        assert 0 <= values["pck3d_150mm"] <= 100 and np.isfinite(values["mpjpe_mm"])
    else:
        protocols = result["protocols_mm"]
        assert set(protocols) == {"mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"}
        assert all(np.isfinite(v["action_wise"]) for v in protocols.values())
    records = logs.MetricsLog.read(str(tmp_path / "metrics.jsonl"))
    # Every 2 steps, and before each checkpoint (metrics are checked before saving).
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 3, 4, 6]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6]
    assert (tmp_path / "curves.png").exists() and (tmp_path / "eval.json").exists()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "6"]


def test_loss_goes_down_on_sample_data(tmp_path):
    config = load_config("sample_videopose")
    config.num_steps = 60
    config.log_every = 10
    config.eval_every = 0
    config.checkpoint_every = 60
    config.global_batch_size = 32
    config.optimizer.learning_rate = 3e-3
    loop.train_and_evaluate(config, str(tmp_path), progress=False)
    losses = [r["loss"] for r in logs.MetricsLog.read(str(tmp_path / "metrics.jsonl"))
              if r["kind"] == "train"]
    assert len(losses) == 6
    assert losses[-1] < 0.7 * losses[0]


def test_incompatible_checkpoint_is_refused_and_kept(tmp_path):
    config = load_config("sample_videopose")
    loop.train_and_evaluate(config, str(tmp_path), progress=False)
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    other = load_config("sample_videopose")
    other.model.overrides = {"channels": 32}
    with pytest.raises(ckpt_lib.IncompatibleCheckpointError, match="model.overrides.channels"):
        loop.train_and_evaluate(other, str(tmp_path), progress=False)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before


def _train_command(workdir, *extra, config=None):
    config = config or os.path.join(ROOT, "launch", "configs", "sample_videopose.py") + ":tiny"
    return [sys.executable, os.path.join(ROOT, "launch", "train.py"), f"--config={config}",
            f"--workdir={workdir}", "--config.num_steps=14", "--config.checkpoint_every=2",
            "--config.eval_every=0", *extra]


def _final_params(workdir):
    return jax.device_get(loop.restore_for_inference(str(workdir)).variables)


# The semi-supervised recipe itself (labelled + unlabelled streams, pose + trajectory
# networks).
SEMI = os.path.join(ROOT, "launch", "configs", "videopose_semi", "sample.py") + ":tiny"


def test_two_stream_recipe_killed_at_any_step_resumes_bit_identically(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    straight = tmp_path / "straight"
    subprocess.run(_train_command(straight, config=SEMI), check=True, env=env,
                   capture_output=True)
    resumed = tmp_path / "resumed"
    proc = subprocess.Popen(_train_command(resumed, config=SEMI), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = resumed / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        done = [d for d in (os.listdir(ckpts) if ckpts.exists() else []) if d.isdigit()]
        if done and max(map(int, done)) >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(int(d) for d in os.listdir(ckpts) if d.isdigit())
    assert 6 <= killed_at < 14
    subprocess.run(_train_command(resumed, config=SEMI), check=True, env=env,
                   capture_output=True)
    a, b = _final_params(straight), _final_params(resumed)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    records = logs.MetricsLog.read(str(resumed / "metrics.jsonl"))
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 14  # no duplicated log records
    # Both streams used: the unlabelled back-projection and bone terms at every log.
    assert all("reconstruction_2d" in r and "bone_gap_mm" in r
               for r in records if r["kind"] == "train")
    # A rerun of the finished run re-evaluates without duplicating the eval row.
    subprocess.run(_train_command(resumed, config=SEMI), check=True, env=env,
                   capture_output=True)
    evals = [r["step"] for r in logs.MetricsLog.read(str(resumed / "metrics.jsonl"))
             if r["kind"] == "eval"]
    assert evals == [14]
    assert oct(os.stat(resumed / "eval.json").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_evaluate_and_export_need_only_the_workdir(tmp_path):
    """A run trained with a dotted override is evaluated and exported from its workdir."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    workdir = tmp_path / "run"
    subprocess.run(_train_command(workdir, "--config.global_batch_size=16",
                                  "--config.num_steps=4"), check=True, env=env,
                   capture_output=True)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "evaluate.py"),
                          f"--workdir={workdir}"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    with open(workdir / "eval.json") as f:
        trained = json.load(f)
    action_wise = trained["protocols_mm"]["mpjpe"]["action_wise"]
    assert f"{action_wise:.1f}" in out.stdout
    export = tmp_path / "export"
    out = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "export.py"),
                          f"--workdir={workdir}", f"--output={export}"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    with open(export / "metadata.json") as f:
        meta = json.load(f)
    assert meta["user"]["config"]["global_batch_size"] == 16
    assert meta["user"]["predictor"] == "pose"
    assert oct(os.stat(export).st_mode & 0o777) == oct(0o777 & ~_umask())


def test_user_errors_are_one_line(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "train.py"),
                          "--config=no/such/config.py", f"--workdir={tmp_path}"], env=env,
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert out.stderr.strip() == "train.py: error: --config: no such file 'no/such/config.py'"
    out = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "evaluate.py"),
                          f"--workdir={tmp_path / 'empty'}"], env=env, capture_output=True,
                         text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "evaluate.py: error: --workdir=" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_together_like_one(tmp_path):
    """Two jax.distributed CPU processes x 2 devices == one process x 4 devices."""
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    multi = tmp_path / "multi"
    procs = [subprocess.Popen(
        _train_command(multi, f"--coordinator_address=localhost:{port}",
                       "--num_processes=2", f"--process_id={i}", "--config.num_steps=4",
                       "--config.checkpoint_every=4"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs[0][-3000:] + outputs[1][-3000:]
    single = tmp_path / "single"
    env4 = dict(os.environ, JAX_PLATFORMS="cpu",
                XLA_FLAGS="--xla_force_host_platform_device_count=4")
    subprocess.run(_train_command(single, "--config.num_steps=4",
                                  "--config.checkpoint_every=4"),
                   check=True, env=env4, capture_output=True)
    a = _final_params(multi)
    b = _final_params(single)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)
