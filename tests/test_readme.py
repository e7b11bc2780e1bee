"""The README's Python example runs as printed, against a bundled model and the bundled GAN."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_python_example() -> str:
    section = ROOT.joinpath("README.md").read_text().split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_the_from_python_example_runs(tmp_path):
    shutil.copy(ROOT / "assets" / "models" / "fast-linf" / "model.keras", tmp_path / "model.keras")
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    check = ("\nassert result.x_adv.shape == ds.test.x.shape and 0 < result.success.mean() < 1"
             "\nassert found.adversarial.shape == (8, 28, 28, 1)\nprint('example ran')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", readme_python_example() + check], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("example ran")
