"""Starts `python -m advcore ...` as a process of its own session, so that neither a browser, nor a
Streamlit rerun, nor the server's end (its Ctrl+C reaches its own process group only) touches it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from advcore.storage import files

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def command(arguments: list[str], **env) -> dict:
    """`subprocess` arguments that run `python -m advcore <arguments>` from any working directory, with
    `env` added to this process's environment."""
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    return {"args": [sys.executable, "-m", "advcore", *arguments], "cwd": PROJECT_ROOT,
            "env": os.environ | {"PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2"} | env}


def spawn(arguments: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    """`python -m advcore <arguments>` in a new session, its output appended to `log_path`, with `env`
    added to its environment (its GPUs: `advcore.devices.child_env`)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with files.open_append(log_path, binary=True) as log:
        return subprocess.Popen(**command(arguments, **(env or {})), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
