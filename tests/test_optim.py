"""Optimisers and schedules against independent references (PyTorch's update in NumPy)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jpose.training import optim


def torch_adam_amsgrad_updates(grads, *, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """A line-by-line NumPy transcription of ``torch.optim.Adam(amsgrad=True)``'s
    single-tensor step (``torch/optim/adam.py``, ``_single_tensor_adam``): the running
    max is of the raw ``exp_avg_sq``, divided by the *current* bias correction."""
    exp_avg = exp_avg_sq = max_exp_avg_sq = np.float64(0.0)
    out = []
    for step, grad in enumerate(grads, start=1):
        exp_avg = exp_avg * b1 + grad * (1 - b1)  # exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq = exp_avg_sq * b2 + grad * grad * (1 - b2)
        bias_correction1 = 1 - b1 ** step
        bias_correction2 = 1 - b2 ** step
        step_size = lr / bias_correction1
        max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq)
        denom = np.sqrt(max_exp_avg_sq) / np.sqrt(bias_correction2) + eps
        out.append(-step_size * exp_avg / denom)
    return np.asarray(out)


def _updates(tx, grads):
    params = jnp.zeros((), jnp.float32)
    state = tx.init(params)

    def body(state, g):
        with jax.numpy_dtype_promotion("standard"):
            u, state = tx.update(g, state, params)
        return state, u

    return np.asarray(jax.lax.scan(body, state, jnp.asarray(grads, jnp.float32))[1])


def test_amsgrad_matches_pytorch_not_optax():
    grads = np.array([10.0] + [1.0] * 2999)
    torch_steps = torch_adam_amsgrad_updates(grads)
    ours = _updates(optim.torch_amsgrad(1e-3), grads)
    np.testing.assert_allclose(ours, torch_steps, rtol=2e-5)
    # optax.amsgrad takes the max of the *bias-corrected* moment: its steps are 0.71x
    # PyTorch's at step 2 and 0.10x at step 3000 on this sequence, so VideoPose3D's
    # training would not reproduce with it.
    theirs = _updates(optax.amsgrad(1e-3), grads)
    ratio = theirs / torch_steps
    assert ratio[1] == pytest.approx(0.71, abs=0.01)
    assert ratio[2999] == pytest.approx(0.10, abs=0.01)


def test_amsgrad_learning_rate_schedule_sees_the_update_count():
    grads = np.ones(4)
    ours = _updates(optim.torch_amsgrad(lambda count: 1e-3 * (count + 1)), grads)
    plain = torch_adam_amsgrad_updates(grads)
    np.testing.assert_allclose(ours, plain * np.arange(1, 5), rtol=1e-5)


def test_bn_momentum_stays_at_its_final_value_after_the_schedule():
    bn = optim.bn_momentum_schedule(0.1, 0.001, 60, 10)
    assert float(bn(0)) == pytest.approx(0.1)
    assert float(bn(599)) == pytest.approx(0.1 * np.exp(-59 / 60 * np.log(100)), rel=1e-5)
    # Before: 1e-7 at step 610 and 0.0 at step 3610 (exp kept decaying).
    assert float(bn(610)) == pytest.approx(0.001, rel=1e-5)
    assert float(bn(3610)) == pytest.approx(0.001, rel=1e-5)


def test_param_groups_freeze_or_scale_by_path():
    params = {"pose": {"expand_conv": {"kernel": jnp.ones(3)}, "head": {"kernel": jnp.ones(2)}},
              "trajectory": {"expand_conv": {"kernel": jnp.ones(4)}}}
    grads = jax.tree.map(jnp.ones_like, params)
    cfg = {"name": "adam_steps", "learning_rate": 1e-2, "boundaries": (), "factor": 1.0,
           "param_groups": {"frozen_traj": {"pattern": "^trajectory/", "frozen": True},
                            "slow_head": {"pattern": r"pose/head", "lr_mult": 0.1}}}
    labels = optim.param_labels(params, cfg["param_groups"])
    assert labels == {"pose": {"expand_conv": {"kernel": "default"},
                               "head": {"kernel": "slow_head"}},
                      "trajectory": {"expand_conv": {"kernel": "frozen_traj"}}}
    tx, _ = optim.make_optimizer(cfg, 1)
    with jax.numpy_dtype_promotion("standard"):
        updates, _ = tx.update(grads, tx.init(params), params)
    # Adam's first step is -lr * sign(g) (up to eps).
    np.testing.assert_allclose(updates["pose"]["expand_conv"]["kernel"], -1e-2, rtol=1e-5)
    np.testing.assert_allclose(updates["pose"]["head"]["kernel"], -1e-3, rtol=1e-5)
    np.testing.assert_array_equal(updates["trajectory"]["expand_conv"]["kernel"], 0.0)
    with pytest.raises(ValueError, match="param_groups.bad: needs a 'pattern'"):
        optim.make_optimizer({**cfg, "param_groups": {"bad": {"frozen": True}}}, 1)
    with pytest.raises(ValueError, match="param_groups.bad.pattern"):
        optim.make_optimizer({**cfg, "param_groups": {"bad": {"pattern": "("}}}, 1)
