"""launch/prepare_data.py end to end on a fake LSP release (the other datasets' builds
are tested in tests/test_dataset_*.py)."""

import os
import subprocess
import sys


from jpose.datasets import tfds_build
from jpose.datasets.lsp import fake_raw

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_prepare_data_script(tmp_path):
    raw, data_dir = tmp_path / "raw", tmp_path / "tfds"
    fake_raw.write_fake_release(str(raw), num_lsp=6, num_lspet=4)
    script = os.path.join(REPO, "launch", "prepare_data.py")
    cmd = [sys.executable, script, "--dataset=lsp", f"--manual_dir={raw}",
           f"--data_dir={data_dir}", "--config=lspet"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "train: 4 examples" in out.stdout
    source = tfds_build.load("lsp", data_dir=str(data_dir), split="train", config="lspet")
    assert len(source) == 4
    # Missing raw files: a non-zero exit whose message lists the expected paths.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README").write_text("nothing here")
    cmd[3] = f"--manual_dir={empty}"
    out = subprocess.run(cmd + ["--restart"], capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "lspet_dataset/joints.mat" in out.stderr
    # The failed rebuild did not lose the complete build.
    assert len(tfds_build.load("lsp", data_dir=str(data_dir), split="train", config="lspet")) == 4


def test_allow_pickle_only_for_h36m(tmp_path):
    # Run as a script: its absl flags (--config ...) must not meet other launch scripts'.
    cmd = [sys.executable, os.path.join(REPO, "launch", "prepare_data.py"), "--dataset=lsp",
           f"--manual_dir={tmp_path}", f"--data_dir={tmp_path}", "--allow_pickle"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "allow_pickle applies to h36m" in out.stderr
