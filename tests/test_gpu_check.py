"""The GPU acceptance check end to end, in its CPU version (this machine has no GPU): the real server,
the Playground in Chromium, two runs and an AutoAttack evaluation through the real queue, a report."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_cpu_version_runs_every_job_and_writes_its_report(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("ADVLAB_")}
    result = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", str(tmp_path / "report"), "--no-art"],
                            cwd=ROOT, capture_output=True, text=True, timeout=1200,
                            env=env | {"ADVLAB_GPUS": "none", "ADVLAB_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["verdict"] == "passed" and report["gpu"] is False
    assert {name: job["status"] for name, job in report["jobs"].items()} == {
        "evaluation": "finished", "pgd7": "finished", "trades10-awp": "finished"}
    assert report["playground"]["verdict"].startswith("Pullover →")
    assert {"server", "evaluation worker", "run pgd7", "run trades10-awp"} <= set(report["peak_memory_mb"])
    assert report["evaluation_cells"][0]["count"] == 20 and report["epochs"]["pgd7"]["epochs"] == 1
    assert 0 < report["attack"]["share_of_ceiling"] <= 1.5
    assert (tmp_path / "report" / "report.md").read_text().startswith("# AdvLab GPU check (CPU version: no GPU found)")
