"""Li et al. boosting: pseudo-label files, the fine-tuning recipe, and launch/boost.py."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jpose.datasets import pseudo_labels
from jpose.recipes import Step, li_boosting
from tests.fakes import FixedNetwork

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pseudo_label_file_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    lengths = (5, 3)
    inputs = [rng.normal(size=(f, 17, 2)).astype(np.float32) for f in lengths]
    poses = [rng.normal(size=(f, 17, 3)).astype(np.float32) for f in lengths]
    conf = [rng.uniform(size=(f, 17)).astype(np.float32) for f in lengths]
    path = str(tmp_path / "p.npz")
    pseudo_labels.save(path, inputs=inputs, poses_3d=poses, confidence=conf,
                       bone_lengths=np.ones((2, 11)), layout="h36m_17",
                       subjects=["S2", "S3"], actions=["walk", "run"])
    seqs, per_sequence = pseudo_labels.load(path)
    assert seqs.lengths == lengths and seqs.layout == "h36m_17"
    np.testing.assert_array_equal(seqs[1].poses_3d, poses[1])
    np.testing.assert_array_equal(seqs[0].confidence, conf[0])
    assert per_sequence["bone_lengths"].shape == (2, 11)
    with pytest.raises(ValueError, match="per-sequence lengths"):
        pseudo_labels.save(path, inputs=inputs, poses_3d=poses[:1] * 2, confidence=conf,
                           bone_lengths=np.ones((2, 11)), layout="h36m_17",
                           subjects=["a", "b"], actions=["a", "b"])
    np.savez(tmp_path / "bad.npz", inputs=np.zeros((3, 17, 2)))
    with pytest.raises(ValueError, match="missing"):
        pseudo_labels.load(str(tmp_path / "bad.npz"))


def test_li_loss_hand_values():
    j = 17
    lab_target = np.zeros((1, 1, j, 3), np.float32)
    pseudo_target = np.zeros((2, 1, j, 3), np.float32)
    pred = np.zeros((3, 1, j, 3), np.float32)
    pred[0, ..., 0] = 0.1  # labelled: 0.01 m^2 per joint
    pred[1:, ..., 1] = 0.2  # pseudo: 0.04 m^2 per joint
    conf = np.full((2, 1, j), 0.9, np.float32)
    conf[1] = 0.5  # below tau: W = 0.5
    hp = ml_collections.ConfigDict({"data": {"layout": "h36m_17"},
                                    "recipe": {"tau": 0.7, "fidelity": "weighted",
                                               "gamma": 2.0}})
    nets = {"pose": FixedNetwork(jnp.asarray(pred))}
    # A pose with every joint at the same point has zero-length bones: U = b^2.
    batch = {"labelled": {"inputs": np.zeros((1, 1, j, 2), np.float32),
                          "poses_3d": lab_target, "weight": np.ones(1, np.float32)},
             "pseudo": {"inputs": np.zeros((2, 1, j, 2), np.float32),
                        "poses_3d": pseudo_target, "confidence": conf,
                        "bone_lengths": np.full((2, 11), 0.1, np.float32),
                        "weight": np.ones(2, np.float32)}}
    step = Step(rng=jax.random.key(0), step=jnp.int32(0), bn_momentum=jnp.float32(0.1))
    value, (_, metrics) = li_boosting.loss({"pose": {"w": jnp.zeros(())}}, {"pose": {}}, batch,
                                           step, nets=nets, hp=hp)
    expected = 0.01 + (0.04 * 1.0 + 0.04 * 0.5) / 2 + 2.0 * 0.1 ** 2
    assert float(value) == pytest.approx(expected, rel=1e-5)
    hp.recipe.fidelity = "plain"
    value, _ = li_boosting.loss({"pose": {"w": jnp.zeros(())}}, {"pose": {}}, batch, step,
                                nets=nets, hp=hp)
    assert float(value) == pytest.approx(0.01 + 0.04 + 2.0 * 0.01, rel=1e-5)


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _boost_module(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "launch"))  # boost.py imports _common
    return _load(os.path.join(ROOT, "launch", "boost.py"), "jpose_boost")


def _li_config(name, arg):
    path = os.path.join(ROOT, "launch", "configs", "li_boosting", f"{name}.py")
    return _load(path, f"cfg_li_{name}").get_config(arg)


def test_boost_pipeline_runs_end_to_end_in_tiny_mode(tmp_path, monkeypatch):
    boost = _boost_module(monkeypatch)
    report = boost.run(_li_config("sample", "tiny"), str(tmp_path), progress=False)
    assert set(report["table3"]) == {"baseline", "optimised_supervision", "weighted_fidelity",
                                     "bone_consistency"}
    t1 = report["table1"]
    # Completion keeps every joint with score > tau exactly (up to the root re-centring).
    assert t1["optimised"]["mpjpe_confident"] == pytest.approx(
        t1["predictions"]["mpjpe_confident"], abs=0.5)
    with open(tmp_path / "boost.json") as f:
        assert json.load(f)["table3"] == report["table3"]
    assert "Table 3" in boost.format_report(report)


def test_cross_dataset_boosting_reads_the_target_videos_and_evaluates_there(tmp_path,
                                                                           monkeypatch):
    """mpi_inf_3dhp.py:cross_dataset in tiny form: labelled data from one dataset, the
    unlabelled videos (boost.target) and the 3DPCK evaluation (evals.test.data) from
    another (here: synthetic motion under another generator seed)."""
    boost = _boost_module(monkeypatch)
    config = _li_config("mpi_inf_3dhp", "tiny,cross_dataset")
    assert config.data.protocol == "all"  # no unlabelled split of its own
    report = boost.run(config, str(tmp_path), progress=False)
    seqs, _ = pseudo_labels.load(str(tmp_path / "pseudo_labels.npz"))
    from jpose.training import streams
    from jpose.training.loop import with_data
    target = streams.load_data(with_data(config, {"generator_seed": 1}))
    assert len(seqs) == len(target.splits["train"])
    np.testing.assert_array_equal(seqs[0].inputs, target.splits["train"][0].inputs)
    assert set(report["table3"]["baseline"]) == {"pck3d_150mm", "auc", "mpjpe_mm"}
    ranking = report["table1"]["confidence"]["ranking"]
    assert report["table1"]["confidence"]["used"] == "temporal"
    assert set(ranking) == {"detector", "flip", "temporal"}
    assert 0 <= ranking["temporal"]["fraction_confident"] <= 1


def test_boosting_protocol_settings():
    c = _li_config("h36m", "subjects=S1+S5+S6")
    assert c.data.protocol == "subjects" and tuple(c.data.labelled_subjects) == ("S1", "S5", "S6")
    assert c.boost.tau == 0.7 and c.boost.confidence == "temporal"  # CPN files: no scores
    c = _li_config("h36m", "actions=hard,fps=10")
    assert c.data.protocol == "hard_actions" and c.data.downsample_fps == 10.0
    assert _li_config("h36m", "actions=half").data.protocol == "action_half"
    with pytest.raises(ValueError, match="unknown setting"):
        _li_config("h36m", "subjects=S2")
    c = _li_config("mpi_inf_3dhp", "")
    assert (c.boost.tau, c.data.downsample_fps, c.data.downsample_eval) == (0.5, 12.5, False)
    assert c.evals.test.type == "pck3d_auc" and tuple(c.data.labelled_subjects) == ("S1",)
    cross = _li_config("mpi_inf_3dhp", "cross_dataset")
    assert cross.data.dataset == "h36m" and cross.data.protocol == "all"
    assert cross.boost.target.dataset == "mpi_inf_3dhp"
    assert cross.evals.test.data.dataset == "mpi_inf_3dhp"
    assert cross.data.layout == cross.boost.target.layout == "mpi_inf_3dhp_17"
