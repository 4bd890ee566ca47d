"""The README's promises: its code example runs, and CI runs its test command."""

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def test_python_example_runs():
    pytest.importorskip("pybullet_data")
    blocks = re.findall(r"```python\n(.*?)```", _readme(), re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["pixels"].shape[:1] == (4,)
    assert namespace["pred"].shape == (1,) + namespace["poses"].shape
    assert namespace["errors"].shape == namespace["poses"].shape[:2]


def test_ci_runs_exactly_the_readme_test_command():
    text = _readme()
    after = text.split("<!-- test-command -->", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", after, re.S).group(1)
    extracted = subprocess.run(
        ["awk", "/<!-- test-command -->/{getline; getline; print; exit}", "README.md"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert extracted == command
    assert "pytest" in command and "pip install" in command
